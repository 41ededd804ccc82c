// Memory compaction (mm/compaction.c): compact_zone, its two scanners, deferral, skip hints,
// direct compaction (try_to_compact_pages) and /proc/sys/vm/compact_memory.
//
// Theory of operation. Compaction moves movable pages from the bottom of a zone to free pages at
// its top, so that free memory gathers into large blocks at the bottom. The migration scanner
// walks pageblocks upward from the zone start (or a cached pfn) and isolates at most
// COMPACT_CLUSTER_MAX movable pages at a time; the free scanner walks pageblocks downward from
// the zone end and isolates free buddy pages as targets; each isolated page is copied to a
// target and the source freed. The run ends when the scanners meet in one pageblock
// (COMPACT_COMPLETE for a whole-zone run), or earlier, for a request of some order, as soon as
// a free block of that order exists (COMPACT_SUCCESS). Failed runs defer later ones
// (defer_compaction), and pageblocks found useless get a skip hint (PB_migrate_skip).
//
// In the model a page moves by handing its frame-table entry (kind and reverse map) to the
// target frame, pointing the owner's page table at the target, and freeing the source through
// the normal free path (per-cpu lists first, as the kernel's putback does). Movable: Anon,
// PageCache, Shmem (LRU pages) and Balloon (a non-LRU movable page, counted balloon_migrate).
// Not movable: Kernel, KernelReclaimable, Pinned, Reserved. Compound pages are skipped, except
// from v6.10 folios below both pageblock order and the requested order (so order-9 THPs never
// move). Versions differ in how isolated free pages are handed out: split to order 0 and taken
// highest pfn first (split_map_pages, 5.6 and 6.1), or kept as per-order chunks and split on
// demand, lowest pfn first (6.18).
//
// Left out, on purpose: fast_find_migrateblock and fast_isolate_freepages (they change which
// blocks are picked and cut the scanned counts, not what can be formed; the notes accept linear
// scanners), page capture (the allocator retries its free lists right after), lock contention,
// too_many_isolated, dirty/writeback pages, and migration failures other than running out of
// targets (every isolated page in the model can be copied).

import { assert } from "../core/assert.ts";
import {
  MAX_PAGE_ORDER,
  MIGRATE_MOVABLE,
  MIGRATE_TYPES,
  MIGRATE_UNMOVABLE,
  NR_PAGE_ORDERS,
  PAGE_ALLOC_COSTLY_ORDER,
  pageblock_nr_pages,
  pageblock_order,
} from "../core/limits.ts";
import {
  COMPACT_MAX_DEFER_SHIFT,
  CompactResult,
  compactionDeferReset,
  compactionDeferred,
  compactionRestarting,
  deferCompaction,
} from "./compaction_defer.ts";
import { findSuitableFallback } from "./fallback.ts";
import { extfragForOrder, fragmentationIndex } from "./fragmentation_index.ts";
import {
  FRAME_BUDDY,
  FRAME_KIND_MASK,
  FRAME_TAIL,
  FrameKind,
  type FrameTable,
  isMovableKind,
  NO_PFN,
  ORDER_MASK,
} from "./frame_table.ts";
import { type GuestMemory, zoneIndexOf } from "./guest_memory.ts";
import { migrateFolio } from "./migrate.ts";
import { COMPACT_PRIO_ASYNC, COMPACT_PRIO_SYNC_FULL, freePages } from "./page_alloc.ts";
import { isolateFreePage } from "./page_isolation.ts";
import { drainPcp } from "./pcp.ts";
import { VmEvent } from "./vm_event.ts";
import { wmarkPages, zoneWatermarkOk } from "./watermarks.ts";
import { WMARK_LOW, WMARK_MIN, type Zone, ZoneType } from "./zone.ts";

/** COMPACT_CLUSTER_MAX = SWAP_CLUSTER_MAX (include/linux/swap.h): pages isolated per round. */
export const COMPACT_CLUSTER_MAX = 32;
/** vm.extfrag_threshold default (mm/compaction.c): fragindex at or below it means "no memory". */
export const SYSCTL_EXTFRAG_THRESHOLD = 500;
/** COMPACTION_HPAGE_ORDER = HPAGE_PMD_ORDER (mm/compaction.c): proactive compaction's order. */
export const COMPACTION_HPAGE_ORDER = 9;

/** enum migrate_mode (include/linux/migrate_mode.h). */
export enum MigrateMode {
  ASYNC = 0,
  SYNC_LIGHT = 1,
  SYNC = 2,
}

/** What a caller asks of compact_zone: the fields of compact_control it sets up front. */
export interface CompactRequest {
  /** Order wanted; -1 compacts the whole zone (compact_memory, proactive compaction). */
  readonly order: number;
  /** gfp_migratetype of the request (GFP_KERNEL callers: MIGRATE_UNMOVABLE). */
  readonly migratetype: number;
  readonly mode: MigrateMode;
  /** highest_zoneidx: the lowmem reserve the watermark checks use (a ZoneType). */
  readonly highestZoneIndex: number;
  /** Direct compaction by an allocating task (not kcompactd or compact_memory). */
  readonly directCompaction: boolean;
  /** Scan the whole zone from its ends instead of the cached pfns. */
  readonly wholeZone: boolean;
  /** Ignore PB_migrate_skip hints (compact_memory, proactive, SYNC_FULL direct). */
  readonly ignoreSkipHint: boolean;
  /** Take free pages from pageblocks of any type (SYNC_FULL direct). */
  readonly ignoreBlockSuitable: boolean;
  /** Proactive compaction: stop the zone once its score is at most this; -1 when not proactive. */
  readonly proactiveWmarkLow: number;
}

/** Pages scanned by one compact_zone run, for the kcompactd counters. */
export interface CompactScanTotals {
  migrateScanned: number;
  freeScanned: number;
}

/** Entries per isolated free list: a round isolates < 512 sources + one chunk < 256 pages. */
const FREE_LIST_CAPACITY = 1024;

/**
 * Models struct compact_control (mm/internal.h). One instance is reused by every run: a run is
 * synchronous and never re-entered, so nothing is allocated per run.
 */
interface CompactControl {
  /** The guest being compacted; undefined between runs. */
  memory: GuestMemory | undefined;
  /** The zone being compacted. */
  zone: Zone | undefined;
  /** order: the allocation order compaction works for, -1 for a whole-zone run. */
  order: number;
  /** migratetype: gfp_migratetype of the request, for __compact_finished and async sources. */
  migratetype: number;
  /** mode: async, sync-light or sync migration. */
  mode: MigrateMode;
  /** highest_zoneidx: for the watermark checks' lowmem reserve. */
  highestZoneIndex: number;
  /** direct_compaction: started by an allocating task. */
  directCompaction: boolean;
  /** whole_zone: the scanners started at the zone's ends. */
  wholeZone: boolean;
  /** ignore_skip_hint: scan blocks whose skip bit is set. */
  ignoreSkipHint: boolean;
  /** ignore_block_suitable: free pages may come from non-movable pageblocks. */
  ignoreBlockSuitable: boolean;
  /** Proactive compaction's low watermark (fragmentation_score_wmark(true)), or -1. */
  proactiveWmarkLow: number;
  /** finish_pageblock (rescan in 5.6/6.1): isolate the rest of the block in one go. */
  finishPageblock: boolean;
  /** migrate_pfn: where the migration scanner continues. */
  migratePfn: number;
  /** free_pfn: where the free scanner continues (isolate_freepages search base). */
  freePfn: number;
  /** nr_migratepages: pages on the migrate list (v6.10+: not yet given a target). */
  nrMigratepages: number;
  /** nr_freepages: isolated free pages not yet used as targets. */
  nrFreepages: number;
  /** total_migrate_scanned: pages the migration scanner looked at. */
  totalMigrateScanned: number;
  /** total_free_scanned: pages the free scanner looked at. */
  totalFreeScanned: number;
  /** migratepages: head pfns of the isolated folios, in isolation order. */
  readonly migratepages: Int32Array;
  /** Entries used in `migratepages`. */
  migratepagesCount: number;
  /** freepages: ring buffers per order, FREE_LIST_CAPACITY entries each (5.6/6.1 use order 0). */
  readonly freepages: Int32Array;
  /** First entry of each order's ring. */
  readonly freepagesStart: Int32Array;
  /** Entries in each order's ring. */
  readonly freepagesCount: Int32Array;
  /** Chunks isolated by the current isolate_freepages call, before split_map_pages (5.6/6.1). */
  readonly pendingPfn: Int32Array;
  /** Order of each pending chunk (set_page_private(page, order)). */
  readonly pendingOrder: Uint8Array;
  /** Pending chunks. */
  pendingCount: number;
  /** Pages isolated by the last isolate_freepages_block call (its return value). */
  blockIsolated: number;
}

