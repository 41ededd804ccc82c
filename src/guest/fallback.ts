// Falling back to another migratetype's free lists when the wanted one is empty
// (mm/page_alloc.c: __rmqueue_fallback, steal_suitable_fallback in 5.6 and 6.1;
// __rmqueue_claim, __rmqueue_steal, try_to_claim_block in 6.15+).
//
// Theory of operation. Each migratetype has an ordered list of types it may take from
// (fallbacks[][]). Taking a large free block from a foreign pageblock is the moment to claim the
// whole pageblock for the new type, so that the next allocations of that type find pages there
// and mixing stays rare: a block of pageblock order or more changes type outright; a smaller one
// claims its pageblock when the block's free pages plus its pages already of a compatible type
// are at least half of it. Unmovable and reclaimable requests, and movable ones that can claim,
// take the LARGEST fallback block (to pollute as few pageblocks as possible); movable requests
// that cannot claim take the smallest. Every fallback boosts the zone's watermark, which wakes
// kswapd and then kcompactd to undo the mixing.

import {
  MAX_PAGE_ORDER,
  MIGRATE_HIGHATOMIC,
  MIGRATE_MOVABLE,
  MIGRATE_RECLAIMABLE,
  MIGRATE_TYPES,
  MIGRATE_UNMOVABLE,
  pageblock_nr_pages,
  pageblock_order,
} from "../core/limits.ts";
import {
  delFromFreeList,
  expand,
  moveFreepagesBlock,
  moveToFreeList,
  rmqueueSmallest,
} from "./buddy.ts";
import {
  FRAME_BUDDY,
  FRAME_KIND_MASK,
  type FrameTable,
  isMovableKind,
  NO_PFN,
  ORDER_MASK,
} from "./frame_table.ts";
import type { Zone } from "./zone.ts";

/** fallbacks[MIGRATE_TYPES][] (mm/page_alloc.c): the types each type may take from, in order. */
const FALLBACKS: readonly (readonly number[])[] = [
  [MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE], // UNMOVABLE
  [MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE], // MOVABLE
  [MIGRATE_UNMOVABLE, MIGRATE_MOVABLE], // RECLAIMABLE
];

/** ALLOC_NOFRAGMENT (mm/internal.h): do not fall back below pageblock order. */
export const ALLOC_NOFRAGMENT = 0x100;

/**
 * Models can_steal_fallback (5.6, 6.1) / should_try_claim_block (6.15+): whether taking a block of
 * `order` from a foreign pageblock for `startType` may claim that pageblock.
 */
function canClaim(order: number, startType: number): boolean {
  if (order >= pageblock_order) return true;
  // "Leaving this order check is intended... movable allocations of order >= pageblock_order/2
  // steal to avoid fragmenting many blocks".
  if (order >= pageblock_order >> 1) return true;
  return startType === MIGRATE_UNMOVABLE || startType === MIGRATE_RECLAIMABLE;
}

/**
 * Models find_suitable_fallback (mm/page_alloc.c): the first type in startType's fallback list
 * with a free block at `order`, or -1. With `onlyClaimable`, -1 unless the block may be claimed.
 */
export function findSuitableFallback(
  zone: Zone,
  order: number,
  startType: number,
  onlyClaimable: boolean,
): number {
  if (zone.freeArea.nrFree[order] === 0) return -1;
  if (onlyClaimable && !canClaim(order, startType)) return -1;
  const candidates = FALLBACKS[startType];
  if (candidates === undefined) return -1;
  for (const fallbackType of candidates) {
    if (zone.freeArea.head[order * MIGRATE_TYPES + fallbackType] !== -1) return fallbackType;
  }
  return -1;
}

/**
 * Models boost_watermark (mm/page_alloc.c): raise the zone's watermark by one pageblock, capped at
 * high_wmark * watermark_boost_factor / 10000 (factor 15000), so kswapd reclaims and kcompactd
 * compacts after a fallback. Returns whether the boost was applied.
 */
export function boostWatermark(zone: Zone, watermarkBoostFactor: number): boolean {
  if (watermarkBoostFactor === 0) return false;
  // "Don't bother in zones that are unlikely to produce results": managed < 2 pageblocks... the
  // kernel checks `if ((pageblock_nr_pages * 4) > zone_managed_pages(zone))` (v5.7+).
  if (pageblock_nr_pages * 4 > zone.managedPages) return false;
  const highWatermark = zone.watermark[2]!;
  const maxBoost = Math.max(
    pageblock_nr_pages,
    Math.floor((highWatermark * watermarkBoostFactor) / 10000),
  );
  zone.watermarkBoost = Math.min(zone.watermarkBoost + pageblock_nr_pages, maxBoost);
  return true;
}

