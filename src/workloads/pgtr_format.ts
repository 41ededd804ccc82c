// PGTR v1, the allocator-neutral allocation trace (docs/benchmarks.md, "Allocation traces").
//
// Little-endian. A 32-byte header: magic "PGTR", u32 version = 1, u64 frames, u64 op_count,
// u32 handle_max, u32 seed; then op_count u32 records: bit 31 the kind (0 alloc, 1 free), bits
// 27..30 the order, bits 0..26 the handle (a slot in the replayer's handle table).
//
// Reading validates everything the replayer relies on, so that the replay loop can trust the
// trace and stay branch-light: the header, the length, every record's order and handle, and the
// handle discipline (an alloc names an empty slot, a free names a live slot with the order it was
// allocated with). Every problem is an InputError naming the file and what was expected.
// Nothing here reads the clock; the file functions are the only I/O.

import { readFileSync, writeFileSync } from "node:fs";
import { assert } from "../core/assert.ts";
import { InputError } from "../core/input_error.ts";
import { MAX_ORDER_NR_PAGES, MAX_PAGE_ORDER } from "../core/limits.ts";

export const PGTR_MAGIC = "PGTR";
export const PGTR_VERSION = 1;
export const PGTR_HEADER_BYTES = 32;
export const PGTR_RECORD_BYTES = 4;
/** Bit 31 of a record: set for a free. */
export const PGTR_KIND_FREE = 0x80000000;
export const PGTR_ORDER_SHIFT = 27;
export const PGTR_ORDER_MASK = 0x0f;
/** Bits 0..26 of a record. */
export const PGTR_HANDLE_MASK = 0x07ffffff;
/** Handle slots a trace can name: 2^27. */
export const PGTR_HANDLE_COUNT_MAX = PGTR_HANDLE_MASK + 1;
/** Largest guest a replay can build: pfns must fit a signed 32-bit integer (frame_table.ts). */
export const PGTR_FRAMES_MAX = 2 ** 31 - MAX_ORDER_NR_PAGES;

export interface PgtrTrace {
  /** Guest frames; a positive multiple of MAX_ORDER_NR_PAGES, so the zone is whole order-10 blocks. */
  readonly frames: number;
  /** Handle slots the replayer needs: every handle in `ops` is below this. */
  readonly handleMax: number;
  /** The generator's seed, kept so that a trace says how to make it again. */
  readonly seed: number;
  /** The records, one u32 each. */
  readonly ops: Uint32Array;
}

/** One alloc record. */
export function pgtrAlloc(order: number, handle: number): number {
  return ((order << PGTR_ORDER_SHIFT) | handle) >>> 0;
}

/** One free record. */
export function pgtrFree(order: number, handle: number): number {
  return (PGTR_KIND_FREE | (order << PGTR_ORDER_SHIFT) | handle) >>> 0;
}

export function pgtrIsFree(record: number): boolean {
  return record >>> 31 === 1;
}

export function pgtrOrder(record: number): number {
  return (record >>> PGTR_ORDER_SHIFT) & PGTR_ORDER_MASK;
}

export function pgtrHandle(record: number): number {
  return record & PGTR_HANDLE_MASK;
}

const PLATFORM_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The file's bytes for a trace. The trace must be valid (it comes from our own generators). */
export function encodePgtr(trace: PgtrTrace): Uint8Array {
  checkHeader(trace, "<encode>");
  const opCount = trace.ops.length;
  const bytes = new Uint8Array(PGTR_HEADER_BYTES + opCount * PGTR_RECORD_BYTES);
  const view = new DataView(bytes.buffer);
  for (let index = 0; index < PGTR_MAGIC.length; index++) {
    bytes[index] = PGTR_MAGIC.charCodeAt(index);
  }
  view.setUint32(4, PGTR_VERSION, true);
  view.setBigUint64(8, BigInt(trace.frames), true);
  view.setBigUint64(16, BigInt(opCount), true);
  view.setUint32(24, trace.handleMax, true);
  view.setUint32(28, trace.seed >>> 0, true);
  if (PLATFORM_LITTLE_ENDIAN) {
    bytes.set(new Uint8Array(trace.ops.buffer, trace.ops.byteOffset, opCount * 4), 32);
  } else {
    for (let index = 0; index < opCount; index++) {
      view.setUint32(PGTR_HEADER_BYTES + index * 4, trace.ops[index]!, true);
    }
  }
  return bytes;
}

