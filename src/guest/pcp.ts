// Per-cpu page lists (mm/page_alloc.c: struct per_cpu_pages, rmqueue_pcplist, rmqueue_bulk,
// free_unref_page_commit, free_pcppages_bulk).
//
// Theory of operation. Small allocations go through a per-cpu cache: an empty list is refilled
// with `batch` blocks from the buddy allocator (appended, so they come out in the order the
// buddy gave them), frees push on the head (hot), and once the cache holds `high` pages the
// oldest `batch` pages (from the tails) go back to the buddy allocator, where they merge. Pages
// on these lists are not in NR_FREE_PAGES and cannot merge: the cache delays coalescing.
// 5.6 caches order 0 only; from 5.14 orders 1..PAGE_ALLOC_COSTLY_ORDER and pageblock_order too.

import { assert } from "../core/assert.ts";
import {
  MIGRATE_ISOLATE,
  MIGRATE_MOVABLE,
  MIGRATE_PCPTYPES,
  PAGE_ALLOC_COSTLY_ORDER,
  pageblock_order,
} from "../core/limits.ts";
import { FPI_NONE, freeOnePage } from "./buddy.ts";
import { FRAME_PCP, type FrameTable, NO_PFN, ORDER_MASK, ORDER_MT_SHIFT } from "./frame_table.ts";
import type { KernelRules } from "./kernel_version.ts";
import { WMARK_LOW, type Zone } from "./zone.ts";

/** NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1) (mmzone.h, v5.14). */
const NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1);
/** NR_PCP_THP = 2: one unmovable and one movable THP list (include/linux/mmzone.h). */
const NR_PCP_THP = 2;
/** NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP = 14 (include/linux/mmzone.h). */
const NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP;

export interface PcpSet {
  /** Pages on all lists (pcp->count). */
  count: number;
  /** Drain when count reaches this (pcp->high). */
  high: number;
  /** Pages moved per refill or drain (pcp->batch). */
  batch: number;
  readonly highOrderLists: boolean;
  /** Drained pages take the pageblock's current type (v6.10 hygiene), not the type at free time. */
  readonly drainWithPageblockType: boolean;
  readonly head: Int32Array;
  readonly tail: Int32Array;
  /** The list free_pcppages_bulk drains next (round robin). */
  drainCursor: number;
}

export function createPcpSet(rules: KernelRules): PcpSet {
  const lists = rules.highOrderPcp ? NR_PCP_LISTS : MIGRATE_PCPTYPES;
  return {
    count: 0,
    high: 0,
    batch: 1,
    highOrderLists: rules.highOrderPcp,
    drainWithPageblockType: rules.freelistHygiene,
    head: new Int32Array(lists).fill(NO_PFN),
    tail: new Int32Array(lists).fill(NO_PFN),
    drainCursor: 0,
  };
}

/** Models pcp_allowed_order (v5.14+); only order 0 before. */
export function pcpAllowedOrder(set: PcpSet, order: number): boolean {
  if (!set.highOrderLists) return order === 0;
  return order <= PAGE_ALLOC_COSTLY_ORDER || order === pageblock_order;
}

/** Models order_to_pindex (mm/page_alloc.c, v5.14): the list of (migratetype, order). */
function listIndex(order: number, migratetype: number): number {
  if (order > PAGE_ALLOC_COSTLY_ORDER) {
    return NR_LOWORDER_PCP_LISTS + (migratetype === MIGRATE_MOVABLE ? 1 : 0);
  }
  return MIGRATE_PCPTYPES * order + migratetype;
}

/**
 * Models zone_batchsize (mm/page_alloc.c, the same from 5.6 to 6.18): about 0.1 % of the zone,
 * "no more than a meg" (256 pages), divided by 4 and rounded down to 2^n - 1; at least 1.
 */
export function zoneBatchsize(zone: Zone): number {
  let batch = Math.min(Math.floor(zone.managedPages / 1024), 256);
  batch = Math.floor(batch / 4);
  if (batch < 1) batch = 1;
  const value = batch + (batch >> 1);
  batch = 2 ** Math.floor(Math.log2(value)) - 1;
  return Math.max(1, batch);
}

/**
 * Models pageset_set_high_and_batch (5.6: high = 6 * batch) and zone_highsize (v5.14+: the low
 * watermark shared by the zone's CPUs, at least 4 * batch).
 */
export function setupPcpHighAndBatch(
  set: PcpSet,
  zone: Zone,
  cpus: number,
  rules: KernelRules,
): void {
  set.batch = zoneBatchsize(zone);
  if (!rules.highOrderPcp) {
    set.high = 6 * set.batch;
    return;
  }
  set.high = Math.max(Math.floor(zone.watermark[WMARK_LOW]! / cpus), set.batch * 4);
}

