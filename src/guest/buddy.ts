// The buddy core (mm/page_alloc.c): free lists, __rmqueue_smallest + expand, __free_one_page.
//
// Theory of operation. Free memory is kept as naturally aligned blocks of 2^order frames, each on
// the free list of its order and migratetype; only a block's head frame is marked (FRAME_BUDDY,
// the kernel's PageBuddy) and carries the order. Allocation takes the head of the smallest
// non-empty list at or above the wanted order and splits it, putting the upper halves back
// (expand). Freeing merges a block with its buddy (pfn ^ 2^order) while the buddy is a free block
// of the same order in the same zone, then places the result at the head of its list, or at the
// tail when it is likely to merge soon (buddy_merge_likely) or when the caller asks (FPI_TO_TAIL).
//
// These functions do no accounting beyond the free lists and NR_FREE_PAGES, and set no frame
// owner: callers above (page_alloc.ts) own that. Nothing here allocates memory.

import { AssertionError } from "../core/assert.ts";
import * as limits from "../core/limits.ts";
import type { FrameTable } from "./frame_table.ts";
import * as frameTable from "./frame_table.ts";
import type { Zone } from "./zone.ts";

// Module-local copies of the constants the hot paths use. V8 (Node 20) re-reads an imported
// binding and checks it for the temporal dead zone at every use, which cost about 10 % of trace
// replay speed; a module-local const is folded into the compiled code.
const { MAX_PAGE_ORDER, MIGRATE_ISOLATE, MIGRATE_PCPTYPES, MIGRATE_TYPES } = limits;
const { pageblock_nr_pages, pageblock_order } = limits;
const { FRAME_BUDDY, FRAME_REPORTED, NO_PFN, ORDER_MASK, ORDER_MT_SHIFT } = frameTable;

/** fpi_t flags (mm/page_alloc.c): how __free_one_page places and reports the block. */
export const FPI_NONE = 0;
/** FPI_TO_TAIL: place the block at the tail of its list (v5.10). */
export const FPI_TO_TAIL = 1;
/** FPI_SKIP_REPORT_NOTIFY: do not arm free page reporting (putback of reported pages). */
export const FPI_SKIP_REPORT_NOTIFY = 2;

/** Models __add_to_free_list (mm/page_alloc.c): link a free block at the head or tail. */
export function addToFreeList(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  order: number,
  migratetype: number,
  toTail: boolean,
): void {
  if (toTail) addToFreeListTail(table, zone, pfn, order, migratetype);
  else addToFreeListHead(table, zone, pfn, order, migratetype);
}

// The two placements are separate functions so that the usual free inlines only the head case:
// V8 inlines by bytecode size, and a function holding both cases was too big to inline there.

/** __add_to_free_list(..., tail = false): list_add, allocated first. */
function addToFreeListHead(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  order: number,
  migratetype: number,
): void {
  const area = zone.freeArea;
  const index = order * MIGRATE_TYPES + migratetype;
  const head = area.head[index]!;
  table.state[pfn] = FRAME_BUDDY;
  table.order[pfn] = order | (migratetype << ORDER_MT_SHIFT);
  table.link0[pfn] = head;
  table.link1[pfn] = NO_PFN;
  if (head === NO_PFN) area.tail[index] = pfn;
  else table.link1[head] = pfn;
  area.head[index] = pfn;
  area.count[index]!++;
  area.nrFree[order]!++;
  zone.freePages += 1 << order;
}

/** __add_to_free_list(..., tail = true): list_add_tail, allocated last. */
function addToFreeListTail(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  order: number,
  migratetype: number,
): void {
  const area = zone.freeArea;
  const index = order * MIGRATE_TYPES + migratetype;
  const tail = area.tail[index]!;
  table.state[pfn] = FRAME_BUDDY;
  table.order[pfn] = order | (migratetype << ORDER_MT_SHIFT);
  table.link0[pfn] = NO_PFN;
  table.link1[pfn] = tail;
  if (tail === NO_PFN) area.head[index] = pfn;
  else table.link0[tail] = pfn;
  area.tail[index] = pfn;
  area.count[index]!++;
  area.nrFree[order]!++;
  zone.freePages += 1 << order;
}

