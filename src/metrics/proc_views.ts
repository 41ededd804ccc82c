// The guest as the kernel shows it in /proc: buddyinfo, pagetypeinfo, vmstat, meminfo, zoneinfo
// and debugfs extfrag/{extfrag_index,unusable_index}, byte for byte in the format of the guest's
// kernel version (formats, widths and per-version lists: /work/research/procfs.md).
//
// Theory of operation. Every view is a pure function of the GuestMemory. The free lists give
// buddyinfo, pagetypeinfo and the fragmentation indices directly (nr_free, the per-list counts).
// Counters the kernel keeps and the model does not are derived from the frame table in one pass
// (frames per FrameKind per zone, THP heads), or printed as 0 where the model has no such thing
// (swap, dirty pages, NUMA, mlock, page tables, vmalloc, hugetlbfs). The derivation rules:
// - NR_FREE_PAGES is the buddy free pages less those on MIGRATE_ISOLATE lists (__free_one_page
//   and set_migratetype_isolate keep isolated pages out of it); per-cpu pages are not in it.
// - LRU: Anon and Pinned frames are anon LRU pages, Shmem frames are anon LRU (swap-backed),
//   PageCache frames are inactive file pages (read once). New anon pages go to the active list
//   in 5.6 (lru_cache_add_active_or_unevictable) and to the inactive one from 5.9
//   (lru_cache_add_inactive_or_unevictable); shmem always to the inactive anon list.
// - Kernel frames are unreclaimable slab, KernelReclaimable frames reclaimable slab, Balloon
//   frames are NR_BALLOON_PAGES (6.18's Balloon: line).
// - A THP is an Anon block head of order HPAGE_PMD_ORDER (thp.ts): nr_anon_transparent_hugepages
//   counts them, AnonHugePages is 2048 kB each.
// The kernel prints every zone of the node in zoneinfo (DMA, DMA32, Normal, Movable, Device on
// Debian), so zones the model lacks are printed as the kernel prints an empty zone.

import { assert } from "../core/assert.ts";
import {
  HPAGE_PMD_NR,
  HPAGE_PMD_ORDER,
  MIGRATE_ISOLATE,
  MIGRATE_TYPES,
  migratetype_names,
  NR_PAGE_ORDERS,
  PAGE_SIZE,
  pageblock_nr_pages,
  pageblock_order,
} from "../core/limits.ts";
import {
  formatThousandths,
  fragmentationIndex,
  unusableFreeIndex,
} from "../guest/fragmentation_index.ts";
import {
  FRAME_KIND_COUNT,
  FRAME_KIND_MASK,
  FRAME_TAIL,
  FrameKind,
  ORDER_MASK,
} from "../guest/frame_table.ts";
import type { GuestMemory } from "../guest/guest_memory.ts";
import { KERNEL_USE_COUNT, KernelUse } from "../guest/owners.ts";
import type { ProcImportRecord } from "../guest/proc_import.ts";
import { VM_EVENT_NAMES } from "../guest/vm_event.ts";
import {
  freeListIndex,
  WMARK_HIGH,
  WMARK_LOW,
  WMARK_MIN,
  WMARK_PROMO,
  type Zone,
} from "../guest/zone.ts";
import { vmstatNames } from "./vmstat_names.ts";

/** The zones of a Debian amd64 node, in zone order (MAX_NR_ZONES = 5, include/linux/mmzone.h). */
export const KERNEL_ZONE_NAMES: readonly string[] = ["DMA", "DMA32", "Normal", "Movable", "Device"];
const ZONE_MOVABLE_INDEX = 3;
/** The pagetypeinfo free-count cap (commit 93b3a674485f, v5.4): ">100000". */
export const PAGETYPEINFO_FREECOUNT_MAX = 100000;
/** VMALLOC_TOTAL >> 10 for x86-64 4-level paging (arch/x86/include/asm/pgtable_64_types.h). */
const VMALLOC_TOTAL_KB = 34359738367;
/** vm_dirty_ratio and dirty_background_ratio defaults (mm/page-writeback.c). */
const DIRTY_RATIO = 20;
const DIRTY_BACKGROUND_RATIO = 10;
/** sysctl_overcommit_ratio default (mm/util.c). */
const OVERCOMMIT_RATIO = 50;
const KB_PER_PAGE = PAGE_SIZE / 1024;

// --- Derived state -----------------------------------------------------------------------------

/** What one pass over the frame table gives, per zone of the model. */
interface ZoneFrames {
  /** Frames per FrameKind (tails included). */
  readonly kinds: Float64Array;
  /** Anon THPs (order-9 Anon heads). */
  anonThp: number;
  /** FrameKind.Kernel frames per KernelUse of their owner (slab, vmalloc, page tables, direct). */
  readonly kernelUse: Float64Array;
}