function pushHead(table: FrameTable, set: PcpSet, pfn: number, order: number, mt: number): void {
  const index = listIndex(order, mt);
  const head = set.head[index]!;
  table.state[pfn] = FRAME_PCP;
  table.order[pfn] = order | (mt << ORDER_MT_SHIFT);
  table.link1[pfn] = NO_PFN;
  table.link0[pfn] = head;
  if (head === NO_PFN) set.tail[index] = pfn;
  else table.link1[head] = pfn;
  set.head[index] = pfn;
  set.count += 1 << order;
}

function pushTail(table: FrameTable, set: PcpSet, pfn: number, order: number, mt: number): void {
  const index = listIndex(order, mt);
  const tail = set.tail[index]!;
  table.state[pfn] = FRAME_PCP;
  table.order[pfn] = order | (mt << ORDER_MT_SHIFT);
  table.link0[pfn] = NO_PFN;
  table.link1[pfn] = tail;
  if (tail === NO_PFN) set.head[index] = pfn;
  else table.link0[tail] = pfn;
  set.tail[index] = pfn;
  set.count += 1 << order;
}

function unlink(table: FrameTable, set: PcpSet, pfn: number, index: number): void {
  const next = table.link0[pfn]!;
  const prev = table.link1[pfn]!;
  if (prev === NO_PFN) set.head[index] = next;
  else table.link0[prev] = next;
  if (next === NO_PFN) set.tail[index] = prev;
  else table.link1[next] = prev;
  table.state[pfn] = 0;
  set.count -= 1 << (table.order[pfn]! & ORDER_MASK);
}

/** A source of buddy blocks for refills (__rmqueue), supplied by page_alloc. */
export type RmqueueBuddy = (zone: Zone, order: number, migratetype: number) => number;

/**
 * Models rmqueue_pcplist + rmqueue_bulk: take the head of the (order, migratetype) list,
 * refilling an empty list with batch blocks (max(batch >> order, 2) for order > 0, v5.14).
 */
export function pcpAlloc(
  table: FrameTable,
  zone: Zone,
  set: PcpSet,
  order: number,
  migratetype: number,
  rmqueue: RmqueueBuddy,
): number {
  const index = listIndex(order, migratetype);
  if (set.head[index] === NO_PFN) {
    const count = order === 0 ? set.batch : Math.max(set.batch >> order, 2);
    for (let i = 0; i < count; i++) {
      const pfn = rmqueue(zone, order, migratetype);
      if (pfn === NO_PFN) break;
      pushTail(table, set, pfn, order, migratetype);
    }
  }
  const pfn = set.head[index]!;
  if (pfn === NO_PFN) return NO_PFN;
  unlink(table, set, pfn, index);
  return pfn;
}

/**
 * Models free_unref_page_commit: push on the head; HIGHATOMIC and CMA pages go on the MOVABLE
 * list, isolated ones straight to the buddy allocator; drain `batch` pages once count >= high.
 */
export function pcpFree(
  table: FrameTable,
  zone: Zone,
  set: PcpSet,
  pfn: number,
  order: number,
  migratetype: number,
): void {
  if (migratetype === MIGRATE_ISOLATE) {
    freeOnePage(table, zone, pfn, order, migratetype, FPI_NONE);
    return;
  }
  const listType = migratetype >= MIGRATE_PCPTYPES ? MIGRATE_MOVABLE : migratetype;
  pushHead(table, set, pfn, order, listType);
  if (set.count >= set.high) freePcppagesBulk(table, zone, set, set.batch);
}

/**
 * Models free_pcppages_bulk: return `count` pages to the buddy allocator, oldest first (list
 * tails), visiting the lists round robin. Simplified: the kernel's free_factor (6.1) and
 * free_count (6.7+) scaling of the drain size are not modelled; each drain frees `batch`.
 */
export function freePcppagesBulk(table: FrameTable, zone: Zone, set: PcpSet, count: number): void {
  const lists = set.head.length;
  let remaining = Math.min(count, set.count);
  let emptyVisits = 0;
  while (remaining > 0 && emptyVisits < lists) {
    const index = set.drainCursor;
    set.drainCursor = (set.drainCursor + 1) % lists;
    const pfn = set.tail[index]!;
    if (pfn === NO_PFN) {
      emptyVisits++;
      continue;
    }
    emptyVisits = 0;
    const orderByte = table.order[pfn]!;
    const order = orderByte & ORDER_MASK;
    unlink(table, set, pfn, index);
    // get_pcppage_migratetype (5.6, 6.1): the type recorded at free time.
    const mt = set.drainWithPageblockType
      ? table.pageblockMt[pfn >>> pageblock_order]!
      : orderByte >>> ORDER_MT_SHIFT;
    freeOnePage(table, zone, pfn, order, mt, FPI_NONE);
    remaining -= 1 << order;
  }
  assert(remaining <= 0 || set.count === 0, "pcp drain stopped with pages left");
}

/** Models drain_pages_zone: everything on this CPU's lists back to the buddy allocator. */
export function drainPcp(table: FrameTable, zone: Zone, set: PcpSet): void {
  freePcppagesBulk(table, zone, set, set.count);
}