/** Counts the in-use pages of a pageblock that are of a type compatible with movable ones. */
function countMovablePages(table: FrameTable, zone: Zone, pfn: number): number {
  const blockStart = pfn & ~(pageblock_nr_pages - 1);
  const end = Math.min(blockStart + pageblock_nr_pages, zone.endPfn);
  let movable = 0;
  for (let cursor = Math.max(blockStart, zone.startPfn); cursor < end; cursor++) {
    const kind = table.state[cursor]! & FRAME_KIND_MASK;
    // PageLRU or __PageMovable: anonymous, page cache, shmem, balloon pages.
    if (isMovableKind(kind)) movable++;
  }
  return movable;
}

export interface FallbackResult {
  /** Set when the fallback boosted the watermark (the caller wakes kswapd). */
  boosted: boolean;
}

/** Sets every pageblock a block of order >= pageblock_order covers to `migratetype`. */
function changePageblockRange(table: FrameTable, pfn: number, order: number, mt: number): void {
  const first = pfn >>> pageblock_order;
  const count = 1 << Math.max(0, order - pageblock_order);
  table.pageblockMt.fill(mt, first, first + count);
}

/**
 * Models steal_suitable_fallback (5.6, 6.1) and try_to_claim_block (6.15+): move the free page,
 * or the whole pageblock's free pages, to startType, and claim the pageblock when enough of it is
 * free or already compatible.
 */
function stealSuitableFallback(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  startType: number,
  wholeBlock: boolean,
  boostFactor: number,
  result: FallbackResult,
): boolean {
  const order = table.order[pfn]! & ORDER_MASK;
  const oldType = table.pageblockMt[pfn >>> pageblock_order]!;
  if (oldType === MIGRATE_HIGHATOMIC) {
    moveToFreeList(table, zone, pfn, startType);
    return false;
  }
  if (order >= pageblock_order) {
    changePageblockRange(table, pfn, order, startType);
    moveToFreeList(table, zone, pfn, startType);
    return true;
  }
  result.boosted = boostWatermark(zone, boostFactor) || result.boosted;
  if (!wholeBlock) {
    moveToFreeList(table, zone, pfn, startType);
    return false;
  }
  const freePages = moveFreepagesBlock(table, zone, pfn, startType);
  const movablePages = countMovablePages(table, zone, pfn);
  let alikePages = 0;
  if (startType === MIGRATE_MOVABLE) alikePages = movablePages;
  else if (oldType === MIGRATE_MOVABLE) alikePages = pageblock_nr_pages - freePages - movablePages;
  if (freePages + alikePages >= pageblock_nr_pages >> 1) {
    table.pageblockMt[pfn >>> pageblock_order] = startType;
    return true;
  }
  return false;
}

/**
 * Models __rmqueue_fallback (5.6, 6.1): take from the largest fallback block that may claim its
 * pageblock; a movable request that cannot claim takes the smallest. On success the free pages
 * are now on startType's lists and the caller retries __rmqueue_smallest. Returns whether
 * anything was moved.
 */
export function rmqueueFallback(
  table: FrameTable,
  zone: Zone,
  order: number,
  startType: number,
  allocFlags: number,
  boostFactor: number,
  result: FallbackResult,
): boolean {
  const minOrder = (allocFlags & ALLOC_NOFRAGMENT) !== 0 ? pageblock_order : order;
  for (let currentOrder = MAX_PAGE_ORDER; currentOrder >= minOrder; currentOrder--) {
    const fallbackType = findSuitableFallback(zone, currentOrder, startType, false);
    if (fallbackType === -1) continue;
    const claimable = canClaim(currentOrder, startType);
    if (!claimable && startType === MIGRATE_MOVABLE && currentOrder > order) {
      return stealSmallest(table, zone, order, startType, boostFactor, result);
    }
    const pfn = zone.freeArea.head[currentOrder * MIGRATE_TYPES + fallbackType]!;
    stealSuitableFallback(table, zone, pfn, startType, claimable, boostFactor, result);
    return true;
  }
  return false;
}

