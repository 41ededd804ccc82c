// `balloonlab validate SCENARIO|DIR` (issue #5): the scenario twice, on a real Linux guest under
// QEMU (TCG) and in the model, side by side in DIR/validation.json and validation.html (a
// directory of scenarios: each in turn, then a summary, validate_suite.ts). `--install`
// installs what the real side needs (validate_prereqs.ts); without it, a missing piece is
// reported (exit 2).
// The flow: prerequisites, initramfs (validate_initramfs.ts), QEMU with host knobs
// (validate_vm.ts), the steps on the real guest (validate_real_run.ts), the model run and the
// verdicts (validate_compare.ts).

import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, hostname, release, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { gzipSync } from "node:zlib";
import type { Command } from "@commander-js/extra-typings";
import type { ResultSnapshotJson } from "../sim/result_json.ts";
import type { Scenario } from "../sim/scenario.ts";
import { writeFileAtomic, writeJsonAtomic } from "./output_files.ts";
import { collect } from "./run_command.ts";
import { executeScenario } from "./scenario_execution.ts";
import { loadScenarioFile } from "./scenario_file.ts";
import { createQemuCgroup } from "./validate_cgroup.ts";
import {
  compareSnapshot,
  modelScenario,
  nearestModelKernel,
  readHostThp,
  type Verdict,
} from "./validate_compare.ts";
import { THP_EVENTS, type ThpBaseline, thpBaseline } from "./validate_host_counters.ts";
import { buildInitramfs } from "./validate_initramfs.ts";
import { checkPrerequisites, type GuestKernel, installPrerequisites } from "./validate_prereqs.ts";
import { checkRealSteps, hostBefore, type RealRun, runRealScenario } from "./validate_real_run.ts";
import { NOT_MEASURED } from "./validate_snapshot.ts";
import {
  isDirectory,
  type SuiteRow,
  scenarioFiles,
  suiteEntryName,
  suiteRow,
  suiteTable,
} from "./validate_suite.ts";
import { TRACE_EVENTS } from "./validate_trace.ts";
import {
  applyHostKhugepaged,
  backendObject,
  HostKnobs,
  pagecacheDisk,
  qemuArgs,
  type RunningVm,
  startVm,
} from "./validate_vm.ts";
import { writeValidationHtml } from "./validation_report.ts";

export interface RealSide {
  readonly run: RealRun;
  readonly qemu: string;
  readonly kernel: string;
  readonly knobs: readonly string[];
  readonly wallMs: number;
  /** QEMU's trace file (validate_trace.ts), gzipped, as it was when QEMU stopped. */
  readonly traceGz: Buffer | undefined;
  /** Host /proc/vmstat THP events before QEMU started (validate_host_counters.ts). */
  readonly thp: ThpBaseline | undefined;
}

/** The name of the gzipped trace file in the output directory, next to real-proc/. */
export const TRACE_FILE = "qemu-trace.log.gz";