interface ProcState {
  readonly memory: GuestMemory;
  /** Per model zone, in memory.zones order. */
  readonly zones: readonly ZoneFrames[];
  /** Sum over zones. */
  readonly total: ZoneFrames;
}

function createZoneFrames(): ZoneFrames {
  return {
    kinds: new Float64Array(FRAME_KIND_COUNT),
    anonThp: 0,
    kernelUse: new Float64Array(KERNEL_USE_COUNT),
  };
}

function countZoneFrames(memory: GuestMemory, zone: Zone, frames: ZoneFrames): void {
  const { state, order, link0 } = memory.table;
  const owners = memory.owners.owners;
  for (let pfn = zone.startPfn; pfn < zone.endPfn; pfn++) {
    const byte = state[pfn]!;
    const kind = byte & FRAME_KIND_MASK;
    frames.kinds[kind]!++;
    if (kind === FrameKind.Kernel) {
      frames.kernelUse[owners[link0[pfn]!]?.kernelUse ?? KernelUse.Slab]!++;
    }
    if (kind === FrameKind.Anon && (byte & FRAME_TAIL) === 0) {
      if ((order[pfn]! & ORDER_MASK) === HPAGE_PMD_ORDER) frames.anonThp++;
    }
  }
}

function procState(memory: GuestMemory): ProcState {
  const zones = memory.zones.map((zone) => {
    const frames = createZoneFrames();
    countZoneFrames(memory, zone, frames);
    return frames;
  });
  const total = createZoneFrames();
  for (const frames of zones) {
    for (let kind = 0; kind < FRAME_KIND_COUNT; kind++) total.kinds[kind]! += frames.kinds[kind]!;
    for (let use = 0; use < KERNEL_USE_COUNT; use++) {
      total.kernelUse[use]! += frames.kernelUse[use]!;
    }
    total.anonThp += frames.anonThp;
  }
  return { memory, zones, total };
}

/** Blocks on one free list (zone->free_area[order].free_list[mt], walked by pagetypeinfo). */
function freeListCount(zone: Zone, order: number, migratetype: number): number {
  return zone.freeArea.count[freeListIndex(order, migratetype)]!;
}

/** NR_FREE_PAGES of a zone: buddy pages outside MIGRATE_ISOLATE lists. */
export function zoneNrFreePages(zone: Zone): number {
  let isolated = 0;
  for (let order = 0; order < NR_PAGE_ORDERS; order++) {
    isolated += freeListCount(zone, order, MIGRATE_ISOLATE) * 2 ** order;
  }
  assert(isolated <= zone.freePages, "isolated free pages exceed the zone's free pages");
  return zone.freePages - isolated;
}

/** NR_FREE_PAGES_BLOCKS (v6.18): free pages in blocks of at least pageblock order, not isolated. */
function zoneNrFreePagesBlocks(zone: Zone): number {
  let pages = 0;
  for (let order = pageblock_order; order < NR_PAGE_ORDERS; order++) {
    for (let mt = 0; mt < MIGRATE_TYPES; mt++) {
      if (mt !== MIGRATE_ISOLATE) pages += freeListCount(zone, order, mt) * 2 ** order;
    }
  }
  return pages;
}

function populatedZones(memory: GuestMemory): Zone[] {
  return memory.zones.filter((zone) => zone.presentPages > 0);
}

/**
 * Empty-zone watermarks: ZONE_MOVABLE gets the highmem minimum clamp(managed / 1024,
 * SWAP_CLUSTER_MAX, 128) = 32 even with no pages, in 6.1 and 6.18 (the live 6.18 zoneinfo shows
 * min 32); 5.6's __setup_per_zone_wmarks applies that clamp to highmem only, so 0 there (the
 * version that added ZONE_MOVABLE to the clamp was not pinned down).
 */
function emptyZoneWatermark(memory: GuestMemory, zoneIndex: number): number {
  if (zoneIndex !== ZONE_MOVABLE_INDEX) return 0;
  return memory.rules.version === "5.6" ? 0 : 32;
}

/** The model zone of a kernel zone index, when the model has it. */
function modelZone(memory: GuestMemory, zoneIndex: number): Zone | undefined {
  return zoneIndex < memory.zoneByType.length ? memory.zoneByType[zoneIndex] : undefined;
}

/** Models calculate_totalreserve_pages (mm/page_alloc.c). */
function totalreservePages(memory: GuestMemory): number {
  let reserve = 0;
  for (const zone of memory.zones) {
    const protection = zoneProtection(memory, zone.type);
    let max = Math.max(0, ...protection.slice(zone.type));
    max += zone.watermark[WMARK_HIGH]!;
    reserve += Math.min(max, zone.managedPages);
  }
  return reserve;
}

