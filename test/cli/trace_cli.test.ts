// Goal: `balloonlab trace generate` and `balloonlab trace replay` work as a user runs them: the
// file written is a valid trace, replay prints the documented text and JSON, and bad input exits
// 2 with one line naming the file or option, never a stack trace.
// Method: run bin/balloonlab.mjs in a child process on a W2 trace (the smallest standard one,
// 33 MB) in a temporary directory, and on files broken on purpose.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "bin", "balloonlab.mjs");
const dir = mkdtempSync(join(tmpdir(), "balloonlab-trace-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function balloonlab(...args: string[]) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const STACK_LINE = /\n\s+at /;

describe("balloonlab trace", () => {
  const w2 = join(dir, "w2.pgtr");

  test("generate writes the W2 trace and says what it wrote", () => {
    const result = balloonlab("trace", "generate", "W2", "--seed", "5", "--out", w2);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain("W2 seed 5: 8291456 records, 4194304 frames (16 GiB)");
    expect(statSync(w2).size).toBe(32 + 8_291_456 * 4);
    expect(readFileSync(w2).subarray(0, 4).toString("latin1")).toBe("PGTR");
  });

  test("replay --json prints the documented fields; every order-9 request fails", () => {
    const result = balloonlab("trace", "replay", w2, "--reps", "2", "--json");
    expect(result.status, result.stderr).toBe(0);
    const json = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual([
      "frames",
      "ops",
      "mopsMedian",
      "failuresByOrder",
      "freeBlocksByOrder",
    ]);
    expect(json.frames).toBe(4_194_304);
    expect(json.ops).toBe(8_291_456);
    expect(json.mopsMedian).toBeGreaterThan(0);
    const failures = json.failuresByOrder as number[];
    const freeBlocks = json.freeBlocksByOrder as number[];
    expect(failures).toHaveLength(11);
    expect(freeBlocks).toHaveLength(11);
    expect(failures.filter((count, order) => order !== 9 && count !== 0)).toEqual([]);
    expect(failures[9]).toBeGreaterThan(900_000);
    // No order-9 block is ever whole again, so nothing of order 9 or 10 is free at the end.
    expect(freeBlocks[9]).toBe(0);
    expect(freeBlocks[10]).toBe(0);
  });

  test("replay prints the speed, failures and free blocks by order as text", () => {
    const result = balloonlab("trace", "replay", w2, "--reps", "1");
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/median \d+\.\d Mops\/s over 1 reps/);
    expect(result.stdout).toMatch(/failed allocations/);
    expect(result.stdout).toMatch(/free blocks at end/);
  });

  test("a truncated trace exits 2 naming the file, without a stack trace", () => {
    const cut = join(dir, "cut.pgtr");
    writeFileSync(cut, readFileSync(w2).subarray(0, 1000));
    const result = balloonlab("trace", "replay", cut);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`${cut}: op_count: truncated`);
    expect(result.stderr).not.toMatch(STACK_LINE);
  });

  test("a file that is not a trace exits 2 naming the expected magic", () => {
    const text = join(dir, "text.pgtr");
    writeFileSync(text, "hello, this is text and not a PGTR trace file at all\n");
    const result = balloonlab("trace", "replay", text);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`${text}: magic: expected "PGTR"`);
    expect(result.stderr).not.toMatch(STACK_LINE);
  });

  test("bad arguments exit 2 and name the argument", () => {
    const cases: [string[], string][] = [
      [["trace", "generate", "W9", "--out", join(dir, "x.pgtr")], "workload"],
      [["trace", "generate", "W1", "--seed", "4294967296", "--out", join(dir, "x.pgtr")], "--seed"],
      [["trace", "generate", "W1"], "--out"],
      [["trace", "replay", w2, "--reps", "zero"], "--reps"],
      [["trace", "replay", join(dir, "missing.pgtr")], "no such file"],
    ];
    for (const [args, named] of cases) {
      const result = balloonlab(...args);
      expect(result.status, args.join(" ")).toBe(2);
      expect(result.stderr).toContain(named);
      expect(result.stderr).not.toMatch(STACK_LINE);
    }
  });
});
