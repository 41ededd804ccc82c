// The zoned page allocator's entry points (mm/page_alloc.c: __alloc_pages,
// get_page_from_freelist, rmqueue, __rmqueue, __alloc_pages_slowpath, free_the_page).
//
// Theory of operation. A request names an order and GFP flags. The fast path walks the zones
// from the highest the flags allow down to DMA, takes the first whose free pages clear the LOW
// watermark (plus the lowmem reserve kept for higher zones), and takes a block from its per-cpu
// list or buddy lists, falling back to other migratetypes when its own are empty. When no zone
// clears LOW, the slow path wakes kswapd, retries against MIN, and, if the caller may block,
// compacts and reclaims directly before giving up. Nothing here invents an OOM kill: a request
// that cannot be met fails and is counted.

import { assert } from "../core/assert.ts";
import { MIGRATE_MOVABLE, PAGE_ALLOC_COSTLY_ORDER, pageblock_order } from "../core/limits.ts";
import { FPI_NONE, freeOnePage, rmqueueSmallest } from "./buddy.ts";
import { CompactResult, compactionDeferReset } from "./compaction_defer.ts";
import {
  ALLOC_NOFRAGMENT,
  type FallbackResult,
  rmqueueClaim,
  rmqueueFallback,
  rmqueueSteal,
} from "./fallback.ts";
import { FRAME_TAIL, FrameKind, NO_PFN } from "./frame_table.ts";
import {
  __GFP_DIRECT_RECLAIM,
  __GFP_DMA32,
  __GFP_HIGHMEM,
  __GFP_KSWAPD_RECLAIM,
  __GFP_MOVABLE,
  __GFP_NORETRY,
  __GFP_RETRY_MAYFAIL,
  gfpMigratetype,
} from "./gfp.ts";
import { type GuestMemory, zoneIndexOf, zoneOfPfn } from "./guest_memory.ts";
import { decayPcpHigh, drainPcp, pcpAlloc, pcpAllowedOrder, pcpFree } from "./pcp.ts";
import { VmEvent } from "./vm_event.ts";
import { wmarkPages, zoneWatermarkOk } from "./watermarks.ts";
import { WMARK_HIGH, WMARK_LOW, WMARK_MIN, type Zone, ZoneType } from "./zone.ts";

/** ALLOC_KSWAPD (mm/internal.h): wake kswapd on a boosted watermark. */
const ALLOC_KSWAPD = 0x800;
/** MAX_RECLAIM_RETRIES / MAX_COMPACT_RETRIES (mm/page_alloc.c). */
const MAX_COMPACT_RETRIES = 16;
/** enum compact_priority (include/linux/compaction.h): lower is stronger. */
export const COMPACT_PRIO_SYNC_FULL = 0;
export const COMPACT_PRIO_SYNC_LIGHT = 1;
export const COMPACT_PRIO_ASYNC = 2;
/** SWAP_CLUSTER_MAX (include/linux/swap.h): pages reclaimed per direct reclaim round. */
export const SWAP_CLUSTER_MAX = 32;

const fallbackResult: FallbackResult = { boosted: false };

/**
 * The highest zone a request may use (gfp_zone, include/linux/gfp.h GFP_ZONE_TABLE): only
 * __GFP_HIGHMEM | __GFP_MOVABLE (GFP_HIGHUSER_MOVABLE, THP) reaches ZONE_MOVABLE; GFP_KERNEL
 * and __GFP_HIGHMEM alone stop at ZONE_NORMAL on x86-64 (no highmem).
 */
function highestZoneType(memory: GuestMemory, gfp: number): number {
  if ((gfp & __GFP_DMA32) !== 0) return ZoneType.DMA32;
  const movable = (gfp & (__GFP_HIGHMEM | __GFP_MOVABLE)) === (__GFP_HIGHMEM | __GFP_MOVABLE);
  if (movable && memory.zoneByType[ZoneType.Movable] !== undefined) return ZoneType.Movable;
  return memory.zoneByType[ZoneType.Normal] !== undefined ? ZoneType.Normal : ZoneType.DMA32;
}

/**
 * Models alloc_flags_nofragment (mm/page_alloc.c): when the preferred zone (the highest
 * populated one the request may use: zonelists hold populated zones only) is Normal and DMA32
 * is populated, first try not to fall back below pageblock order.
 */