/**
 * Models del_page_from_free_list (mm/page_alloc.c): unlink a free block from whichever list it is
 * on. Clears PageBuddy and PageReported, as the kernel does.
 */
export function delFromFreeList(table: FrameTable, zone: Zone, pfn: number): void {
  const area = zone.freeArea;
  const orderByte = table.order[pfn]!;
  const order = orderByte & ORDER_MASK;
  const index = order * MIGRATE_TYPES + (orderByte >>> ORDER_MT_SHIFT);
  const link0 = table.link0;
  const link1 = table.link1;
  const next = link0[pfn]!;
  const prev = link1[pfn]!;
  if (prev === NO_PFN) area.head[index] = next;
  else link0[prev] = next;
  if (next === NO_PFN) area.tail[index] = prev;
  else link1[next] = prev;
  table.state[pfn] = 0;
  area.count[index]!--;
  area.nrFree[order]!--;
  zone.freePages -= 1 << order;
}

/** Models move_to_free_list (mm/page_alloc.c): the same block onto another migratetype's list. */
export function moveToFreeList(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  migratetype: number,
): void {
  const order = table.order[pfn]! & ORDER_MASK;
  const reported = table.state[pfn]! & FRAME_REPORTED;
  delFromFreeList(table, zone, pfn);
  // list_move() to the head in 5.6; list_move_tail() since v5.10 (commit 4a3a485b1ed0).
  addToFreeList(table, zone, pfn, order, migratetype, zone.rules.placePagesToTail);
  table.state[pfn]! |= reported;
}

/**
 * Models expand() (mm/page_alloc.c): split a block of order `high` down to `low`, keeping the
 * lowest-addressed piece for the caller and putting each upper half at the head of its list.
 */
export function expand(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  low: number,
  high: number,
  migratetype: number,
): void {
  if (high <= low) return;
  const { state, order: orderBytes, link0, link1 } = table;
  const { head, tail, count, nrFree } = zone.freeArea;
  // Integer locals (|0) keep the loop on machine words in V8, not tagged values.
  pfn |= 0;
  high |= 0;
  const orderMt = migratetype << ORDER_MT_SHIFT;
  let size = 1 << high;
  let index = high * MIGRATE_TYPES + migratetype;
  // NR_FREE_PAGES gains the upper halves, 2^high - 2^low pages, in one update.
  zone.freePages += size - (1 << low);
  while (high > low) {
    high--;
    size >>>= 1;
    index -= MIGRATE_TYPES;
    // __add_to_free_list(&page[size], zone, high, migratetype, false): list_add at the head.
    const half = pfn + size;
    const first = head[index]!;
    state[half] = FRAME_BUDDY;
    orderBytes[half] = high | orderMt;
    link0[half] = first;
    link1[half] = NO_PFN;
    if (first === NO_PFN) tail[index] = half;
    else link1[first] = half;
    head[index] = half;
    count[index]!++;
    nrFree[high]!++;
  }
}

/**
 * Models __rmqueue_smallest (mm/page_alloc.c): the smallest free block of the wanted
 * migratetype at or above `order`, taken from the head of its list and split. Returns the pfn of
 * the allocated block, or NO_PFN.
 */
export function rmqueueSmallest(
  table: FrameTable,
  zone: Zone,
  order: number,
  migratetype: number,
): number {
  const area = zone.freeArea;
  const head = area.head;
  let currentOrder = order | 0;
  let index = currentOrder * MIGRATE_TYPES + migratetype;
  let pfn = NO_PFN;
  // get_page_from_free_area for each order upwards: the first block of the first non-empty list.
  for (; currentOrder <= MAX_PAGE_ORDER; currentOrder++, index += MIGRATE_TYPES) {
    pfn = head[index]!;
    if (pfn !== NO_PFN) break;
  }
  if (pfn === NO_PFN) return NO_PFN;
  // del_page_from_free_list of a list's first block: it has no previous entry.
  const next = table.link0[pfn]!;
  head[index] = next;
  if (next === NO_PFN) area.tail[index] = NO_PFN;
  else table.link1[next] = NO_PFN;
  table.state[pfn] = 0;
  area.count[index]!--;
  area.nrFree[currentOrder]!--;
  zone.freePages -= 1 << currentOrder;
  if (currentOrder > order) expand(table, zone, pfn, order, currentOrder, migratetype);
  return pfn;
}