/** The find_smallest label of __rmqueue_fallback: the smallest fallback block at or above order. */
function stealSmallest(
  table: FrameTable,
  zone: Zone,
  order: number,
  startType: number,
  boostFactor: number,
  result: FallbackResult,
): boolean {
  for (let currentOrder = order; currentOrder <= MAX_PAGE_ORDER; currentOrder++) {
    const fallbackType = findSuitableFallback(zone, currentOrder, startType, false);
    if (fallbackType === -1) continue;
    const pfn = zone.freeArea.head[currentOrder * MIGRATE_TYPES + fallbackType]!;
    stealSuitableFallback(table, zone, pfn, startType, false, boostFactor, result);
    return true;
  }
  return false;
}

/** Free pages inside the pageblock holding pfn, counted without moving them. */
function countFreePagesBlock(table: FrameTable, zone: Zone, pfn: number): number {
  const blockStart = pfn & ~(pageblock_nr_pages - 1);
  const end = Math.min(blockStart + pageblock_nr_pages, zone.endPfn);
  let free = 0;
  let cursor = Math.max(blockStart, zone.startPfn);
  while (cursor < end) {
    if ((table.state[cursor]! & FRAME_BUDDY) === 0) {
      cursor++;
      continue;
    }
    const order = table.order[cursor]! & ORDER_MASK;
    free += 1 << order;
    cursor += 1 << order;
  }
  return free;
}

/**
 * Models try_to_claim_block (v6.15+) for a block below pageblock order: claim the pageblock
 * holding pfn for startType, moving its free pages, only if the claim succeeds; otherwise move
 * nothing (the watermark is boosted either way).
 */
function tryToClaimBlock(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  startType: number,
  boostFactor: number,
  result: FallbackResult,
): boolean {
  result.boosted = boostWatermark(zone, boostFactor) || result.boosted;
  const oldType = table.pageblockMt[pfn >>> pageblock_order]!;
  const freePages = countFreePagesBlock(table, zone, pfn);
  const movablePages = countMovablePages(table, zone, pfn);
  let alikePages = 0;
  if (startType === MIGRATE_MOVABLE) alikePages = movablePages;
  else if (oldType === MIGRATE_MOVABLE) alikePages = pageblock_nr_pages - freePages - movablePages;
  if (freePages + alikePages < pageblock_nr_pages >> 1) return false;
  moveFreepagesBlock(table, zone, pfn, startType);
  table.pageblockMt[pfn >>> pageblock_order] = startType;
  return true;
}

/**
 * Models __rmqueue_claim (v6.15+): from the largest order down, try to claim a whole foreign
 * pageblock and return exactly the wanted order from it. Returns the pfn or NO_PFN.
 */
export function rmqueueClaim(
  table: FrameTable,
  zone: Zone,
  order: number,
  startType: number,
  allocFlags: number,
  boostFactor: number,
  result: FallbackResult,
): number {
  const minOrder = (allocFlags & ALLOC_NOFRAGMENT) !== 0 ? pageblock_order : order;
  for (let currentOrder = MAX_PAGE_ORDER; currentOrder >= minOrder; currentOrder--) {
    const fallbackType = findSuitableFallback(zone, currentOrder, startType, true);
    if (fallbackType === -1) {
      // -2 in the kernel: "advanced into orders too low to claim, abort".
      if (!canClaim(currentOrder, startType)) break;
      continue;
    }
    const pfn = zone.freeArea.head[currentOrder * MIGRATE_TYPES + fallbackType]!;
    if (currentOrder >= pageblock_order) {
      // try_to_claim_block: a whole foreign block is taken, retyped and split on startType.
      delFromFreeList(table, zone, pfn);
      changePageblockRange(table, pfn, currentOrder, startType);
      expand(table, zone, pfn, order, currentOrder, startType);
      return pfn;
    }
    if (!tryToClaimBlock(table, zone, pfn, startType, boostFactor, result)) continue;
    return rmqueueSmallest(table, zone, order, startType);
  }
  return NO_PFN;
}

/**
 * Models __rmqueue_steal (v6.15+): the smallest fallback block at or above `order`, split on its
 * own type's lists, without claiming the pageblock. Returns the pfn or NO_PFN.
 */
export function rmqueueSteal(
  table: FrameTable,
  zone: Zone,
  order: number,
  startType: number,
): number {
  for (let currentOrder = order; currentOrder <= MAX_PAGE_ORDER; currentOrder++) {
    const fallbackType = findSuitableFallback(zone, currentOrder, startType, false);
    if (fallbackType === -1) continue;
    const pfn = zone.freeArea.head[currentOrder * MIGRATE_TYPES + fallbackType]!;
    delFromFreeList(table, zone, pfn);
    expand(table, zone, pfn, order, currentOrder, fallbackType);
    return pfn;
  }
  return NO_PFN;
}
