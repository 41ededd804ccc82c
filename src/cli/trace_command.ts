// `balloonlab trace generate W1|W2|W3 --seed N --out FILE` and `balloonlab trace replay FILE`:
// write a standard workload as a PGTR v1 trace, and replay a trace on the buddy core alone
// (docs/benchmarks.md). Replay prints the median speed, the failed allocations by order and the
// free blocks by order at the end, the fingerprint that two correct allocators must share.
//
// Bad input (an unknown workload, a bad number, a malformed trace) throws InputError, which the
// program (main.ts) prints as one line and turns into exit status 2; usage errors reach it as
// CommanderError through the program's exitOverride, also status 2.

import type { Command } from "@commander-js/extra-typings";
import { InputError } from "../core/input_error.ts";
import { NR_PAGE_ORDERS, PAGE_SIZE } from "../core/limits.ts";
import { type ReplayResult, replayTrace } from "../sim/trace_replay.ts";
import { type PgtrTrace, readPgtrFile, writePgtrFile } from "../workloads/pgtr_format.ts";
import {
  generateWorkload,
  isWorkloadName,
  WORKLOAD_NAMES,
  type WorkloadName,
} from "../workloads/trace_generators.ts";

/** Repetitions of a replay when --reps is not given: the benchmark's median of 7. */
export const REPLAY_REPS_DEFAULT = 7;
/** Upper bound on --reps, so that a typo cannot run for hours. */
export const REPLAY_REPS_MAX = 1000;

export function registerTraceCommand(program: Command): void {
  const trace = program
    .command("trace")
    .description("generate and replay PGTR v1 allocation traces (docs/benchmarks.md)");
  trace
    .command("generate")
    .description("write a standard workload (W1 mixed, W2 fragmentation, W3 balloon) as a trace")
    .argument("<workload>", `one of ${WORKLOAD_NAMES.join(", ")}`)
    .option("--seed <n>", "generator seed, 0..4294967295", "1")
    .requiredOption("--out <file>", "trace file to write")
    .action((workload, options) => {
      const name = parseWorkloadName(workload);
      const seed = parseIntegerOption("--seed", options.seed, 0, 0xffffffff);
      const generated = generateWorkload(name, seed);
      writePgtrFile(options.out, generated);
      process.stdout.write(`${describeGenerated(name, generated, options.out)}\n`);
    });
  trace
    .command("replay")
    .description("replay a trace on the buddy core alone and print its speed and end state")
    .argument("<file>", "PGTR v1 trace file")
    .option("--reps <n>", "repetitions; the median speed is reported", `${REPLAY_REPS_DEFAULT}`)
    .option("--json", "print one JSON object instead of text")
    .action((file, options) => {
      const reps = parseIntegerOption("--reps", options.reps, 1, REPLAY_REPS_MAX);
      const loaded = readPgtrFile(file);
      const result = replayTrace(loaded, reps);
      const text =
        options.json === true ? formatReplayJson(result) : formatReplayText(file, loaded, result);
      process.stdout.write(`${text}\n`);
    });
}

function parseWorkloadName(value: string): WorkloadName {
  const name = value.toUpperCase();
  if (isWorkloadName(name)) return name;
  throw new InputError({
    file: "<argv>",
    field: "workload",
    message: `expected one of ${WORKLOAD_NAMES.join(", ")}, got "${value}"`,
  });
}

/** A decimal integer in [min, max]; anything else is bad input naming the option. */
export function parseIntegerOption(
  option: string,
  value: string,
  min: number,
  max: number,
): number {
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw new InputError({
      file: "<argv>",
      field: option,
      message: `expected an integer ${min}..${max}, got "${value}"`,
    });
  }
  return parsed;
}

function describeGenerated(name: WorkloadName, trace: PgtrTrace, file: string): string {
  return (
    `wrote ${name} seed ${trace.seed}: ${trace.ops.length} records, ${describeFrames(trace.frames)}, ` +
    `handle_max ${trace.handleMax} -> ${file}`
  );
}

function describeFrames(frames: number): string {
  const gib = (frames * PAGE_SIZE) / 2 ** 30;
  return `${frames} frames (${Number.isInteger(gib) ? gib : gib.toFixed(2)} GiB)`;
}

/** The machine-readable result: exactly the fields docs and scripts rely on. */
export function formatReplayJson(result: ReplayResult): string {
  return JSON.stringify({
    frames: result.frames,
    ops: result.ops,
    mopsMedian: Number(result.mopsMedian.toFixed(3)),
    failuresByOrder: result.failuresByOrder,
    freeBlocksByOrder: result.freeBlocksByOrder,
  });
}

function formatReplayText(file: string, trace: PgtrTrace, result: ReplayResult): string {
  const orders = Array.from({ length: NR_PAGE_ORDERS }, (_, order) => `${order}`.padStart(8));
  const row = (values: readonly number[]): string =>
    values.map((value) => `${value}`.padStart(8)).join("");
  const speeds = result.mopsByRep.map((mops) => mops.toFixed(1)).join(" ");
  return [
    `trace ${file}: ${describeFrames(trace.frames)}, ${trace.ops.length} records, ` +
      `handle_max ${trace.handleMax}, seed ${trace.seed}`,
    `replay: median ${result.mopsMedian.toFixed(1)} Mops/s over ${result.mopsByRep.length} reps (${speeds})`,
    `order                 ${orders.join("")}`,
    `failed allocations    ${row(result.failuresByOrder)}`,
    `free blocks at end    ${row(result.freeBlocksByOrder)}`,
    `no-op frees (of failed allocations): ${result.noopFreeCount}`,
  ].join("\n");
}
