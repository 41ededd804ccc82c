// The standard allocation workloads W1, W2 and W3 (docs/benchmarks.md, "The three standard
// workloads"), generated as PGTR v1 traces from one seed.
//
// A generator knows nothing of the allocator: it tracks which handles it has allocated and how
// many frames they ask for, never whether an allocation would succeed. Handles are slots, reused
// last-freed-first, so `handleMax` is the peak of live handles, not the number of allocations.
// Every random choice comes from createPrng(seed), in a fixed order: the same seed gives the same
// bytes. Records are streamed into one Uint32Array sized up front from the workload's bound.

import { assert } from "../core/assert.ts";
import { MAX_PAGE_ORDER } from "../core/limits.ts";
import { createPrng, type Prng } from "../core/prng.ts";
import {
  PGTR_HANDLE_COUNT_MAX,
  type PgtrTrace,
  pgtrAlloc,
  pgtrFree,
  pgtrHandle,
} from "./pgtr_format.ts";

export const WORKLOAD_NAMES = ["W1", "W2", "W3"] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

export function isWorkloadName(value: string): value is WorkloadName {
  return (WORKLOAD_NAMES as readonly string[]).includes(value);
}

/** W1's order mix, per mille: 800 order-0, 60, 40, 40, 10 over orders 4..8, 40 order-9, 10 order-10. */
const W1_ORDER_PER_MILLE: readonly number[] = [800, 60, 40, 40, 2, 2, 2, 2, 2, 40, 10];

/** Order by a uniform draw in [0, 1000): a lookup table, so a draw costs one load. */
const W1_ORDER_BY_DRAW: Uint8Array = buildOrderByDraw(W1_ORDER_PER_MILLE);

function buildOrderByDraw(perMille: readonly number[]): Uint8Array {
  assert(perMille.length === MAX_PAGE_ORDER + 1, "one weight per order");
  const table = new Uint8Array(1000);
  let draw = 0;
  perMille.forEach((weight, order) => {
    table.fill(order, draw, draw + weight);
    draw += weight;
  });
  assert(draw === 1000, () => `order weights sum to ${draw}, expected 1000`);
  return table;
}

/**
 * The live handles of a generator: a sparse set (dense array plus position per handle, bitECS
 * style) for a uniformly random live handle in O(1), and a stack of free slots for reuse.
 */
interface HandlePool {
  readonly dense: Int32Array;
  readonly position: Int32Array;
  readonly order: Uint8Array;
  readonly freeSlots: Int32Array;
  freeSlotCount: number;
  liveCount: number;
  /** Slots ever used: the trace's handle_max. */
  slotCount: number;
}

function createHandlePool(liveMax: number): HandlePool {
  assert(liveMax > 0 && liveMax <= PGTR_HANDLE_COUNT_MAX, () => `live handles max ${liveMax}`);
  return {
    dense: new Int32Array(liveMax),
    position: new Int32Array(liveMax),
    order: new Uint8Array(liveMax),
    freeSlots: new Int32Array(liveMax),
    freeSlotCount: 0,
    liveCount: 0,
    slotCount: 0,
  };
}

function takeHandle(pool: HandlePool, order: number): number {
  let handle: number;
  if (pool.freeSlotCount > 0) handle = pool.freeSlots[--pool.freeSlotCount]!;
  else handle = pool.slotCount++;
  assert(handle < pool.dense.length, "more live handles than the workload's bound");
  pool.position[handle] = pool.liveCount;
  pool.dense[pool.liveCount++] = handle;
  pool.order[handle] = order;
  return handle;
}

function releaseHandle(pool: HandlePool, handle: number): void {
  const index = pool.position[handle]!;
  assert(pool.dense[index] === handle, () => `handle ${handle} is not live`);
  const last = pool.dense[--pool.liveCount]!;
  pool.dense[index] = last;
  pool.position[last] = index;
  pool.freeSlots[pool.freeSlotCount++] = handle;
}

/** Records streamed into a buffer sized from the workload's bound. */
interface TraceWriter {
  readonly ops: Uint32Array;
  opCount: number;
}

function createTraceWriter(opCountMax: number): TraceWriter {
  return { ops: new Uint32Array(opCountMax), opCount: 0 };
}

function emitAlloc(writer: TraceWriter, pool: HandlePool, order: number): number {
  const handle = takeHandle(pool, order);
  writer.ops[writer.opCount++] = pgtrAlloc(order, handle);
  return handle;
}

function emitFree(writer: TraceWriter, pool: HandlePool, handle: number): number {
  const order = pool.order[handle]!;
  releaseHandle(pool, handle);
  writer.ops[writer.opCount++] = pgtrFree(order, handle);
  return order;
}

/** Free a uniformly random live handle; returns the frames it held. */
function emitRandomFree(writer: TraceWriter, pool: HandlePool, prng: Prng): number {
  assert(pool.liveCount > 0, "a random free needs a live handle");
  const handle = pool.dense[prng.below(pool.liveCount)]!;
  return 1 << emitFree(writer, pool, handle);
}

function finishTrace(
  writer: TraceWriter,
  pool: HandlePool,
  frames: number,
  seed: number,
): PgtrTrace {
  assert(writer.opCount <= writer.ops.length);
  const ops =
    writer.opCount === writer.ops.length ? writer.ops : writer.ops.slice(0, writer.opCount);
  return { frames, handleMax: pool.slotCount, seed: seed >>> 0, ops };
}