function allocFlagsNofragment(memory: GuestMemory, highestZone: number): number {
  let preferred = highestZone;
  while (preferred > ZoneType.DMA && !populatedZone(memory, preferred)) preferred--;
  if (preferred !== ZoneType.Normal) return 0;
  return populatedZone(memory, ZoneType.DMA32) ? ALLOC_NOFRAGMENT : 0;
}

/** populated_zone (include/linux/mmzone.h): the zone has present pages. */
function populatedZone(memory: GuestMemory, type: number): boolean {
  const zone = memory.zoneByType[type];
  return zone !== undefined && zone.presentPages > 0;
}

/** enum rmqueue_mode (mm/page_alloc.c, v6.16): where __rmqueue starts within one bulk refill. */
const RMQUEUE_NORMAL = 0;
const RMQUEUE_STEAL = 1;

/**
 * The request a per-cpu refill serves. The model is single-threaded, so one module-level context
 * lets the refill callback be a plain function (no closure per allocation on the hot path).
 */
const refill = {
  memory: undefined as GuestMemory | undefined,
  allocFlags: 0,
  /** rmqueue_mode, kept across the calls of one rmqueue_bulk batch (v6.16+). */
  mode: RMQUEUE_NORMAL,
};

/**
 * Models __rmqueue (mm/page_alloc.c): the wanted type's lists, then fallback. 5.6/6.1 move pages
 * by __rmqueue_fallback and retry; 6.15+ claim a whole block, then steal a single page, and
 * after a steal the rest of a bulk refill steals directly (rmqueue_mode, v6.16).
 */
export function rmqueueBuddy(
  memory: GuestMemory,
  zone: Zone,
  order: number,
  migratetype: number,
  allocFlags: number,
): number {
  const table = memory.table;
  const boost = memory.watermarkBoostFactor;
  fallbackResult.boosted = false;
  let pfn = NO_PFN;
  if (memory.rules.rmqueueClaimSteal) {
    if (refill.mode === RMQUEUE_NORMAL) {
      pfn = rmqueueSmallest(table, zone, order, migratetype);
      if (pfn !== NO_PFN) return pfn;
      pfn = rmqueueClaim(table, zone, order, migratetype, allocFlags, boost, fallbackResult);
    }
    if (pfn === NO_PFN && (allocFlags & ALLOC_NOFRAGMENT) === 0) {
      pfn = rmqueueSteal(table, zone, order, migratetype);
      if (pfn !== NO_PFN) refill.mode = RMQUEUE_STEAL;
    }
  } else {
    pfn = rmqueueSmallest(table, zone, order, migratetype);
    for (let attempt = 0; attempt < 2 && pfn === NO_PFN; attempt++) {
      if (!rmqueueFallback(table, zone, order, migratetype, allocFlags, boost, fallbackResult)) {
        break;
      }
      pfn = rmqueueSmallest(table, zone, order, migratetype);
    }
  }
  if (fallbackResult.boosted && (allocFlags & ALLOC_KSWAPD) !== 0) {
    // ZONE_BOOSTED_WATERMARK: rmqueue wakes kswapd, which reclaims the boost and wakes kcompactd.
    wakeupKswapd(memory, 0);
  }
  return pfn;
}

/** The refill source for per-cpu lists: __rmqueue under the current request's flags. */
function rmqueueForRefill(zone: Zone, order: number, migratetype: number): number {
  return rmqueueBuddy(refill.memory!, zone, order, migratetype, refill.allocFlags);
}

/** Models rmqueue (mm/page_alloc.c): per-cpu lists for small orders, else the buddy lists. */
function rmqueue(
  memory: GuestMemory,
  zone: Zone,
  order: number,
  migratetype: number,
  allocFlags: number,
): number {
  const set = memory.pcp[zoneIndexOf(memory, zone)]![memory.cpu]!;
  refill.mode = RMQUEUE_NORMAL;
  if (pcpAllowedOrder(set, order)) {
    refill.memory = memory;
    refill.allocFlags = allocFlags;
    return pcpAlloc(memory.table, zone, set, order, migratetype, rmqueueForRefill);
  }
  return rmqueueBuddy(memory, zone, order, migratetype, allocFlags);
}

/**
 * Models zone_watermark_fast + get_page_from_freelist: the first zone, highest first, that clears
 * `mark` and yields a block. With ALLOC_NOFRAGMENT a failed pass is retried without it.
 */
