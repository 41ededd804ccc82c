// Per-cpu page lists (mm/page_alloc.c: struct per_cpu_pages, rmqueue_pcplist, rmqueue_bulk,
// free_unref_page_commit, free_pcppages_bulk, nr_pcp_free, nr_pcp_high, decay_pcp_high).
//
// Theory of operation. Small allocations go through a per-cpu cache: an empty list is refilled
// with `batch` blocks from the buddy allocator (appended, so they come out in the order the
// buddy gave them), frees push on the head (hot), and once the cache holds `high` pages the
// oldest pages (from the tails) go back to the buddy allocator, where they merge. Pages on these
// lists are not in NR_FREE_PAGES (MemFree) and cannot merge or be reported: the cache delays
// coalescing. How much a drain frees is where the versions differ:
// - 5.6: order 0 only; high = 6 * batch; each drain frees `batch` pages.
// - 5.14..6.6 (6.1): orders 0..PAGE_ALLOC_COSTLY_ORDER and pageblock_order; high = the low
//   watermark shared by the CPUs; consecutive drains without an allocation double in size
//   (free_factor), and an order 1..3 free while free_factor is set empties the whole cache
//   (free_high). After a large free (a deleted file) the next small high-order free in the kernel
//   (a slab page, an xarray node's slab) hands every cached page back.
// - 6.7+ (6.18): high floats between high_min (the low watermark per CPU) and high_max
//   (managed / 8 per CPU): it grows while frees overflow it and the zone is above its high
//   watermark, shrinks when the zone falls below it (ZONE_BELOW_HIGH), and vmstat refresh decays
//   it by 1/8 each second (decay_pcp_high); drains scale with free_count, refills with
//   alloc_factor.

import { assert } from "../core/assert.ts";
import {
  CONFIG_PCP_BATCH_SCALE_MAX,
  MIGRATE_ISOLATE,
  MIGRATE_MOVABLE,
  MIGRATE_PCPTYPES,
  PAGE_ALLOC_COSTLY_ORDER,
  pageblock_order,
} from "../core/limits.ts";
import { FPI_NONE, freeOnePage } from "./buddy.ts";
import { FRAME_PCP, type FrameTable, NO_PFN, ORDER_MASK, ORDER_MT_SHIFT } from "./frame_table.ts";
import type { KernelRules } from "./kernel_version.ts";
import { zoneWatermarkOk } from "./watermarks.ts";
import { WMARK_HIGH, WMARK_LOW, type Zone, ZoneType } from "./zone.ts";

/** NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1) (mmzone.h, v5.14). */
const NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1);
/** NR_PCP_THP = 2: one unmovable and one movable THP list (include/linux/mmzone.h). */
const NR_PCP_THP = 2;
/** NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP = 14 (include/linux/mmzone.h). */
const NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP;
/** MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8: high_max is managed / 8 (mm/page_alloc.c, v6.7). */
const MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8;

/** How a kernel sizes its drains (see the header). */
enum PcpMode {
  Classic = 0,
  FreeFactor = 1,
  AutoTune = 2,
}

export interface PcpSet {
  /** Pages on all lists (pcp->count). */
  count: number;
  /** Drain when count reaches this (pcp->high; 6.7+ kept within [highMin, highMax]). */
  high: number;
  /** pcp->high_min (v6.7); before, equal to `high`. */
  highMin: number;
  /** pcp->high_max (v6.7); before, equal to `high`. */
  highMax: number;
  /** Pages moved per refill or drain (pcp->batch). */
  batch: number;
  /** pcp->free_factor (5.14..6.6) or pcp->free_count (6.7+): frees since the last allocation. */
  freeFactor: number;
  /** pcp->alloc_factor (v6.7): refills since the last free. */
  allocFactor: number;
  /** PCPF_PREV_FREE_HIGH_ORDER (v6.7): the previous free was of order 1..3. */
  prevFreeHighOrder: boolean;
  readonly mode: PcpMode;
  readonly highOrderLists: boolean;
  /** Drained pages take the pageblock's current type (v6.10 hygiene), not the type at free time. */
  readonly drainWithPageblockType: boolean;
  readonly head: Int32Array;
  readonly tail: Int32Array;
}