/** Boots the guest, runs the steps, always stops QEMU and restores host knobs. */
export async function runRealSide(scenario: Scenario, kernel: GuestKernel): Promise<RealSide> {
  const started = Date.now();
  const workDir = mkdtempSync(join(tmpdir(), "balloonlab-validate-"));
  const knobs = new HostKnobs();
  let vm: RunningVm | undefined;
  /** Stops and reaps QEMU while it boots (before `vm` is set). */
  let reapBooting: (() => Promise<void>) | undefined;
  const cleanup = (): void => {
    vm?.stop();
    knobs.restore();
    rmSync(workDir, { recursive: true, force: true });
  };
  // QEMU is killed and reaped before the knobs are undone: its memory cgroup cannot be removed
  // while QEMU is a zombie. The synchronous cleanup on "exit" is the last resort.
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled) return;
    signalled = true;
    void (vm?.stopAndReap() ?? reapBooting?.() ?? Promise.resolve()).finally(() => {
      cleanup();
      process.stderr.write(`validate: ${signal}: QEMU stopped, host knobs restored\n`);
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("exit", cleanup);
  try {
    return await bootAndRun();
  } catch (error) {
    // The guest's kernel messages say why it stopped answering (an OOM kill, a panic).
    const tail = consoleTail(join(workDir, "console.log"));
    if (tail !== "") process.stderr.write(`validate: the guest's console ended with:\n${tail}\n`);
    throw error;
  } finally {
    await vm?.stopAndReap();
    cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("exit", cleanup);
  }

  async function bootAndRun(): Promise<RealSide> {
    const initramfs = buildInitramfs(workDir, kernel);
    // Made first so that it is removed last, after QEMU is gone and the tmpfs is unmounted.
    const cgroup = createQemuCgroup(knobs);
    applyHostKhugepaged(scenario, knobs);
    const backend = backendObject(scenario, workDir, knobs);
    const host = hostBefore(cgroup);
    const disk = pagecacheDisk(scenario, workDir);
    // The THP events' baseline last, right before QEMU starts, after an idle window.
    const before = { ...host, thp: await thpBaseline() };
    const trace = traceEnabled() ? join(workDir, "qemu-trace.log") : undefined;
    const args = qemuArgs(scenario, kernel, {
      initramfs,
      workDir,
      backend,
      disk: disk?.image,
      trace,
    });
    vm = await startVm(args, workDir, cgroup?.procs, (reap) => {
      reapBooting = reap;
    });
    process.stderr.write(
      `validate: guest ${vm.guestRelease} up after ${Date.now() - started} ms\n`,
    );
    // Asked before the steps: after `poweroff` QEMU (-no-reboot) is gone and cannot answer.
    const qemu = await vm.qmp.execute("query-version").catch(() => undefined);
    const run = await runRealScenario(vm, scenario, before, knobs, disk?.files, trace);
    await vm.guest.command("poweroff", 10_000).catch(() => undefined);
    // Read before the work directory goes; QEMU flushes every event as it logs it.
    const traceGz =
      trace !== undefined && existsSync(trace) ? gzipSync(readFileSync(trace)) : undefined;
    return {
      run,
      qemu: describeQemu(qemu),
      kernel: vm.guestRelease,
      knobs: [...knobs.log],
      wallMs: Date.now() - started,
      traceGz,
      thp: before.thp,
    };
  }
}

/** QEMU's trace (validate_trace.ts) is on unless BALLOONLAB_VALIDATE_TRACE=0. */
function traceEnabled(): boolean {
  return process.env.BALLOONLAB_VALIDATE_TRACE !== "0";
}

/** The last lines of the guest's console log ("" if there is none). */
function consoleTail(path: string, lines = 40): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n").trim();
  } catch {
    return "";
  }
}

function describeQemu(reply: unknown): string {
  const version = (reply as { qemu?: { major: number; minor: number; micro: number } } | undefined)
    ?.qemu;
  return version === undefined ? "unknown" : `${version.major}.${version.minor}.${version.micro}`;
}

export interface SnapshotComparison {
  readonly model: ResultSnapshotJson | undefined;
  readonly real: ResultSnapshotJson;
  readonly verdicts: Verdict[];
  readonly notMeasured: readonly string[];
}

/** validation.json: the scenario, both sides' settings and the snapshots side by side. */
export function validationJson(scenario: Scenario, real: RealSide) {
  const hostKernelRelease = release();
  const hostKernel = nearestModelKernel(hostKernelRelease);
  const guestKernel = nearestModelKernel(real.kernel);
  const hostThp = readHostThp();
  const model = executeScenario(modelScenario(scenario, guestKernel, hostKernel, hostThp));
  const snapshots: Record<string, SnapshotComparison> = {};
  for (const realSnapshot of real.run.snapshots) {
    const modelSnapshot = model.result.snapshots.find((each) => each.name === realSnapshot.name);
    const verdicts =
      modelSnapshot === undefined
        ? []
        : compareSnapshot(
            modelSnapshot,
            realSnapshot,
            scenario.guest.memoryBytes,
            real.run.allocatedSource,
            real.run.deferredSplit[realSnapshot.name],
            real.run.trace[realSnapshot.name] !== undefined,
            real.run.hostCounters[realSnapshot.name],
          );
    const unmeasured = [
      ...(real.run.trace[realSnapshot.name] === undefined
        ? ["host.syscalls", "balloon.requests"]
        : []),
      ...(real.run.hostCounters[realSnapshot.name] === undefined ? ["host.counters"] : []),
    ];
    snapshots[realSnapshot.name] = {
      model: modelSnapshot,
      real: realSnapshot,
      verdicts,
      notMeasured: [...NOT_MEASURED, ...unmeasured],
    };
  }
  return {
    scenario,
    real: {
      qemu: real.qemu,
      kernel: real.kernel,
      hostKernel: hostKernelRelease,
      accel: "tcg",
      hostThp,
      hostKnobs: real.knobs,
      allocatedSource: real.run.allocatedSource,
      allocated: real.run.allocated,
      deferredSplit: real.run.deferredSplit,
      pressure: real.run.pressure,
      traceEvents: real.traceGz === undefined ? [] : TRACE_EVENTS,
      trace: real.run.trace,
      thpEvents: real.thp === undefined ? [] : THP_EVENTS,
      thpBaseline:
        real.thp === undefined
          ? undefined
          : { idleMs: real.thp.idleMs, idleDelta: real.thp.idleDelta },
      hostCounters: real.run.hostCounters,
      wallMs: real.wallMs,
      stepMs: real.run.stepMs,
      log: real.run.log,
    },
    model: {
      guestKernel,
      hostKernel,
      note: `host kernel ${hostKernelRelease} modelled as ${hostKernel}`,
    },
    snapshots,
  };
}

