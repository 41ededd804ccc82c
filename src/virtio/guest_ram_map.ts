// Where each guest-physical page lives in QEMU's RAMBlock ("pc.ram"/"ram" memory backend).
//
// QEMU maps the backend's first `belowBytes` at guest-physical 0 and the rest at 4 GiB
// (hw/i386/pc.c pc_memory_init: "ram-below-4g" and "ram-above-4g" aliases of one RAMBlock), so
// a guest pfn below the split is at RAMBlock page pfn and one above 4 GiB is at
// pfn - 4 GiB + below. The PCI hole between them is not RAM. Both parts start 2 MiB aligned
// (the split is 2 or 3 GiB), so a 2 MiB guest block is a 2 MiB host block.

import { assert } from "../core/assert.ts";
import { PAGE_SIZE } from "../core/limits.ts";
import { type MachineType, qemuRamSplit } from "../guest/memory_layout.ts";

const FRAMES_4G = 2 ** 32 / PAGE_SIZE;

export interface GuestRamMap {
  /** RAMBlock pages (the guest's RAM size in 4 KiB pages). */
  readonly pageCount: number;
  /** Guest pages below the PCI hole, at pfn 0..belowPages-1. */
  readonly belowPages: number;
}

export function createGuestRamMap(machine: MachineType, memoryBytes: number): GuestRamMap {
  const split = qemuRamSplit(machine, memoryBytes);
  return {
    pageCount: (split.belowBytes + split.aboveBytes) / PAGE_SIZE,
    belowPages: split.belowBytes / PAGE_SIZE,
  };
}

/** The RAMBlock page of a guest pfn (memory_region_find over the RAM aliases). */
export function ramPageOfPfn(map: GuestRamMap, pfn: number): number {
  if (pfn < map.belowPages) return pfn;
  const page = pfn - FRAMES_4G + map.belowPages;
  assert(pfn >= FRAMES_4G && page < map.pageCount, () => `pfn ${pfn} is not guest RAM`);
  return page;
}

/** The guest pfn of a RAMBlock page. */
export function pfnOfRamPage(map: GuestRamMap, page: number): number {
  assert(page >= 0 && page < map.pageCount, () => `RAMBlock page ${page} out of range`);
  return page < map.belowPages ? page : page - map.belowPages + FRAMES_4G;
}