const cc: CompactControl = {
  memory: undefined,
  zone: undefined,
  order: 0,
  migratetype: MIGRATE_MOVABLE,
  mode: MigrateMode.ASYNC,
  highestZoneIndex: 0,
  directCompaction: false,
  wholeZone: false,
  ignoreSkipHint: false,
  ignoreBlockSuitable: false,
  proactiveWmarkLow: -1,
  finishPageblock: false,
  migratePfn: 0,
  freePfn: 0,
  nrMigratepages: 0,
  nrFreepages: 0,
  totalMigrateScanned: 0,
  totalFreeScanned: 0,
  migratepages: new Int32Array(pageblock_nr_pages),
  migratepagesCount: 0,
  freepages: new Int32Array(NR_PAGE_ORDERS * FREE_LIST_CAPACITY),
  freepagesStart: new Int32Array(NR_PAGE_ORDERS),
  freepagesCount: new Int32Array(NR_PAGE_ORDERS),
  pendingPfn: new Int32Array(FREE_LIST_CAPACITY),
  pendingOrder: new Uint8Array(FREE_LIST_CAPACITY),
  pendingCount: 0,
  blockIsolated: 0,
};

// ---------------------------------------------------------------------------------------------
// Pageblock arithmetic (include/linux/pageblock-flags.h, mm/compaction.c).

function pageblockStartPfn(pfn: number): number {
  return pfn - (pfn & (pageblock_nr_pages - 1));
}

/** pageblock_end_pfn(pfn) = ALIGN(pfn + 1, pageblock_nr_pages). */
function pageblockEndPfn(pfn: number): number {
  return pageblockStartPfn(pfn) + pageblock_nr_pages;
}

function pageblockAligned(pfn: number): boolean {
  return (pfn & (pageblock_nr_pages - 1)) === 0;
}

/** block_start_pfn(pfn, order) = round_down(pfn, 1 << order). */
function blockStartPfn(pfn: number, order: number): number {
  return pfn - (pfn % 2 ** order);
}

/** block_end_pfn(pfn, order) = ALIGN(pfn + 1, 1 << order). */
function blockEndPfn(pfn: number, order: number): number {
  return blockStartPfn(pfn, order) + 2 ** order;
}

/** compact_gap(order) = 2UL << order (mm/internal.h): room for the migration targets. */
export function compactGap(order: number): number {
  return 2 * 2 ** order;
}

// ---------------------------------------------------------------------------------------------
// Frame classification.

/** PageLRU: user pages on the LRU lists, pinned ones included (pinning does not unlist). */
function isLruKind(kind: number): boolean {
  return (
    kind === FrameKind.Anon ||
    kind === FrameKind.PageCache ||
    kind === FrameKind.Shmem ||
    kind === FrameKind.Pinned
  );
}

/** compound_order(compound_head(page)) for an allocated frame; 0 for free or order-0 frames. */
function compoundHeadOrder(table: FrameTable, pfn: number): number {
  const state = table.state[pfn]!;
  if ((state & FRAME_TAIL) === 0) {
    if ((state & FRAME_KIND_MASK) === FrameKind.Free) return 0;
    return table.order[pfn]! & ORDER_MASK;
  }
  // Compound pages are naturally aligned: the head is the first aligned pfn that is no tail.
  for (let order = 1; order <= MAX_PAGE_ORDER; order++) {
    const head = pfn - (pfn % 2 ** order);
    if ((table.state[head]! & FRAME_TAIL) === 0) return table.order[head]! & ORDER_MASK;
  }
  assert(false, () => `tail frame ${pfn} has no compound head`);
}

/** Models pageblock_skip_persistent (mm/compaction.c): a compound page of >= pageblock order. */
function pageblockSkipPersistent(table: FrameTable, pfn: number): boolean {
  if ((table.state[pfn]! & FRAME_KIND_MASK) === FrameKind.Free) return false;
  return compoundHeadOrder(table, pfn) >= pageblock_order;
}

/**
 * Models skip_isolation_on_order (mm/compaction.c, v6.10): folios at or above the wanted order
 * (unless compacting everything), and folios of pageblock order or more, are not migrated.
 */
function skipIsolationOnOrder(order: number, targetOrder: number): boolean {
  if (targetOrder !== -1 && order >= targetOrder) return true;
  return order >= pageblock_order;
}

// ---------------------------------------------------------------------------------------------
// Skip hints and cached scanner positions.

function isolationSuitable(table: FrameTable, pfn: number): boolean {
  if (cc.ignoreSkipHint) return true;
  return table.pageblockSkip[pfn >>> pageblock_order] === 0;
}

/** Models reset_cached_positions: the next run starts at the zone's ends. */
function resetCachedPositions(zone: Zone): void {
  zone.compactCachedMigratePfn[0] = zone.startPfn;
  zone.compactCachedMigratePfn[1] = zone.startPfn;
  zone.compactCachedFreePfn = pageblockStartPfn(zone.endPfn - 1);
}

/** Models update_cached_migrate: move the migration scanner's restart points forward. */
function updateCachedMigrate(zone: Zone, pfn: number): void {
  const end = pageblockEndPfn(pfn);
  const cached = zone.compactCachedMigratePfn;
  if (end > cached[0]!) cached[0] = end;
  if (cc.mode !== MigrateMode.ASYNC && end > cached[1]!) cached[1] = end;
}

/** Models update_pageblock_skip: mark a scanned target block, lower the free scanner's cache. */
function updatePageblockSkip(table: FrameTable, zone: Zone, blockPfn: number, pfn: number): void {
  table.pageblockSkip[blockPfn >>> pageblock_order] = 1;
  if (pfn < zone.compactCachedFreePfn) zone.compactCachedFreePfn = pfn;
}

/** Models test_and_set_skip: mark a source block; true when another run had marked it. */
function testAndSetSkip(table: FrameTable, pfn: number): boolean {
  if (cc.ignoreSkipHint) return false;
  const index = pfn >>> pageblock_order;
  const skip = table.pageblockSkip[index] === 1;
  table.pageblockSkip[index] = 1;
  return skip;
}

/**
 * Models __reset_isolation_pfn: keep a block's skip hint unless a sample of every 8th page
 * finds an LRU page (a source) or a free page (a target).
 */
function resetIsolationPfn(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  checkSource: boolean,
  checkTarget: boolean,
): boolean {
  if (pfn < zone.startPfn || pfn >= zone.endPfn) return false;
  if (pageblockSkipPersistent(table, pfn)) return false;
  const index = pfn >>> pageblock_order;
  if (checkSource && checkTarget && table.pageblockSkip[index] === 0) return true;
  if (!checkSource && checkTarget && table.pageblockMt[index] !== MIGRATE_MOVABLE) return false;
  const endPfn = Math.min(pageblockEndPfn(pfn) - 1, zone.endPfn - 1);
  let page = Math.max(pageblockStartPfn(pfn), zone.startPfn);
  do {
    const state = table.state[page]!;
    const found =
      (checkSource && isLruKind(state & FRAME_KIND_MASK)) ||
      (checkTarget && (state & FRAME_BUDDY) !== 0);
    if (found) {
      table.pageblockSkip[index] = 0;
      return true;
    }
    page += 1 << PAGE_ALLOC_COSTLY_ORDER;
  } while (page <= endPfn);
  return false;
}

