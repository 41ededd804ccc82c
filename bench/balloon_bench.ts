// The balloon benchmark (`node --import tsx bench/balloon_bench.ts [--quick]`): the goal is that
// inflating half of a 64 GiB guest with linux-4k runs in under 5 s of wall time on this machine
// kind, and that a 1 TiB guest works. A benchmark, not a timed test: it prints, it never fails.
//
// 1. 64 GiB: a pc guest (kernel 6.1) on a 96 GiB host (anonymous memory, THP always, so nothing
//    is under pressure); a process writes 8 GiB and exits; then the balloon target goes to
//    32 GiB (8 M pages of 4 KiB). The wall time of setBalloonTarget alone is measured, median
//    of 3 runs, a fresh VM each.
// 2. 1 TiB (skipped with --quick): a guest of 1 TiB on a 1.5 TiB host is created and 64 GiB is
//    inflated with highest-order-first and then, on a second VM, with linux-4k. It runs in a
//    child process so that its resident set is its own. Bytes per 4 KiB frame are summed from
//    the byteLength of every typed array the model sizes by memory: the guest's frame table and
//    per-pageblock arrays, the host's page bitmaps and per-2 MiB arrays, and the cost
//    accounting's per-2 MiB discard probe.

import { spawnSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PAGE_SIZE } from "../src/core/limits.ts";
import { freeProcess, memhog } from "../src/sim/guest_sim.ts";
import { createVmSim, setBalloonTarget, type VmSim } from "../src/sim/vm_sim.ts";
import { createDiscardProbe } from "../src/virtio/work_counts.ts";

const GiB = 2 ** 30;
const TiB = 2 ** 40;
const RUNS = 3;
/** The goal for inflating 32 GiB of the 64 GiB guest, wall seconds. */
const WALL_SECONDS_GOAL = 5;

interface BenchVm {
  readonly guestBytes: number;
  readonly hostBytes: number;
  readonly policy: string;
}

function makeVm(spec: BenchVm): VmSim {
  return createVmSim({
    guest: {
      memoryBytes: spec.guestBytes,
      machine: "pc",
      kernel: "6.1",
      cpus: 1,
      thpEnabled: "never",
      thpDefrag: "madvise",
      initOnAlloc: false,
    },
    host: {
      kernel: "6.1",
      memoryBytes: spec.hostBytes,
      backing: "anon",
      thp: { enabled: "always" },
    },
    balloon: {
      policy: spec.policy,
      deflateOnOom: false,
      freePageReporting: { enabled: false, order: 9 },
      thpSizeKnown: false,
    },
  });
}

interface InflateResult {
  wallSeconds: number;
  /** CPU seconds of this process (user + system): robust to other load on a shared machine. */
  cpuSeconds: number;
  simSeconds: number;
  pages: number;
  residentBytes: number;
  allocatedBytes: number;
}