function getPageFromFreelist(
  memory: GuestMemory,
  order: number,
  migratetype: number,
  mark: number,
  highestZone: number,
  allocFlags: number,
): number {
  for (;;) {
    for (let type = highestZone; type >= 0; type--) {
      const zone = memory.zoneByType[type];
      if (zone === undefined || zone.managedPages === 0) continue;
      // get_page_from_freelist (v6.7): note a zone below its high watermark (ZONE_BELOW_HIGH) so
      // that frees shrink its per-cpu high.
      if (memory.rules.pcpHighAutoTune && !zone.belowHigh) {
        const high = wmarkPages(zone, WMARK_HIGH);
        if (!zoneWatermarkOk(zone, order, high, highestZone, zone.freePages)) zone.belowHigh = true;
      }
      const markPages = wmarkPages(zone, mark);
      if (!zoneWatermarkOk(zone, order, markPages, highestZone, zone.freePages)) continue;
      const pfn = rmqueue(memory, zone, order, migratetype, allocFlags);
      if (pfn !== NO_PFN) {
        memory.events[VmEvent.pgalloc_dma + zone.type]! += 1 << order;
        return pfn;
      }
    }
    if ((allocFlags & ALLOC_NOFRAGMENT) === 0) return NO_PFN;
    allocFlags &= ~ALLOC_NOFRAGMENT;
  }
}

/** Models wakeup_kswapd: note the request; the scheduler runs kswapd in sim time. */
export function wakeupKswapd(memory: GuestMemory, order: number): void {
  memory.background.kswapdWoken = true;
  memory.background.kswapdOrder = Math.max(memory.background.kswapdOrder, order);
}

/**
 * Models __alloc_pages: the fast path at LOW, then the slow path. Returns the pfn of the block
 * (frames still Free: the caller assigns an owner) or NO_PFN.
 */
export function allocPages(memory: GuestMemory, gfp: number, order: number): number {
  assert(order >= 0 && order <= 10, () => `order ${order} out of range`);
  const migratetype = gfpMigratetype(gfp);
  const highestZone = highestZoneType(memory, gfp);
  const allocFlags =
    allocFlagsNofragment(memory, highestZone) |
    ((gfp & __GFP_KSWAPD_RECLAIM) !== 0 ? ALLOC_KSWAPD : 0);
  const pfn = getPageFromFreelist(memory, order, migratetype, WMARK_LOW, highestZone, allocFlags);
  if (pfn !== NO_PFN) return pfn;
  return allocPagesSlowpath(memory, gfp, order, migratetype, highestZone);
}

/**
 * Models __alloc_pages_slowpath, reduced to the steps the model has: wake kswapd, retry at MIN,
 * costly-order async compaction before reclaim, then rounds of direct reclaim and compaction
 * with rising priority, bounded by MAX_COMPACT_RETRIES.
 */
function allocPagesSlowpath(
  memory: GuestMemory,
  gfp: number,
  order: number,
  migratetype: number,
  highestZone: number,
): number {
  const kswapd = (gfp & __GFP_KSWAPD_RECLAIM) !== 0;
  const allocFlags = kswapd ? ALLOC_KSWAPD : 0;
  if (kswapd) {
    wakeupKswapd(memory, order);
    runKswapdNow(memory);
  }
  let pfn = getPageFromFreelist(memory, order, migratetype, WMARK_MIN, highestZone, allocFlags);
  if (pfn !== NO_PFN) return pfn;
  if ((gfp & __GFP_DIRECT_RECLAIM) === 0) return allocFailed(memory);
  const costly = order > PAGE_ALLOC_COSTLY_ORDER;
  const hooks = memory.hooks;
  if (order > 0 && (costly || migratetype !== MIGRATE_MOVABLE) && hooks !== undefined) {
    const result = hooks.compact(memory, order, migratetype, COMPACT_PRIO_ASYNC);
    pfn = allocAfterCompaction(memory, order, migratetype, highestZone, allocFlags, result);
    if (pfn !== NO_PFN) return pfn;
    // __alloc_pages_slowpath: a costly __GFP_NORETRY request gives up when compaction was
    // skipped or deferred ("it's unlikely that reclaim will help").
    const skipped = result === CompactResult.SKIPPED || result === CompactResult.DEFERRED;
    if (costly && (gfp & __GFP_NORETRY) !== 0 && skipped) return allocFailed(memory);
  }
  let priority = COMPACT_PRIO_ASYNC;
  for (let round = 0; round < MAX_COMPACT_RETRIES; round++) {
    memory.events[VmEvent.allocstall_normal]!++;
    const reclaimed = hooks?.reclaim(memory, Math.max(SWAP_CLUSTER_MAX, 1 << order), true) ?? 0;
    drainAllPages(memory);
    pfn = getPageFromFreelist(memory, order, migratetype, WMARK_MIN, highestZone, allocFlags);
    if (pfn !== NO_PFN) return pfn;
    if (order > 0 && hooks !== undefined) {
      const result = hooks.compact(memory, order, migratetype, priority);
      pfn = allocAfterCompaction(memory, order, migratetype, highestZone, allocFlags, result);
      if (pfn !== NO_PFN) return pfn;
    }
    if ((gfp & __GFP_NORETRY) !== 0) break;
    if (costly && (gfp & __GFP_RETRY_MAYFAIL) === 0) break;
    // should_compact_retry: raise the priority; should_reclaim_retry: stop without progress.
    if (priority > COMPACT_PRIO_SYNC_FULL) priority--;
    else if (reclaimed === 0) break;
  }
  return allocMayOom(memory, gfp, order, migratetype, highestZone, allocFlags);
}