export function createPcpSet(rules: KernelRules): PcpSet {
  const lists = rules.highOrderPcp ? NR_PCP_LISTS : MIGRATE_PCPTYPES;
  const mode = rules.pcpHighAutoTune
    ? PcpMode.AutoTune
    : rules.pcpFreeFactor
      ? PcpMode.FreeFactor
      : PcpMode.Classic;
  return {
    count: 0,
    high: 0,
    highMin: 0,
    highMax: 0,
    batch: 1,
    freeFactor: 0,
    allocFactor: 0,
    prevFreeHighOrder: false,
    mode,
    highOrderLists: rules.highOrderPcp,
    drainWithPageblockType: rules.freelistHygiene,
    head: new Int32Array(lists).fill(NO_PFN),
    tail: new Int32Array(lists).fill(NO_PFN),
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

/** Models zone_highsize (v5.14+): a share of the low watermark (or managed / fraction) per CPU. */
function zoneHighsize(zone: Zone, batch: number, cpus: number, highFraction: number): number {
  const totalPages =
    highFraction === 0 ? zone.watermark[WMARK_LOW]! : Math.floor(zone.managedPages / highFraction);
  return Math.max(Math.floor(totalPages / cpus), batch << 2);
}

/**
 * Models pageset_set_high_and_batch (5.6: high = 6 * batch), zone_set_pageset_high_and_batch
 * (5.14..6.6: high = zone_highsize, the low watermark shared by the zone's CPUs, at least
 * 4 * batch) and its 6.7 form (high_min from the low watermark, high_max from managed / 8).
 * setup_per_zone_wmarks runs it again whenever the watermarks change.
 */
export function setupPcpHighAndBatch(
  set: PcpSet,
  zone: Zone,
  cpus: number,
  rules: KernelRules,
): void {
  set.batch = zoneBatchsize(zone);
  if (!rules.highOrderPcp) {
    set.high = set.highMin = set.highMax = 6 * set.batch;
    return;
  }
  set.highMin = zoneHighsize(zone, set.batch, cpus, 0);
  if (set.mode !== PcpMode.AutoTune) {
    set.high = set.highMax = set.highMin;
    return;
  }
  set.highMax = zoneHighsize(zone, set.batch, cpus, MIN_PERCPU_PAGELIST_HIGH_FRACTION);
  set.high = Math.min(Math.max(set.high, set.highMin), set.highMax);
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
 * Models nr_pcp_alloc (v6.7): order-0 refills double while allocations run without frees
 * (alloc_factor), bounded by the room left below high; high grows by the refill while the zone
 * is above its high watermark.
 */
function nrPcpAlloc(set: PcpSet, zone: Zone, order: number): number {
  const baseBatch = set.batch;
  set.high = Math.min(Math.max(set.high, set.highMin), set.highMax);
  if (set.high < baseBatch) return 1;
  let batch = order === 0 ? baseBatch << set.allocFactor : baseBatch;
  if (set.highMin !== set.highMax && !zone.belowHigh) {
    set.high = Math.min(set.high + batch, set.highMax);
  }
  const high = set.high;
  if (order === 0) {
    const maxNrAlloc = Math.max(high - set.count - baseBatch, baseBatch);
    if (batch <= maxNrAlloc && set.allocFactor < CONFIG_PCP_BATCH_SCALE_MAX) set.allocFactor++;
    batch = Math.min(batch, maxNrAlloc);
  }
  return batch > 1 ? Math.max(batch >> order, 2) : batch;
}

/**
 * Models rmqueue_pcplist + __rmqueue_pcplist + rmqueue_bulk: an allocation halves free_factor
 * (free_count on 6.7+), then takes the head of the (order, migratetype) list, refilling an empty
 * list from the buddy allocator (batch, max(batch >> order, 2) for order > 0, v5.14).
 */
export function pcpAlloc(
  table: FrameTable,
  zone: Zone,
  set: PcpSet,
  order: number,
  migratetype: number,
  rmqueue: RmqueueBuddy,
): number {
  set.freeFactor >>= 1;
  const index = listIndex(order, migratetype);
  if (set.head[index] === NO_PFN) {
    let count = set.batch;
    if (set.mode === PcpMode.AutoTune) count = nrPcpAlloc(set, zone, order);
    else if (count > 1 && set.highOrderLists) count = Math.max(count >> order, 2);
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

/** Models nr_pcp_high (5.14..6.6): 0 to empty the list (free_high), 4 * batch under kswapd. */
function nrPcpHighFreeFactor(set: PcpSet, zone: Zone, freeHigh: boolean): number {
  if (set.high === 0 || freeHigh) return 0;
  if (!zone.reclaimActive) return set.high;
  return Math.min(set.batch << 2, set.high);
}

/** Models nr_pcp_free (5.14..6.6): batch << free_factor, between batch and high - batch. */
function nrPcpFreeFactor(set: PcpSet, high: number, freeHigh: boolean): number {
  if (freeHigh) return set.count;
  const batch = set.batch;
  if (high < batch) return 1;
  const maxNrFree = high - batch;
  const scaled = batch * 2 ** set.freeFactor;
  if (scaled < maxNrFree) set.freeFactor++;
  return Math.min(Math.max(scaled, batch), maxNrFree);
}

/**
 * Models nr_pcp_high (v6.7): clamps high to [high_min, high_max]; a free_high drain lowers it by
 * batch << CONFIG_PCP_BATCH_SCALE_MAX; kswapd and ZONE_BELOW_HIGH shrink it by free_count; a full
 * list with the zone above its high watermark raises it to hold the next batch freed.
 */
function nrPcpHighAutoTune(set: PcpSet, zone: Zone, freeHigh: boolean): number {
  const batch = set.batch;
  const { highMin, highMax } = set;
  set.high = Math.min(Math.max(set.high, highMin), highMax);
  let high = set.high;
  if (high === 0) return 0;
  if (freeHigh) {
    set.high = Math.max(high - (batch << CONFIG_PCP_BATCH_SCALE_MAX), highMin);
    return 0;
  }
  if (zone.reclaimActive) {
    set.high = Math.max(high - Math.max(set.freeFactor, batch), highMin);
    return Math.min(batch << 2, set.high);
  }
  if (highMin === highMax) return high;
  if (zone.belowHigh) {
    set.high = Math.max(high - Math.max(set.freeFactor, batch), highMin);
    high = Math.max(set.count, highMin);
  } else if (set.count >= high) {
    const needHigh = set.freeFactor + batch;
    if (set.high < needHigh) set.high = Math.min(Math.max(needHigh, highMin), highMax);
  }
  return high;
}

/** Models nr_pcp_free (v6.7): the run of frees (free_count), between batch and high - batch. */
function nrPcpFreeAutoTune(set: PcpSet, high: number, freeHigh: boolean): number {
  const batch = set.batch;
  if (freeHigh) return Math.min(set.count, batch << CONFIG_PCP_BATCH_SCALE_MAX);
  if (high < batch) return 1;
  return Math.min(Math.max(set.freeFactor, batch), high - batch);
}

/**
 * Models free_unref_page_commit: push on the head (HIGHATOMIC and CMA pages on the MOVABLE
 * list, isolated ones straight to the buddy allocator), then drain once count reaches high, by
 * as much as the version's rules say (see the header).
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
  const pindex = listIndex(order, listType);
  const smallHighOrder = order > 0 && order <= PAGE_ALLOC_COSTLY_ORDER;
  if (set.mode === PcpMode.Classic) {
    pushHead(table, set, pfn, order, listType);
    // free_unref_page_commit (5.6): pcp->count >= pcp->high frees pcp->batch.
    if (set.count >= set.high) freePcppagesBulk(table, zone, set, set.batch, pindex);
    return;
  }
  if (set.mode === PcpMode.FreeFactor) {
    pushHead(table, set, pfn, order, listType);
    const freeHigh = set.freeFactor > 0 && smallHighOrder;
    const high = nrPcpHighFreeFactor(set, zone, freeHigh);
    if (set.count >= high) {
      freePcppagesBulk(table, zone, set, nrPcpFreeFactor(set, high, freeHigh), pindex);
    }
    return;
  }
  // free_frozen_page_commit (v6.7+): alloc_factor halves, free_count counts the run of frees.
  set.allocFactor >>= 1;
  pushHead(table, set, pfn, order, listType);
  const batch = set.batch;
  let freeHigh = false;
  if (smallHighOrder) {
    // PCPF_FREE_HIGH_BATCH is assumed set (an LLC slice per CPU larger than 3 * batch pages).
    freeHigh =
      set.freeFactor >= batch + (set.highMin >> 1) && set.prevFreeHighOrder && set.count >= batch;
    set.prevFreeHighOrder = true;
  } else {
    set.prevFreeHighOrder = false;
  }
  if (set.freeFactor < batch << CONFIG_PCP_BATCH_SCALE_MAX) set.freeFactor += 1 << order;
  const high = nrPcpHighAutoTune(set, zone, freeHigh);
  if (set.count < high) return;
  freePcppagesBulk(table, zone, set, nrPcpFreeAutoTune(set, high, freeHigh), pindex);
  if (zone.belowHigh && zoneAboveHighWmark(zone)) zone.belowHigh = false;
}

/** zone_watermark_ok(zone, 0, high_wmark_pages(zone), ZONE_MOVABLE, 0). */
function zoneAboveHighWmark(zone: Zone): boolean {
  return zoneWatermarkOk(zone, 0, zone.watermark[WMARK_HIGH]!, ZoneType.Movable, zone.freePages);
}

/**
 * Models free_pcppages_bulk: return `count` pages to the buddy allocator, oldest first (list
 * tails). 5.6 visits its three lists round robin from MIGRATE_MOVABLE, taking more from fuller
 * lists as empty ones are passed (batch_free); 5.14+ start at the list just freed to (`pindex`)
 * and empty each list before moving to the next.
 */
export function freePcppagesBulk(
  table: FrameTable,
  zone: Zone,
  set: PcpSet,
  count: number,
  pindex: number,
): void {
  let remaining = Math.min(count, set.count);
  const lists = set.head.length;
  if (set.mode === PcpMode.Classic) {
    let batchFree = 0;
    let list = 0;
    while (remaining > 0) {
      do {
        batchFree++;
        list = (list + 1) % lists;
      } while (set.tail[list] === NO_PFN);
      if (batchFree === lists) batchFree = remaining;
      do {
        remaining -= freeTail(table, zone, set, list);
        batchFree--;
      } while (remaining > 0 && batchFree > 0 && set.tail[list] !== NO_PFN);
    }
    return;
  }
  let list = pindex - 1;
  while (remaining > 0) {
    do {
      list = list + 1 > lists - 1 ? 0 : list + 1;
    } while (set.tail[list] === NO_PFN);
    do {
      remaining -= freeTail(table, zone, set, list);
    } while (remaining > 0 && set.tail[list] !== NO_PFN);
  }
  assert(remaining <= 0 || set.count === 0, "pcp drain stopped with pages left");
}

/** The oldest block of one list back to the buddy allocator; returns its pages. */
function freeTail(table: FrameTable, zone: Zone, set: PcpSet, list: number): number {
  const pfn = set.tail[list]!;
  const orderByte = table.order[pfn]!;
  const order = orderByte & ORDER_MASK;
  unlink(table, set, pfn, list);
  // get_pcppage_migratetype (5.6, 6.1): the type recorded at free time.
  const mt = set.drainWithPageblockType
    ? table.pageblockMt[pfn >>> pageblock_order]!
    : orderByte >>> ORDER_MT_SHIFT;
  freeOnePage(table, zone, pfn, order, mt, FPI_NONE);
  return 1 << order;
}

/** Models drain_pages_zone: everything on this CPU's lists back to the buddy allocator. */
export function drainPcp(table: FrameTable, zone: Zone, set: PcpSet): void {
  if (set.count > 0) freePcppagesBulk(table, zone, set, set.count, 0);
}

/**
 * Models decay_pcp_high (v6.7), run by vmstat refresh every second for every zone of the CPU:
 * high falls by an eighth (at most to high_min, at least to count - batch << 5) and the list is
 * drained down to it. Returns true while there is more decay to do.
 */
export function decayPcpHigh(table: FrameTable, zone: Zone, set: PcpSet): boolean {
  if (set.mode !== PcpMode.AutoTune) return false;
  let todo = false;
  if (set.high > set.highMin) {
    set.high = Math.max(
      set.count - (set.batch << CONFIG_PCP_BATCH_SCALE_MAX),
      set.high - (set.high >> 3),
      set.highMin,
    );
    if (set.high > set.highMin) todo = true;
  }
  const toDrain = set.count - set.high;
  if (toDrain > 0) {
    freePcppagesBulk(table, zone, set, toDrain, 0);
    todo = true;
  }
  return todo;
}
