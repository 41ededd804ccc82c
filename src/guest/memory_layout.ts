// Where the guest's RAM is (QEMU's machine types) and what Linux keeps back at boot, giving the
// zones and the frames the buddy allocator is handed.
//
// QEMU puts RAM below the PCI hole up to a split and the rest above 4 GiB
// (hw/i386/pc_piix.c pc_init1; hw/i386/pc_q35.c pc_q35_init). SeaBIOS's E820 map leaves the
// 640 KiB-1 MiB range and a few pages at the top of low RAM reserved. Linux then keeps back the
// first 1 MiB (v5.13+, "x86/setup: Always reserve the first 1M of RAM"; 64 KiB before, plus the
// real-mode trampoline), its own image at CONFIG_PHYSICAL_START = 16 MiB, the memmap (64 bytes of
// struct page per 4 KiB, allocated top-down by memblock) and other early allocations, also
// top-down. All numbers are model rules, listed in `BootReservation` and documented in README.

import { assert } from "../core/assert.ts";
import { PAGE_SIZE } from "../core/limits.ts";
import type { KernelRules } from "./kernel_version.ts";
import { type ZoneSpec, ZoneType } from "./zone.ts";

export type MachineType = "pc" | "q35";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const FRAMES_4G = (4 * GiB) / PAGE_SIZE;
/** MAX_DMA_PFN: ZONE_DMA is the first 16 MiB (arch/x86/include/asm/dma.h). */
const MAX_DMA_PFN = (16 * MiB) / PAGE_SIZE;

export interface RamSplit {
  /** Bytes of RAM below 4 GiB, from guest-physical 0. */
  readonly belowBytes: number;
  /** Bytes of RAM from 4 GiB up. */
  readonly aboveBytes: number;
}

/**
 * QEMU's RAM split. pc (pc_piix.c): lowmem 0xe0000000 (3.5 GiB); if RAM reaches it, the split
 * moves to 3 GiB (gigabyte_align). q35 (pc_q35.c): lowmem 0xb0000000 (2.75 GiB); if RAM
 * reaches it, the split moves to 2 GiB.
 */
export function qemuRamSplit(machine: MachineType, ramBytes: number): RamSplit {
  const threshold = machine === "pc" ? 0xe0000000 : 0xb0000000;
  const split = machine === "pc" ? 3 * GiB : 2 * GiB;
  if (ramBytes < threshold) return { belowBytes: ramBytes, aboveBytes: 0 };
  return { belowBytes: split, aboveBytes: ramBytes - split };
}

export interface ReservedRange {
  readonly startPfn: number;
  readonly endPfn: number;
  readonly what: string;
}

export interface GuestLayout {
  /** Frames the frame table covers (highest RAM pfn + 1). */
  readonly frameCount: number;
  readonly zones: readonly ZoneSpec[];
  /** RAM ranges [start, end) in pfns (E820 usable). */
  readonly ramRanges: readonly ReservedRange[];
  /** Ranges of RAM Linux never hands to the buddy allocator. */
  readonly reserved: readonly ReservedRange[];
}

export interface BootReservation {
  /** Kernel image (text, rodata, data, bss; init already freed) at 16 MiB. */
  readonly kernelImageBytes: number;
  /** memblock allocations besides the memmap: page tables, percpu, ACPI, log buffer. */
  readonly earlyAllocationBytes: number;
}

/** Debian 12's 6.1 cloud kernel: "12288K kernel code, 2079K rwdata, 4380K rodata, 4572K bss". */
export const DEFAULT_BOOT_RESERVATION: BootReservation = {
  kernelImageBytes: 23 * MiB,
  earlyAllocationBytes: 8 * MiB,
};

