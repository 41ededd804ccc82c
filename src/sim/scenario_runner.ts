// Runs a resolved scenario (scenario.ts) on one VM: steps in order, background work during and
// between them on the simulated clock, a snapshot record at every `snapshot` step and a timeline
// sample after every step. Pure: no files, no wall clock; the CLI writes what this returns.
// A scenario with guest.initialState starts from a captured guest: the CLI reads and parses the
// files (src/cli/initial_state.ts) and passes them in; the guest is importProc's.

import { assert } from "../core/assert.ts";
import { InputError } from "../core/input_error.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import type { GuestMemory } from "../guest/guest_memory.ts";
import { importProc, type ProcImportInput } from "../guest/proc_import.ts";
import { hostBlockHuge } from "../host/host_api.ts";
import type { VmSnapshot } from "../metrics/vm_snapshot.ts";
import { guestRamMapOfRanges } from "../virtio/guest_ram_map.ts";
import {
  compactStep,
  freeProcess,
  memhog,
  pageCacheStep,
  slabStep,
  touchTmpfs,
} from "./guest_sim.ts";
import type { Scenario, ScenarioStep } from "./scenario.ts";
import {
  applyHostPressure,
  createVmSim,
  passTime,
  setBalloonTarget,
  settle,
  snapshotVm,
  type VmConfig,
  type VmSim,
} from "./vm_sim.ts";

/** One row of the timeline: the figures people plot, after each step. */
export interface TimelineSample {
  readonly step: number;
  readonly kind: string;
  readonly simTimeMs: number;
  readonly hostResidentBytes: number;
  readonly hostAllocatedBytes: number;
  readonly hostThpBytes: number;
  readonly deferredSplitBytes: number;
  readonly guestFreeBytes: number;
  readonly balloonBytes: number;
}

export interface NamedSnapshot {
  readonly name: string;
  readonly snapshot: VmSnapshot;
  /** The VM at that moment, for views that need the model itself (/proc text, maps). */
  readonly views: SnapshotViews;
  /** Simulated time spent in balloon and reporting work up to the snapshot. */
  readonly balloonTimeMs: number;
}

/** The kernel's views and per-2 MiB pictures of guest and host memory, taken at a snapshot. */
export interface SnapshotViews {
  readonly buddyinfo: Record<string, number[]>;
  readonly vmstat: Record<string, number>;
  readonly meminfoKb: Record<string, number>;
  readonly maps: MemoryMaps;
}

/**
 * One byte per 2 MiB block of guest RAM (RAMBlock order): what the guest uses it for (the
 * FrameKind holding most of its frames, FRAME_KIND_COUNT for a guest THP mapped by a PMD) and
 * the host's BlockState with its resident page count.
 */
export interface MemoryMaps {
  readonly guestBlockKind: Uint8Array;
  readonly hostBlockState: Uint8Array;
  readonly hostResidentPages: Uint16Array;
}

export interface ScenarioRun {
  readonly scenario: Scenario;
  readonly snapshots: NamedSnapshot[];
  readonly timeline: TimelineSample[];
  readonly vm: VmSim;
}

export interface ScenarioHooks {
  /** Called after each step with the number of steps done. */
  onStep?: (done: number, total: number) => void;
  /** Builds the views recorded at a snapshot (kept out of sim to respect layering). */
  views: (vm: VmSim) => SnapshotViews;
}

export function vmConfigOf(scenario: Scenario): VmConfig {
  const { guest, host, balloon } = scenario;
  const virtioMem =
    balloon.device === "virtio-mem"
      ? { regionBytes: balloon.virtioMem.regionBytes, blockBytes: balloon.virtioMem.blockBytes }
      : undefined;
  // With virtio-mem, guest.memory is the logical size at start: boot memory plus the region.
  const bootBytes = guest.memoryBytes - (virtioMem?.regionBytes ?? 0);
  assert(bootBytes > 0, "virtio-mem region larger than the guest");
  return {
    virtioMem,
    guest: {
      memoryBytes: bootBytes,
      machine: guest.machine,
      kernel: guest.kernel,
      cpus: guest.cpus,
      thpEnabled: guest.thp.enabled,
      thpDefrag: guest.thp.defrag,
      initOnAlloc: guest.initOnAlloc,
    },
    host: {
      kernel: host.kernel,
      memoryBytes: host.memoryBytes,
      backing: host.backing,
      hugetlbPageBytes: host.hugetlbPageBytes,
      thp: host.thp,
      khugepaged: host.khugepaged,
      discardInhibited: host.discardInhibited,
      seed: scenario.seed,
    },
    balloon: {
      policy: balloon.policy,
      policyOptions: { hostDiscardsWholeHugeOnly: balloon.hostDiscardsWholeHugeOnly },
      deflateOnOom: balloon.deflateOnOom,
      freePageReporting: balloon.freePageReporting,
      thpSizeKnown: balloon.thpSizeKnown,
    },
  };
}

