// Replay of a PGTR v1 trace on the buddy core alone (docs/benchmarks.md, "replay rules").
//
// One zone of exactly `frames` frames, every pageblock MOVABLE, no watermarks, no per-cpu lists,
// no tail placement. At start the MOVABLE order-10 list holds every block, lowest pfn at the head
// and ascending. An alloc record is __rmqueue_smallest(order, MIGRATE_MOVABLE); a free record is
// __free_one_page(pfn, order, MIGRATE_MOVABLE, FPI_NONE). The replayer keeps handle -> pfn in an
// Int32Array; a failed allocation stores NO_PFN, and a later free of that handle is a counted
// no-op. Under these rules every correct implementation ends with the same free blocks per order.
//
// The trace was validated when it was read (pgtr_format.ts), so the loop trusts it: it allocates
// nothing and branches only on the record kind and the outcome. Only the loop is timed; building
// the free lists before each repetition is not.

import { assert } from "../core/assert.ts";
import * as limits from "../core/limits.ts";
import * as buddy from "../guest/buddy.ts";
import type { FrameTable } from "../guest/frame_table.ts";
import * as frameTable from "../guest/frame_table.ts";
import { kernelRules } from "../guest/kernel_version.ts";
import { createZone, type Zone, ZoneType } from "../guest/zone.ts";
import type { PgtrTrace } from "../workloads/pgtr_format.ts";
import * as pgtr from "../workloads/pgtr_format.ts";

// Module-local copies of what the replay loop uses (as in buddy.ts): V8 (Node 20) folds a
// module-local const into the compiled loop, but re-reads an imported binding through its cell and
// keeps it tagged, untagging and checking it at every use.
const { MAX_ORDER_NR_PAGES, MAX_PAGE_ORDER, MIGRATE_MOVABLE, NR_PAGE_ORDERS } = limits;
const { addToFreeList, FPI_NONE, freeOnePage, rmqueueSmallest } = buddy;
const { createFrameTable, FrameKind, NO_PFN } = frameTable;
const { PGTR_HANDLE_MASK, PGTR_ORDER_MASK, PGTR_ORDER_SHIFT } = pgtr;

/** The guest a trace is replayed on, and the replayer's handle table. */
export interface ReplayGuest {
  readonly table: FrameTable;
  readonly zone: Zone;
  /** handle -> pfn of its block, NO_PFN when the allocation failed (or never happened). */
  readonly handles: Int32Array;
}

export interface ReplayCounts {
  /** Failed allocations per order, 0..MAX_PAGE_ORDER. */
  readonly failuresByOrder: number[];
  /** Free blocks per order at the end (free_area[order].nr_free). */
  readonly freeBlocksByOrder: number[];
  /** Frees of handles whose allocation failed: counted no-ops. */
  readonly noopFreeCount: number;
}

export interface ReplayResult extends ReplayCounts {
  readonly frames: number;
  readonly ops: number;
  /** Million records per second, median over the repetitions. */
  readonly mopsMedian: number;
  /** Million records per second, one per repetition, in run order. */
  readonly mopsByRep: number[];
}

export function createReplayGuest(frames: number, handleMax: number): ReplayGuest {
  assert(
    frames > 0 && frames % MAX_ORDER_NR_PAGES === 0,
    () => `frames ${frames} not whole blocks`,
  );
  assert(handleMax >= 0, "handle_max must not be negative");
  const table = createFrameTable(frames);
  const zone = createZone(
    { type: ZoneType.Normal, startPfn: 0, endPfn: frames },
    kernelRules("6.1"),
  );
  zone.tailPlacement = false;
  zone.presentPages = frames;
  zone.managedPages = frames;
  const guest: ReplayGuest = { table, zone, handles: new Int32Array(handleMax) };
  resetReplayGuest(guest);
  return guest;
}

/** Back to the start state: every frame free, the order-10 list ascending from pfn 0. */
export function resetReplayGuest(guest: ReplayGuest): void {
  const { table, zone } = guest;
  const area = zone.freeArea;
  area.head.fill(NO_PFN);
  area.tail.fill(NO_PFN);
  area.count.fill(0);
  area.nrFree.fill(0);
  zone.freePages = 0;
  table.state.fill(FrameKind.Free);
  table.order.fill(0);
  for (let pfn = zone.startPfn; pfn < zone.endPfn; pfn += MAX_ORDER_NR_PAGES) {
    addToFreeList(table, zone, pfn, MAX_PAGE_ORDER, MIGRATE_MOVABLE, true);
  }
  guest.handles.fill(NO_PFN);
  assert(zone.freePages === zone.endPfn - zone.startPfn, "every frame starts free");
  assert(area.nrFree[MAX_PAGE_ORDER] === (zone.endPfn - zone.startPfn) / MAX_ORDER_NR_PAGES);
}