/**
 * Models __reset_isolation_suitable: after the scanners of a direct compaction met, walk the
 * zone from both ends clearing skip hints of blocks that could serve again, and restart the
 * scanners at the outermost such blocks.
 */
function resetIsolationSuitableZone(table: FrameTable, zone: Zone): void {
  if (!zone.compactBlockskipFlush) return;
  zone.compactBlockskipFlush = false;
  let migratePfn = zone.startPfn;
  let freePfn = zone.endPfn - 1;
  let resetMigrate = freePfn;
  let resetFree = migratePfn;
  let sourceSet = false;
  let freeSet = false;
  const cached = zone.compactCachedMigratePfn;
  for (; migratePfn < freePfn; migratePfn += pageblock_nr_pages, freePfn -= pageblock_nr_pages) {
    if (resetIsolationPfn(table, zone, migratePfn, true, sourceSet) && migratePfn < resetMigrate) {
      sourceSet = true;
      resetMigrate = migratePfn;
      zone.compactInitMigratePfn = resetMigrate;
      cached[0] = resetMigrate;
      cached[1] = resetMigrate;
    }
    if (resetIsolationPfn(table, zone, freePfn, freeSet, true) && freePfn > resetFree) {
      freeSet = true;
      resetFree = freePfn;
      zone.compactInitFreePfn = resetFree;
      zone.compactCachedFreePfn = resetFree;
    }
  }
  // "Leave no distance if no suitable block was reset".
  if (resetMigrate >= resetFree) {
    cached[0] = migratePfn;
    cached[1] = migratePfn;
    zone.compactCachedFreePfn = freePfn;
  }
}

/**
 * Models reset_isolation_suitable (mm/compaction.c), which kswapd calls before it sleeps: clear
 * the skip hints of every zone whose direct compaction recently ran to the end.
 */
export function resetIsolationSuitable(memory: GuestMemory): void {
  for (const zone of memory.zones) {
    if (zone.compactBlockskipFlush) resetIsolationSuitableZone(memory.table, zone);
  }
}

// ---------------------------------------------------------------------------------------------
// Suitability.

/**
 * Models compaction_suitable (6.4+ bool form; the 5.6/6.1 enum form and 6.18's caller-passed
 * watermark give the same thresholds): order-0 free pages must clear the LOW (costly orders) or
 * MIN mark plus compact_gap(order), and for costly orders a fragmentation index in 0..500 means
 * the failure is a lack of memory, not fragmentation, so compaction would not help.
 */
export function compactionSuitable(zone: Zone, order: number, highestZoneIndex: number): boolean {
  assert(order > 0 && order <= MAX_PAGE_ORDER, () => `compaction order ${order} out of range`);
  const mark = order > PAGE_ALLOC_COSTLY_ORDER ? WMARK_LOW : WMARK_MIN;
  const watermark = wmarkPages(zone, mark) + compactGap(order);
  if (!zoneWatermarkOk(zone, 0, watermark, highestZoneIndex, zone.freePages)) return false;
  if (order > PAGE_ALLOC_COSTLY_ORDER) {
    const fragindex = fragmentationIndex(zone, order);
    if (fragindex >= 0 && fragindex <= SYSCTL_EXTFRAG_THRESHOLD) return false;
  }
  return true;
}

/** Models suitable_migration_source: async direct compaction only takes same-type blocks. */
function suitableMigrationSource(table: FrameTable, pfn: number): boolean {
  if (pageblockSkipPersistent(table, pfn)) return false;
  if (cc.mode !== MigrateMode.ASYNC || !cc.directCompaction) return true;
  const blockMt = table.pageblockMt[pfn >>> pageblock_order]!;
  // is_migrate_movable: MOVABLE (or CMA, which the modelled kernels are built without).
  if (cc.migratetype === MIGRATE_MOVABLE) return blockMt === MIGRATE_MOVABLE;
  return blockMt === cc.migratetype;
}

/** Models suitable_migration_target: movable blocks that are not already wholly free. */
function suitableMigrationTarget(table: FrameTable, pfn: number): boolean {
  const state = table.state[pfn]!;
  if ((state & FRAME_BUDDY) !== 0 && (table.order[pfn]! & ORDER_MASK) >= pageblock_order) {
    return false;
  }
  if (cc.ignoreBlockSuitable) return true;
  return table.pageblockMt[pfn >>> pageblock_order] === MIGRATE_MOVABLE;
}

/** Models compact_scanners_met: the free scanner reached the migration scanner's block. */
function compactScannersMet(): boolean {
  return cc.freePfn >> pageblock_order <= cc.migratePfn >> pageblock_order;
}

// ---------------------------------------------------------------------------------------------
// Isolated free pages: cc->freepages (one list, or one per order from v6.10).

function freeListPushHead(order: number, pfn: number): void {
  const count = cc.freepagesCount[order]!;
  assert(count < FREE_LIST_CAPACITY, "isolated free list overflow");
  const start = (cc.freepagesStart[order]! + FREE_LIST_CAPACITY - 1) % FREE_LIST_CAPACITY;
  cc.freepages[order * FREE_LIST_CAPACITY + start] = pfn;
  cc.freepagesStart[order] = start;
  cc.freepagesCount[order] = count + 1;
}

function freeListPushTail(order: number, pfn: number): void {
  const count = cc.freepagesCount[order]!;
  assert(count < FREE_LIST_CAPACITY, "isolated free list overflow");
  const slot = (cc.freepagesStart[order]! + count) % FREE_LIST_CAPACITY;
  cc.freepages[order * FREE_LIST_CAPACITY + slot] = pfn;
  cc.freepagesCount[order] = count + 1;
}

function freeListPopHead(order: number): number {
  const count = cc.freepagesCount[order]!;
  assert(count > 0, "pop from an empty isolated free list");
  const start = cc.freepagesStart[order]!;
  cc.freepagesStart[order] = (start + 1) % FREE_LIST_CAPACITY;
  cc.freepagesCount[order] = count - 1;
  return cc.freepages[order * FREE_LIST_CAPACITY + start]!;
}

/** Records an isolated chunk: list_add_tail on the one list (5.6, 6.1) or on its order's list. */
function addIsolatedChunk(memory: GuestMemory, pfn: number, order: number): void {
  if (memory.rules.compactionFolioOrders) {
    freeListPushTail(order, pfn);
    return;
  }
  assert(cc.pendingCount < FREE_LIST_CAPACITY, "too many isolated chunks");
  cc.pendingPfn[cc.pendingCount] = pfn;
  cc.pendingOrder[cc.pendingCount] = order;
  cc.pendingCount++;
}

/**
 * Models split_map_pages (5.6, 6.1): every isolated chunk becomes order-0 pages, each pushed on
 * the head of the list, chunk by chunk in isolation order, so the highest pfn of the last chunk
 * is used first.
 */
function splitMapPages(): void {
  for (let chunk = 0; chunk < cc.pendingCount; chunk++) {
    const pfn = cc.pendingPfn[chunk]!;
    const count = 2 ** cc.pendingOrder[chunk]!;
    for (let page = 0; page < count; page++) freeListPushHead(0, pfn + page);
  }
  cc.pendingCount = 0;
}

/**
 * Models isolate_freepages_block (non-strict): isolate free chunks from [startPfn, endPfn) with
 * the given stride until there are as many free pages as pages to migrate. Returns where the
 * scan stopped; cc.blockIsolated holds the pages isolated.
 */