/** Sum of low_wmark_pages over every zone of the node (for_each_zone), empty ones included. */
function wmarkLowPages(memory: GuestMemory): number {
  let pages = 0;
  for (let index = 0; index < KERNEL_ZONE_NAMES.length; index++) {
    const zone = modelZone(memory, index);
    if (zone === undefined) pages += emptyZoneWatermark(memory, index);
    else pages += zone.watermark[WMARK_LOW]! + zone.watermarkBoost;
  }
  return pages;
}

/**
 * lowmem_reserve[0..MAX_NR_ZONES) as zoneinfo's "protection:" prints it. The model keeps entries
 * only for the zones it has; the kernel's entry for an absent higher zone repeats the one below
 * (setup_per_zone_lowmem_reserve sums managed pages upwards and an empty zone adds none).
 */
function zoneProtection(memory: GuestMemory, zoneIndex: number): number[] {
  const zone = modelZone(memory, zoneIndex);
  const protection: number[] = [];
  for (let upper = 0; upper < KERNEL_ZONE_NAMES.length; upper++) {
    if (zone === undefined || upper <= zoneIndex) {
      protection.push(0);
      continue;
    }
    const present = modelZone(memory, upper) !== undefined && upper < zone.lowmemReserve.length;
    protection.push(present ? zone.lowmemReserve[upper]! : protection[upper - 1]!);
  }
  return protection;
}

// --- Counter values ----------------------------------------------------------------------------

const EVENT_INDEX: ReadonlyMap<string, number> = new Map(
  VM_EVENT_NAMES.map((name, index) => [name, index]),
);

/** The LRU split of a zone's (or the node's) frames; see the header for the rules. */
interface LruPages {
  readonly activeAnon: number;
  readonly inactiveAnon: number;
  readonly activeFile: number;
  readonly inactiveFile: number;
}

function lruPages(memory: GuestMemory, frames: ZoneFrames): LruPages {
  const anon = frames.kinds[FrameKind.Anon]! + frames.kinds[FrameKind.Pinned]!;
  const shmem = frames.kinds[FrameKind.Shmem]!;
  const anonActive = memory.rules.version === "5.6";
  return {
    activeAnon: anonActive ? anon : 0,
    inactiveAnon: (anonActive ? 0 : anon) + shmem,
    activeFile: 0,
    inactiveFile: frames.kinds[FrameKind.PageCache]!,
  };
}

/**
 * Models global_dirty_limits → domain_dirty_limits (mm/page-writeback.c) for a non-RT reader:
 * dirtyable memory is free pages above totalreserve_pages plus file LRU pages, plus one.
 */
function dirtyThresholds(state: ProcState): { threshold: number; background: number } {
  const { memory } = state;
  let free = 0;
  for (const zone of memory.zones) free += zoneNrFreePages(zone);
  const lru = lruPages(memory, state.total);
  const available = free - Math.min(free, totalreservePages(memory)) + lru.activeFile;
  const dirtyable = available + lru.inactiveFile + 1;
  const ratio = Math.floor((DIRTY_RATIO * PAGE_SIZE) / 100);
  const backgroundRatio = Math.floor((DIRTY_BACKGROUND_RATIO * PAGE_SIZE) / 100);
  const threshold = Math.floor((ratio * dirtyable) / PAGE_SIZE);
  let background = Math.floor((backgroundRatio * dirtyable) / PAGE_SIZE);
  if (background >= threshold) background = Math.floor(threshold / 2);
  return { threshold, background };
}

/** A zone item's value for one zone (zone_page_state), 0 for what the model lacks. */
function zoneItemValue(memory: GuestMemory, zone: Zone, frames: ZoneFrames, name: string): number {
  const lru = lruPages(memory, frames);
  switch (name) {
    case "nr_free_pages":
      return zoneNrFreePages(zone);
    case "nr_free_pages_blocks":
      return zoneNrFreePagesBlocks(zone);
    case "nr_zone_inactive_anon":
      return lru.inactiveAnon;
    case "nr_zone_active_anon":
      return lru.activeAnon;
    case "nr_zone_inactive_file":
      return lru.inactiveFile;
    case "nr_zone_active_file":
      return lru.activeFile;
    case "nr_page_table_pages":
      // A zone item up to 5.x, a node item from 6.0 (v6.0: "mm: vmstat: move NR_PAGETABLE").
      return frames.kernelUse[KernelUse.PageTable]!;
    default:
      return 0;
  }
}