function printSummary(validation: ReturnType<typeof validationJson>): void {
  const out = process.stdout;
  for (const [name, snapshot] of Object.entries(validation.snapshots)) {
    out.write(`snapshot ${name}\n`);
    for (const v of snapshot.verdicts) {
      const line =
        `  ${v.quantity.padEnd(30)} model ${String(v.model).padStart(10)}  ` +
        `real ${String(v.real).padStart(10)}  ` +
        `tol ${Math.round(v.tolerance)} ${v.unit}  ${v.verdict}`;
      out.write(`${line}\n`);
    }
  }
}

/** The guest's /proc files as read at each snapshot: DIR/<snapshot>.<file> (e.g. booted.zoneinfo). */
function writeRealProcFiles(
  dir: string,
  procFiles: ReadonlyMap<string, ReadonlyMap<string, string>>,
): void {
  mkdirSync(dir, { recursive: true });
  for (const [snapshot, files] of procFiles) {
    for (const [file, text] of files) writeFileAtomic(join(dir, `${snapshot}.${file}`), text);
  }
}

interface ValidateOptions {
  readonly set: string[];
  readonly out?: string;
}

/** One scenario end to end: validation.json and validation.html in `dir`. */
async function validateFile(file: string, dir: string, set: string[], kernel: GuestKernel) {
  const scenario = loadScenarioFile(file, set);
  const real = await runRealSide(scenario, kernel);
  const validation = validationJson(scenario, real);
  writeJsonAtomic(join(dir, "validation.json"), validation);
  writeRealProcFiles(join(dir, "real-proc"), real.run.procFiles);
  if (real.traceGz !== undefined) writeFileAtomic(join(dir, TRACE_FILE), real.traceGz);
  const html = writeValidationHtml(dir, validation);
  printSummary(validation);
  process.stdout.write(
    `wrote ${join(dir, "validation.json")} and ${html} (real side ${real.wallMs} ms)\n`,
  );
  return { scenario, validation, wallMs: real.wallMs };
}

/** Every scenario of a directory, one sub-directory each, then summary.json and a table. */
async function validateDirectory(dir: string, options: ValidateOptions, kernel: GuestKernel) {
  const files = scenarioFiles(dir);
  for (const file of files) checkRealSteps(loadScenarioFile(file, options.set), file);
  const out = options.out ?? join("balloonlab-out", `validate-${basename(dir)}`);
  const rows: SuiteRow[] = [];
  for (const file of files) {
    const name = suiteEntryName(file);
    process.stderr.write(`validate: ${name} (${rows.length + 1}/${files.length})\n`);
    const { scenario, validation, wallMs } = await validateFile(
      file,
      join(out, name),
      options.set,
      kernel,
    );
    const settings = {
      backing: scenario.host.backing,
      freePageReporting: scenario.balloon.freePageReporting.enabled,
      guestBytes: scenario.guest.memoryBytes,
      wallMs,
    };
    rows.push(suiteRow(name, settings, validation.snapshots));
  }
  const real = { hostKernel: release(), machine: `${hostname()} (${cpus()[0]?.model ?? "?"})` };
  writeJsonAtomic(join(out, "summary.json"), { date: new Date().toISOString(), real, rows });
  process.stdout.write(`\n${suiteTable(rows)}\nwrote ${join(out, "summary.json")}\n`);
}

export function registerValidateCommand(program: Command): void {
  program
    .command("validate")
    .description("run a scenario on a real Linux guest under QEMU and in the model; compare")
    .argument("[scenario]", "scenario file (YAML) or a directory of them; omit with --install")
    .option("--install", "install what the real side needs (apt) and fetch the guest kernel")
    .option("--out <dir>", "output directory (default: balloonlab-out/validate-<name>)")
    .option("--set <path=value>", "override a scenario value (repeatable)", collect, [] as string[])
    .action(async (file, options) => {
      if (file !== undefined && isDirectory(file)) {
        const kernel = options.install === true ? installPrerequisites() : checkPrerequisites();
        await validateDirectory(file, options, kernel);
        return;
      }
      const scenario = file === undefined ? undefined : loadScenarioFile(file, options.set);
      if (scenario !== undefined && file !== undefined) checkRealSteps(scenario, file);
      const kernel = options.install === true ? installPrerequisites() : checkPrerequisites();
      if (scenario === undefined || file === undefined) {
        process.stdout.write(`validate: ready (guest kernel ${kernel.release})\n`);
        return;
      }
      const dir =
        options.out ?? join("balloonlab-out", `validate-${scenario.name || basename(file)}`);
      await validateFile(file, dir, options.set, kernel);
    });
}
