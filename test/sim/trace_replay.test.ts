// Goal: replaying a PGTR trace follows the replay rules of docs/benchmarks.md exactly: the start
// state, head-of-list allocation with expand, merging frees, no-op frees of failed allocations,
// and a deterministic end state; and the W1/W2/W3 generators are seeded and shaped as specified.
// Method: a tiny trace whose pfns and end state are derived by hand below; small generated traces
// (2^14 frames) checked by an independent walk that covers every frame exactly once with either a
// free block (from the free lists) or a live allocation (from the handle table).
import { describe, expect, test } from "vitest";
import {
  MAX_PAGE_ORDER,
  MIGRATE_MOVABLE,
  MIGRATE_TYPES,
  NR_PAGE_ORDERS,
} from "../../src/core/limits.ts";
import { FRAME_BUDDY, NO_PFN, ORDER_MASK } from "../../src/guest/frame_table.ts";
import {
  createReplayGuest,
  median,
  type ReplayGuest,
  replayOnce,
  replayTrace,
} from "../../src/sim/trace_replay.ts";
import {
  checkRecords,
  encodePgtr,
  type PgtrTrace,
  pgtrAlloc,
  pgtrFree,
  pgtrHandle,
  pgtrIsFree,
  pgtrOrder,
} from "../../src/workloads/pgtr_format.ts";
import {
  generateW1,
  generateW2,
  generateW3,
  W1_DEFAULTS,
} from "../../src/workloads/trace_generators.ts";

const SMALL_FRAMES = 2 ** 14;

function smallW1(seed: number): PgtrTrace {
  return generateW1(seed, { ...W1_DEFAULTS, frames: SMALL_FRAMES, opCount: 50_000 });
}

function smallW2(seed: number): PgtrTrace {
  return generateW2(seed, { frames: SMALL_FRAMES, fillCount: SMALL_FRAMES, churnCount: 20_000 });
}

function smallW3(seed: number): PgtrTrace {
  return generateW3(seed, { frames: SMALL_FRAMES, populatePerMille: 300, balloonPerMille: 500 });
}

/** Order of each handle's current allocation, or -1 when the handle is not live, after the trace. */
function liveOrders(trace: PgtrTrace): Int8Array {
  const orders = new Int8Array(trace.handleMax).fill(-1);
  for (const record of trace.ops) {
    orders[pgtrHandle(record)] = pgtrIsFree(record) ? -1 : pgtrOrder(record);
  }
  return orders;
}

function movableHead(guest: ReplayGuest, order: number): number {
  return guest.zone.freeArea.head[order * MIGRATE_TYPES + MIGRATE_MOVABLE]!;
}

/**
 * The independent check: walk every MOVABLE free list from its head, mark each free block's
 * frames, mark each live allocation's frames from the handle table, and require every frame to be
 * covered exactly once and the walked counts to equal nr_free.
 */
function expectFramesCoveredOnce(guest: ReplayGuest, trace: PgtrTrace): void {
  const { table, zone } = guest;
  const cover = new Uint8Array(trace.frames);
  for (let order = 0; order <= MAX_PAGE_ORDER; order++) {
    let walked = 0;
    let previous = NO_PFN;
    for (let pfn = movableHead(guest, order); pfn !== NO_PFN; pfn = table.link0[pfn]!) {
      expect(table.state[pfn]! & FRAME_BUDDY).toBe(FRAME_BUDDY);
      expect(table.order[pfn]! & ORDER_MASK).toBe(order);
      expect(table.link1[pfn]).toBe(previous);
      for (let frame = pfn; frame < pfn + (1 << order); frame++) cover[frame]!++;
      previous = pfn;
      walked++;
      expect(walked).toBeLessThanOrEqual(trace.frames);
    }
    expect(walked).toBe(zone.freeArea.nrFree[order]);
  }
  const orders = liveOrders(trace);
  let allocatedFrames = 0;
  orders.forEach((order, handle) => {
    const pfn = guest.handles[handle]!;
    if (order < 0 || pfn === NO_PFN) return;
    expect(pfn % (1 << order)).toBe(0);
    for (let frame = pfn; frame < pfn + (1 << order); frame++) cover[frame]!++;
    allocatedFrames += 1 << order;
  });
  expect(cover.every((count) => count === 1)).toBe(true);
  expect(zone.freePages).toBe(trace.frames - allocatedFrames);
}

describe("start state", () => {
  test("the order-10 list holds every block, lowest pfn at the head, ascending", () => {
    const guest = createReplayGuest(8 * 1024, 0);
    const walked: number[] = [];
    for (let pfn = movableHead(guest, 10); pfn !== NO_PFN; pfn = guest.table.link0[pfn]!) {
      walked.push(pfn);
    }
    expect(walked).toEqual([0, 1024, 2048, 3072, 4096, 5120, 6144, 7168]);
    expect(Array.from(guest.zone.freeArea.nrFree)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8]);
    expect(guest.zone.freePages).toBe(8 * 1024);
    expect(guest.zone.tailPlacement).toBe(false);
  });
});