/** A node item's value (node_page_state), 0 for what the model lacks. */
function nodeItemValue(memory: GuestMemory, frames: ZoneFrames, name: string): number {
  const lru = lruPages(memory, frames);
  const kinds = frames.kinds;
  switch (name) {
    case "nr_inactive_anon":
      return lru.inactiveAnon;
    case "nr_active_anon":
      return lru.activeAnon;
    case "nr_inactive_file":
      return lru.inactiveFile;
    case "nr_active_file":
      return lru.activeFile;
    case "nr_slab_reclaimable":
      return kinds[FrameKind.KernelReclaimable]!;
    case "nr_slab_unreclaimable":
      return frames.kernelUse[KernelUse.Slab]!;
    case "nr_page_table_pages":
      return frames.kernelUse[KernelUse.PageTable]!;
    case "nr_anon_pages":
      return kinds[FrameKind.Anon]! + kinds[FrameKind.Pinned]!;
    case "nr_file_pages":
      return kinds[FrameKind.PageCache]! + kinds[FrameKind.Shmem]!;
    case "nr_shmem":
      return kinds[FrameKind.Shmem]!;
    case "nr_anon_transparent_hugepages":
      return frames.anonThp;
    case "nr_balloon_pages":
      return kinds[FrameKind.Balloon]!;
    default:
      return 0;
  }
}

/** Pages of struct page allocated from memblock at boot (6.18 nr_memmap_boot_pages). */
function memmapBootPages(memory: GuestMemory): number {
  let pages = 0;
  for (const range of memory.layout.reserved) {
    if (range.what === "memmap") pages += range.endPfn - range.startPfn;
  }
  return pages;
}

/** Every /proc/vmstat line of the guest's version, in order, as name → value. */
export function vmstatRecord(memory: GuestMemory): Record<string, number> {
  const state = procState(memory);
  const names = vmstatNames(memory.rules.version);
  const zoneItems = new Set(names.zone);
  const nodeItems = new Set(names.node);
  const dirty = dirtyThresholds(state);
  const record: Record<string, number> = {};
  names.all.forEach((name, index) => {
    let value = 0;
    if (names.trailingUnstable && index === names.all.length - 1) value = 0;
    else if (zoneItems.has(name)) {
      memory.zones.forEach((zone, zoneIndex) => {
        value += zoneItemValue(memory, zone, state.zones[zoneIndex]!, name);
      });
    } else if (nodeItems.has(name)) value = nodeItemValue(memory, state.total, name);
    else if (name === "nr_dirty_threshold") value = dirty.threshold;
    else if (name === "nr_dirty_background_threshold") value = dirty.background;
    else if (name === "nr_memmap_boot_pages") value = memmapBootPages(memory);
    else value = eventValue(memory, name);
    record[name] = value;
  });
  return record;
}

/** A VM event (vm_event_item.h) summed over CPUs; pgpgin/pgpgout are halved (sectors → KiB). */
function eventValue(memory: GuestMemory, name: string): number {
  const index = EVENT_INDEX.get(name);
  if (index === undefined) return 0;
  const value = memory.events[index]!;
  return name === "pgpgin" || name === "pgpgout" ? Math.floor(value / 2) : value;
}

/** /proc/vmstat: "%s %lu\n" per item (vmstat_show, mm/vmstat.c). */
export function formatVmstat(memory: GuestMemory): string {
  let text = "";
  for (const [name, value] of Object.entries(vmstatRecord(memory))) text += `${name} ${value}\n`;
  return text;
}

// --- meminfo -------------------------------------------------------------------------------------

/** A meminfo line: the literal label with its padding, the value width, and the kB suffix. */
interface MeminfoLine {
  readonly label: string;
  readonly prefix: string;
  readonly width: number;
  readonly kb: boolean;
}

/** show_val_kb: a 16-column label and "%8lu kB" (fs/proc/meminfo.c). */
function kbLine(label: string): MeminfoLine {
  return { label, prefix: `${label}:`.padEnd(16), width: 8, kb: true };
}