export interface W1Options {
  /** Guest frames: 2^22 (16 GiB). */
  readonly frames: number;
  /** Records: 10,000,000. */
  readonly opCount: number;
  /** The random walk's occupancy target: 600 per mille of the frames. */
  readonly occupancyPerMille: number;
}

export const W1_DEFAULTS: W1Options = {
  frames: 2 ** 22,
  opCount: 10_000_000,
  occupancyPerMille: 600,
};

/**
 * W1 mixed: a random walk around the occupancy target. Below it, allocate with probability 60 %,
 * at or above it 40 %; an allocation draws its order from the W1 mix, a free takes a uniformly
 * random live handle. The walk never asks for more frames than the guest has (a guard that only
 * small test guests reach), so a live handle holds at least one frame and frames bound handles.
 */
export function generateW1(seed: number, options: W1Options = W1_DEFAULTS): PgtrTrace {
  const { frames, opCount } = options;
  const prng = createPrng(seed);
  const pool = createHandlePool(Math.min(frames, PGTR_HANDLE_COUNT_MAX));
  const writer = createTraceWriter(opCount);
  const occupancyTarget = Math.floor((frames * options.occupancyPerMille) / 1000);
  let occupancy = 0;
  while (writer.opCount < opCount) {
    const allocPercent = occupancy < occupancyTarget ? 60 : 40;
    const allocate = pool.liveCount === 0 || prng.below(100) < allocPercent;
    const order = allocate ? W1_ORDER_BY_DRAW[prng.below(1000)]! : 0;
    if (allocate && occupancy + (1 << order) <= frames) {
      emitAlloc(writer, pool, order);
      occupancy += 1 << order;
    } else {
      occupancy -= emitRandomFree(writer, pool, prng);
    }
  }
  return finishTrace(writer, pool, frames, seed);
}

export interface W2Options {
  /** Guest frames: 2^22 (16 GiB). */
  readonly frames: number;
  /** Order-0 allocations that fill the guest: 4,194,304. */
  readonly fillCount: number;
  /** Churn records after the random half is freed: 2,000,000. */
  readonly churnCount: number;
}

export const W2_DEFAULTS: W2Options = {
  frames: 2 ** 22,
  fillCount: 4_194_304,
  churnCount: 2_000_000,
};

/**
 * W2 fragmentation: fill with order-0 allocations, free a uniformly random half of them, then
 * churn: per record, 50 % an order-9 request, 25 % an order-0 allocation, 25 % a free of a
 * uniformly random live handle (failed order-9 requests included: their frees are no-ops).
 */
export function generateW2(seed: number, options: W2Options = W2_DEFAULTS): PgtrTrace {
  const { frames, fillCount, churnCount } = options;
  const halfCount = Math.floor(fillCount / 2);
  const prng = createPrng(seed);
  const pool = createHandlePool(fillCount + churnCount);
  const writer = createTraceWriter(fillCount + halfCount + churnCount);
  for (let index = 0; index < fillCount; index++) emitAlloc(writer, pool, 0);
  for (let index = 0; index < halfCount; index++) emitRandomFree(writer, pool, prng);
  for (let index = 0; index < churnCount; index++) {
    const draw = prng.below(4);
    if (draw <= 1) emitAlloc(writer, pool, 9);
    else if (draw === 2 || pool.liveCount === 0) emitAlloc(writer, pool, 0);
    else emitRandomFree(writer, pool, prng);
  }
  return finishTrace(writer, pool, frames, seed);
}

export interface W3Options {
  /** Guest frames: 2^24 (64 GiB). */
  readonly frames: number;
  /** Frames populated with the W1 mix before the balloon: 300 per mille. */
  readonly populatePerMille: number;
  /** Balloon size: 500 per mille of the frames, as order-0 pages. */
  readonly balloonPerMille: number;
}

export const W3_DEFAULTS: W3Options = {
  frames: 2 ** 24,
  populatePerMille: 300,
  balloonPerMille: 500,
};

/**
 * W3 balloon: allocate with the W1 mix until the populated frames reach their share, allocate the
 * balloon as order-0 pages, then free the balloon in allocation order (the populated memory stays).
 */
export function generateW3(seed: number, options: W3Options = W3_DEFAULTS): PgtrTrace {
  const { frames } = options;
  const populateTarget = Math.floor((frames * options.populatePerMille) / 1000);
  const balloonCount = Math.floor((frames * options.balloonPerMille) / 1000);
  const prng = createPrng(seed);
  // Every populate allocation holds at least one frame, so populateTarget bounds their count.
  const pool = createHandlePool(populateTarget + balloonCount);
  const writer = createTraceWriter(populateTarget + 2 * balloonCount);
  let populated = 0;
  while (populated < populateTarget) {
    const order = W1_ORDER_BY_DRAW[prng.below(1000)]!;
    emitAlloc(writer, pool, order);
    populated += 1 << order;
  }
  const balloonFirst = writer.opCount;
  for (let index = 0; index < balloonCount; index++) emitAlloc(writer, pool, 0);
  for (let index = 0; index < balloonCount; index++) {
    const record = writer.ops[balloonFirst + index]!;
    emitFree(writer, pool, pgtrHandle(record));
  }
  return finishTrace(writer, pool, frames, seed);
}

/** A standard workload at its standard size. */
export function generateWorkload(name: WorkloadName, seed: number): PgtrTrace {
  switch (name) {
    case "W1":
      return generateW1(seed);
    case "W2":
      return generateW2(seed);
    case "W3":
      return generateW3(seed);
  }
}