function isolateFreepagesBlock(
  memory: GuestMemory,
  startPfn: number,
  endPfn: number,
  stride: number,
): number {
  const table = memory.table;
  const zone = cc.zone!;
  let nrScanned = 0;
  let totalIsolated = 0;
  let blockPfn = startPfn;
  for (; blockPfn < endPfn; blockPfn += stride) {
    nrScanned++;
    const state = table.state[blockPfn]!;
    if ((state & FRAME_BUDDY) === 0) {
      // A compound head is skipped whole; a tail (compound_order 0) or any other page is one pfn.
      const compound = (state & (FRAME_TAIL | FRAME_KIND_MASK)) > FrameKind.Free;
      const order =
        compound && (state & FRAME_TAIL) === 0 ? table.order[blockPfn]! & ORDER_MASK : 0;
      blockPfn += 2 ** order - 1;
      nrScanned += 2 ** order - 1;
      continue;
    }
    const order = table.order[blockPfn]! & ORDER_MASK;
    const isolated = isolateFreePage(memory, zone, blockPfn, order);
    if (isolated === 0) break;
    nrScanned += isolated - 1;
    totalIsolated += isolated;
    cc.nrFreepages += isolated;
    addIsolatedChunk(memory, blockPfn, order);
    if (cc.nrMigratepages <= cc.nrFreepages) {
      blockPfn += isolated;
      break;
    }
    blockPfn += isolated - 1;
  }
  if (blockPfn > endPfn) blockPfn = endPfn;
  cc.totalFreeScanned += nrScanned;
  memory.events[VmEvent.compact_isolated]! += totalIsolated;
  cc.blockIsolated = totalIsolated;
  return blockPfn;
}

/**
 * Models isolate_freepages: walk pageblocks down from free_pfn to just above the migration
 * scanner's block, isolating free pages from suitable target blocks until there are enough;
 * async runs probe sparsely (stride up to 32) until a block yields pages.
 */
function isolateFreepages(memory: GuestMemory): void {
  const table = memory.table;
  const zone = cc.zone!;
  let isolateStartPfn = cc.freePfn;
  let blockStart = pageblockStartPfn(isolateStartPfn);
  let blockEnd = Math.min(blockStart + pageblock_nr_pages, zone.endPfn);
  const lowPfn = pageblockEndPfn(cc.migratePfn);
  let stride = cc.mode === MigrateMode.ASYNC ? COMPACT_CLUSTER_MAX : 1;
  for (
    ;
    blockStart >= lowPfn;
    blockEnd = blockStart, blockStart -= pageblock_nr_pages, isolateStartPfn = blockStart
  ) {
    // pageblock_pfn_to_page: a block that starts outside the zone is not scanned.
    if (blockStart < zone.startPfn) continue;
    if (!suitableMigrationTarget(table, blockStart)) continue;
    if (!isolationSuitable(table, blockStart)) continue;
    isolateStartPfn = isolateFreepagesBlock(memory, isolateStartPfn, blockEnd, stride);
    const nrIsolated = cc.blockIsolated;
    if (isolateStartPfn === blockEnd) {
      updatePageblockSkip(table, zone, blockStart, blockStart - pageblock_nr_pages);
    }
    if (cc.nrFreepages >= cc.nrMigratepages) {
      // "Restart at previous pageblock if more freepages can be isolated next time."
      if (isolateStartPfn >= blockEnd) isolateStartPfn = blockStart - pageblock_nr_pages;
      break;
    }
    if (isolateStartPfn < blockEnd) break;
    stride = nrIsolated > 0 ? 1 : Math.min(COMPACT_CLUSTER_MAX, stride * 2);
  }
  cc.freePfn = isolateStartPfn;
  if (!memory.rules.compactionFolioOrders) splitMapPages();
}

/**
 * Models compaction_alloc: a target for a folio of `order`. 5.6/6.1 pop the order-0 list;
 * v6.10 takes the first chunk of the smallest order that fits and splits it, keeping the lowest
 * part and putting the upper halves on the lower lists. Isolates more free pages once when
 * empty. Returns NO_PFN when none are left (migrate_pages then fails with -ENOMEM).
 */
function compactionAlloc(memory: GuestMemory, order: number): number {
  if (!memory.rules.compactionFolioOrders) {
    assert(order === 0, "only order-0 pages migrate before v6.10");
    if (cc.freepagesCount[0] === 0) isolateFreepages(memory);
    if (cc.freepagesCount[0] === 0) return NO_PFN;
    cc.nrFreepages--;
    return freeListPopHead(0);
  }
  let startOrder = order;
  for (let attempt = 0; attempt < 2; attempt++) {
    startOrder = order;
    while (startOrder < NR_PAGE_ORDERS && cc.freepagesCount[startOrder] === 0) startOrder++;
    if (startOrder < NR_PAGE_ORDERS || attempt === 1) break;
    isolateFreepages(memory);
  }
  if (startOrder === NR_PAGE_ORDERS) return NO_PFN;
  const pfn = freeListPopHead(startOrder);
  while (startOrder > order) {
    startOrder--;
    freeListPushHead(startOrder, pfn + 2 ** startOrder);
  }
  cc.nrFreepages -= 2 ** order;
  cc.nrMigratepages -= 2 ** order;
  return pfn;
}

/**
 * Models release_freepages (5.6, 6.1) / release_free_list (v6.10): free every unused isolated
 * page through the normal free path. Returns the highest pfn released, or NO_PFN.
 */
function releaseFreepages(memory: GuestMemory): number {
  let highPfn = NO_PFN;
  for (let order = 0; order < NR_PAGE_ORDERS; order++) {
    while (cc.freepagesCount[order]! > 0) {
      const pfn = freeListPopHead(order);
      freePages(memory, pfn, order);
      if (pfn > highPfn) highPfn = pfn;
    }
  }
  cc.nrFreepages = 0;
  return highPfn;
}

// ---------------------------------------------------------------------------------------------
// Migration scanner.

/** isolate_migratepages_block's verdict on one pfn: >= 0 isolates a folio of that order. */
const VERDICT_BUDDY = -1;
const VERDICT_FAIL = -2;
const VERDICT_FAIL_COMPOUND = -3;

/** What isolate_migratepages_block does with the page at pfn. */
function migrationVerdict(memory: GuestMemory, table: FrameTable, pfn: number): number {
  const state = table.state[pfn]!;
  if ((state & FRAME_BUDDY) !== 0) return VERDICT_BUDDY;
  // A tail: compound_order() is 0 and folio_get_nontail_page() fails, so one pfn fails.
  if ((state & FRAME_TAIL) !== 0) return VERDICT_FAIL;
  const kind = state & FRAME_KIND_MASK;
  if (kind === FrameKind.Free) return VERDICT_FAIL;
  const order = table.order[pfn]! & ORDER_MASK;
  // A balloon block kept whole by a proposal is a compound non-LRU page: never isolated.
  if (order > 0 && kind === FrameKind.Balloon) return VERDICT_FAIL_COMPOUND;
  if (order > 0) {
    // PageCompound: always skipped before v6.10; then only by skip_isolation_on_order.
    if (!memory.rules.compactionFolioOrders) return VERDICT_FAIL_COMPOUND;
    if (skipIsolationOnOrder(order, cc.order)) return VERDICT_FAIL_COMPOUND;
  }
  return isMovableKind(kind) ? order : VERDICT_FAIL;
}

/**
 * Models isolate_migratepages_block: isolate movable pages of [lowPfn, endPfn) onto the migrate
 * list, at most COMPACT_CLUSTER_MAX unless finishing the block. Async direct compaction gives
 * up on a cc->order-aligned block at its first unmovable page. A block scanned to the end
 * without isolating anything gets its skip hint.
 */
