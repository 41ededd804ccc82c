// Goal: PGTR v1 files are written byte for byte as docs/benchmarks.md specifies, read back equal,
// and every malformed file is refused with an InputError that names the file and the field.
// Method: encode small traces and inspect the bytes with a DataView; corrupt one field at a time
// and decode; round-trip through a real file in a temporary directory.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { InputError } from "../../src/core/input_error.ts";
import {
  checkRecords,
  decodePgtr,
  encodePgtr,
  PGTR_HEADER_BYTES,
  type PgtrTrace,
  pgtrAlloc,
  pgtrFree,
  pgtrHandle,
  pgtrIsFree,
  pgtrOrder,
  readPgtrFile,
  writePgtrFile,
} from "../../src/workloads/pgtr_format.ts";

const dir = mkdtempSync(join(tmpdir(), "balloonlab-pgtr-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function smallTrace(): PgtrTrace {
  const ops = Uint32Array.from([
    pgtrAlloc(0, 0),
    pgtrAlloc(10, 1),
    pgtrFree(0, 0),
    pgtrAlloc(3, 0),
    pgtrFree(10, 1),
  ]);
  return { frames: 4096, handleMax: 2, seed: 0xdeadbeef, ops };
}

/** The InputError a function throws (fails the test when it throws nothing or something else). */
function inputErrorOf(action: () => unknown): InputError {
  try {
    action();
  } catch (error) {
    if (error instanceof InputError) return error;
    throw error;
  }
  throw new Error("expected an InputError, nothing was thrown");
}

describe("PGTR records", () => {
  test("pack kind in bit 31, order in bits 27..30, handle in bits 0..26", () => {
    expect(pgtrAlloc(0, 5)).toBe(5);
    expect(pgtrAlloc(9, 5)).toBe((9 << 27) | 5);
    expect(pgtrFree(10, 0x07ffffff)).toBe(0xd7ffffff);
    const record = pgtrFree(3, 123456);
    expect(pgtrIsFree(record)).toBe(true);
    expect(pgtrIsFree(pgtrAlloc(3, 123456))).toBe(false);
    expect(pgtrOrder(record)).toBe(3);
    expect(pgtrHandle(record)).toBe(123456);
  });
});

describe("encodePgtr", () => {
  test("writes the 32-byte little-endian header and then one u32 per record", () => {
    const trace = smallTrace();
    const bytes = encodePgtr(trace);
    expect(bytes.length).toBe(PGTR_HEADER_BYTES + 5 * 4);
    const view = new DataView(bytes.buffer);
    expect(String.fromCharCode(...bytes.subarray(0, 4))).toBe("PGTR");
    expect(view.getUint32(4, true)).toBe(1);
    expect(view.getBigUint64(8, true)).toBe(4096n);
    expect(view.getBigUint64(16, true)).toBe(5n);
    expect(view.getUint32(24, true)).toBe(2);
    expect(view.getUint32(28, true)).toBe(0xdeadbeef);
    expect(view.getUint32(32 + 4, true)).toBe(pgtrAlloc(10, 1));
    expect(view.getUint32(32 + 16, true)).toBe((0x80000000 | (10 << 27) | 1) >>> 0);
  });

  test("decodes back to the same trace, through a file too", () => {
    const trace = smallTrace();
    const decoded = decodePgtr(encodePgtr(trace), "mem.pgtr");
    expect(decoded).toEqual(trace);
    const file = join(dir, "small.pgtr");
    writePgtrFile(file, trace);
    const read = readPgtrFile(file);
    expect(read.frames).toBe(4096);
    expect(read.handleMax).toBe(2);
    expect(read.seed).toBe(0xdeadbeef);
    expect(Array.from(read.ops)).toEqual(Array.from(trace.ops));
  });

  test("an empty trace is valid", () => {
    const empty: PgtrTrace = { frames: 1024, handleMax: 0, seed: 0, ops: new Uint32Array(0) };
    expect(decodePgtr(encodePgtr(empty), "empty.pgtr")).toEqual(empty);
  });
});

describe("malformed files", () => {
  function corrupt(change: (view: DataView) => void): Uint8Array {
    const bytes = encodePgtr(smallTrace());
    change(new DataView(bytes.buffer));
    return bytes;
  }

  test("a bad magic names the file and the expected magic", () => {
    const error = inputErrorOf(() =>
      decodePgtr(
        corrupt((v) => v.setUint8(0, 0x58)),
        "bad.pgtr",
      ),
    );
    expect(error.file).toBe("bad.pgtr");
    expect(error.field).toBe("magic");
    expect(error.message).toContain("bad.pgtr");
    expect(error.message).toContain('expected "PGTR"');
  });

  test("an unknown version says which version was expected", () => {
    const error = inputErrorOf(() =>
      decodePgtr(
        corrupt((v) => v.setUint32(4, 2, true)),
        "v2.pgtr",
      ),
    );
    expect(error.field).toBe("version");
    expect(error.message).toBe("v2.pgtr: version: expected 1, got 2");
  });

  test("a truncated header or record area is refused with both sizes", () => {
    const bytes = encodePgtr(smallTrace());
    const header = inputErrorOf(() => decodePgtr(bytes.subarray(0, 20), "short.pgtr"));
    expect(header.field).toBe("header");
    expect(header.message).toContain("expected 32 bytes");
    const records = inputErrorOf(() => decodePgtr(bytes.subarray(0, 45), "cut.pgtr"));
    expect(records.field).toBe("op_count");
    expect(records.message).toContain("truncated");
    expect(records.message).toContain("52 bytes");
    const longer = new Uint8Array(bytes.length + 4);
    longer.set(bytes);
    expect(inputErrorOf(() => decodePgtr(longer, "long.pgtr")).message).toContain("trailing");
  });

  test("frames must be a positive multiple of 1024 that fits a pfn", () => {
    for (const frames of [0n, 1000n, 2n ** 31n, 2n ** 40n]) {
      const bytes = corrupt((v) => v.setBigUint64(8, frames, true));
      const error = inputErrorOf(() => decodePgtr(bytes, "frames.pgtr"));
      expect(error.field).toBe("frames");
    }
  });

  test("records with a bad order, handle or handle discipline name the record", () => {
    const cases: [number[], string][] = [
      [[pgtrAlloc(11, 0)], "order 0..10"],
      [[pgtrAlloc(0, 2)], "below handle_max 2"],
      [[pgtrAlloc(0, 0), pgtrAlloc(1, 0)], "still live"],
      [[pgtrFree(0, 1)], "not allocated"],
      [[pgtrAlloc(2, 1), pgtrFree(3, 1)], "allocated with order 2"],
    ];
    for (const [records, reason] of cases) {
      const trace: PgtrTrace = {
        frames: 1024,
        handleMax: 2,
        seed: 1,
        ops: Uint32Array.from(records),
      };
      const error = inputErrorOf(() => decodePgtr(encodePgtr(trace), "ops.pgtr"));
      expect(error.field).toBe(`record ${records.length - 1}`);
      expect(error.reason).toContain(reason);
      expect(error.message.startsWith("ops.pgtr: record")).toBe(true);
    }
  });

  test("a file that is missing is an InputError naming it", () => {
    const missing = join(dir, "missing.pgtr");
    const error = inputErrorOf(() => readPgtrFile(missing));
    expect(error.file).toBe(missing);
    expect(error.message).toBe(`${missing}: no such file`);
  });

  test("a text file is refused by its magic", () => {
    const file = join(dir, "notes.txt");
    writeFileSync(file, "this is not a trace, but it is long enough for a header\n");
    const error = inputErrorOf(() => readPgtrFile(file));
    expect(error.file).toBe(file);
    expect(error.field).toBe("magic");
  });

  test("checkRecords accepts the well-formed small trace", () => {
    expect(() => checkRecords(smallTrace(), "ok.pgtr")).not.toThrow();
  });
});