describe("a trace small enough to follow by hand", () => {
  // Two order-10 blocks, pfn 0 and 1024. Derivation, record by record:
  //  0 alloc order 0 -> h0: splits block 0; 512, 256, ..., 2, 1 go to orders 9..0; h0 = 0.
  //  1 alloc order 0 -> h1: the order-0 head, pfn 1.
  //  2 alloc order 1 -> h2: the order-1 head, pfn 2.
  //  3 alloc order 10 -> h3: block 1024.          4 alloc order 10 -> h4: fails (order 10).
  //  5 free h4: a no-op, counted.                 6 free h0 (pfn 0): buddy 1 is allocated, stays.
  //  7 alloc order 2 -> h0: the order-2 head, pfn 4.
  //  8 free h1 (pfn 1): merges with 0 into 0@1; buddy 2 is allocated.
  //  9 free h2 (pfn 2): merges with 0@1 into 0@2; buddy 4 (h0) is allocated.
  // Free: 0@2 and 8@3, 16@4, ..., 512@9 = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]; live 4@2 and 1024@10.
  const ops = [
    pgtrAlloc(0, 0),
    pgtrAlloc(0, 1),
    pgtrAlloc(1, 2),
    pgtrAlloc(10, 3),
    pgtrAlloc(10, 4),
    pgtrFree(10, 4),
    pgtrFree(0, 0),
    pgtrAlloc(2, 0),
    pgtrFree(0, 1),
    pgtrFree(1, 2),
  ];
  const trace: PgtrTrace = { frames: 2048, handleMax: 5, seed: 0, ops: Uint32Array.from(ops) };

  test("allocations take the list heads and the end state is the derived one", () => {
    checkRecords(trace, "hand.pgtr");
    const guest = createReplayGuest(trace.frames, trace.handleMax);
    const counts = replayOnce(guest, trace.ops);
    expect(Array.from(guest.handles)).toEqual([4, NO_PFN, NO_PFN, 1024, NO_PFN]);
    expect(counts.failuresByOrder).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(counts.freeBlocksByOrder).toEqual([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
    expect(counts.noopFreeCount).toBe(1);
    expect(movableHead(guest, 2)).toBe(0);
    expect(guest.zone.freePages).toBe(2048 - 4 - 1024);
    expectFramesCoveredOnce(guest, trace);
  });

  test("freeing the rest merges back to two order-10 blocks, the last freed at the head", () => {
    const all = Uint32Array.from([...ops, pgtrFree(2, 0), pgtrFree(10, 3)]);
    const guest = createReplayGuest(2048, 5);
    const counts = replayOnce(guest, all);
    expect(counts.freeBlocksByOrder).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    expect(movableHead(guest, 10)).toBe(1024);
    expect(guest.table.link0[1024]).toBe(0);
  });
});

describe("generated traces", () => {
  test("the same seed gives the same bytes, another seed other bytes", () => {
    for (const generate of [smallW1, smallW2, smallW3]) {
      const first = encodePgtr(generate(7));
      expect(encodePgtr(generate(7))).toEqual(first);
      expect(encodePgtr(generate(8))).not.toEqual(first);
    }
  });

  test("every generated trace passes the reader's record checks", () => {
    for (const trace of [smallW1(3), smallW2(3), smallW3(3)]) {
      expect(() => checkRecords(trace, "generated")).not.toThrow();
      expect(trace.frames).toBe(SMALL_FRAMES);
      expect(trace.seed).toBe(3);
    }
  });

  test("W1 follows the order mix and keeps about 60 % of the frames allocated", () => {
    const trace = generateW1(5, { ...W1_DEFAULTS, frames: 2 ** 18, opCount: 200_000 });
    expect(trace.ops.length).toBe(200_000);
    const allocsByOrder = new Array<number>(NR_PAGE_ORDERS).fill(0);
    let occupancy = 0;
    let occupancyMax = 0;
    const orders = new Int8Array(trace.handleMax);
    for (const record of trace.ops) {
      const order = pgtrOrder(record);
      if (pgtrIsFree(record)) {
        occupancy -= 1 << order;
      } else {
        allocsByOrder[order]!++;
        orders[pgtrHandle(record)] = order;
        occupancy += 1 << order;
      }
      occupancyMax = Math.max(occupancyMax, occupancy);
    }
    const allocCount = allocsByOrder.reduce((sum, count) => sum + count, 0);
    expect(allocsByOrder[0]! / allocCount).toBeCloseTo(0.8, 1);
    expect(allocsByOrder[9]! / allocCount).toBeCloseTo(0.04, 1);
    expect(allocsByOrder[10]! / allocCount).toBeCloseTo(0.01, 1);
    expect(occupancy / 2 ** 18).toBeGreaterThan(0.5);
    expect(occupancy / 2 ** 18).toBeLessThan(0.7);
    expect(occupancyMax).toBeLessThanOrEqual(2 ** 18);
  });

  test("W2 fills, frees half, then churns; every order-9 request fails", () => {
    const trace = smallW2(11);
    const fill = trace.ops.subarray(0, SMALL_FRAMES);
    expect(fill.every((record, index) => record === pgtrAlloc(0, index))).toBe(true);
    const half = trace.ops.subarray(SMALL_FRAMES, SMALL_FRAMES + SMALL_FRAMES / 2);
    expect(half.every((record) => pgtrIsFree(record) && pgtrOrder(record) === 0)).toBe(true);
    expect(new Set(Array.from(half, pgtrHandle)).size).toBe(SMALL_FRAMES / 2);
    const churn = trace.ops.subarray(SMALL_FRAMES + SMALL_FRAMES / 2);
    expect(churn.length).toBe(20_000);
    const order9 = churn.filter((record) => !pgtrIsFree(record) && pgtrOrder(record) === 9).length;
    expect(order9 / churn.length).toBeCloseTo(0.5, 1);
    const guest = createReplayGuest(trace.frames, trace.handleMax);
    const counts = replayOnce(guest, trace.ops);
    expect(counts.failuresByOrder).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, order9, 0]);
    expect(counts.noopFreeCount).toBeGreaterThan(0);
    expectFramesCoveredOnce(guest, trace);
  });

  test("W3 populates 30 %, allocates a 50 % balloon and frees it in allocation order", () => {
    const trace = smallW3(13);
    const balloonCount = Math.floor(SMALL_FRAMES / 2);
    const allocs = trace.ops.subarray(trace.ops.length - 2 * balloonCount, -balloonCount);
    const frees = trace.ops.subarray(trace.ops.length - balloonCount);
    expect(allocs.every((record) => !pgtrIsFree(record) && pgtrOrder(record) === 0)).toBe(true);
    expect(Array.from(frees)).toEqual(
      Array.from(allocs, (record) => pgtrFree(0, pgtrHandle(record))),
    );
    const populate = trace.ops.subarray(0, trace.ops.length - 2 * balloonCount);
    const populated = populate.reduce((sum, record) => sum + (1 << pgtrOrder(record)), 0);
    expect(populated).toBeGreaterThanOrEqual(Math.floor(SMALL_FRAMES * 0.3));
    expect(populated - (1 << MAX_PAGE_ORDER)).toBeLessThan(Math.floor(SMALL_FRAMES * 0.3));
    const guest = createReplayGuest(trace.frames, trace.handleMax);
    const counts = replayOnce(guest, trace.ops);
    expect(counts.failuresByOrder.every((count) => count === 0)).toBe(true);
    expect(guest.zone.freePages).toBe(SMALL_FRAMES - populated);
    expectFramesCoveredOnce(guest, trace);
  });
});