/**
 * The replay loop. Adds failed allocations to `failuresByOrder` and returns the number of no-op
 * frees. Allocates nothing per record (one view of the records per call).
 */
export function replayOps(
  guest: ReplayGuest,
  ops: Uint32Array,
  failuresByOrder: Int32Array,
): number {
  const { table, zone, handles } = guest;
  // The records as signed words: bit 31 (a free) is the sign, so no record is read as a double.
  const records = new Int32Array(ops.buffer, ops.byteOffset, ops.length);
  const count = records.length;
  let noopFreeCount = 0;
  for (let index = 0; index < count; index++) {
    const record = records[index]!;
    const order = (record >>> PGTR_ORDER_SHIFT) & PGTR_ORDER_MASK;
    const handle = record & PGTR_HANDLE_MASK;
    if (record >= 0) {
      const pfn = rmqueueSmallest(table, zone, order, MIGRATE_MOVABLE);
      if (pfn === NO_PFN) failuresByOrder[order]!++;
      handles[handle] = pfn;
    } else {
      const pfn = handles[handle]!;
      if (pfn === NO_PFN) {
        noopFreeCount++;
      } else {
        handles[handle] = NO_PFN;
        freeOnePage(table, zone, pfn, order, MIGRATE_MOVABLE, FPI_NONE);
      }
    }
  }
  return noopFreeCount;
}

/** Replay once from the start state and return the counts (no timing). */
export function replayOnce(guest: ReplayGuest, ops: Uint32Array): ReplayCounts {
  resetReplayGuest(guest);
  const failures = new Int32Array(NR_PAGE_ORDERS);
  const noopFreeCount = replayOps(guest, ops, failures);
  return {
    failuresByOrder: Array.from(failures),
    freeBlocksByOrder: Array.from(guest.zone.freeArea.nrFree),
    noopFreeCount,
  };
}

/**
 * Replay `reps` times on one guest, reset in between, timing the loop with the monotonic clock.
 * Every repetition must end in the same state: a difference is a determinism bug and throws.
 */
export function replayTrace(trace: PgtrTrace, reps: number): ReplayResult {
  assert(Number.isInteger(reps) && reps >= 1, () => `reps must be a positive integer, got ${reps}`);
  const guest = createReplayGuest(trace.frames, trace.handleMax);
  const mopsByRep: number[] = [];
  let first: ReplayCounts | undefined;
  for (let rep = 0; rep < reps; rep++) {
    resetReplayGuest(guest);
    const failures = new Int32Array(NR_PAGE_ORDERS);
    const startNs = process.hrtime.bigint();
    const noopFreeCount = replayOps(guest, trace.ops, failures);
    const elapsedNs = Number(process.hrtime.bigint() - startNs);
    mopsByRep.push((trace.ops.length * 1000) / Math.max(elapsedNs, 1));
    const counts: ReplayCounts = {
      failuresByOrder: Array.from(failures),
      freeBlocksByOrder: Array.from(guest.zone.freeArea.nrFree),
      noopFreeCount,
    };
    if (first === undefined) first = counts;
    else assertSameCounts(first, counts, rep);
  }
  assert(first !== undefined);
  return {
    frames: trace.frames,
    ops: trace.ops.length,
    mopsMedian: median(mopsByRep),
    mopsByRep,
    ...first,
  };
}

function assertSameCounts(first: ReplayCounts, counts: ReplayCounts, rep: number): void {
  const a = JSON.stringify(first);
  const b = JSON.stringify(counts);
  assert(
    a === b,
    () => `replay is not deterministic: repetition ${rep} ended ${b}, the first ${a}`,
  );
}

export function median(values: readonly number[]): number {
  assert(values.length > 0, "median of nothing");
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >>> 1;
  if (sorted.length % 2 === 1) return sorted[middle]!;
  return (sorted[middle - 1]! + sorted[middle]!) / 2;
}
