// Where the guest's RAM is (QEMU's machine types) and what Linux keeps back at boot, giving the
// zones and the frames the buddy allocator is handed.
//
// QEMU puts RAM below the PCI hole up to a split and the rest above 4 GiB
// (hw/i386/pc_piix.c pc_init1; hw/i386/pc_q35.c pc_q35_init). SeaBIOS's E820 map leaves the
// 640 KiB-1 MiB range and a few pages at the top of low RAM reserved. Linux then keeps back the
// first 1 MiB (v5.13+, "x86/setup: Always reserve the first 1M of RAM"; 64 KiB before, plus the
// real-mode trampoline), its own image (KASLR: the model takes the lowest slot past the
// decompression buffer), the memmap (2 MiB of struct page per 128 MiB section, allocated
// top-down by memblock below the initrd) and other early allocations, also top-down. The boot
// also writes memory it frees (bzImage, decompressor copy, init sections, initrd:
// `bootWritten`). All numbers are model rules, listed in `BootReservation`.
//
// A virtio-mem device adds its region above all of this: QEMU's device memory region starts at
// the end of RAM above 4 GiB rounded up to 1 GiB (hw/i386/pc.c pc_get_device_memory_range), and
// the first memory device is placed at its start. The frame table covers the region from
// creation, its frames reserved (not present) until the driver onlines them, and the zone it
// onlines into (ZONE_MOVABLE, or ZONE_NORMAL) spans it from creation so zone spans never change.

import { assert } from "../core/assert.ts";
import { PAGE_SIZE, pageblock_nr_pages } from "../core/limits.ts";
import type { KernelRules, KernelVersion } from "./kernel_version.ts";
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

/** A virtio-mem device as the guest sees it at boot (GuestConfig.virtioMem). */
export interface VirtioMemConfig {
  /** The memdev's size: the device region (QEMU `memdev` size, `region_size` in the config). */
  readonly regionBytes: number;
  /** The device block size (QEMU `block-size`; its default is the host THP size, 2 MiB). */
  readonly blockBytes: number;
  /** Memory blocks are onlined to ZONE_MOVABLE (memhp_default_state=online_movable). */
  readonly movable: boolean;
}

/** The device memory region of a virtio-mem device in guest-physical frames. */
export interface DeviceMemoryRegion {
  /** First pfn: the device's `addr` (1 GiB aligned). */
  readonly startPfn: number;
  /** End pfn (exclusive): start + region size. */
  readonly endPfn: number;
  /** The zone its memory is onlined to: ZoneType.Movable or ZoneType.Normal. */
  readonly zoneType: ZoneType;
  /** The device block size in 4 KiB frames. */
  readonly blockPages: number;
}

export interface GuestLayout {
  /** Frames the frame table covers (highest RAM pfn + 1, or the device region's end). */
  readonly frameCount: number;
  readonly zones: readonly ZoneSpec[];
  /** RAM ranges [start, end) in pfns (E820 usable). */
  readonly ramRanges: readonly ReservedRange[];
  /** Ranges of RAM Linux never hands to the buddy allocator. */
  readonly reserved: readonly ReservedRange[];
  /** The virtio-mem device region, when the guest has one (not RAM at boot: not in ramRanges). */
  readonly deviceMemory?: DeviceMemoryRegion;
  /** RAM the boot wrote and then freed (loaded images, decompression buffer, init sections). */
  readonly bootWritten?: readonly ReservedRange[];
}

/**
 * What the guest kernel keeps back or writes while booting. Defaults measured on Debian 12's
 * 6.1.0-56-cloud-amd64 in a 640 MiB, 1-vCPU QEMU pc guest (dmesg, /proc/iomem; see README).
 */
export interface BootReservation {
  /** memblock_reserve(_text, _end - _text) in setup_arch: the whole kernel image. */
  readonly kernelImageBytes: number;
  /** Of the image, freed at the end of boot (free_initmem, free_kernel_image_pages, ...). */
  readonly kernelImageFreedBytes: number;
  /** The bzImage header's init_size: the decompression buffer from CONFIG_PHYSICAL_START. */
  readonly kernelInitBytes: number;
  /** The bzImage's protected-mode part, which QEMU loads at 1 MiB (x86_load_linux). */
  readonly compressedKernelBytes: number;
  /** The initramfs QEMU loads at the top of low RAM, reserved until free_initrd_mem. */
  readonly initrdBytes: number;
  /** The first percpu chunk per CPU (pcpu_embed_first_chunk; 1 vCPU). */
  readonly percpuBytes: number;
  /** Other memblock allocations: early page tables, ACPI, printk and the like. */
  readonly otherEarlyBytes: number;
}