describe("replay", () => {
  test("covers every frame exactly once after a W1 trace", () => {
    const trace = smallW1(21);
    const guest = createReplayGuest(trace.frames, trace.handleMax);
    replayOnce(guest, trace.ops);
    expectFramesCoveredOnce(guest, trace);
  });

  test("two replays, and every repetition, end in the same state", () => {
    const trace = smallW1(22);
    const first = replayTrace(trace, 3);
    const second = replayTrace(trace, 1);
    expect(second.failuresByOrder).toEqual(first.failuresByOrder);
    expect(second.freeBlocksByOrder).toEqual(first.freeBlocksByOrder);
    expect(first.mopsByRep).toHaveLength(3);
    expect(first.mopsMedian).toBeGreaterThan(0);
    expect(first.ops).toBe(trace.ops.length);
    expect(first.frames).toBe(SMALL_FRAMES);
  });

  test("freeing every live handle at the end returns all order-10 blocks", () => {
    for (const trace of [smallW1(31), smallW2(31), smallW3(31)]) {
      const orders = liveOrders(trace);
      const tail: number[] = [];
      orders.forEach((order, handle) => {
        if (order >= 0) tail.push(pgtrFree(order, handle));
      });
      const ops = Uint32Array.from([...trace.ops, ...tail]);
      const result = replayTrace({ ...trace, ops }, 1);
      const expected = new Array<number>(NR_PAGE_ORDERS).fill(0);
      expected[MAX_PAGE_ORDER] = SMALL_FRAMES / 1024;
      expect(result.freeBlocksByOrder).toEqual(expected);
    }
  });

  test("median takes the middle value, or the mean of the two middle values", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});