/** migratetype_is_mergeable (include/linux/mmzone.h, v5.18): UNMOVABLE, MOVABLE, RECLAIMABLE. */
function migratetypeIsMergeable(migratetype: number): boolean {
  return migratetype < MIGRATE_PCPTYPES;
}

/** Whether two pageblocks of these types may merge into one free block (per version). */
function pageblocksMayMerge(zone: Zone, migratetype: number, buddyMigratetype: number): boolean {
  if (migratetype === buddyMigratetype) return true;
  if (zone.rules.mergeRuleMergeable) {
    // __free_one_page, v5.18+: both types must be migratetype_is_mergeable.
    return migratetypeIsMergeable(migratetype) && migratetypeIsMergeable(buddyMigratetype);
  }
  // __free_one_page, v5.6: only an isolated pageblock stops the merge.
  return migratetype !== MIGRATE_ISOLATE && buddyMigratetype !== MIGRATE_ISOLATE;
}

/** True when pfn heads a free block of exactly `order` inside the zone (page_is_buddy). */
function isFreeBuddy(table: FrameTable, zone: Zone, pfn: number, order: number): boolean {
  if (pfn < zone.startPfn || pfn >= zone.endPfn) return false;
  if ((table.state[pfn]! & FRAME_BUDDY) === 0) return false;
  return (table.order[pfn]! & ORDER_MASK) === order;
}

/**
 * Models buddy_merge_likely (mm/page_alloc.c; open-coded in __free_one_page in 5.6): if the
 * buddy of the next-higher block is free, this block will probably merge soon, so keep it at the
 * tail where it is allocated last. Not done for the two top orders.
 */
function buddyMergeLikely(table: FrameTable, zone: Zone, pfn: number, order: number): boolean {
  if (order >= MAX_PAGE_ORDER - 1) return false;
  const buddyPfn = pfn ^ (1 << order);
  const higherPfn = buddyPfn & pfn;
  const higherBuddyPfn = higherPfn ^ (1 << (order + 1));
  return isFreeBuddy(table, zone, higherBuddyPfn, order + 1);
}

/** The error for a misaligned free; a function so that the hot path builds no closure. */
function misalignedFree(pfn: number, order: number): AssertionError {
  return new AssertionError(`pfn ${pfn} not aligned to order ${order}`);
}

/**
 * At pageblock_order and above the buddy lies in another pageblock: whether the two may merge
 * under the version's rules, retyping the buddy's pageblock when freelist hygiene asks for it.
 * Called only when the two pageblocks' types differ: with equal types both rules allow the merge
 * and hygiene has nothing to retype.
 */
function mergeAcrossPageblocks(
  table: FrameTable,
  zone: Zone,
  buddyPfn: number,
  migratetype: number,
): boolean {
  const buddyMigratetype = table.pageblockMt[buddyPfn >>> pageblock_order]!;
  if (!pageblocksMayMerge(zone, migratetype, buddyMigratetype)) return false;
  // v6.10 freelist hygiene: "Match buddy type" so that a later expand() keeps lists true.
  if (zone.rules.freelistHygiene && buddyMigratetype !== migratetype) {
    table.pageblockMt[buddyPfn >>> pageblock_order] = migratetype;
  }
  return true;
}

/**
 * Models __free_one_page (mm/page_alloc.c): merge with free buddies as far as the version's
 * rules allow, then put the block on its list. `migratetype` is the pageblock's type as the
 * caller read it. Returns the order of the merged block.
 */
