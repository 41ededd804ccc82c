// Where each guest-physical page lives in QEMU's RAMBlock ("pc.ram"/"ram" memory backend).
//
// QEMU maps the backend's first `belowBytes` at guest-physical 0 and the rest at 4 GiB
// (hw/i386/pc.c pc_memory_init: "ram-below-4g" and "ram-above-4g" aliases of one RAMBlock), so
// a guest pfn below the split is at RAMBlock page pfn and one above 4 GiB is at
// pfn - 4 GiB + below. The PCI hole between them is not RAM. Both parts start 2 MiB aligned
// (the split is 2 or 3 GiB), so a 2 MiB guest block is a 2 MiB host block.
//
// guestRamMapOfRanges derives the same map from a guest layout's RAM ranges (E820 usable RAM),
// which is all a real capture (proc import) tells. Assumption: QEMU's ram-below-4g ends at the
// first 2 MiB boundary at or above the end of the guest's low RAM. The firmware keeps the last
// pages below the split out of the guest's map (SeaBIOS's ACPI/SMBIOS tables, e820 reserved), so
// a capture's low RAM usually ends a few pages short of the split; the split itself (2 or 3 GiB,
// or the whole -m size below the PCI hole, taken to be a 2 MiB multiple) is 2 MiB aligned. RAM
// above 4 GiB is rounded up to 2 MiB the same way (the backend's size, -m, a 2 MiB multiple).

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import { type MachineType, qemuRamSplit, type ReservedRange } from "../guest/memory_layout.ts";

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

/** `pages` rounded up to a whole 2 MiB block. */
function roundUpToHuge(pages: number): number {
  return Math.ceil(pages / HPAGE_PMD_NR) * HPAGE_PMD_NR;
}

/**
 * The RAMBlock map of a guest whose RAM ranges are known (pc_memory_init's two aliases): RAM
 * below 4 GiB at RAMBlock page = pfn up to the end of low RAM (rounded up to 2 MiB, see the
 * header), RAM from 4 GiB on at pfn - 4 GiB + that end.
 */
export function guestRamMapOfRanges(ramRanges: readonly ReservedRange[]): GuestRamMap {
  let lowEnd = 0;
  let highEnd = FRAMES_4G;
  for (const range of ramRanges) {
    if (range.startPfn < FRAMES_4G) {
      assert(range.endPfn <= FRAMES_4G, () => `RAM range ${range.what} crosses 4 GiB`);
      lowEnd = Math.max(lowEnd, range.endPfn);
    } else {
      highEnd = Math.max(highEnd, range.endPfn);
    }
  }
  const belowPages = roundUpToHuge(lowEnd);
  const pageCount = belowPages + roundUpToHuge(highEnd - FRAMES_4G);
  assert(pageCount > 0, "the guest has no RAM");
  return { pageCount, belowPages };
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
