// Compaction's results and deferral (mm/compaction.c, include/linux/compaction.h), kept apart
// from the scanners so that the allocator's slow path (page_alloc.ts) can act on a result and
// reset deferral after a successful allocation without importing compaction itself.
//
// Deferral is per zone: a failed synchronous run doubles the number of later attempts skipped,
// up to 1 << COMPACT_MAX_DEFER_SHIFT; compact_order_failed remembers the lowest order that
// failed so that smaller orders are never deferred. The same in 5.6, 6.1 and 6.18.

import type { Zone } from "./zone.ts";

/** enum compact_result (include/linux/compaction.h): callers take max() over it. */
export enum CompactResult {
  NOT_SUITABLE_ZONE = 0,
  SKIPPED = 1,
  DEFERRED = 2,
  NO_SUITABLE_PAGE = 3,
  CONTINUE = 4,
  COMPLETE = 5,
  PARTIAL_SKIPPED = 6,
  CONTENDED = 7,
  SUCCESS = 8,
}

/** COMPACT_MAX_DEFER_SHIFT (mm/compaction.c): at most 1 << 6 = 64 attempts skipped. */
export const COMPACT_MAX_DEFER_SHIFT = 6;

/** Models defer_compaction: a failed sync run doubles the attempts skipped, up to 64. */
export function deferCompaction(zone: Zone, order: number): void {
  zone.compactConsidered = 0;
  zone.compactDeferShift = Math.min(zone.compactDeferShift + 1, COMPACT_MAX_DEFER_SHIFT);
  if (order < zone.compactOrderFailed) zone.compactOrderFailed = order;
}

/** Models compaction_deferred: true when this attempt should be skipped. */
export function compactionDeferred(zone: Zone, order: number): boolean {
  const deferLimit = 2 ** zone.compactDeferShift;
  if (order < zone.compactOrderFailed) return false;
  zone.compactConsidered++;
  if (zone.compactConsidered >= deferLimit) {
    zone.compactConsidered = deferLimit;
    return false;
  }
  return true;
}

/** Models compaction_defer_reset: after a success (or an expected one) at `order`. */
export function compactionDeferReset(zone: Zone, order: number, allocSuccess: boolean): void {
  if (allocSuccess) {
    zone.compactConsidered = 0;
    zone.compactDeferShift = 0;
  }
  if (order >= zone.compactOrderFailed) zone.compactOrderFailed = order + 1;
}

/** Models compaction_restarting: deferred to the limit, so clear the skip hints first. */
export function compactionRestarting(zone: Zone, order: number): boolean {
  if (order < zone.compactOrderFailed) return false;
  return (
    zone.compactDeferShift === COMPACT_MAX_DEFER_SHIFT &&
    zone.compactConsidered >= 2 ** zone.compactDeferShift
  );
}