/** How far guest.memory may be from a capture's RAM size (a few MiB of rounding). */
export const INITIAL_STATE_SIZE_TOLERANCE_BYTES = 4 * 1024 * 1024;

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1).replace(/\.0$/, "")} MiB`;
}

/**
 * The guest a capture describes, with the scenario's guest settings. The capture decides the
 * size: guest.memory must be its RAMBlock size (guest_ram_map.ts) within a few MiB.
 */
export function importedGuestMemory(scenario: Scenario, input: ProcImportInput): GuestMemory {
  const { guest } = scenario;
  // The zones' sizes come from zoneinfo when given, else from pagetypeinfo's block counts.
  const file = input.zoneinfo?.file ?? input.pagetypeinfo.file;
  if (scenario.balloon.device === "virtio-mem") {
    const message = "virtio-mem cannot start from guest.initialState (the capture has no region)";
    throw new InputError({ file, field: "balloon.device", message });
  }
  const { memory } = importProc(input, {
    machine: guest.machine,
    cpus: guest.cpus,
    thpEnabled: guest.thp.enabled,
    thpDefrag: guest.thp.defrag,
    initOnAlloc: guest.initOnAlloc,
  });
  const capturedBytes = guestRamMapOfRanges(memory.layout.ramRanges).pageCount * PAGE_SIZE;
  if (Math.abs(capturedBytes - guest.memoryBytes) > INITIAL_STATE_SIZE_TOLERANCE_BYTES) {
    throw new InputError({
      file,
      field: "guest.memory",
      message:
        `the scenario says ${mib(guest.memoryBytes)} but the captured guest has` +
        ` ${mib(capturedBytes)} of RAM; set guest.memory to the captured size`,
    });
  }
  return memory;
}

/** The scenario's VM: booted from guest, or the captured guest when it has initialState. */
export function scenarioVmConfig(scenario: Scenario, initialState?: ProcImportInput): VmConfig {
  if (scenario.guest.initialState === undefined) {
    assert(initialState === undefined, "initialState given to a scenario without one");
    return vmConfigOf(scenario);
  }
  assert(
    initialState !== undefined,
    "guest.initialState: pass the parsed files (loadInitialState, src/cli/initial_state.ts)",
  );
  const memory = importedGuestMemory(scenario, initialState);
  return { ...vmConfigOf(scenario), guest: memory.config, memory };
}

/**
 * Runs the scenario. `initialState` is the parsed capture of guest.initialState (required
 * exactly when the scenario has one; the caller reads the files, the runner reads nothing).
 */
export function runScenario(
  scenario: Scenario,
  hooks: ScenarioHooks,
  initialState?: ProcImportInput,
): ScenarioRun {
  const vm = createVmSim(scenarioVmConfig(scenario, initialState));
  const run: ScenarioRun = { scenario, snapshots: [], timeline: [], vm };
  run.timeline.push(sample(vm, -1, "start"));
  scenario.steps.forEach((step, index) => {
    if (step.kind === "wait") waitSampled(vm, step.durationMs, run, index);
    else runStep(vm, step, run, hooks);
    settle(vm);
    run.timeline.push(sample(vm, index, step.kind));
    hooks.onStep?.(index + 1, scenario.steps.length);
  });
  return run;
}

/** Timeline samples during a wait: every second of simulated time, at most this many per wait. */
export const WAIT_SAMPLES_MAX = 600;
const WAIT_SAMPLE_MS_MIN = 1000;

/** A wait, with timeline samples along it so that curves show what happens meanwhile. */
function waitSampled(vm: VmSim, durationMs: number, run: ScenarioRun, index: number): void {
  const chunkMs = Math.max(WAIT_SAMPLE_MS_MIN, durationMs / WAIT_SAMPLES_MAX);
  let leftMs = durationMs;
  while (leftMs > chunkMs) {
    passTime(vm, chunkMs);
    leftMs -= chunkMs;
    run.timeline.push(sample(vm, index, "wait"));
  }
  passTime(vm, leftMs);
}

function runStep(vm: VmSim, step: ScenarioStep, run: ScenarioRun, hooks: ScenarioHooks): void {
  const guest = vm.guest;
  switch (step.kind) {
    case "touch":
      touchTmpfs(guest, `touch-${run.timeline.length}`, step.sizeBytes, step.free);
      return;
    case "memhog":
      memhog(guest, step.id, step.sizeBytes, step.thp, step.keepEvery);
      return;
    case "free":
      freeProcess(guest, step.id);
      return;
    case "pagecache":
      pageCacheStep(guest, `file-${run.timeline.length}`, step.sizeBytes, step.drop);
      return;
    case "slab":
      slabStep(guest, `slab-${run.timeline.length}`, step.sizeBytes, step.spread);
      return;
    case "hostPressure":
      applyHostPressure(vm, step.sizeBytes);
      return;
    case "compact":
      compactStep(guest);
      return;
    case "balloon":
      setBalloonTarget(vm, step.targetBytes);
      return;
    case "wait":
      passTime(vm, step.durationMs);
      return;
    case "snapshot":
      run.snapshots.push({
        name: step.name,
        snapshot: snapshotVm(vm),
        views: hooks.views(vm),
        balloonTimeMs: vm.balloonTimeMs,
      });
      return;
  }
}

/**
 * One timeline row from the models' running counters (no full host snapshot: waits take up
 * to WAIT_SAMPLES_MAX of these); only the huge-block count needs a pass over the blocks.
 */
function sample(vm: VmSim, step: number, kind: string): TimelineSample {
  const ram = vm.ram;
  let hugeBlocks = 0;
  for (let block = 0; block < ram.blockCount; block++) if (hostBlockHuge(ram, block)) hugeBlocks++;
  let guestFreePages = 0;
  for (const zone of vm.guest.memory.zones) guestFreePages += zone.freePages;
  return {
    step,
    kind,
    simTimeMs: vm.guest.memory.clockMs,
    hostResidentBytes: ram.residentPages * PAGE_SIZE,
    hostAllocatedBytes: ram.allocatedPages * PAGE_SIZE,
    hostThpBytes: hugeBlocks * HPAGE_PMD_NR * PAGE_SIZE,
    // Every queued THP is a whole compound page (deferred_split_folio).
    deferredSplitBytes: ram.splitQueueLen * HPAGE_PMD_NR * PAGE_SIZE,
    guestFreeBytes: guestFreePages * PAGE_SIZE,
    balloonBytes: vm.driver.list.pageCount * PAGE_SIZE,
  };
}
