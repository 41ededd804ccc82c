// External fragmentation indices (mm/vmstat.c: fill_contig_page_info, __fragmentation_index,
// unusable_free_index, extfrag_for_order), with the kernel's integer arithmetic.
//
// Theory of operation. All three read only the buddy free lists of one zone: nr_free per order
// gives the free blocks, the free pages (blocks << order) and the blocks usable for a request of
// `order` (a block of order o >= order holds 2^(o - order) of them). Pages on per-cpu lists are
// not in nr_free and are not counted, as in the kernel.
//
// - fragmentationIndex (debugfs extfrag/extfrag_index, compaction_suitable): -1000 when the
//   request would succeed, else 0..1000 in thousandths; near 0 the failure is a lack of memory,
//   near 1000 it is fragmentation.
// - unusableFreeIndex (debugfs extfrag/unusable_index): thousandths of free memory that is in
//   blocks too small for the order.
// - extfragForOrder (proactive compaction's score, v5.9+): the same ratio in percent.
//
// Compaction (compaction.ts) uses fragmentationIndex and extfragForOrder as the kernel
// does; these functions allocate nothing.

import { assert } from "../core/assert.ts";
import { MAX_PAGE_ORDER } from "../core/limits.ts";
import type { Zone } from "./zone.ts";

/** struct contig_page_info (mm/vmstat.c). */
export interface ContigPageInfo {
  /** Free pages in the buddy lists: sum of nr_free[o] << o. */
  freePages: number;
  /** Free blocks of every order: sum of nr_free[o]. */
  freeBlocksTotal: number;
  /** Blocks of the requested order the free blocks could supply: sum over o >= order. */
  freeBlocksSuitable: number;
}

export function createContigPageInfo(): ContigPageInfo {
  return { freePages: 0, freeBlocksTotal: 0, freeBlocksSuitable: 0 };
}

/** Reused by the functions below so that they allocate nothing. */
const scratchInfo: ContigPageInfo = createContigPageInfo();

function assertOrder(order: number): void {
  assert(Number.isInteger(order), () => `order ${order} is not an integer`);
  assert(order >= 0 && order <= MAX_PAGE_ORDER, () => `order ${order} out of range`);
}

/** Models fill_contig_page_info (mm/vmstat.c): free pages and blocks of a zone for `order`. */
export function fillContigPageInfo(zone: Zone, suitableOrder: number, info: ContigPageInfo): void {
  assertOrder(suitableOrder);
  const nrFree = zone.freeArea.nrFree;
  info.freePages = 0;
  info.freeBlocksTotal = 0;
  info.freeBlocksSuitable = 0;
  for (let order = 0; order <= MAX_PAGE_ORDER; order++) {
    const blocks = nrFree[order]!;
    info.freeBlocksTotal += blocks;
    info.freePages += blocks * 2 ** order;
    if (order >= suitableOrder) info.freeBlocksSuitable += blocks * 2 ** (order - suitableOrder);
  }
  assert(info.freePages >= info.freeBlocksTotal, "free pages fewer than free blocks");
}

/**
 * Models __fragmentation_index (mm/vmstat.c): 0 with no free blocks, -1000 when a suitable block
 * exists, else 1000 - (1000 + free_pages * 1000 / requested) / free_blocks_total, both divisions
 * truncating (div_u64).
 */
export function fragmentationIndexOf(order: number, info: ContigPageInfo): number {
  assertOrder(order);
  const requested = 2 ** order;
  if (info.freeBlocksTotal === 0) return 0;
  if (info.freeBlocksSuitable > 0) return -1000;
  const scaled = Math.floor((info.freePages * 1000) / requested);
  const index = 1000 - Math.floor((1000 + scaled) / info.freeBlocksTotal);
  assert(index >= 0 && index <= 1000, () => `fragmentation index ${index} out of range`);
  return index;
}

/** Models fragmentation_index (mm/vmstat.c), used by compaction_suitable. */
export function fragmentationIndex(zone: Zone, order: number): number {
  fillContigPageInfo(zone, order, scratchInfo);
  return fragmentationIndexOf(order, scratchInfo);
}

/**
 * Models unusable_free_index (mm/vmstat.c): (free_pages - suitable << order) * 1000 / free_pages,
 * truncated; 1000 when nothing is free ("all free memory is unusable").
 */
export function unusableFreeIndex(zone: Zone, order: number): number {
  fillContigPageInfo(zone, order, scratchInfo);
  const info = scratchInfo;
  if (info.freePages === 0) return 1000;
  const unusable = info.freePages - info.freeBlocksSuitable * 2 ** order;
  assert(unusable >= 0, "suitable blocks hold more pages than are free");
  return Math.floor((unusable * 1000) / info.freePages);
}

/**
 * Models extfrag_for_order (mm/vmstat.c, v5.9): the percentage of free memory in blocks smaller
 * than `order`; 0 when nothing is free. Proactive compaction's zone score is this at order 9.
 */
export function extfragForOrder(zone: Zone, order: number): number {
  fillContigPageInfo(zone, order, scratchInfo);
  const info = scratchInfo;
  if (info.freePages === 0) return 0;
  const unusable = info.freePages - info.freeBlocksSuitable * 2 ** order;
  assert(unusable >= 0, "suitable blocks hold more pages than are free");
  return Math.floor((unusable * 100) / info.freePages);
}

/**
 * An index in thousandths as the kernel prints it: "%d.%03d" (unusable_show_print) or, with
 * width 2, "%2d.%03d" (extfrag_show_print), C's truncating division and remainder included.
 */
export function formatThousandths(index: number, width = 0): string {
  assert(Number.isInteger(index), () => `index ${index} is not an integer`);
  const whole = String(Math.trunc(index / 1000)).padStart(width, " ");
  return `${whole}.${String(index % 1000).padStart(3, "0")}`;
}