function isolateMigratepagesBlock(memory: GuestMemory, lowPfn: number, endPfn: number): void {
  const table = memory.table;
  const zone = cc.zone!;
  let nrScanned = 0;
  let nrIsolated = 0;
  let validPage = NO_PFN;
  let skipUpdated = false;
  const skipOnFailure = cc.directCompaction && cc.mode === MigrateMode.ASYNC;
  let nextSkipPfn = skipOnFailure ? blockEndPfn(lowPfn, cc.order) : 0;
  assert(cc.migratepagesCount === 0, "isolation started with pages still isolated");
  cc.migratePfn = lowPfn;
  for (; lowPfn < endPfn; lowPfn++) {
    if (skipOnFailure && lowPfn >= nextSkipPfn) {
      if (nrIsolated > 0) break;
      nextSkipPfn = blockEndPfn(lowPfn, cc.order);
    }
    nrScanned++;
    if (validPage === NO_PFN && (pageblockAligned(lowPfn) || lowPfn === zone.startPfn)) {
      if (!isolationSuitable(table, lowPfn)) {
        lowPfn = endPfn;
        break;
      }
      validPage = lowPfn;
    }
    const verdict = migrationVerdict(memory, table, lowPfn);
    if (verdict >= 0) {
      const kind = table.state[lowPfn]! & FRAME_KIND_MASK;
      // LRU pages take the lruvec lock: the first one marks the block (test_and_set_skip).
      if (kind !== FrameKind.Balloon && !skipUpdated && validPage !== NO_PFN) {
        skipUpdated = true;
        if (testAndSetSkip(table, validPage) && !cc.finishPageblock) {
          lowPfn = endPfn;
          break;
        }
      }
      const nrPages = 2 ** verdict;
      cc.migratepages[cc.migratepagesCount++] = lowPfn;
      cc.nrMigratepages += nrPages;
      nrIsolated += nrPages;
      lowPfn += nrPages - 1;
      nrScanned += nrPages - 1;
      if (cc.nrMigratepages >= COMPACT_CLUSTER_MAX && !cc.finishPageblock) {
        lowPfn++;
        break;
      }
      continue;
    }
    if (verdict !== VERDICT_FAIL) {
      // A free chunk or a compound page is stepped over whole (buddy_order, compound_order).
      const span = 2 ** (table.order[lowPfn]! & ORDER_MASK) - 1;
      lowPfn += span;
      nrScanned += span;
      if (verdict === VERDICT_BUDDY) continue;
    }
    if (!skipOnFailure) continue;
    // isolate_fail for async direct compaction: put back and skip the cc->order block.
    if (nrIsolated > 0) {
      cc.migratepagesCount = 0;
      cc.nrMigratepages = 0;
      nrIsolated = 0;
    }
    if (lowPfn < nextSkipPfn) {
      lowPfn = nextSkipPfn - 1;
      nextSkipPfn += 2 ** cc.order;
    }
  }
  finishMigrateBlock(memory, lowPfn, endPfn, validPage, skipUpdated, nrScanned, nrIsolated);
}

/** The tail of isolate_migratepages_block: skip hint, cached pfn and counters. */
function finishMigrateBlock(
  memory: GuestMemory,
  lowPfn: number,
  endPfn: number,
  validPage: number,
  skipUpdated: boolean,
  nrScanned: number,
  nrIsolated: number,
): void {
  if (lowPfn > endPfn) lowPfn = endPfn;
  if (lowPfn === endPfn && (nrIsolated === 0 || cc.finishPageblock)) {
    if (validPage !== NO_PFN && !skipUpdated) {
      memory.table.pageblockSkip[validPage >>> pageblock_order] = 1;
    }
    updateCachedMigrate(cc.zone!, lowPfn);
  }
  cc.totalMigrateScanned += nrScanned;
  memory.events[VmEvent.compact_isolated]! += nrIsolated;
  cc.migratePfn = lowPfn;
}

/**
 * Models isolate_migratepages: from migrate_pfn, find the first pageblock below the free
 * scanner that is not skipped and is a suitable source, and isolate from it. Returns whether
 * anything was isolated (ISOLATE_SUCCESS) or not (ISOLATE_NONE).
 */
function isolateMigratepages(memory: GuestMemory): boolean {
  const table = memory.table;
  const zone = cc.zone!;
  let lowPfn = cc.migratePfn;
  let blockStart = Math.max(pageblockStartPfn(lowPfn), zone.startPfn);
  let blockEnd = pageblockEndPfn(lowPfn);
  for (
    ;
    blockEnd <= cc.freePfn;
    cc.migratePfn = lowPfn = blockEnd, blockStart = blockEnd, blockEnd += pageblock_nr_pages
  ) {
    const atBlockStart = pageblockAligned(lowPfn) || lowPfn === zone.startPfn;
    if (atBlockStart && !isolationSuitable(table, blockStart)) continue;
    if (!suitableMigrationSource(table, blockStart)) {
      updateCachedMigrate(zone, blockEnd);
      continue;
    }
    isolateMigratepagesBlock(memory, lowPfn, blockEnd);
    break;
  }
  return cc.nrMigratepages > 0;
}

// ---------------------------------------------------------------------------------------------
// Migration.

/**
 * Models migrate_pages(&cc->migratepages, compaction_alloc, ...): folios are taken from the
 * list head, i.e. newest isolated first (list_add). Returns false on -ENOMEM (no target left);
 * the folios not moved stay where they are (putback_movable_pages).
 */
function migratePages(memory: GuestMemory): boolean {
  const table = memory.table;
  for (let entry = cc.migratepagesCount - 1; entry >= 0; entry--) {
    const sourcePfn = cc.migratepages[entry]!;
    const order = table.order[sourcePfn]! & ORDER_MASK;
    const targetPfn = compactionAlloc(memory, order);
    if (targetPfn === NO_PFN) {
      memory.events[VmEvent.pgmigrate_fail]! += 2 ** order;
      cc.migratepagesCount = 0;
      return false;
    }
    migrateFolio(memory, sourcePfn, targetPfn, order);
  }
  cc.migratepagesCount = 0;
  return true;
}

// ---------------------------------------------------------------------------------------------
// compact_zone.

/**
 * Models __compact_finished + compact_finished: COMPLETE / PARTIAL_SKIPPED when the scanners
 * meet; for proactive runs SUCCESS once the zone's score is at most the low mark; for an order,
 * SUCCESS at a pageblock boundary when a free block of that order or more is on the request's
 * list or on a list it may claim from (CONFIG_CMA is off). Otherwise CONTINUE.
 */
function compactFinished(memory: GuestMemory): CompactResult {
  const zone = cc.zone!;
  if (compactScannersMet()) {
    resetCachedPositions(zone);
    // kswapd clears the skip hints when it next sleeps (reset_isolation_suitable).
    if (cc.directCompaction) zone.compactBlockskipFlush = true;
    return cc.wholeZone ? CompactResult.COMPLETE : CompactResult.PARTIAL_SKIPPED;
  }
  if (cc.proactiveWmarkLow >= 0) {
    // kswapd_is_running: the model's kswapd is pending work until the scheduler runs it.
    if (memory.background.kswapdWoken) return CompactResult.PARTIAL_SKIPPED;
    const score = fragmentationScoreZone(zone);
    return score > cc.proactiveWmarkLow ? CompactResult.CONTINUE : CompactResult.SUCCESS;
  }
  if (cc.order === -1) return CompactResult.CONTINUE;
  // "Always finish scanning a pageblock to reduce the possibility of fallbacks in the future."
  if (!pageblockAligned(cc.migratePfn)) return CompactResult.CONTINUE;
  const head = zone.freeArea.head;
  for (let order = cc.order; order <= MAX_PAGE_ORDER; order++) {
    if (head[order * MIGRATE_TYPES + cc.migratetype] !== NO_PFN) return CompactResult.SUCCESS;
    // The MIGRATE_CMA list test is compiled out (CONFIG_CMA off).
    if (findSuitableFallback(zone, order, cc.migratetype, true) !== -1) {
      return CompactResult.SUCCESS;
    }
  }
  // COMPACT_NO_SUITABLE_PAGE, which compact_finished turns into CONTINUE.
  return CompactResult.CONTINUE;
}

