// struct zone (include/linux/mmzone.h): a pfn range with its own free_area[NR_PAGE_ORDERS], one
// list per migratetype per order, and the counters the kernel keeps about them.
//
// Free lists are doubly linked through the frame table's link words; a zone keeps only each
// list's head and tail. The kernel's free_area[order].nr_free is `nrFree[order]`; the count per
// (order, migratetype), which the kernel only computes by walking the list for pagetypeinfo, is
// kept here so that the checker and /proc/pagetypeinfo cost nothing.

import { MIGRATE_TYPES, NR_PAGE_ORDERS } from "../core/limits.ts";
import type { KernelRules } from "./kernel_version.ts";

export enum ZoneType {
  DMA = 0,
  DMA32 = 1,
  Normal = 2,
  Movable = 3,
}
export const ZONE_NAMES: readonly string[] = ["DMA", "DMA32", "Normal", "Movable"];

/** enum zone_watermarks (include/linux/mmzone.h). */
export const WMARK_MIN = 0;
export const WMARK_LOW = 1;
export const WMARK_HIGH = 2;
export const WMARK_PROMO = 3;

/** Index of a (order, migratetype) free list in a zone's list arrays. */
export function freeListIndex(order: number, migratetype: number): number {
  return order * MIGRATE_TYPES + migratetype;
}

export interface FreeArea {
  /** Head pfn per free list (NO_PFN when empty): allocation takes from here. */
  readonly head: Int32Array;
  /** Tail pfn per free list: pages placed here are allocated last. */
  readonly tail: Int32Array;
  /** Blocks per free list. */
  readonly count: Int32Array;
  /** free_area[order].nr_free: blocks per order, all migratetypes. */
  readonly nrFree: Int32Array;
}

export interface Zone {
  readonly type: ZoneType;
  readonly name: string;
  /** zone_start_pfn. */
  readonly startPfn: number;
  /** zone_end_pfn (exclusive): start + spanned_pages. */
  readonly endPfn: number;
  /** present_pages: frames with RAM behind them. */
  presentPages: number;
  /** managed_pages: frames the buddy allocator was given. */
  managedPages: number;
  readonly freeArea: FreeArea;
  /** NR_FREE_PAGES: pages in the buddy free lists (per-cpu lists excluded, as the kernel does). */
  freePages: number;
  /** _watermark[WMARK_MIN..WMARK_PROMO] in pages. */
  readonly watermark: Float64Array;
  /** watermark_boost in pages (boost_watermark). */
  watermarkBoost: number;
  /** lowmem_reserve[] against allocations whose highest zone is the index. */
  readonly lowmemReserve: Float64Array;
  /** nr_reserved_highatomic: pages in HIGHATOMIC pageblocks. */
  nrReservedHighatomic: number;
  /** Place freed blocks whose buddy is likely to merge at the tail (buddy_merge_likely). */
  tailPlacement: boolean;
  /** The version's rules (merge rules across pageblock types, and the rest). */
  readonly rules: KernelRules;
  /** page_reporting_order, or -1 when free page reporting is off. */
  reportingOrder: number;
  /** Set when a free produced a block of at least reportingOrder (page_reporting_notify_free). */
  reportingRequested: boolean;
  /** ZONE_RECLAIM_ACTIVE: kswapd is reclaiming it (set_reclaim_active, mm/vmscan.c, v5.13). */
  reclaimActive: boolean;
  /** ZONE_BELOW_HIGH: free pages fell below the high watermark (get_page_from_freelist, v6.7). */
  belowHigh: boolean;
  /** compact_cached_migrate_pfn[0 async, 1 sync]: where the migration scanner resumes. */
  readonly compactCachedMigratePfn: Int32Array;
  /** compact_cached_free_pfn: where the free scanner resumes (a pageblock start). */
  compactCachedFreePfn: number;
  /** compact_init_migrate_pfn: lowest source block found by the last skip-hint reset. */
  compactInitMigratePfn: number;
  /** compact_init_free_pfn: highest target block found by the last skip-hint reset. */
  compactInitFreePfn: number;
  /** compact_blockskip_flush: direct compaction's scanners met; clear skip hints on reset. */
  compactBlockskipFlush: boolean;
  /** compact_considered: attempts seen since the last deferral (compaction_deferred). */
  compactConsidered: number;
  /** compact_defer_shift: skip up to 1 << shift attempts (at most COMPACT_MAX_DEFER_SHIFT). */
  compactDeferShift: number;
  /** compact_order_failed: lowest order whose compaction failed; deferral applies above it. */
  compactOrderFailed: number;
}

export function createFreeArea(): FreeArea {
  const lists = NR_PAGE_ORDERS * MIGRATE_TYPES;
  return {
    head: new Int32Array(lists).fill(-1),
    tail: new Int32Array(lists).fill(-1),
    count: new Int32Array(lists),
    nrFree: new Int32Array(NR_PAGE_ORDERS),
  };
}

export interface ZoneSpec {
  readonly type: ZoneType;
  readonly startPfn: number;
  readonly endPfn: number;
}

export function createZone(spec: ZoneSpec, rules: KernelRules): Zone {
  return {
    type: spec.type,
    name: ZONE_NAMES[spec.type]!,
    startPfn: spec.startPfn,
    endPfn: spec.endPfn,
    presentPages: 0,
    managedPages: 0,
    freeArea: createFreeArea(),
    freePages: 0,
    watermark: new Float64Array(4),
    watermarkBoost: 0,
    lowmemReserve: new Float64Array(4),
    nrReservedHighatomic: 0,
    tailPlacement: true,
    rules,
    reportingOrder: -1,
    reportingRequested: false,
    reclaimActive: false,
    belowHigh: false,
    // A zeroed struct zone: compact_zone re-initialises cached pfns found outside the zone.
    compactCachedMigratePfn: new Int32Array(2),
    compactCachedFreePfn: 0,
    compactInitMigratePfn: 0,
    compactInitFreePfn: 0,
    compactBlockskipFlush: false,
    compactConsidered: 0,
    compactDeferShift: 0,
    compactOrderFailed: 0,
  };
}