/** The meminfo labels of a version, in order (research §4 table; Debian config). */
function meminfoLines(memory: GuestMemory): MeminfoLine[] {
  const version = memory.rules.version;
  const since61 = version !== "5.6";
  const labels: (MeminfoLine | string | false)[] = [
    ...["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active"],
    ...["Inactive", "Active(anon)", "Inactive(anon)", "Active(file)", "Inactive(file)"],
    ...["Unevictable", "Mlocked", "SwapTotal", "SwapFree"],
    since61 && "Zswap",
    since61 && "Zswapped",
    ...["Dirty", "Writeback", "AnonPages", "Mapped", "Shmem", "KReclaimable", "Slab"],
    ...["SReclaimable", "SUnreclaim", "KernelStack", "PageTables"],
    since61 && "SecPageTables",
    ...["NFS_Unstable", "Bounce", "WritebackTmp", "CommitLimit", "Committed_AS"],
    ...["VmallocTotal", "VmallocUsed", "VmallocChunk", "Percpu"],
    // "HardwareCorrupted: %5lu kB\n" (CONFIG_MEMORY_FAILURE).
    { label: "HardwareCorrupted", prefix: "HardwareCorrupted: ", width: 5, kb: true },
    ...["AnonHugePages", "ShmemHugePages", "ShmemPmdMapped", "FileHugePages", "FilePmdMapped"],
    version === "6.18" && "Unaccepted",
    version === "6.18" && "Balloon",
  ];
  // hugetlb_report_meminfo (mm/hugetlb.c): "HugePages_Total:   %5lu\n" and friends, no kB.
  for (const name of ["Total", "Free", "Rsvd", "Surp"]) {
    const label = `HugePages_${name}`;
    labels.push({ label, prefix: `${label}:`.padEnd(19), width: 5, kb: false });
  }
  labels.push("Hugepagesize", "Hugetlb", "DirectMap4k", "DirectMap2M", "DirectMap1G");
  const lines: MeminfoLine[] = [];
  for (const entry of labels) {
    if (entry === false) continue;
    lines.push(typeof entry === "string" ? kbLine(entry) : entry);
  }
  return lines;
}

/**
 * The direct map's page sizes (arch/x86/mm/init.c split_mem_range, reduced): the first 1 MiB
 * in 4 KiB pages (init_memory_mapping(0, ISA_END_ADDRESS)), then each RAM range in 4 KiB pages
 * up to 2 MiB alignment, 2 MiB pages up to 1 GiB alignment, 1 GiB pages (direct_gbpages, a CPU
 * with pdpe1gb), and back down at the end. Splits by set_memory_*() are not modelled.
 */
function directMapKb(memory: GuestMemory): { kb4k: number; kb2m: number; kb1g: number } {
  const pages2m = pageblock_nr_pages;
  const pages1g = 512 * pages2m;
  const result = { kb4k: 256 * KB_PER_PAGE, kb2m: 0, kb1g: 0 };
  for (const range of memory.layout.ramRanges) {
    const start = Math.max(range.startPfn, 256);
    const end = range.endPfn;
    if (end <= start) continue;
    const start2m = Math.min(end, Math.ceil(start / pages2m) * pages2m);
    const end2m = Math.max(start2m, Math.floor(end / pages2m) * pages2m);
    const start1g = Math.min(end2m, Math.ceil(start2m / pages1g) * pages1g);
    const end1g = Math.max(start1g, Math.floor(end2m / pages1g) * pages1g);
    result.kb4k += (start2m - start + end - end2m) * KB_PER_PAGE;
    result.kb2m += (start1g - start2m + end2m - end1g) * KB_PER_PAGE;
    result.kb1g += (end1g - start1g) * KB_PER_PAGE;
  }
  return result;
}

/** Models si_mem_available (mm/page_alloc.c, 5.6 to 6.18). */
function memAvailablePages(state: ProcState, freePages: number): number {
  const { memory } = state;
  const wmarkLow = wmarkLowPages(memory);
  const lru = lruPages(memory, state.total);
  let available = freePages - totalreservePages(memory);
  let pagecache = lru.activeFile + lru.inactiveFile;
  pagecache -= Math.min(Math.floor(pagecache / 2), wmarkLow);
  available += pagecache;
  const reclaimable = state.total.kinds[FrameKind.KernelReclaimable]!;
  available += reclaimable - Math.min(Math.floor(reclaimable / 2), wmarkLow);
  return Math.max(available, 0);
}

/** Σ of the sizes of live anonymous owners: the model's Committed_AS (private writable maps). */
function committedPages(memory: GuestMemory): number {
  let pages = 0;
  for (const owner of memory.owners.owners) {
    if (owner.kind === FrameKind.Anon && !owner.released) pages += owner.pages.length;
  }
  return pages;
}

