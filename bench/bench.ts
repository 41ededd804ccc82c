// `npm run bench`: the standard workloads W1, W2, W3 (docs/benchmarks.md) replayed on the buddy
// core, against the figures of the plain-JavaScript and the C implementations of the same core,
// plus the model's metadata bytes per frame. `--huge` adds a check that a 1 TiB guest's frame
// table (268,435,456 frames) can be built and half filled within 24 GiB, in a child process so
// that its memory is measured alone.
//
// Traces are generated with a fixed seed, written to a temporary directory, read back (so the
// file path is what is measured, as for any other allocator) and deleted at the end.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { MIGRATE_MOVABLE, PAGE_SIZE } from "../src/core/limits.ts";
import { rmqueueSmallest } from "../src/guest/buddy.ts";
import { FRAME_TABLE_BYTES_PER_FRAME, NO_PFN } from "../src/guest/frame_table.ts";
import { createReplayGuest, type ReplayResult, replayTrace } from "../src/sim/trace_replay.ts";
import { readPgtrFile, writePgtrFile } from "../src/workloads/pgtr_format.ts";
import { generateWorkload, type WorkloadName } from "../src/workloads/trace_generators.ts";

/** Reference figures, Mops/s (docs/benchmarks.md, "Figures measured on a machine of this kind"). */
interface Reference {
  readonly name: WorkloadName;
  readonly title: string;
  readonly javascript: readonly [number, number];
  readonly c: readonly [number, number];
  /** The project's target, Mops/s. */
  readonly targetMops: number;
}

const REFERENCES: readonly Reference[] = [
  { name: "W1", title: "mixed", javascript: [39, 45], c: [102, 107], targetMops: 40 },
  { name: "W2", title: "fragmentation", javascript: [10.6, 11.1], c: [30, 32], targetMops: 10 },
  { name: "W3", title: "balloon", javascript: [43, 50], c: [108, 141], targetMops: 40 },
];

const BENCH_SEED = 1;
const BENCH_REPS = 7;
const BYTES_PER_FRAME_TARGET = 12;
/** 1 TiB of 4 KiB frames. */
const HUGE_FRAMES = 2 ** 40 / PAGE_SIZE;
const HUGE_RSS_BYTES_MAX = 24 * 2 ** 30;

function ratio(measured: number, [low, high]: readonly [number, number]): string {
  return `${(measured / high).toFixed(2)}-${(measured / low).toFixed(2)}x`;
}

function verdict(ok: boolean): string {
  return ok ? "ok" : "MISS";
}

function benchWorkload(reference: Reference, dir: string, reps: number): ReplayResult {
  const file = join(dir, `${reference.name.toLowerCase()}-seed${BENCH_SEED}.pgtr`);
  writePgtrFile(file, generateWorkload(reference.name, BENCH_SEED));
  const trace = readPgtrFile(file);
  const result = replayTrace(trace, reps);
  const mops = result.mopsMedian;
  process.stdout.write(
    `${reference.name} ${reference.title.padEnd(13)} ${`${trace.ops.length}`.padStart(9)} ops  ` +
      `median ${mops.toFixed(1).padStart(5)} Mops/s  ` +
      `vs JS ${reference.javascript.join("-")}: ${ratio(mops, reference.javascript)}  ` +
      `vs C ${reference.c.join("-")}: ${ratio(mops, reference.c)}  ` +
      `target >= ${reference.targetMops}: ${verdict(mops >= reference.targetMops)}\n` +
      `   reps ${result.mopsByRep.map((value) => value.toFixed(1)).join(" ")}\n` +
      `   failures by order ${JSON.stringify(result.failuresByOrder)}\n` +
      `   free blocks by order ${JSON.stringify(result.freeBlocksByOrder)}\n`,
  );
  return result;
}

function runWorkloads(reps: number): void {
  process.stdout.write(
    `balloonlab bench: node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"} ` +
      `x${cpus().length}, seed ${BENCH_SEED}, median of ${reps} reps\n`,
  );
  const dir = mkdtempSync(join(tmpdir(), "balloonlab-bench-"));
  try {
    for (const reference of REFERENCES) benchWorkload(reference, dir, reps);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const bytesOk = FRAME_TABLE_BYTES_PER_FRAME <= BYTES_PER_FRAME_TARGET;
  process.stdout.write(
    `model metadata: ${FRAME_TABLE_BYTES_PER_FRAME} bytes per frame ` +
      `(target <= ${BYTES_PER_FRAME_TARGET}: ${verdict(bytesOk)}; struct page is 64)\n`,
  );
}

/** In the child: build a 1 TiB guest, allocate half its frames as order-0 pages, report. */
function runHugeChild(): void {
  const startNs = process.hrtime.bigint();
  const guest = createReplayGuest(HUGE_FRAMES, 0);
  const builtNs = process.hrtime.bigint();
  const halfFrames = HUGE_FRAMES / 2;
  for (let page = 0; page < halfFrames; page++) {
    const pfn = rmqueueSmallest(guest.table, guest.zone, 0, MIGRATE_MOVABLE);
    if (pfn === NO_PFN) throw new Error(`1 TiB guest: allocation ${page} failed`);
  }
  const filledNs = process.hrtime.bigint();
  if (guest.zone.freePages !== HUGE_FRAMES - halfFrames) throw new Error("free pages mismatch");
  const rssBytes = process.memoryUsage().rss;
  const maxRssBytes = process.resourceUsage().maxRSS * 1024;
  const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  const seconds = (ns: bigint): string => `${(Number(ns) / 1e9).toFixed(2)} s`;
  process.stdout.write(
    `1 TiB guest (${HUGE_FRAMES} frames): frame table and free lists ${seconds(builtNs - startNs)}, ` +
      `${halfFrames} order-0 allocations ${seconds(filledNs - builtNs)}; ` +
      `RSS ${gib(rssBytes)}, peak ${gib(maxRssBytes)} ` +
      `(limit 24 GiB: ${verdict(maxRssBytes <= HUGE_RSS_BYTES_MAX)})\n`,
  );
}

function runHuge(): void {
  // Typed arrays live outside the V8 heap, so the default heap limit is enough.
  const child = spawnSync(
    process.execPath,
    ["--import", "tsx", fileURLToPath(import.meta.url), "--huge-child"],
    { stdio: "inherit" },
  );
  if (child.status !== 0) {
    process.stdout.write(`1 TiB guest: FAILED (exit ${child.status}, signal ${child.signal})\n`);
    process.exitCode = 1;
  }
}

function main(): void {
  const { values } = parseArgs({
    options: {
      huge: { type: "boolean", default: false },
      "huge-child": { type: "boolean", default: false },
      "huge-only": { type: "boolean", default: false },
      reps: { type: "string", default: `${BENCH_REPS}` },
    },
  });
  if (values["huge-child"]) {
    runHugeChild();
    return;
  }
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) {
    process.stderr.write(`bench: --reps: expected a positive integer, got "${values.reps}"\n`);
    process.exitCode = 2;
    return;
  }
  if (!values["huge-only"]) runWorkloads(reps);
  if (values.huge || values["huge-only"]) runHuge();
}

main();