const KiB = 1024;
/** Measured on 6.1.0-56-cloud-amd64, 640 MiB guest, QEMU 7.2 pc, 1 vCPU, init_on_alloc=1. */
export const DEFAULT_BOOT_RESERVATION: BootReservation = {
  // /proc/iomem: "Kernel code" starts at 0x18c00000, "Kernel bss" ends at 0x1b3fffff.
  kernelImageBytes: 40 * MiB,
  // dmesg "Freeing ...": initmem 2612K, text/rodata gap 2040K, rodata/data gap 1892K,
  // unused decrypted 2036K, SMP alternatives 36K.
  kernelImageFreedBytes: (2612 + 2040 + 1892 + 2036 + 36) * KiB,
  // vmlinuz-6.1.0-56-cloud-amd64 setup header: init_size 0x3378000 (51.47 MiB).
  kernelInitBytes: 0x3378000,
  // vmlinuz-6.1.0-56-cloud-amd64: 14186432 bytes minus (39 setup sectors + 1) * 512.
  compressedKernelBytes: 14165952,
  // validate's busybox initramfs as QEMU loads it: the gzip'd cpio of 1554091 bytes (unpacked
  // into rootfs it is Shmem 2952 kB, post_boot.ts).
  initrdBytes: 1554091,
  // dmesg "percpu: Embedded 61 pages/cpu s212992 r8192 d28672 u2097152".
  percpuBytes: 61 * PAGE_SIZE,
  // The rest of dmesg's "55844K reserved" once image, memmap, initrd, percpu, hashes are out.
  otherEarlyBytes: 292 * KiB,
};

/**
 * Pages the kernel frees only at the end of boot (the freed parts of its image, the initrd):
 * init_per_zone_wmark_min and khugepaged's set_recommended_min_free_kbytes ran before and did
 * not count them (watermarks.ts minFreeKbytes). With the defaults, 2534 pages: the real 640 MiB
 * and 768 MiB guests' min_free_kbytes (29736 and 36164) both need 2532..2548.
 */
export function lateFreedPages(boot: BootReservation): number {
  return Math.ceil((boot.kernelImageFreedBytes + boot.initrdBytes) / PAGE_SIZE);
}

/** SeaBIOS keeps 0x9fc00-0xfffff and the last pages of low RAM (ACPI/SMBIOS tables) reserved. */
const LOW_RAM_TOP_RESERVED_PAGES = 36;
/** The usable range below 1 MiB ends at 0x9fc00: pfn 0x9f is partial, so pfns 1..0x9e. */
const LOW_USABLE_END_PFN = 0x9f;
/** struct page is 64 bytes (include/linux/mm_types.h on x86-64). */
export const STRUCT_PAGE_BYTES = 64;

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
  const reserved = bootReserved(ramRanges, rules, boot);
  return { frameCount, zones, ramRanges, reserved, bootWritten: bootWritten(ramRanges, boot) };
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
  const image = kernelImagePlacement(ramRanges, boot);
  reserved.push({ startPfn: image.startPfn, endPfn: image.keptEndPfn, what: "kernel image" });
  // memblock allocates top-down (below the initrd, freed later): memmap first, then the rest.
  const top = memblockTopPfn(ramRanges, boot);
  const memmapPages = memmapBytes(ramRanges) / PAGE_SIZE;
  const earlyPages = Math.ceil(earlyAllocationBytes(ramRanges, boot) / PAGE_SIZE);
  const memmapStart = top - memmapPages;
  reserved.push({ startPfn: memmapStart, endPfn: top, what: "memmap" });
  reserved.push({
    startPfn: memmapStart - earlyPages,
    endPfn: memmapStart,
    what: "early allocations",
  });
  return reserved;
}

/** Frames of RAM in the ranges. */
function presentPagesOf(ramRanges: readonly ReservedRange[]): number {
  let pages = 0;
  for (const range of ramRanges) pages += range.endPfn - range.startPfn;
  return pages;
}

/** PAGES_PER_SECTION on x86-64: 128 MiB sections (SECTION_SIZE_BITS 27). */
const PAGES_PER_SECTION = (128 * MiB) / PAGE_SIZE;

/**
 * SPARSEMEM_VMEMMAP memmap: sparse_init_nid allocates a section's struct pages (2 MiB, PMD
 * mapped) for every present section, so the memmap is 2 MiB per 128 MiB section touched.
 */
export function memmapBytes(ramRanges: readonly ReservedRange[]): number {
  const sections = new Set<number>();
  for (const range of ramRanges) {
    const last = Math.floor((range.endPfn - 1) / PAGES_PER_SECTION);
    for (let s = Math.floor(range.startPfn / PAGES_PER_SECTION); s <= last; s++) sections.add(s);
  }
  return sections.size * PAGES_PER_SECTION * STRUCT_PAGE_BYTES;
}