/** setBalloonTarget timed with the wall clock; the rest read off the model. */
function timeInflation(vm: VmSim, targetBytes: number): InflateResult {
  const pagesBefore = vm.driver.list.pageCount;
  const simBefore = vm.balloonTimeMs;
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  setBalloonTarget(vm, targetBytes);
  const wallSeconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  return {
    wallSeconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    simSeconds: (vm.balloonTimeMs - simBefore) / 1000,
    pages: vm.driver.list.pageCount - pagesBefore,
    residentBytes: vm.ram.residentPages * PAGE_SIZE,
    allocatedBytes: vm.ram.allocatedPages * PAGE_SIZE,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function gib(bytes: number): string {
  return `${(bytes / GiB).toFixed(2)} GiB`;
}

function row(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((cell, index) => cell.padStart(widths[index]!)).join("  ");
}

function bench64(): void {
  const results: InflateResult[] = [];
  for (let run = 0; run < RUNS; run++) {
    const vm = makeVm({ guestBytes: 64 * GiB, hostBytes: 96 * GiB, policy: "linux-4k" });
    memhog(vm.guest, "writer", 8 * GiB, false, 1);
    freeProcess(vm.guest, "writer");
    results.push(timeInflation(vm, 32 * GiB));
  }
  const widths = [6, 8, 8, 8, 12, 13, 14];
  process.stdout.write(
    `64 GiB guest, 8 GiB written, linux-4k inflation to 32 GiB (${RUNS} runs, fresh VM each)\n` +
      `${row(["run", "wall s", "cpu s", "sim s", "pages/s", "host rss", "host alloc"], widths)}\n`,
  );
  results.forEach((result, index) => {
    const cells = [
      `${index + 1}`,
      result.wallSeconds.toFixed(2),
      result.cpuSeconds.toFixed(2),
      result.simSeconds.toFixed(2),
      `${(result.pages / result.wallSeconds / 1e6).toFixed(2)} M`,
      gib(result.residentBytes),
      gib(result.allocatedBytes),
    ];
    process.stdout.write(`${row(cells, widths)}\n`);
  });
  const wall = median(results.map((result) => result.wallSeconds));
  const verdict = wall < WALL_SECONDS_GOAL ? "ok" : "MISS";
  process.stdout.write(
    `median wall ${wall.toFixed(2)} s (goal < ${WALL_SECONDS_GOAL} s: ${verdict}), ` +
      `cpu ${median(results.map((result) => result.cpuSeconds)).toFixed(2)} s, ` +
      `sim ${median(results.map((result) => result.simSeconds)).toFixed(2)} s, ` +
      `${results[0]!.pages} pages\n\n`,
  );
}

/** Bytes of every typed array directly in `object`. */
function typedArrayBytes(object: object): number {
  let bytes = 0;
  for (const value of Object.values(object)) {
    if (ArrayBuffer.isView(value)) bytes += value.byteLength;
  }
  return bytes;
}

interface ModelBytes {
  guestPerFrame: number;
  hostPerFrame: number;
  accountingPerFrame: number;
}

/** Model bytes per 4 KiB frame: the guest's per guest frame, the host's per RAMBlock page. */
function modelBytes(vm: VmSim): ModelBytes {
  const guestBytes = typedArrayBytes(vm.guest.memory.table) + typedArrayBytes(vm.guest.thp);
  const frames = vm.guest.memory.table.frameCount;
  return {
    guestPerFrame: guestBytes / frames,
    hostPerFrame: typedArrayBytes(vm.ram) / vm.ram.pageCount,
    accountingPerFrame: typedArrayBytes(createDiscardProbe(vm.ram)) / vm.ram.pageCount,
  };
}

interface TibResult {
  policy: string;
  createSeconds: number;
  inflate: InflateResult;
  rssBytes: number;
  bytes: ModelBytes;
}

/** The 1 TiB part, in this process: create, inflate 64 GiB, measure. */
function benchTib(policy: string): TibResult {
  const start = performance.now();
  const vm = makeVm({ guestBytes: TiB, hostBytes: 1.5 * TiB, policy });
  const createSeconds = (performance.now() - start) / 1000;
  const inflate = timeInflation(vm, TiB - 64 * GiB);
  return {
    policy,
    createSeconds,
    inflate,
    rssBytes: process.memoryUsage().rss,
    bytes: modelBytes(vm),
  };
}

/** Runs the 1 TiB part for `policy` in a child process and prints its line. */
function benchTibInChild(policy: string, widths: readonly number[]): void {
  const child = spawnSync(
    process.execPath,
    ["--import", "tsx", fileURLToPath(import.meta.url), "--tib-child", policy],
    { encoding: "utf8", maxBuffer: 1 << 20 },
  );
  if (child.status !== 0) {
    process.stdout.write(`1 TiB ${policy}: FAILED (status ${child.status})\n${child.stderr}\n`);
    return;
  }
  const result = JSON.parse(child.stdout) as TibResult;
  const { bytes, inflate } = result;
  const total = bytes.guestPerFrame + bytes.hostPerFrame + bytes.accountingPerFrame;
  const cells = [
    policy,
    result.createSeconds.toFixed(2),
    inflate.wallSeconds.toFixed(2),
    inflate.cpuSeconds.toFixed(2),
    inflate.simSeconds.toFixed(3),
    gib(result.rssBytes),
    bytes.guestPerFrame.toFixed(2),
    bytes.hostPerFrame.toFixed(3),
    bytes.accountingPerFrame.toFixed(3),
    total.toFixed(2),
  ];
  process.stdout.write(`${row(cells, widths)}\n`);
}

function benchTibAll(): void {
  const widths = [19, 8, 9, 6, 7, 10, 7, 7, 7, 7];
  const header = ["1 TiB, 64 GiB", "create s", "inflate s", "cpu s", "sim s", "rss", "guest"];
  process.stdout.write(
    "1 TiB guest on a 1.5 TiB host, 64 GiB inflated (each in a child process); " +
      "model bytes per 4 KiB frame\n" +
      `${row([...header, "host", "acct", "total"], widths)}\n`,
  );
  for (const policy of ["highest-order-first", "linux-4k"]) benchTibInChild(policy, widths);
}

function main(): void {
  const { values } = parseArgs({
    options: { quick: { type: "boolean", default: false }, "tib-child": { type: "string" } },
  });
  const child = values["tib-child"];
  if (child !== undefined) {
    process.stdout.write(JSON.stringify(benchTib(child)));
    return;
  }
  // Wall time is the goal's measure but moves with other load on a shared machine; cpu s
  // (this process, user + system) is the stable figure, so the load is printed with it.
  process.stdout.write(
    `balloonlab balloon bench: node ${process.version}, ${cpus()[0]?.model ?? "unknown cpu"} ` +
      `x${cpus().length}, load average ${loadavg()[0]!.toFixed(1)}\n\n`,
  );
  bench64();
  if (!values.quick) benchTibAll();
}

main();