/** SeaBIOS keeps 0x9fc00-0xfffff and the last pages of low RAM (ACPI/SMBIOS tables) reserved. */
const LOW_RAM_TOP_RESERVED_PAGES = 36;
/** The usable range below 1 MiB ends at 0x9fc00: pfn 0x9f is partial, so pfns 1..0x9e. */
const LOW_USABLE_END_PFN = 0x9f;
/** struct page is 64 bytes (include/linux/mm_types.h on x86-64). */
const STRUCT_PAGE_BYTES = 64;

export function guestLayout(
  machine: MachineType,
  ramBytes: number,
  rules: KernelRules,
  boot: BootReservation = DEFAULT_BOOT_RESERVATION,
): GuestLayout {
  assert(ramBytes >= 64 * MiB, "guest memory must be at least 64 MiB");
  assert(ramBytes % (2 * MiB) === 0, "guest memory must be a multiple of 2 MiB");
  const split = qemuRamSplit(machine, ramBytes);
  const belowEndPfn = split.belowBytes / PAGE_SIZE;
  const aboveFrames = split.aboveBytes / PAGE_SIZE;
  const frameCount = aboveFrames > 0 ? FRAMES_4G + aboveFrames : belowEndPfn;
  const ramRanges: ReservedRange[] = [
    { startPfn: 1, endPfn: LOW_USABLE_END_PFN, what: "RAM below 640 KiB" },
    { startPfn: 256, endPfn: belowEndPfn - LOW_RAM_TOP_RESERVED_PAGES, what: "low RAM" },
  ];
  if (aboveFrames > 0) {
    ramRanges.push({ startPfn: FRAMES_4G, endPfn: FRAMES_4G + aboveFrames, what: "high RAM" });
  }
  const zones: ZoneSpec[] = [
    { type: ZoneType.DMA, startPfn: 1, endPfn: MAX_DMA_PFN },
    { type: ZoneType.DMA32, startPfn: MAX_DMA_PFN, endPfn: belowEndPfn },
  ];
  if (aboveFrames > 0) {
    zones.push({ type: ZoneType.Normal, startPfn: FRAMES_4G, endPfn: FRAMES_4G + aboveFrames });
  }
  return { frameCount, zones, ramRanges, reserved: bootReserved(ramRanges, rules, boot) };
}

function bootReserved(
  ramRanges: readonly ReservedRange[],
  rules: KernelRules,
  boot: BootReservation,
): ReservedRange[] {
  const reserved: ReservedRange[] = [];
  // v5.13+: the first 1 MiB is always reserved; before, X86_RESERVE_LOW (64 KiB) plus the
  // real-mode trampoline (reserve_real_mode, 6 pages just below the EBDA).
  if (rules.reserveFirstMiB) {
    reserved.push({ startPfn: 0, endPfn: 256, what: "first 1 MiB" });
  } else {
    reserved.push({ startPfn: 0, endPfn: 16, what: "X86_RESERVE_LOW" });
    reserved.push({
      startPfn: LOW_USABLE_END_PFN - 6,
      endPfn: LOW_USABLE_END_PFN,
      what: "trampoline",
    });
  }
  const kernelStart = (16 * MiB) / PAGE_SIZE;
  const kernelPages = Math.ceil(boot.kernelImageBytes / PAGE_SIZE);
  reserved.push({ startPfn: kernelStart, endPfn: kernelStart + kernelPages, what: "kernel image" });
  // memblock allocates top-down from the end of RAM: memmap first, then the rest.
  let presentPages = 0;
  for (const range of ramRanges) presentPages += range.endPfn - range.startPfn;
  const memmapPages = Math.ceil((presentPages * STRUCT_PAGE_BYTES) / PAGE_SIZE);
  const earlyPages = Math.ceil(boot.earlyAllocationBytes / PAGE_SIZE);
  const top = ramRanges[ramRanges.length - 1]!;
  const memmapStart = top.endPfn - memmapPages;
  reserved.push({ startPfn: memmapStart, endPfn: top.endPfn, what: "memmap" });
  reserved.push({
    startPfn: memmapStart - earlyPages,
    endPfn: memmapStart,
    what: "early allocations",
  });
  return reserved;
}
