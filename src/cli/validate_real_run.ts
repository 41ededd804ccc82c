// `balloonlab validate` (issue #5): a scenario performed on a real guest. The host walks the
// steps in order: guest steps become workload commands on ttyS1 (validate/guest/workload.c),
// `balloon` is QMP `balloon` followed by polling `query-balloon` until the guest reaches the
// target or stops moving, `wait` is real time, and `snapshot` reads the guest's /proc files and
// its /proc/kpageflags per 2 MiB block, QEMU's smaps and pagemap (with the host's kpageflags) and
// QEMU's memory cgroup (validate_cgroup.ts) for the memory allocated for guest RAM and, with the
// host's kpageflags, the THPs on the host's deferred split queue; `hostPressure` has the host
// reclaim from QEMU's cgroup; `pagecache` reads a file of a read-only ext4 disk made for the run
// (validate_vm.ts); `slab` leaves pipe pages (unmovable, order 0) every `spread`-th of those
// allocated (workload.c). At each snapshot QEMU's trace file so far gives the discard syscalls and the
// balloon's virtqueue requests (validate_trace.ts), and the host's /proc/vmstat THP events since
// QEMU started give `host.counters` (validate_host_counters.ts). Steps the real side cannot do (none today) and
// balloon policies other than Linux's own are refused before QEMU starts.

import { existsSync, readFileSync } from "node:fs";
import { InputError } from "../core/input_error.ts";
import type { ResultSnapshotJson } from "../sim/result_json.ts";
import type { Scenario, ScenarioStep } from "../sim/scenario.ts";
import {
  type AllocatedSource,
  type CgroupCharge,
  type PressureResult,
  pressureCgroup,
  type QemuCgroup,
  readCgroupCharge,
} from "./validate_cgroup.ts";
import {
  type HostCountersDetail,
  hostCountersDetail,
  readThpEvents,
  type ThpBaseline,
} from "./validate_host_counters.ts";
import { type HostMeasurement, measureHost, parseMeminfo } from "./validate_host_measure.ts";
import { hostBlocksText, parseVmstat, realSnapshotJson } from "./validate_snapshot.ts";
import { countTrace, type TraceCounts } from "./validate_trace.ts";
import type { HostKnobs, RunningVm } from "./validate_vm.ts";

/** Step kinds the real side performs. */
export const REAL_STEPS: ReadonlySet<ScenarioStep["kind"]> = new Set([
  "touch",
  "memhog",
  "free",
  "compact",
  "balloon",
  "wait",
  "snapshot",
  "hostPressure",
  "pagecache",
  "slab",
]);