export function freeOnePage(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  order: number,
  migratetype: number,
  fpiFlags: number,
): number {
  if ((pfn & ((1 << order) - 1)) !== 0) throw misalignedFree(pfn, order);
  const { state, order: orderBytes, link0, link1 } = table;
  const { head, tail, count, nrFree } = zone.freeArea;
  // Integer locals (|0) keep the merge loop on machine words in V8, not tagged values.
  const startPfn = zone.startPfn | 0;
  const endPfn = zone.endPfn | 0;
  pfn |= 0;
  order |= 0;
  const freedPages = 1 << order;
  while (order < MAX_PAGE_ORDER) {
    const buddyPfn = pfn ^ (1 << order);
    // page_is_buddy: the buddy is in the zone, PageBuddy, and a block of the same order.
    if (buddyPfn < startPfn || buddyPfn >= endPfn) break;
    if ((state[buddyPfn]! & FRAME_BUDDY) === 0) break;
    const orderByte = orderBytes[buddyPfn]!;
    if ((orderByte & ORDER_MASK) !== order) break;
    if (order >= pageblock_order && !mayMergePageblocks(table, zone, buddyPfn, migratetype)) break;
    // del_page_from_free_list(buddy): unlink it from its (order, migratetype) list.
    const index = order * MIGRATE_TYPES + (orderByte >>> ORDER_MT_SHIFT);
    const next = link0[buddyPfn]!;
    const prev = link1[buddyPfn]!;
    if (prev === NO_PFN) head[index] = next;
    else link0[prev] = next;
    if (next === NO_PFN) tail[index] = prev;
    else link1[next] = prev;
    state[buddyPfn] = 0;
    count[index]!--;
    nrFree[order]!--;
    pfn &= buddyPfn;
    order++;
  }
  // NR_FREE_PAGES: the add below counts the merged block, whose buddies were already free.
  zone.freePages += freedPages - (1 << order);
  const toTail =
    (fpiFlags & FPI_TO_TAIL) !== 0 ||
    (zone.tailPlacement && buddyMergeLikely(table, zone, pfn, order));
  if (toTail) addToFreeListTail(table, zone, pfn, order, migratetype);
  else addToFreeListHead(table, zone, pfn, order, migratetype);
  if (zone.reportingOrder >= 0) reportingNotifyFree(zone, order, fpiFlags);
  return order;
}

/** page_reporting_notify_free(order): arm the reporting worker for blocks it would report. */
function reportingNotifyFree(zone: Zone, order: number, fpiFlags: number): void {
  if ((fpiFlags & FPI_SKIP_REPORT_NOTIFY) === 0 && order >= zone.reportingOrder) {
    zone.reportingRequested = true;
  }
}

/**
 * From pageblock_order up the buddy lies in another pageblock (__free_one_page): with the same
 * type they merge; otherwise the version's rules decide (mergeAcrossPageblocks).
 */
function mayMergePageblocks(
  table: FrameTable,
  zone: Zone,
  buddyPfn: number,
  migratetype: number,
): boolean {
  if (table.pageblockMt[buddyPfn >>> pageblock_order] === migratetype) return true;
  return mergeAcrossPageblocks(table, zone, buddyPfn, migratetype);
}

/**
 * Models move_freepages_block (mm/page_alloc.c): move every free block inside the pageblock
 * that holds `pfn` onto `migratetype`'s lists. Returns the number of free pages moved.
 */
export function moveFreepagesBlock(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  migratetype: number,
): number {
  const blockStart = pfn & ~(pageblock_nr_pages - 1);
  const start = Math.max(blockStart, zone.startPfn);
  const end = Math.min(blockStart + pageblock_nr_pages, zone.endPfn);
  let moved = 0;
  let cursor = start;
  while (cursor < end) {
    if ((table.state[cursor]! & FRAME_BUDDY) === 0) {
      cursor++;
      continue;
    }
    const order = table.order[cursor]! & ORDER_MASK;
    moveToFreeList(table, zone, cursor, migratetype);
    moved += 1 << order;
    cursor += 1 << order;
  }
  return moved;
}