/**
 * alloc_large_system_hash from memblock (hashdist is 0 without NUMA): the dentry hash (scale 13)
 * and inode hash (scale 14), entries = roundup_pow_of_two(nr_kernel_pages >> (scale - 12)),
 * 8 bytes each (hlist_bl_head, hlist_head). 640 MiB: dmesg 131072 and 65536 entries.
 */
export function vfsHashBytes(ramRanges: readonly ReservedRange[]): number {
  const pages = presentPagesOf(ramRanges);
  const roundUpPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
  return (roundUpPow2(pages >> 1) + roundUpPow2(pages >> 2)) * 8;
}

/** memblock allocations besides the memmap: percpu, VFS hashes and the rest. */
export function earlyAllocationBytes(
  ramRanges: readonly ReservedRange[],
  boot: BootReservation,
): number {
  return boot.percpuBytes + vfsHashBytes(ramRanges) + boot.otherEarlyBytes;
}

/** QEMU x86_load_linux: the initrd ends at the top of RAM below 4 GiB, page aligned down. */
function initrdStartPfn(ramRanges: readonly ReservedRange[], boot: BootReservation): number {
  const low = ramRanges.filter((range) => range.endPfn <= FRAMES_4G).at(-1)!;
  return low.endPfn - Math.ceil(boot.initrdBytes / PAGE_SIZE);
}

/** Where memblock's top-down allocations start: the top of RAM, below the initrd if it is there. */
function memblockTopPfn(ramRanges: readonly ReservedRange[], boot: BootReservation): number {
  const top = ramRanges[ramRanges.length - 1]!;
  return top.endPfn <= FRAMES_4G ? initrdStartPfn(ramRanges, boot) : top.endPfn;
}

interface ImagePlacement {
  readonly startPfn: number;
  /** End of the part kept after boot; the freed part follows it up to the image's end. */
  readonly keptEndPfn: number;
  readonly endPfn: number;
}

/** CONFIG_PHYSICAL_START and CONFIG_PHYSICAL_ALIGN (Debian's config: 16 MiB, 2 MiB). */
const PHYSICAL_START_PFN = (16 * MiB) / PAGE_SIZE;
const PHYSICAL_ALIGN_PAGES = (2 * MiB) / PAGE_SIZE;

/**
 * KASLR (choose_random_location, CONFIG_RANDOMIZE_BASE=y) puts the image in a random 2 MiB slot
 * outside the decompression buffer [16 MiB, 16 MiB + init_size); the model takes the lowest such
 * slot (deterministic), or CONFIG_PHYSICAL_START when none fits (the no-slot fallback).
 */
function kernelImagePlacement(
  ramRanges: readonly ReservedRange[],
  boot: BootReservation,
): ImagePlacement {
  const imagePages = Math.ceil(boot.kernelImageBytes / PAGE_SIZE);
  const keptPages = imagePages - Math.floor(boot.kernelImageFreedBytes / PAGE_SIZE);
  const bufferEnd = PHYSICAL_START_PFN + Math.ceil(boot.kernelInitBytes / PAGE_SIZE);
  const slot = Math.ceil(bufferEnd / PHYSICAL_ALIGN_PAGES) * PHYSICAL_ALIGN_PAGES;
  const topUsed =
    memmapBytes(ramRanges) / PAGE_SIZE +
    Math.ceil(earlyAllocationBytes(ramRanges, boot) / PAGE_SIZE);
  const limit = Math.min(
    initrdStartPfn(ramRanges, boot),
    memblockTopPfn(ramRanges, boot) - topUsed,
  );
  const startPfn = slot + imagePages <= limit ? slot : PHYSICAL_START_PFN;
  return { startPfn, keptEndPfn: startPfn + keptPages, endPfn: startPfn + imagePages };
}

/**
 * What the boot wrote and freed (all of it stays host-resident): the bzImage QEMU loads at
 * 1 MiB, the compressed kernel the decompressor copies to the end of its buffer (head_64.S:
 * buffer + init_size - ZO size), the image's freed sections, and the initrd.
 */
function bootWritten(ramRanges: readonly ReservedRange[], boot: BootReservation): ReservedRange[] {
  const pages = (bytes: number): number => Math.ceil(bytes / PAGE_SIZE);
  const loadStart = (1 * MiB) / PAGE_SIZE;
  const bufferEnd = PHYSICAL_START_PFN + pages(boot.kernelInitBytes);
  const image = kernelImagePlacement(ramRanges, boot);
  const initrdStart = initrdStartPfn(ramRanges, boot);
  const top = ramRanges.filter((range) => range.endPfn <= FRAMES_4G).at(-1)!.endPfn;
  const written: ReservedRange[] = [
    { startPfn: loadStart, endPfn: loadStart + pages(boot.compressedKernelBytes), what: "bzImage" },
    {
      startPfn: bufferEnd - pages(boot.compressedKernelBytes),
      endPfn: bufferEnd,
      what: "decompressor copy",
    },
    { startPfn: image.keptEndPfn, endPfn: image.endPfn, what: "kernel image, freed" },
    { startPfn: initrdStart, endPfn: top, what: "initrd" },
  ];
  return written;
}