/** /proc/meminfo values (kB; HugePages_* are counts), keyed by label without the colon. */
export function meminfoKb(memory: GuestMemory): Record<string, number> {
  const state = procState(memory);
  const kinds = state.total.kinds;
  const lru = lruPages(memory, state.total);
  let totalPages = 0;
  let freePages = 0;
  for (const zone of memory.zones) {
    totalPages += zone.managedPages;
    freePages += zoneNrFreePages(zone);
  }
  const sReclaimable = kinds[FrameKind.KernelReclaimable]!;
  const sUnreclaim = state.total.kernelUse[KernelUse.Slab]!;
  const directMap = directMapKb(memory);
  const pages: Record<string, number> = {
    MemTotal: totalPages,
    MemFree: freePages,
    MemAvailable: memAvailablePages(state, freePages),
    Cached: kinds[FrameKind.PageCache]! + kinds[FrameKind.Shmem]!,
    Active: lru.activeAnon + lru.activeFile,
    Inactive: lru.inactiveAnon + lru.inactiveFile,
    "Active(anon)": lru.activeAnon,
    "Inactive(anon)": lru.inactiveAnon,
    "Active(file)": lru.activeFile,
    "Inactive(file)": lru.inactiveFile,
    AnonPages: kinds[FrameKind.Anon]! + kinds[FrameKind.Pinned]!,
    Shmem: kinds[FrameKind.Shmem]!,
    KReclaimable: sReclaimable,
    Slab: sReclaimable + sUnreclaim,
    SReclaimable: sReclaimable,
    SUnreclaim: sUnreclaim,
    PageTables: state.total.kernelUse[KernelUse.PageTable]!,
    VmallocUsed: state.total.kernelUse[KernelUse.Vmalloc]!,
    CommitLimit: Math.floor((totalPages * OVERCOMMIT_RATIO) / 100),
    Committed_AS: committedPages(memory),
    AnonHugePages: state.total.anonThp * HPAGE_PMD_NR,
    Balloon: kinds[FrameKind.Balloon]!,
  };
  const record: Record<string, number> = {};
  for (const line of meminfoLines(memory)) {
    let value = (pages[line.label] ?? 0) * KB_PER_PAGE;
    if (line.label === "VmallocTotal") value = VMALLOC_TOTAL_KB;
    else if (line.label === "Hugepagesize") value = HPAGE_PMD_NR * KB_PER_PAGE;
    else if (line.label === "DirectMap4k") value = directMap.kb4k;
    else if (line.label === "DirectMap2M") value = directMap.kb2m;
    else if (line.label === "DirectMap1G") value = directMap.kb1g;
    record[line.label] = value;
  }
  return record;
}

/** /proc/meminfo (fs/proc/meminfo.c meminfo_proc_show). */
export function formatMeminfo(memory: GuestMemory): string {
  const values = meminfoKb(memory);
  let text = "";
  for (const line of meminfoLines(memory)) {
    const value = String(values[line.label] ?? 0).padStart(line.width);
    text += `${line.prefix}${value}${line.kb ? " kB" : ""}\n`;
  }
  return text;
}

// --- buddyinfo, pagetypeinfo, extfrag ----------------------------------------------------------

/** "Node %d, zone %8s " (frag_show_print and friends). */
function zonePrefix(zone: Zone): string {
  return `Node 0, zone ${zone.name.padStart(8)} `;
}

/** /proc/buddyinfo: "%6lu " per order of each populated zone (frag_show_print). */
export function formatBuddyinfo(memory: GuestMemory): string {
  let text = "";
  for (const zone of populatedZones(memory)) {
    text += zonePrefix(zone);
    for (let order = 0; order < NR_PAGE_ORDERS; order++) {
      text += `${String(zone.freeArea.nrFree[order]!).padStart(6)} `;
    }
    text += "\n";
  }
  return text;
}

/** A pagetypeinfo free-count cell: "%s%6lu " with ">" and 100000 once the walk hits the cap. */
export function pagetypeinfoCell(count: number): string {
  if (count >= PAGETYPEINFO_FREECOUNT_MAX) return `>${PAGETYPEINFO_FREECOUNT_MAX} `;
  return `${String(count).padStart(6)} `;
}

/** One migratetype column of pagetypeinfo: the name and where its counts come from. */
interface PagetypeColumn {
  readonly name: string;
  /** Free-list cell text per order for a zone. */
  readonly free: (zone: Zone) => string[];
  /** Pageblock count for a zone. */
  readonly blocks: (zone: Zone, counts: readonly number[]) => number;
}

/**
 * The columns to print: the model's migratetypes, or, for an imported guest, the file's columns,
 * where a column the model lacks (CMA, an unknown type) prints the cells kept in the record and
 * the Movable column, which holds those blocks in the model, prints its count less theirs.
 */
function pagetypeColumns(record: ProcImportRecord | undefined): PagetypeColumn[] {
  const names = record?.columns ?? migratetype_names;
  return names.map((name): PagetypeColumn => {
    const mt = migratetype_names.indexOf(name);
    if (mt < 0) {
      return {
        name,
        free: (zone) => [...(record!.extraFree.get(zone.name)?.get(name)?.text ?? [])],
        blocks: (zone) => record!.extraBlocks.get(zone.name)?.get(name) ?? 0,
      };
    }
    return {
      name,
      free: (zone) => {
        const cells: string[] = [];
        for (let order = 0; order < NR_PAGE_ORDERS; order++) {
          const folded = name === "Movable" ? foldedFree(record, zone, order) : 0;
          cells.push(pagetypeinfoCell(Math.max(0, freeListCount(zone, order, mt) - folded)));
        }
        return cells;
      },
      blocks: (zone, counts) => {
        const folded = name === "Movable" ? foldedBlocks(record, zone) : 0;
        return Math.max(0, counts[mt]! - folded);
      },
    };
  });
}