/** Bounds the OOM retry loop: each pass frees at most 256 pages through the notifier chain. */
const OOM_NOTIFY_ROUNDS_MAX = 1 << 20;

/**
 * Models __alloc_pages_may_oom → out_of_memory, reduced to the notifier chain: only small
 * requests without __GFP_NORETRY or __GFP_RETRY_MAYFAIL get there; when a notifier (the
 * balloon's deflate-on-OOM) frees pages, the OOM killer is not invoked and the allocation
 * retries. The model has no OOM killer: without a notifier that frees, the allocation fails.
 */
function allocMayOom(
  memory: GuestMemory,
  gfp: number,
  order: number,
  migratetype: number,
  highestZone: number,
  allocFlags: number,
): number {
  const notify = memory.oomNotify;
  if (notify === undefined || order > PAGE_ALLOC_COSTLY_ORDER) return allocFailed(memory);
  if ((gfp & (__GFP_NORETRY | __GFP_RETRY_MAYFAIL)) !== 0) return allocFailed(memory);
  for (let round = 0; round < OOM_NOTIFY_ROUNDS_MAX; round++) {
    if (notify(memory) === 0) break;
    const pfn = getPageFromFreelist(memory, order, migratetype, WMARK_MIN, highestZone, allocFlags);
    if (pfn !== NO_PFN) return pfn;
  }
  return allocFailed(memory);
}

/**
 * Models the end of __alloc_pages_direct_compact: COMPACT_SKIPPED means no compaction ran, so
 * nothing is counted; otherwise try the free lists again, and on success reset the deferral of
 * the page's zone (compaction_defer_reset(zone, order, true)) and count compact_success, else
 * compact_fail. compact_stall is counted for every attempt that ran.
 */
function allocAfterCompaction(
  memory: GuestMemory,
  order: number,
  migratetype: number,
  highestZone: number,
  allocFlags: number,
  result: number,
): number {
  if (result === CompactResult.SKIPPED) return NO_PFN;
  memory.events[VmEvent.compact_stall]!++;
  const pfn = getPageFromFreelist(memory, order, migratetype, WMARK_MIN, highestZone, allocFlags);
  if (pfn === NO_PFN) {
    memory.events[VmEvent.compact_fail]!++;
    return NO_PFN;
  }
  const zone = zoneOfPfn(memory, pfn);
  assert(zone !== undefined, () => `compaction allocated pfn ${pfn} outside every zone`);
  compactionDeferReset(zone, order, true);
  memory.events[VmEvent.compact_success]!++;
  return pfn;
}

function allocFailed(_memory: GuestMemory): number {
  return NO_PFN;
}

/** kswapd runs as soon as it is woken: the model has no concurrency inside one request. */
function runKswapdNow(memory: GuestMemory): void {
  const hooks = memory.hooks;
  if (hooks === undefined || !memory.background.kswapdWoken) return;
  kswapdBalance(memory);
}