export function checkRealSteps(scenario: Scenario, file: string): void {
  scenario.steps.forEach((step, index) => {
    if (REAL_STEPS.has(step.kind)) return;
    throw new InputError({
      file,
      field: `steps[${index}].${step.kind}`,
      message: `validate cannot perform "${step.kind}" on a real guest yet (it does: ${[
        ...REAL_STEPS,
      ].join(", ")})`,
    });
  });
  if (scenario.balloon.device !== "virtio-balloon" || scenario.balloon.policy !== "linux-4k") {
    throw new InputError({
      file,
      field: "balloon",
      message: "a real guest has Linux's own balloon: device virtio-balloon, policy linux-4k",
    });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface RunState {
  readonly vm: RunningVm;
  readonly scenario: Scenario;
  readonly startedMs: number;
  /** Host MemFree and hugetlb pages in use before QEMU started; QEMU's cgroup if any. */
  readonly before: HostBefore;
  targetBytes: number;
  balloonTimeMs: number;
  readonly log: string[];
  /** The guest's /proc files as read at each snapshot (snapshot name -> file name -> text). */
  readonly procFiles: Map<string, ReadonlyMap<string, string>>;
  readonly allocated: Record<string, AllocatedDetail>;
  readonly knobs: HostKnobs | undefined;
  /** Host THP (block -> head PFN) a complete reclaim took off the deferred split queue. */
  readonly dequeued: Map<number, number>;
  /** Why the queue's fully mapped THPs are not known any more (undefined: they are). */
  queueUnknown: string | undefined;
  /** Host /proc/vmstat slabs_scanned as this run last left it (shrinkers ran if it moved). */
  slabsScanned: number;
  readonly pressure: PressureResult[];
  readonly deferredSplit: Record<string, DeferredSplitDetail>;
  /** Step index -> the guest path of the file a `pagecache` step reads. */
  readonly pagecacheFiles: ReadonlyMap<number, string>;
  /** QEMU's trace file (validate_trace.ts), if it writes one. */
  readonly traceFile: string | undefined;
  readonly trace: Record<string, TraceCounts>;
  readonly hostCounters: Record<string, HostCountersDetail>;
}

/** How `host.deferredSplit_kB` was found at one snapshot (validation.json `real.deferredSplit`). */
export interface DeferredSplitDetail {
  readonly deferredSplit_kB: number;
  /** Anonymous host THPs behind guest RAM with some subpages unmapped (always queued). */
  readonly partialThps: number;
  /** Anonymous host THPs behind guest RAM mapped whole. */
  readonly wholeThps: number;
  /** Of those, the ones counted as queued (queued at fault and not taken off by reclaim). */
  readonly wholeQueued: number;
  /** The host queues every new anonymous THP (v6.12+, shrink_underused 1). */
  readonly queueAtFault: boolean;
  /** false when host reclaim scanned the queue in a way this run cannot follow. */
  readonly known: boolean;
  readonly note?: string;
  /** QEMU cgroup's unmapped anonymous LRU pages (anon LRU - shmem - mapped anon), kB. */
  readonly cgroupUnmappedAnon_kB?: number;
  /** Host-wide hugepages-2048kB/stats/nr_anon_partially_mapped (every process), THPs. */
  readonly hostPartiallyMapped?: number;
}

const THP_DIR = "/sys/kernel/mm/transparent_hugepage";

function readNumber(path: string): number | undefined {
  try {
    const value = Number(readFileSync(path, "utf8").trim());
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Host /proc/vmstat slabs_scanned: objects shrinkers scanned, host-wide. */
export function hostSlabsScanned(): number {
  return parseVmstat(readFileSync("/proc/vmstat", "utf8")).slabs_scanned ?? 0;
}

/** Whether the host queues every new anonymous THP for the deferred split (v6.12+). */
export function hostQueuesThpAtFault(): boolean {
  const path = `${THP_DIR}/shrink_underused`;
  return existsSync(path) && readNumber(path) === 1;
}

/**
 * The host's deferred split queue for guest RAM, THPs counted whole as the model counts them:
 * every partly unmapped anonymous THP (queued by the unmap), plus, on a host that queues every
 * new THP, the whole-mapped ones no complete reclaim has taken off (`dequeued`). `known` is
 * false once a shrinker ran that this run did not drive to the end.
 */
export function deferredSplitDetail(
  anonThp: Uint8Array,
  anonThpHead: Float64Array,
  dequeued: ReadonlyMap<number, number>,
  queueAtFault: boolean,
  unknown: string | undefined,
): DeferredSplitDetail {
  let partialThps = 0;
  let wholeThps = 0;
  let wholeQueued = 0;
  anonThp.forEach((kind, block) => {
    if (kind === 2) partialThps++;
    if (kind !== 1) return;
    wholeThps++;
    if (queueAtFault && dequeued.get(block) !== anonThpHead[block]) wholeQueued++;
  });
  return {
    deferredSplit_kB: (partialThps + wholeQueued) * 2048,
    partialThps,
    wholeThps,
    wholeQueued,
    queueAtFault,
    known: unknown === undefined,
    ...(unknown === undefined ? {} : { note: unknown }),
  };
}

/** What the host looked like before QEMU started, and QEMU's memory cgroup. */
export interface HostBefore {
  readonly memFree_kB: number;
  /** HugePages_Total - HugePages_Free, pages. */
  readonly hugetlbUsed: number;
  readonly cgroup: QemuCgroup | undefined;
  /** Host /proc/vmstat slabs_scanned. */
  readonly slabsScanned: number;
  /** Host /proc/vmstat THP events right before QEMU starts, and the idle background. */
  readonly thp?: ThpBaseline;
}

/** How `host.ramAllocated_kB` was found at one snapshot (validation.json `real.allocated`). */
export interface AllocatedDetail {
  readonly source: AllocatedSource;
  readonly allocated_kB: number;
  /** QEMU's anonymous memory outside guest RAM (subtracted), kB. */
  readonly qemuOwnAnon_kB: number;
  /** QEMU's Rss outside guest RAM (subtracted from the MemFree estimate), kB. */
  readonly qemuOwnRss_kB: number;
  /** Hugetlb pages taken since QEMU started, kB (not charged to a memory cgroup). */
  readonly hugetlb_kB: number;
  readonly cgroup?: CgroupCharge;
  /** The MemFree estimate, also given when the cgroup is the source. */
  readonly memFreeEstimate_kB: number;
}

/**
 * Host memory allocated for guest RAM. With a cgroup: its anonymous and shmem folios on the LRU
 * (`active_anon + inactive_anon`: anon + shmem, with THPs split from their PMD counted whole as
 * the model counts them; memory.stat's `rss`/`anon` counts mapped pages only) less QEMU's own
 * anonymous memory outside guest RAM, plus the hugetlb pages taken since QEMU started (hugetlb
 * is not charged to a memory cgroup). Without: MemFree before less MemFree now less QEMU's Rss
 * outside guest RAM (noisy: anything else on the host moves it).
 */
export function allocatedDetail(
  before: HostBefore,
  host: HostMeasurement,
  charge: CgroupCharge | undefined,
): AllocatedDetail {
  const qemuOwnRss_kB = host.qemuRss_kB - (host.mapping.fields.Rss ?? 0);
  const memFree_kB = host.meminfo.MemFree ?? 0;
  const memFreeEstimate_kB = Math.max(0, before.memFree_kB - memFree_kB - qemuOwnRss_kB);
  const used = (host.meminfo.HugePages_Total ?? 0) - (host.meminfo.HugePages_Free ?? 0);
  const hugetlb_kB = Math.max(0, used - before.hugetlbUsed) * 2048;
  const common = { qemuOwnAnon_kB: host.qemuOwnAnon_kB, qemuOwnRss_kB, hugetlb_kB };
  if (before.cgroup === undefined || charge === undefined) {
    return { source: "memfree", allocated_kB: memFreeEstimate_kB, ...common, memFreeEstimate_kB };
  }
  const charged_kB = Math.max(0, charge.anonLru_kB - host.qemuOwnAnon_kB);
  return {
    source: before.cgroup.version === 1 ? "cgroup-v1" : "cgroup-v2",
    allocated_kB: charged_kB + hugetlb_kB,
    ...common,
    cgroup: charge,
    memFreeEstimate_kB,
  };
}

async function balloonActual(vm: RunningVm): Promise<number> {
  const reply = (await vm.qmp.execute("query-balloon")) as { actual: number };
  return reply.actual;
}

/** QMP balloon, then query-balloon until at the target or unchanged for 5 s (max 5 min). */
async function balloonStep(state: RunState, targetBytes: number): Promise<void> {
  const started = Date.now();
  state.targetBytes = targetBytes;
  await state.vm.qmp.execute("balloon", { value: targetBytes });
  let last = await balloonActual(state.vm);
  let lastChange = Date.now();
  while (last !== targetBytes && Date.now() - lastChange < 5000 && Date.now() - started < 300_000) {
    await sleep(250);
    const actual = await balloonActual(state.vm);
    if (actual !== last) lastChange = Date.now();
    last = actual;
  }
  state.balloonTimeMs += Date.now() - started;
  state.log.push(`balloon ${targetBytes}: actual ${last} after ${Date.now() - started} ms`);
}

async function snapshotStep(state: RunState, name: string): Promise<ResultSnapshotJson> {
  const { vm, scenario } = state;
  const ramBytes = scenario.guest.memoryBytes;
  const guestFiles = await vm.guest.command("snapshot", 120_000);
  const blocks = await vm.guest.command(`kpageflags ${ramBytes / (2 * 2 ** 20)}`, 120_000);
  for (const [file, text] of blocks) guestFiles.set(file, text);
  const host = measureHost(vm.pid, ramBytes);
  const charge =
    state.before.cgroup === undefined ? undefined : readCgroupCharge(state.before.cgroup);
  const allocated = allocatedDetail(state.before, host, charge);
  state.allocated[name] = allocated;
  const trace = readTrace(state);
  if (trace !== undefined) state.trace[name] = trace;
  const thpNow = state.before.thp === undefined ? undefined : readThpEvents();
  const counters =
    state.before.thp === undefined || thpNow === undefined
      ? undefined
      : hostCountersDetail(
          state.before.thp,
          thpNow,
          Date.now(),
          host.qemuOwnThp_kB,
          scenario.host.backing,
        );
  if (counters !== undefined) state.hostCounters[name] = counters;
  if (hostSlabsScanned() !== state.slabsScanned && state.queueUnknown === undefined) {
    state.queueUnknown = "host shrinkers ran outside this run's hostPressure steps";
  }
  const split = deferredSplitDetail(
    host.blocks.anonThp,
    host.blocks.anonThpHead,
    state.dequeued,
    hostQueuesThpAtFault(),
    state.queueUnknown,
  );
  state.deferredSplit[name] = {
    ...split,
    ...(charge === undefined
      ? {}
      : {
          cgroupUnmappedAnon_kB: Math.max(0, charge.anonLru_kB - charge.shmem_kB - charge.anon_kB),
        }),
    hostPartiallyMapped: readNumber(`${THP_DIR}/hugepages-2048kB/stats/nr_anon_partially_mapped`),
  };
  state.procFiles.set(
    name,
    new Map([...guestFiles, ["host-blocks", hostBlocksText(host.blocks.hostHuge)]]),
  );
  return realSnapshotJson({
    name,
    elapsedMs: Date.now() - state.startedMs,
    guestFiles,
    host,
    allocated_kB: allocated.allocated_kB,
    deferredSplit_kB: split.deferredSplit_kB,
    ramBytes,
    balloonActualBytes: await balloonActual(vm),
    balloonTargetBytes: state.targetBytes,
    balloonTimeMs: state.balloonTimeMs,
    trace,
    counters: counters?.counters,
  });
}

/**
 * The trace file's counts so far; undefined without a trace file or when it has no event at all
 * (a QEMU without the log trace backend): the balloon driver's stats buffer is popped while the
 * guest boots, so a working trace always has that line by the first snapshot.
 */
function readTrace(state: RunState): TraceCounts | undefined {
  if (state.traceFile === undefined || !existsSync(state.traceFile)) return undefined;
  const text = readFileSync(state.traceFile, "latin1");
  const counts = countTrace(text, state.scenario.balloon.freePageReporting.enabled);
  return counts.lines > counts.otherLines ? counts : undefined;
}

/** Commands that apply the scenario's guest settings (init_on_alloc is on the command line). */
export function guestSettingCommands(scenario: Scenario): string[] {
  const thp = "/sys/kernel/mm/transparent_hugepage";
  const commands = [
    `write ${thp}/enabled ${scenario.guest.thp.enabled}`,
    `write ${thp}/defrag ${scenario.guest.thp.defrag}`,
  ];
  if (scenario.balloon.freePageReporting.enabled) {
    const order = scenario.balloon.freePageReporting.order;
    commands.push(`write /sys/module/page_reporting/parameters/page_reporting_order ${order}`);
  }
  return commands;
}

/**
 * hostPressure: the kernel reclaims from QEMU's memory cgroup (validate_cgroup.ts). When reclaim
 * ran out (v1 EBUSY, v2 EAGAIN) the deferred split shrinker scanned its whole queue: partly
 * unmapped THPs were split and whole ones taken off, which `dequeued` remembers; a reclaim that
 * stopped at its target scanned part of it, and the queue's whole THPs are unknown after it.
 */
function hostPressureStep(state: RunState, sizeBytes: number): void {
  const cgroup = state.before.cgroup;
  if (cgroup === undefined || state.knobs === undefined) {
    throw new Error("validate: hostPressure needs QEMU's memory cgroup, and none could be made");
  }
  const result = pressureCgroup(cgroup, sizeBytes, state.knobs);
  state.pressure.push(result);
  state.log.push(result.message);
  process.stderr.write(`validate: ${result.message}\n`);
  if (result.exhausted) {
    const host = measureHost(state.vm.pid, state.scenario.guest.memoryBytes);
    host.blocks.anonThp.forEach((kind, block) => {
      if (kind === 1) state.dequeued.set(block, host.blocks.anonThpHead[block]!);
    });
  } else if (result.usageBefore_kB - result.usageAfter_kB > 0) {
    state.queueUnknown ??= `hostPressure ${sizeBytes} reclaimed to its target: the shrinker scanned part of the queue`;
  }
  state.slabsScanned = hostSlabsScanned();
}

async function runStep(
  state: RunState,
  step: ScenarioStep,
  index: number,
  out: ResultSnapshotJson[],
) {
  const guest = state.vm.guest;
  const minute = 600_000;
  switch (step.kind) {
    case "touch":
      await guest.command(`touch ${step.sizeBytes} ${step.free ? 1 : 0}`, minute);
      return;
    case "memhog":
      await guest.command(
        `memhog ${step.id} ${step.sizeBytes} ${step.thp ? 1 : 0} ${step.keepEvery}`,
        minute,
      );
      return;
    case "free":
      await guest.command(`free ${step.id}`, minute);
      return;
    case "slab":
      // Pipe pages: unmovable order-0 pages left every `spread`-th (workload.c `slab`).
      await guest.command(`slab slab-${index} ${step.sizeBytes} ${step.spread}`, minute);
      return;
    case "compact":
      await guest.command("compact", minute);
      return;
    case "balloon":
      await balloonStep(state, step.targetBytes);
      return;
    case "wait":
      await sleep(step.durationMs);
      return;
    case "snapshot":
      out.push(await snapshotStep(state, step.name));
      return;
    case "hostPressure":
      hostPressureStep(state, step.sizeBytes);
      return;
    case "pagecache": {
      const file = state.pagecacheFiles.get(index);
      if (file === undefined) throw new Error(`validate: no disk file for step ${index}`);
      await guest.command(`pagecache ${file} ${step.drop ? 1 : 0}`, minute);
      return;
    }
    default: {
      const unknown: never = step;
      throw new Error(`validate: step ${JSON.stringify(unknown)} is not performed on a real guest`);
    }
  }
}

export interface RealRun {
  readonly snapshots: ResultSnapshotJson[];
  /** The guest's /proc files per snapshot, kept as read (written to DIR/real-proc/). */
  readonly procFiles: ReadonlyMap<string, ReadonlyMap<string, string>>;
  readonly log: string[];
  readonly stepMs: number[];
  /** Where `host.ramAllocated_kB` came from, and its parts per snapshot. */
  readonly allocatedSource: AllocatedSource;
  readonly allocated: Readonly<Record<string, AllocatedDetail>>;
  /** How the deferred split queue was found per snapshot. */
  readonly deferredSplit: Readonly<Record<string, DeferredSplitDetail>>;
  /** What each hostPressure step did. */
  readonly pressure: readonly PressureResult[];
  /** QEMU's trace events counted per snapshot (empty without a trace file). */
  readonly trace: Readonly<Record<string, TraceCounts>>;
  /** `host.counters` per snapshot from host /proc/vmstat (empty when not read). */
  readonly hostCounters: Readonly<Record<string, HostCountersDetail>>;
}

/** Host MemFree and hugetlb pages in use now (taken before QEMU starts). */
export function hostBefore(cgroup: QemuCgroup | undefined): HostBefore {
  const meminfo = parseMeminfo(readFileSync("/proc/meminfo", "utf8"));
  const hugetlbUsed = (meminfo.HugePages_Total ?? 0) - (meminfo.HugePages_Free ?? 0);
  return {
    memFree_kB: meminfo.MemFree ?? 0,
    hugetlbUsed,
    cgroup,
    slabsScanned: hostSlabsScanned(),
  };
}

/** Performs the scenario's steps on a started guest. */
export async function runRealScenario(
  vm: RunningVm,
  scenario: Scenario,
  before: HostBefore,
  knobs?: HostKnobs,
  pagecacheFiles: ReadonlyMap<number, string> = new Map(),
  traceFile?: string,
): Promise<RealRun> {
  const state: RunState = {
    vm,
    scenario,
    startedMs: Date.now(),
    before,
    targetBytes: scenario.guest.memoryBytes,
    balloonTimeMs: 0,
    log: [],
    procFiles: new Map(),
    allocated: {},
    knobs,
    dequeued: new Map(),
    queueUnknown: undefined,
    slabsScanned: before.slabsScanned,
    pressure: [],
    deferredSplit: {},
    pagecacheFiles,
    traceFile,
    trace: {},
    hostCounters: {},
  };
  for (const command of guestSettingCommands(scenario)) {
    await vm.guest.command(command, 60_000);
  }
  const snapshots: ResultSnapshotJson[] = [];
  const stepMs: number[] = [];
  for (const [index, step] of scenario.steps.entries()) {
    const started = Date.now();
    await runStep(state, step, index, snapshots);
    stepMs.push(Date.now() - started);
    process.stderr.write(`validate: ${step.kind} ${Date.now() - started} ms\n`);
  }
  const allocatedSource: AllocatedSource =
    before.cgroup === undefined
      ? "memfree"
      : before.cgroup.version === 1
        ? "cgroup-v1"
        : "cgroup-v2";
  return {
    snapshots,
    procFiles: state.procFiles,
    log: state.log,
    stepMs,
    allocatedSource,
    allocated: state.allocated,
    deferredSplit: state.deferredSplit,
    pressure: state.pressure,
    trace: state.trace,
    hostCounters: state.hostCounters,
  };
}