function foldedFree(record: ProcImportRecord | undefined, zone: Zone, order: number): number {
  let blocks = 0;
  for (const column of record?.extraFree.get(zone.name)?.values() ?? []) {
    blocks += column.count[order]!;
  }
  return blocks;
}

function foldedBlocks(record: ProcImportRecord | undefined, zone: Zone): number {
  let blocks = 0;
  for (const count of record?.extraBlocks.get(zone.name)?.values() ?? []) blocks += count;
  return blocks;
}

/**
 * Pageblocks per migratetype as pagetypeinfo_showblockcount_print counts them: every
 * pageblock_nr_pages from zone_start_pfn, skipping pfns with no online memory map. The model
 * takes a pageblock with no RAM frame as offline (the kernel decides per 128 MiB section; the
 * two agree on every layout the model builds, whose RAM-less pageblocks fill whole sections).
 */
export function pageblockCounts(memory: GuestMemory, zone: Zone): number[] {
  const counts = new Array<number>(MIGRATE_TYPES).fill(0);
  const online = onlinePageblocks(memory);
  for (let pfn = zone.startPfn; pfn < zone.endPfn; pfn += pageblock_nr_pages) {
    const block = pfn >>> pageblock_order;
    if (online[block] === 0) continue;
    counts[memory.table.pageblockMt[block]!]!++;
  }
  return counts;
}

function onlinePageblocks(memory: GuestMemory): Uint8Array {
  const online = new Uint8Array(memory.table.pageblockMt.length);
  for (const range of memory.layout.ramRanges) {
    if (range.endPfn <= range.startPfn) continue;
    online.fill(
      1,
      range.startPfn >>> pageblock_order,
      ((range.endPfn - 1) >>> pageblock_order) + 1,
    );
  }
  return online;
}

/**
 * /proc/pagetypeinfo (pagetypeinfo_show): header, free blocks per zone, type and order, then
 * pageblocks per zone and type. With an import record, the file's columns and the cells the
 * model cannot hold (see pagetypeColumns), and any trailing section kept as read.
 */
export function formatPagetypeinfo(memory: GuestMemory, record?: ProcImportRecord): string {
  const columns = pagetypeColumns(record);
  let text = `Page block order: ${pageblock_order}\nPages per block:  ${pageblock_nr_pages}\n\n`;
  text += `${"Free pages count per migrate type at order".padEnd(43)} `;
  for (let order = 0; order < NR_PAGE_ORDERS; order++) text += `${String(order).padStart(6)} `;
  text += "\n";
  const zones = populatedZones(memory);
  for (const zone of zones) {
    for (const column of columns) {
      text += `Node    0, zone ${zone.name.padStart(8)}, type ${column.name.padStart(12)} `;
      text += `${column.free(zone).join("")}\n`;
    }
  }
  text += `\n${"Number of blocks type ".padEnd(23)}`;
  for (const column of columns) text += `${column.name.padStart(12)} `;
  text += "\n";
  for (const zone of zones) {
    const counts = pageblockCounts(memory, zone);
    text += zonePrefix(zone);
    for (const column of columns) text += `${String(column.blocks(zone, counts)).padStart(12)} `;
    text += "\n";
  }
  return text + (record?.trailer ?? "");
}

function formatIndexFile(
  memory: GuestMemory,
  index: (zone: Zone, order: number) => number,
  width: number,
): string {
  let text = "";
  for (const zone of populatedZones(memory)) {
    text += zonePrefix(zone);
    for (let order = 0; order < NR_PAGE_ORDERS; order++) {
      text += `${formatThousandths(index(zone, order), width)} `;
    }
    text += "\n";
  }
  return text;
}

/**
 * debugfs extfrag/extfrag_index (extfrag_show_print): "%d.%03d " in 5.6, "%2d.%03d " from v5.13
 * ("mm/vmstat: make extfrag_index show more pretty"), so 6.1 and 6.18 pad 0.xxx to " 0.xxx".
 */
export function formatExtfragIndex(memory: GuestMemory): string {
  return formatIndexFile(memory, fragmentationIndex, memory.rules.version === "5.6" ? 0 : 2);
}

/** debugfs extfrag/unusable_index (unusable_show_print): "%d.%03d " in every version. */
export function formatUnusableIndex(memory: GuestMemory): string {
  return formatIndexFile(memory, unusableFreeIndex, 0);
}

// --- zoneinfo ------------------------------------------------------------------------------------

/** "\n      %-12s %lu": a stat line of zoneinfo. */
function statLine(name: string, value: number): string {
  return `\n      ${name.padEnd(12)} ${value}`;
}