/** Models fragmentation_score_zone (mm/compaction.c, v5.9): extfrag_for_order at order 9. */
export function fragmentationScoreZone(zone: Zone): number {
  return extfragForOrder(zone, COMPACTION_HPAGE_ORDER);
}

/** Models drain_local_pages(zone): this CPU's per-cpu lists of the zone go back to the buddy. */
function drainLocalPages(memory: GuestMemory, zone: Zone): void {
  const set = memory.pcp[zoneIndexOf(memory, zone)]![memory.cpu]!;
  if (set.count > 0) drainPcp(memory.table, zone, set);
}

/** Copies a request into the reused compact_control and empties its lists. */
function setupCompactControl(memory: GuestMemory, zone: Zone, request: CompactRequest): void {
  assert(cc.memory === undefined, "compact_zone is not re-entrant");
  assert(request.order === -1 || (request.order > 0 && request.order <= MAX_PAGE_ORDER), () => {
    return `compaction order ${request.order} out of range`;
  });
  cc.memory = memory;
  cc.zone = zone;
  cc.order = request.order;
  cc.migratetype = request.migratetype;
  cc.mode = request.mode;
  cc.highestZoneIndex = request.highestZoneIndex;
  cc.directCompaction = request.directCompaction;
  cc.wholeZone = request.wholeZone;
  cc.ignoreSkipHint = request.ignoreSkipHint;
  cc.ignoreBlockSuitable = request.ignoreBlockSuitable;
  cc.proactiveWmarkLow = request.proactiveWmarkLow;
  cc.finishPageblock = false;
  cc.totalMigrateScanned = 0;
  cc.totalFreeScanned = 0;
  cc.nrMigratepages = 0;
  cc.nrFreepages = 0;
  cc.migratepagesCount = 0;
  cc.pendingCount = 0;
  cc.freepagesCount.fill(0);
  cc.freepagesStart.fill(0);
}

/** Sets the scanners' start: the zone's ends, or the cached pfns when they lie in the zone. */
function initScanners(zone: Zone, sync: number): void {
  const startPfn = zone.startPfn;
  const endPfn = zone.endPfn;
  if (cc.wholeZone) {
    cc.migratePfn = startPfn;
    cc.freePfn = pageblockStartPfn(endPfn - 1);
    return;
  }
  cc.migratePfn = zone.compactCachedMigratePfn[sync]!;
  cc.freePfn = zone.compactCachedFreePfn;
  if (cc.freePfn < startPfn || cc.freePfn >= endPfn) {
    cc.freePfn = pageblockStartPfn(endPfn - 1);
    zone.compactCachedFreePfn = cc.freePfn;
  }
  if (cc.migratePfn < startPfn || cc.migratePfn >= endPfn) {
    cc.migratePfn = startPfn;
    zone.compactCachedMigratePfn[0] = startPfn;
    zone.compactCachedMigratePfn[1] = startPfn;
  }
  if (cc.migratePfn <= zone.compactInitMigratePfn) cc.wholeZone = true;
}

/**
 * Models compact_zone (mm/compaction.c): the gates for an order (already allocatable: SUCCESS;
 * not worth it: SKIPPED), then rounds of isolate-and-migrate until compact_finished says stop.
 * Pages freed from an order-aligned block the scanner has left are drained from this CPU's
 * per-cpu lists so they merge. Unused targets are released at the end. When `totals` is given
 * it receives the pages scanned (kcompactd adds them to its own counters).
 */
export function compactZone(
  memory: GuestMemory,
  zone: Zone,
  request: CompactRequest,
  totals?: CompactScanTotals,
): CompactResult {
  setupCompactControl(memory, zone, request);
  let result: CompactResult;
  try {
    result = compactZoneUnchecked(memory, zone);
  } finally {
    cc.memory = undefined;
    cc.zone = undefined;
  }
  if (totals !== undefined) {
    totals.migrateScanned = cc.totalMigrateScanned;
    totals.freeScanned = cc.totalFreeScanned;
  }
  return result;
}

function compactZoneUnchecked(memory: GuestMemory, zone: Zone): CompactResult {
  if (cc.order !== -1) {
    // alloc_flags is ALLOC_WMARK_MIN for every caller the model has.
    const watermark = wmarkPages(zone, WMARK_MIN);
    if (zoneWatermarkOk(zone, cc.order, watermark, cc.highestZoneIndex, zone.freePages)) {
      return CompactResult.SUCCESS;
    }
    if (!compactionSuitable(zone, cc.order, cc.highestZoneIndex)) return CompactResult.SKIPPED;
  }
  if (compactionRestarting(zone, cc.order)) resetIsolationSuitableZone(memory.table, zone);
  const sync = cc.mode !== MigrateMode.ASYNC ? 1 : 0;
  initScanners(zone, sync);
  const cached = zone.compactCachedMigratePfn;
  let updateCached = sync === 0 && cached[0] === cached[1];
  let lastMigratedPfn = 0;
  let result = compactFinished(memory);
  // Each round moves migrate_pfn forward or ends the run; the zone bounds the rounds.
  const roundsMax = 2 * (zone.endPfn - zone.startPfn) + 2;
  for (let round = 0; result === CompactResult.CONTINUE; round++) {
    assert(round < roundsMax, "compact_zone made no progress");
    cc.finishPageblock = pageblockStartPfn(lastMigratedPfn) === pageblockStartPfn(cc.migratePfn);
    if (!isolateMigratepages(memory)) {
      if (updateCached) cached[1] = cached[0]!;
    } else {
      updateCached = false;
      lastMigratedPfn = Math.max(zone.startPfn, pageblockStartPfn(cc.migratePfn - 1));
      const migrated = migratePages(memory);
      cc.nrMigratepages = 0;
      if (!migrated && !compactScannersMet()) {
        result = CompactResult.CONTENDED;
        break;
      }
    }
    // check_drain: the scanner left the order-aligned block it last migrated from.
    if (cc.order > 0 && lastMigratedPfn !== 0) {
      if (lastMigratedPfn < blockStartPfn(cc.migratePfn, cc.order)) {
        drainLocalPages(memory, zone);
        lastMigratedPfn = 0;
      }
    }
    result = compactFinished(memory);
  }
  finishCompactZone(memory, zone);
  return result;
}

