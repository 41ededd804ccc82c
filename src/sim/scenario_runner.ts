// Runs a resolved scenario (scenario.ts) on one VM: steps in order, background work during and
// between them on the simulated clock, a snapshot record at every `snapshot` step and a timeline
// sample after every step. Pure: no files, no wall clock; the CLI writes what this returns.

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import { hostSnapshot } from "../host/host_api.ts";
import type { VmSnapshot } from "../metrics/vm_snapshot.ts";
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

export function runScenario(scenario: Scenario, hooks: ScenarioHooks): ScenarioRun {
  const vm = createVmSim(vmConfigOf(scenario));
  const run: ScenarioRun = { scenario, snapshots: [], timeline: [], vm };
  run.timeline.push(sample(vm, -1, "start"));
  scenario.steps.forEach((step, index) => {
    runStep(vm, step, run, hooks);
    settle(vm);
    run.timeline.push(sample(vm, index, step.kind));
    hooks.onStep?.(index + 1, scenario.steps.length);
  });
  return run;
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

function sample(vm: VmSim, step: number, kind: string): TimelineSample {
  const host = hostSnapshot(vm.ram);
  let guestFreePages = 0;
  for (const zone of vm.guest.memory.zones) guestFreePages += zone.freePages;
  return {
    step,
    kind,
    simTimeMs: vm.guest.memory.clockMs,
    hostResidentBytes: host.residentBytes,
    hostAllocatedBytes: host.allocatedBytes,
    hostThpBytes: host.blocks.huge * HPAGE_PMD_NR * PAGE_SIZE,
    deferredSplitBytes: host.deferredSplitBytes,
    guestFreeBytes: guestFreePages * PAGE_SIZE,
    balloonBytes: vm.driver.list.pageCount * PAGE_SIZE,
  };
}