/**
 * Models calculate_normal_threshold (mm/vmstat.c): 2 * fls(cpus) * (1 + fls(managed in 128 MiB
 * units)), at most 125.
 */
function statThreshold(zone: Zone, cpus: number): number {
  const fls = (value: number): number => (value === 0 ? 0 : 32 - Math.clz32(value));
  const mem = Math.floor(zone.managedPages / 2 ** (27 - 12));
  return Math.min(125, 2 * fls(cpus) * (1 + fls(mem)));
}

/** The watermark lines: 6.1+ add boost, 6.18 adds promo; then spans, and 6.1+ cma. */
function zoneSizeLines(memory: GuestMemory, zoneIndex: number): string {
  const version = memory.rules.version;
  const zone = modelZone(memory, zoneIndex);
  const empty = emptyZoneWatermark(memory, zoneIndex);
  const mark = (index: number): number => (zone === undefined ? empty : zone.watermark[index]!);
  let text = `\n  pages free     ${zone === undefined ? 0 : zoneNrFreePages(zone)}`;
  if (version !== "5.6") text += `\n        boost    ${zone?.watermarkBoost ?? 0}`;
  text += `\n        min      ${mark(WMARK_MIN)}`;
  text += `\n        low      ${mark(WMARK_LOW)}`;
  text += `\n        high     ${mark(WMARK_HIGH)}`;
  if (version === "6.18") text += `\n        promo    ${mark(WMARK_PROMO)}`;
  text += `\n        spanned  ${zone === undefined ? 0 : zone.endPfn - zone.startPfn}`;
  text += `\n        present  ${zone?.presentPages ?? 0}`;
  text += `\n        managed  ${zone?.managedPages ?? 0}`;
  if (version !== "5.6") text += "\n        cma      0";
  text += `\n        protection: (${zoneProtection(memory, zoneIndex).join(", ")})`;
  return text;
}

function pagesetLines(memory: GuestMemory, zone: Zone): string {
  const wide = memory.rules.version === "6.18";
  const threshold = statThreshold(zone, memory.config.cpus);
  const sets = memory.pcp[memory.zones.indexOf(zone)]!;
  let text = "\n  pagesets";
  sets.forEach((set, cpu) => {
    text += `\n    cpu: ${cpu}`;
    if (wide) {
      // 6.7+: high auto-tuning between high_min and high_max; the model keeps one high.
      text += `\n              count:    ${set.count}\n              high:     ${set.high}`;
      text += `\n              batch:    ${set.batch}\n              high_min: ${set.high}`;
      text += `\n              high_max: ${set.high}`;
    } else {
      text += `\n              count: ${set.count}\n              high:  ${set.high}`;
      text += `\n              batch: ${set.batch}`;
    }
    text += `\n  vm stats threshold: ${threshold}`;
  });
  return text;
}

/** /proc/zoneinfo (zoneinfo_show_print), every zone of node 0, populated or not. */
export function formatZoneinfo(memory: GuestMemory): string {
  const state = procState(memory);
  const names = vmstatNames(memory.rules.version);
  const firstPopulated = populatedZones(memory)[0];
  let text = "";
  for (let zoneIndex = 0; zoneIndex < KERNEL_ZONE_NAMES.length; zoneIndex++) {
    const zone = modelZone(memory, zoneIndex);
    text += `Node 0, zone ${KERNEL_ZONE_NAMES[zoneIndex]!.padStart(8)}`;
    if (zone !== undefined && zone === firstPopulated) {
      text += "\n  per-node stats";
      for (const name of names.node) {
        text += statLine(name, nodeItemValue(memory, state.total, name));
      }
    }
    text += zoneSizeLines(memory, zoneIndex);
    if (zone === undefined || zone.presentPages === 0) {
      text += "\n";
      continue;
    }
    const frames = state.zones[memory.zones.indexOf(zone)]!;
    for (const name of names.zone)
      text += statLine(name, zoneItemValue(memory, zone, frames, name));
    for (const name of names.numa) text += statLine(name, 0);
    text += pagesetLines(memory, zone);
    text += "\n  node_unreclaimable:  0";
    text += `\n  start_pfn:           ${zone.startPfn}\n`;
  }
  return text;
}

/** The texts `balloonlab proc export` writes: the files an import reads, from the model. */
export interface ProcExport {
  readonly buddyinfo: string;
  readonly pagetypeinfo: string;
  readonly zoneinfo: string;
}

/** Exports the guest's buddyinfo, pagetypeinfo and zoneinfo, through an import record if any. */
export function exportProc(memory: GuestMemory, record?: ProcImportRecord): ProcExport {
  return {
    buddyinfo: formatBuddyinfo(memory),
    pagetypeinfo: formatPagetypeinfo(memory, record),
    zoneinfo: formatZoneinfo(memory),
  };
}