/**
 * The virtio-mem driver's smallest subblock in pages, or 0 when the kernel has no driver: it
 * was merged in v5.8 (drivers/virtio/virtio_mem.c), so 5.6 has none; since v5.19 the minimum is
 * a pageblock (commit a12d186346e4, "drivers: virtio_mem: use pageblock size as the minimum
 * virtio_mem size", Zi Yan), 5.8-5.18 used MAX_ORDER_NR_PAGES (4 MiB), no modelled version.
 */
const VIRTIO_MEM_SUBBLOCK_MIN_PAGES: Record<KernelVersion, number> = {
  "5.6": 0,
  "6.1": pageblock_nr_pages,
  "6.18": pageblock_nr_pages,
};

export function virtioMemSubblockMinPages(rules: KernelRules): number {
  return VIRTIO_MEM_SUBBLOCK_MIN_PAGES[rules.version];
}

/** The error for a kernel without the virtio-mem driver. */
export function virtioMemUnsupported(rules: KernelRules): string {
  const version = rules.version;
  return `virtio-mem needs Linux 5.8+ (drivers/virtio/virtio_mem.c); this guest runs ${version}`;
}

/** VIRTIO_MEM_MIN_BLOCK_SIZE (hw/virtio/virtio-mem.c): device blocks are at least 1 MiB. */
export const VIRTIO_MEM_MIN_BLOCK_SIZE = 1 * MiB;

/**
 * Models pc_get_device_memory_range (hw/i386/pc.c): the device memory region starts at
 * ROUND_UP(pc_above_4g_end, 1 GiB), where pc_above_4g_end is 4 GiB plus the RAM above 4 GiB
 * (4 GiB itself when all RAM fits below the PCI hole).
 */
export function deviceMemoryBasePfn(layout: GuestLayout): number {
  let above4gEndPfn = FRAMES_4G;
  for (const range of layout.ramRanges) above4gEndPfn = Math.max(above4gEndPfn, range.endPfn);
  const gigabytePages = GiB / PAGE_SIZE;
  return Math.ceil(above4gEndPfn / gigabytePages) * gigabytePages;
}

/**
 * The layout with a virtio-mem region added at the device memory base: the frame table grows to
 * its end, and the zone it onlines into spans it (ZONE_MOVABLE, new; or ZONE_NORMAL, extended
 * over the gap, or new when the guest has no RAM above 4 GiB). Nothing in it is present yet.
 */
export function addDeviceMemory(
  layout: GuestLayout,
  virtioMem: VirtioMemConfig,
  rules: KernelRules,
): GuestLayout {
  const { regionBytes, blockBytes } = virtioMem;
  assert(virtioMemSubblockMinPages(rules) > 0, () => virtioMemUnsupported(rules));
  assert(layout.deviceMemory === undefined, "the layout already has a device memory region");
  assert(
    blockBytes >= VIRTIO_MEM_MIN_BLOCK_SIZE && (blockBytes & (blockBytes - 1)) === 0,
    () => `virtio-mem block size ${blockBytes}: expected a power of two >= 1 MiB`,
  );
  // virtio_mem_device_realize: the memdev size has to be a multiple of the block size.
  assert(
    Number.isSafeInteger(regionBytes) && regionBytes > 0 && regionBytes % blockBytes === 0,
    () => `virtio-mem region ${regionBytes}: expected a positive multiple of ${blockBytes}`,
  );
  const startPfn = deviceMemoryBasePfn(layout);
  const endPfn = startPfn + regionBytes / PAGE_SIZE;
  const zoneType = virtioMem.movable ? ZoneType.Movable : ZoneType.Normal;
  const zones: ZoneSpec[] = layout.zones.filter((zone) => zone.type !== zoneType);
  const normal = layout.zones.find((zone) => zone.type === ZoneType.Normal);
  if (zoneType === ZoneType.Normal && normal !== undefined) {
    zones.push({ type: ZoneType.Normal, startPfn: normal.startPfn, endPfn });
  } else {
    assert(
      layout.zones.every((zone) => zone.type !== zoneType),
      () => `the layout already has zone ${zoneType}`,
    );
    zones.push({ type: zoneType, startPfn, endPfn });
  }
  zones.sort((a, b) => a.type - b.type);
  const blockPages = blockBytes / PAGE_SIZE;
  return {
    ...layout,
    frameCount: endPfn,
    zones,
    deviceMemory: { startPfn, endPfn, zoneType, blockPages },
  };
}