/** The `out:` label of compact_zone: release targets, move the free cache back, count. */
function finishCompactZone(memory: GuestMemory, zone: Zone): void {
  if (!memory.rules.compactionFolioOrders) splitMapPages();
  if (cc.nrFreepages > 0) {
    const highPfn = releaseFreepages(memory);
    assert(highPfn !== NO_PFN, "free pages counted but none isolated");
    // "Only go back, not forward."
    const freePfn = pageblockStartPfn(highPfn);
    if (freePfn > zone.compactCachedFreePfn) zone.compactCachedFreePfn = freePfn;
  }
  for (let order = 0; order < NR_PAGE_ORDERS; order++) {
    assert(cc.freepagesCount[order] === 0, "isolated free pages leaked");
  }
  assert(cc.migratepagesCount === 0, "isolated pages leaked");
  memory.events[VmEvent.compact_migrate_scanned]! += cc.totalMigrateScanned;
  memory.events[VmEvent.compact_free_scanned]! += cc.totalFreeScanned;
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/** The highest zone a GFP_KERNEL / GFP_HIGHUSER_MOVABLE request may use (gfp_zone). */
export function highestZoneIndexOf(memory: GuestMemory): number {
  for (const type of [ZoneType.Normal, ZoneType.DMA32, ZoneType.DMA]) {
    if (memory.zoneByType[type] !== undefined) return type;
  }
  assert(false, "guest has no DMA, DMA32 or Normal zone");
}

/**
 * Models try_to_compact_pages + compact_zone_order (mm/compaction.c): compact zone by zone,
 * highest first, skipping deferred zones (except at SYNC_FULL); stop at the first SUCCESS
 * (compaction_defer_reset); a non-async run that completes without success defers the zone.
 * COMPACT_PRIO_ASYNC migrates MIGRATE_ASYNC, the others SYNC_LIGHT; SYNC_FULL also scans whole
 * zones ignoring skip hints and pageblock types. Returns max() of the zones' results.
 */
export function tryToCompactPagesResult(
  memory: GuestMemory,
  order: number,
  migratetype: number,
  priority: number,
): CompactResult {
  assert(order > 0 && order <= MAX_PAGE_ORDER, () => `direct compaction order ${order}`);
  assert(priority >= COMPACT_PRIO_SYNC_FULL && priority <= COMPACT_PRIO_ASYNC, "priority");
  const highestZoneIndex = highestZoneIndexOf(memory);
  const full = priority === COMPACT_PRIO_SYNC_FULL;
  const request: CompactRequest = {
    order,
    migratetype,
    mode: priority === COMPACT_PRIO_ASYNC ? MigrateMode.ASYNC : MigrateMode.SYNC_LIGHT,
    highestZoneIndex,
    directCompaction: true,
    wholeZone: full,
    ignoreSkipHint: full,
    ignoreBlockSuitable: full,
    proactiveWmarkLow: -1,
  };
  let rc = CompactResult.SKIPPED;
  for (let index = memory.zones.length - 1; index >= 0; index--) {
    const zone = memory.zones[index]!;
    if (zone.type > highestZoneIndex || zone.managedPages === 0) continue;
    if (!full && compactionDeferred(zone, order)) {
      rc = Math.max(rc, CompactResult.DEFERRED);
      continue;
    }
    const status = compactZone(memory, zone, request);
    rc = Math.max(rc, status);
    if (status === CompactResult.SUCCESS) {
      compactionDeferReset(zone, order, false);
      break;
    }
    const failed = status === CompactResult.COMPLETE || status === CompactResult.PARTIAL_SKIPPED;
    if (priority !== COMPACT_PRIO_ASYNC && failed) deferCompaction(zone, order);
  }
  return rc;
}

/**
 * GuestHooks.compact: direct compaction for an allocation of `order`. Returns true when it
 * reported COMPACT_SUCCESS, i.e. a suitable free block should now exist. (The kernel's slow
 * path also needs to tell SKIPPED/DEFERRED from a run that failed: use tryToCompactPagesResult.)
 */
export function tryToCompactPages(
  memory: GuestMemory,
  order: number,
  migratetype: number,
  priority: number,
): boolean {
  return tryToCompactPagesResult(memory, order, migratetype, priority) === CompactResult.SUCCESS;
}

/** compact_node's control: order -1, MIGRATE_SYNC, whole zone, skip hints ignored, GFP_KERNEL. */
const COMPACT_MEMORY_REQUEST: CompactRequest = {
  order: -1,
  migratetype: MIGRATE_UNMOVABLE,
  mode: MigrateMode.SYNC,
  highestZoneIndex: ZoneType.Normal,
  directCompaction: false,
  wholeZone: true,
  ignoreSkipHint: true,
  ignoreBlockSuitable: false,
  proactiveWmarkLow: -1,
};

/**
 * Models a write to /proc/sys/vm/compact_memory (sysctl_compaction_handler → compact_nodes →
 * compact_node): every populated zone, lowest first, compacted until its scanners meet. No
 * suitability check, no deferral, no compact_stall/success counts, no daemon counts.
 */
export function compactMemory(memory: GuestMemory): void {
  // lru_add_drain_all() has nothing to do: the model has no LRU pagevecs.
  for (const zone of memory.zones) {
    if (zone.presentPages === 0) continue;
    compactZone(memory, zone, COMPACT_MEMORY_REQUEST);
  }
}

// ---------------------------------------------------------------------------------------------
// kcompactd and proactive compaction (mm/compaction.c).
//
// Call contract for the scheduler (src/sim/guest_sim.ts):
// - Hold one KcompactdState per guest, from createKcompactdState().
// - Whenever memory.background.kcompactdOrder >= 0 after an operation (wakeupKcompactd ran),
//   call kcompactdDoWork(memory, state). It models the wake-up in wakeup_kcompactd (order 0 is
//   dropped; kcompactd is woken only if kcompactd_node_suitable) and then kcompactd_do_work,
//   after which kcompactdOrder is -1. A request that does not wake kcompactd stays recorded, as
//   pgdat->kcompactd_max_order does, so kcompactdOrder stays > 0: call again after later
//   operations (cheap), and on 6.x the next timeout runs it. Returns whether kcompactd ran; when
//   it ran on 6.x the kernel restarts its 500 ms timeout (state.timeoutMs says so).
// - Only when memory.rules.proactiveCompaction (v5.9+), call proactiveCompactionCheck(memory,
//   state) each time kcompactd's wait times out, and schedule the next call that many
//   milliseconds later (its return value; Infinity while vm.compaction_proactiveness is 0).

/** HPAGE_FRAG_CHECK_INTERVAL_MSEC (mm/compaction.c, v5.9): kcompactd's wait timeout. */
export const KCOMPACTD_TIMEOUT_MS = 500;
/** vm.compaction_proactiveness default (mm/compaction.c, v5.9). */
export const COMPACTION_PROACTIVENESS_DEFAULT = 20;

/** kcompactd's own state that the kernel keeps in its thread and in pg_data_t. */
export interface KcompactdState {
  /** vm.compaction_proactiveness, 0..100; 0 turns proactive compaction off. */
  proactiveness: number;
  /** The thread's current wait timeout: 500 ms, or 500 << 6 ms after a fruitless proactive run. */
  timeoutMs: number;
  /** Proactive runs so far (proactive_compact_node calls), for reports and tests. */
  proactiveRuns: number;
  /** Node fragmentation score before and after the last proactive run; -1 before the first. */
  lastScoreBefore: number;
  lastScoreAfter: number;
}

export function createKcompactdState(): KcompactdState {
  return {
    proactiveness: COMPACTION_PROACTIVENESS_DEFAULT,
    timeoutMs: KCOMPACTD_TIMEOUT_MS,
    proactiveRuns: 0,
    lastScoreBefore: -1,
    lastScoreAfter: -1,
  };
}

/** Reused by the daemon paths: the scanned totals of the last compact_zone run. */
const daemonTotals: CompactScanTotals = { migrateScanned: 0, freeScanned: 0 };

/**
 * Models kcompactd_node_suitable: some zone cannot allocate `order` at MIN yet and compaction
 * there is suitable (5.6/6.1: compaction_suitable(zone, order, 0, idx) == COMPACT_CONTINUE).
 */
export function kcompactdNodeSuitable(memory: GuestMemory, order: number): boolean {
  const highestZoneIndex = highestZoneIndexOf(memory);
  for (const zone of memory.zones) {
    if (zone.type > highestZoneIndex || zone.presentPages === 0) continue;
    const watermark = wmarkPages(zone, WMARK_MIN);
    if (zoneWatermarkOk(zone, order, watermark, highestZoneIndex, zone.freePages)) continue;
    if (compactionSuitable(zone, order, highestZoneIndex)) return true;
  }
  return false;
}

/** Models drain_all_pages(zone): every CPU's per-cpu lists of one zone. */
function drainAllPagesZone(memory: GuestMemory, zone: Zone): void {
  for (const set of memory.pcp[zoneIndexOf(memory, zone)]!) {
    if (set.count > 0) drainPcp(memory.table, zone, set);
  }
}

/**
 * Models kcompactd_do_work: for each zone up to the highest, unless deferred, already able to
 * allocate the order at MIN, or unsuitable, compact it in SYNC_LIGHT mode from the cached pfns
 * (cc->migratetype is GFP_KERNEL's, UNMOVABLE). Success resets the deferral; a run that ends
 * without one drains the zone's per-cpu lists ("Buddy pages may become stranded on pcps",
 * David Rientjes, v4.16, so in every modelled version) and defers.
 */
function kcompactdRunWork(memory: GuestMemory, order: number): void {
  const highestZoneIndex = highestZoneIndexOf(memory);
  const request: CompactRequest = {
    order,
    migratetype: MIGRATE_UNMOVABLE,
    mode: MigrateMode.SYNC_LIGHT,
    highestZoneIndex,
    directCompaction: false,
    wholeZone: false,
    ignoreSkipHint: false,
    ignoreBlockSuitable: false,
    proactiveWmarkLow: -1,
  };
  memory.events[VmEvent.compact_daemon_wake]!++;
  for (const zone of memory.zones) {
    if (zone.type > highestZoneIndex || zone.presentPages === 0) continue;
    if (compactionDeferred(zone, order)) continue;
    // Both checks use the zone's own index (no lowmem reserve), as kcompactd_do_work does.
    const watermark = wmarkPages(zone, WMARK_MIN);
    if (zoneWatermarkOk(zone, order, watermark, zone.type, zone.freePages)) continue;
    if (!compactionSuitable(zone, order, zone.type)) continue;
    const status = compactZone(memory, zone, request, daemonTotals);
    if (status === CompactResult.SUCCESS) {
      compactionDeferReset(zone, order, false);
    } else if (status === CompactResult.PARTIAL_SKIPPED || status === CompactResult.COMPLETE) {
      drainAllPagesZone(memory, zone);
      deferCompaction(zone, order);
    }
    memory.events[VmEvent.compact_daemon_migrate_scanned]! += daemonTotals.migrateScanned;
    memory.events[VmEvent.compact_daemon_free_scanned]! += daemonTotals.freeScanned;
  }
  // "Regardless of success, we are done until woken up next" (kcompactd_max_order = 0).
  if (memory.background.kcompactdOrder <= order) memory.background.kcompactdOrder = -1;
}

/**
 * A kcompactd wake-up for memory.background.kcompactdOrder (wakeup_kcompactd, then the thread's
 * kcompactd_do_work). See the call contract above. Returns whether kcompactd ran.
 */
export function kcompactdDoWork(memory: GuestMemory, state?: KcompactdState): boolean {
  const order = memory.background.kcompactdOrder;
  // wakeup_kcompactd: "if (!order) return;".
  if (order <= 0) {
    memory.background.kcompactdOrder = -1;
    return false;
  }
  assert(order <= MAX_PAGE_ORDER, () => `kcompactd order ${order} out of range`);
  if (!kcompactdNodeSuitable(memory, order)) return false;
  kcompactdRunWork(memory, order);
  // "Reset the timeout value": the thread waits a full interval again.
  if (state !== undefined && memory.rules.proactiveCompaction) state.timeoutMs = waitTimeout(state);
  return true;
}

/** Models fragmentation_score_wmark: low = max(100 - proactiveness, 5), high = low + 10. */
export function fragmentationScoreWmark(proactiveness: number, low: boolean): number {
  assert(proactiveness >= 0 && proactiveness <= 100, "proactiveness is 0..100");
  const wmarkLow = Math.max(100 - proactiveness, 5);
  return low ? wmarkLow : Math.min(wmarkLow + 10, 100);
}

/**
 * Models fragmentation_score_node: the zones' scores weighted by present pages over the node's
 * present pages + 1, so a small zone cannot trigger proactive compaction on its own.
 */
export function fragmentationScoreNode(memory: GuestMemory): number {
  let nodePresentPages = 0;
  for (const zone of memory.zones) nodePresentPages += zone.presentPages;
  let score = 0;
  for (const zone of memory.zones) {
    if (zone.presentPages === 0) continue;
    score += Math.floor(
      (zone.presentPages * fragmentationScoreZone(zone)) / (nodePresentPages + 1),
    );
  }
  assert(score >= 0 && score <= 100, () => `node fragmentation score ${score} out of range`);
  return score;
}

/** Models should_proactive_compact_node: enabled, kswapd idle, node score above the high mark. */
export function shouldProactiveCompactNode(memory: GuestMemory, state: KcompactdState): boolean {
  if (state.proactiveness === 0 || memory.background.kswapdWoken) return false;
  return fragmentationScoreNode(memory) > fragmentationScoreWmark(state.proactiveness, false);
}

/**
 * Models proactive_compact_node: every populated zone, order -1, SYNC_LIGHT, whole zone, skip
 * hints ignored, each stopping once its own score is at most the low mark. Counts the daemon's
 * scanned counters but not compact_daemon_wake.
 */
function proactiveCompactNode(memory: GuestMemory, state: KcompactdState): void {
  const request: CompactRequest = {
    order: -1,
    migratetype: MIGRATE_UNMOVABLE,
    mode: MigrateMode.SYNC_LIGHT,
    highestZoneIndex: highestZoneIndexOf(memory),
    directCompaction: false,
    wholeZone: true,
    ignoreSkipHint: true,
    ignoreBlockSuitable: false,
    proactiveWmarkLow: fragmentationScoreWmark(state.proactiveness, true),
  };
  for (const zone of memory.zones) {
    if (zone.presentPages === 0) continue;
    compactZone(memory, zone, request, daemonTotals);
    memory.events[VmEvent.compact_daemon_migrate_scanned]! += daemonTotals.migrateScanned;
    memory.events[VmEvent.compact_daemon_free_scanned]! += daemonTotals.freeScanned;
  }
}

/** The wait timeout: 500 ms, or forever while proactiveness is 0 (MAX_SCHEDULE_TIMEOUT). */
function waitTimeout(state: KcompactdState): number {
  return state.proactiveness === 0 ? Number.POSITIVE_INFINITY : KCOMPACTD_TIMEOUT_MS;
}

/**
 * Models one expiry of kcompactd's wait (the thread loop, v5.9+): a recorded wake-up request
 * makes the wait condition true, so kcompactd_do_work runs; otherwise, if the node's score is
 * above the high mark, proactive_compact_node runs, and when it did not lower the score the next
 * wait is 500 ms << COMPACT_MAX_DEFER_SHIFT = 32 s. Returns the milliseconds to the next expiry.
 * On 5.6 there is no timeout: returns Infinity and does nothing.
 */
export function proactiveCompactionCheck(memory: GuestMemory, state: KcompactdState): number {
  if (!memory.rules.proactiveCompaction) {
    state.timeoutMs = Number.POSITIVE_INFINITY;
    return state.timeoutMs;
  }
  const order = memory.background.kcompactdOrder;
  if (order > 0) {
    assert(order <= MAX_PAGE_ORDER, () => `kcompactd order ${order} out of range`);
    kcompactdRunWork(memory, order);
  } else if (shouldProactiveCompactNode(memory, state)) {
    const previousScore = fragmentationScoreNode(memory);
    proactiveCompactNode(memory, state);
    const score = fragmentationScoreNode(memory);
    state.proactiveRuns++;
    state.lastScoreBefore = previousScore;
    state.lastScoreAfter = score;
    if (score >= previousScore) {
      state.timeoutMs = KCOMPACTD_TIMEOUT_MS * 2 ** COMPACT_MAX_DEFER_SHIFT;
      return state.timeoutMs;
    }
  }
  state.timeoutMs = waitTimeout(state);
  return state.timeoutMs;
}