/** Parse and validate a trace; `file` names it in errors. */
export function decodePgtr(bytes: Uint8Array, file: string): PgtrTrace {
  const fail = (field: string, message: string): never => {
    throw new InputError({ file, field, message });
  };
  if (bytes.length < PGTR_HEADER_BYTES) {
    fail("header", `truncated: expected ${PGTR_HEADER_BYTES} bytes, the file has ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!);
  if (magic !== PGTR_MAGIC) {
    fail("magic", `expected "${PGTR_MAGIC}" (a PGTR trace), got ${JSON.stringify(magic)}`);
  }
  const version = view.getUint32(4, true);
  if (version !== PGTR_VERSION) fail("version", `expected ${PGTR_VERSION}, got ${version}`);
  const frames = view.getBigUint64(8, true);
  const opCount = view.getBigUint64(16, true);
  const handleMax = view.getUint32(24, true);
  const seed = view.getUint32(28, true);
  const recordBytes = BigInt(bytes.length - PGTR_HEADER_BYTES);
  if (opCount * BigInt(PGTR_RECORD_BYTES) !== recordBytes) {
    const expected = BigInt(PGTR_HEADER_BYTES) + opCount * BigInt(PGTR_RECORD_BYTES);
    const what = opCount * 4n > recordBytes ? "truncated" : "trailing bytes";
    fail(
      "op_count",
      `${what}: ${opCount} records need ${expected} bytes, the file has ${bytes.length}`,
    );
  }
  if (frames > BigInt(PGTR_FRAMES_MAX))
    fail("frames", `expected at most ${PGTR_FRAMES_MAX}, got ${frames}`);
  const ops = new Uint32Array(Number(opCount));
  if (PLATFORM_LITTLE_ENDIAN) {
    new Uint8Array(ops.buffer).set(bytes.subarray(PGTR_HEADER_BYTES));
  } else {
    for (let index = 0; index < ops.length; index++) {
      ops[index] = view.getUint32(PGTR_HEADER_BYTES + index * 4, true);
    }
  }
  const trace: PgtrTrace = { frames: Number(frames), handleMax, seed, ops };
  checkHeader(trace, file);
  checkRecords(trace, file);
  return trace;
}

/** Header fields the replayer needs: a whole number of order-10 blocks, a handle table it can size. */
function checkHeader(trace: PgtrTrace, file: string): void {
  const { frames, handleMax } = trace;
  if (!Number.isInteger(frames) || frames <= 0 || frames % MAX_ORDER_NR_PAGES !== 0) {
    throw new InputError({
      file,
      field: "frames",
      message: `expected a positive multiple of ${MAX_ORDER_NR_PAGES}, got ${frames}`,
    });
  }
  if (frames > PGTR_FRAMES_MAX) {
    throw new InputError({
      file,
      field: "frames",
      message: `expected at most ${PGTR_FRAMES_MAX}, got ${frames}`,
    });
  }
  if (!Number.isInteger(handleMax) || handleMax < 0 || handleMax > PGTR_HANDLE_COUNT_MAX) {
    throw new InputError({
      file,
      field: "handle_max",
      message: `expected 0..${PGTR_HANDLE_COUNT_MAX}, got ${handleMax}`,
    });
  }
}

/**
 * Every record's order and handle in range, and the handle discipline a replayer relies on:
 * an alloc names an empty slot, a free names a live slot and carries its allocation's order.
 */
export function checkRecords(trace: PgtrTrace, file: string): void {
  const { ops, handleMax } = trace;
  // Slot state: 0 empty, 1 + order when live.
  const slots = new Uint8Array(handleMax);
  for (let index = 0; index < ops.length; index++) {
    const record = ops[index]!;
    const order = pgtrOrder(record);
    const handle = pgtrHandle(record);
    const problem = recordProblem(slots, record, order, handle);
    if (problem !== undefined) {
      throw new InputError({ file, field: `record ${index}`, message: problem });
    }
    slots[handle] = pgtrIsFree(record) ? 0 : 1 + order;
  }
}

function recordProblem(
  slots: Uint8Array,
  record: number,
  order: number,
  handle: number,
): string | undefined {
  if (order > MAX_PAGE_ORDER) return `expected an order 0..${MAX_PAGE_ORDER}, got ${order}`;
  if (handle >= slots.length) {
    return `expected a handle below handle_max ${slots.length}, got ${handle}`;
  }
  const slot = slots[handle]!;
  if (!pgtrIsFree(record)) {
    if (slot !== 0) return `alloc of handle ${handle}, which is still live (order ${slot - 1})`;
    return undefined;
  }
  if (slot === 0) return `free of handle ${handle}, which is not allocated`;
  if (slot - 1 !== order) {
    return `free of handle ${handle} with order ${order}, allocated with order ${slot - 1}`;
  }
  return undefined;
}

/** Read and validate a trace file; a missing or unreadable file is an InputError too. */
export function readPgtrFile(path: string): PgtrTrace {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code ?? "";
    const message = code === "ENOENT" ? "no such file" : `cannot read (${code || "I/O error"})`;
    throw new InputError({ file: path, message });
  }
  return decodePgtr(bytes, path);
}

export function writePgtrFile(path: string, trace: PgtrTrace): void {
  const bytes = encodePgtr(trace);
  assert(bytes.length === PGTR_HEADER_BYTES + trace.ops.length * PGTR_RECORD_BYTES);
  try {
    writeFileSync(path, bytes);
  } catch (error) {
    const code = (error as { code?: string }).code ?? "I/O error";
    throw new InputError({ file: path, message: `cannot write (${code})` });
  }
}