/**
 * Models balance_pgdat, reduced: reclaim clean page cache until every zone is above its high
 * watermark plus boost; then clear boosts and, if there were any or the wake was for a high
 * order, wake kcompactd (kswapd_try_to_sleep → wakeup_kcompactd).
 */
export function kswapdBalance(memory: GuestMemory): void {
  const hooks = memory.hooks;
  const order = memory.background.kswapdOrder;
  memory.background.kswapdWoken = false;
  memory.background.kswapdOrder = 0;
  memory.events[VmEvent.pageoutrun]!++;
  let boosted = false;
  for (const zone of memory.zones) {
    // balance_pgdat / pgdat_balanced skip zones without managed pages (managed_zone): an empty
    // ZONE_MOVABLE of a virtio-mem guest would otherwise never be balanced.
    if (zone.managedPages === 0) continue;
    if (zone.watermarkBoost > 0) boosted = true;
    const target = zone.watermark[WMARK_HIGH]! + zone.watermarkBoost;
    let guard = 0;
    // balance_pgdat: set_reclaim_active / clear_reclaim_active (ZONE_RECLAIM_ACTIVE, v5.13).
    zone.reclaimActive = true;
    while (zone.freePages < target && hooks !== undefined && guard < 1024) {
      guard++;
      if (hooks.reclaim(memory, SWAP_CLUSTER_MAX, false) === 0) break;
      drainAllPages(memory);
    }
    zone.reclaimActive = false;
    zone.watermarkBoost = 0;
  }
  if (boosted) wakeupKcompactd(memory, pageblock_order);
  else if (order > 0) wakeupKcompactd(memory, order);
}

/** Models wakeup_kcompactd: remember the highest order asked for. */
export function wakeupKcompactd(memory: GuestMemory, order: number): void {
  memory.background.kcompactdOrder = Math.max(memory.background.kcompactdOrder, order);
}

/**
 * Models the per-cpu part of vmstat refresh (refresh_cpu_vm_stats → decay_pcp_high, v6.7), run
 * every sysctl_stat_interval (1 s) on every CPU: each zone's per-cpu high decays toward high_min.
 */
export function vmstatRefreshPcp(memory: GuestMemory): void {
  if (!memory.rules.pcpHighAutoTune) return;
  memory.zones.forEach((zone, index) => {
    for (const set of memory.pcp[index]!) decayPcpHigh(memory.table, zone, set);
  });
}

/** Models drain_all_pages: every CPU's per-cpu lists back to the buddy allocator. */
export function drainAllPages(memory: GuestMemory): void {
  memory.zones.forEach((zone, index) => {
    for (const set of memory.pcp[index]!) {
      if (set.count > 0) drainPcp(memory.table, zone, set);
    }
  });
}

/**
 * Gives the frames of an allocated block an owner: kind, reverse map (owner id, index), and
 * PageTail on the frames after the head of a compound block.
 */
export function assignFrames(
  memory: GuestMemory,
  pfn: number,
  order: number,
  kind: FrameKind,
  ownerId: number,
  index: number,
): void {
  const { table } = memory;
  const count = 1 << order;
  memory.onTouch?.(pfn, count);
  table.state[pfn] = kind;
  table.order[pfn] = order;
  table.link0[pfn] = ownerId;
  table.link1[pfn] = index;
  for (let i = 1; i < count; i++) {
    table.state[pfn + i] = kind | FRAME_TAIL;
    table.order[pfn + i] = 0;
    table.link0[pfn + i] = ownerId;
    table.link1[pfn + i] = index + i;
  }
}

/**
 * Models __free_pages / free_the_page: clear the frames' owner, then free through the per-cpu
 * lists for small orders or straight to __free_one_page.
 */
export function freePages(memory: GuestMemory, pfn: number, order: number): void {
  const { table } = memory;
  const zone = zoneOfPfn(memory, pfn);
  assert(zone !== undefined, () => `free of pfn ${pfn} outside every zone`);
  table.state.fill(FrameKind.Free, pfn, pfn + (1 << order));
  table.order[pfn] = 0;
  memory.events[VmEvent.pgfree]! += 1 << order;
  const mt = table.pageblockMt[pfn >>> pageblock_order]!;
  const set = memory.pcp[zoneIndexOf(memory, zone)]![memory.cpu]!;
  if (pcpAllowedOrder(set, order)) pcpFree(table, zone, set, pfn, order, mt);
  else freeOnePage(table, zone, pfn, order, mt, FPI_NONE);
}
