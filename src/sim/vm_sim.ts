// One virtual machine: the guest model (guest_sim.ts), the host's view of its RAM (src/host),
// the balloon driver in the guest and QEMU's device between them, free page reporting, and one
// simulated clock for all of it.
//
// Theory of operation. Every guest write of a frame (an allocation's first use, init_on_alloc
// zeroing, a migration's copy) faults the host page in through memory.onTouch. The balloon's
// target is QEMU's (`balloon` QMP: the guest's logical size); the driver runs rounds of at most
// 256 entries toward it, each round taking the simulated time the cost model gives its work,
// with the guest's and the host's background threads running in between; a round that runs
// out of memory retries 200 ms later, as fill_balloon does. Free page reporting, host
// khugepaged and the retry timer are events on the same clock as kcompactd and khugepaged.
//
// Left out: the stats queue, free page hinting, vCPU concurrency (a round runs alone).

import { assert } from "../core/assert.ts";
import { PAGE_SIZE } from "../core/limits.ts";
import {
  BALLOON_RETRY_DELAY_MS,
  type BalloonAllocPolicy,
  type BalloonDriver,
  type BalloonRequest,
  createBalloonDriver,
  fillBalloon,
  leakBalloon,
  VIRTIO_BALLOON_OOM_NR_PAGES,
} from "../guest/balloon_driver.ts";
import { FRAME_KIND_MASK, FrameKind } from "../guest/frame_table.ts";
import type { GuestConfig, GuestMemory } from "../guest/guest_memory.ts";
import {
  type PageReportingState,
  pageReportingNotice,
  pageReportingProcess,
  registerPageReporting,
} from "../guest/page_reporting.ts";
import { allocPostBootKernel, DEFAULT_POST_BOOT_KERNEL_BYTES } from "../guest/post_boot.ts";
import { VmEvent } from "../guest/vm_event.ts";
import {
  createGuestRam,
  createHostConfig,
  type GuestRam,
  type HostConfigInput,
  hostGuestWrite,
  hostKhugepagedScan,
  hostReclaim,
  hostSetPressure,
} from "../host/host_api.ts";
import { type VmSnapshot, vmSnapshot } from "../metrics/vm_snapshot.ts";
import { balloonPolicy } from "../policies/balloon_policies.ts";
import type { BalloonPolicy, BalloonPolicyOptions } from "../policies/balloon_policy.ts";
import { type GuestRamMap, guestRamMapOfRanges, ramPageOfPfn } from "../virtio/guest_ram_map.ts";
import {
  createQemuBalloonDevice,
  handleDeflate,
  handleInflate,
  handleReport,
  type QemuBalloonDevice,
} from "../virtio/qemu_balloon_device.ts";
import {
  createVirtioMem,
  type VirtioMem,
  virtioMemContainsPfn,
  virtioMemGuestWrite,
  virtioMemRetry,
  virtioMemSetRequestedSize,
} from "../virtio/virtio_mem_device.ts";
import {
  createDiscardProbe,
  createWorkCounts,
  type DiscardProbe,
  discardProbeBegin,
  discardProbeEnd,
  discardProbeRange,
  type WorkCounts,
} from "../virtio/work_counts.ts";
import { workTimeNs } from "./cost_model.ts";
import {
  advanceTime,
  createGuestSim,
  createGuestSimFromMemory,
  type GuestSim,
  runWokenThreads,
} from "./guest_sim.ts";

export interface VmBalloonConfig {
  readonly policy: string;
  readonly policyOptions?: BalloonPolicyOptions;
  readonly deflateOnOom: boolean;
  /** Free page reporting: off, or on at this page_reporting_order. */
  readonly freePageReporting: { readonly enabled: boolean; readonly order: number };
  /** Duyck's variant: QEMU knows the host THP size (qemu_ram_pagesize = 2 MiB on THP RAM). */
  readonly thpSizeKnown: boolean;
}

export interface VmConfig {
  /** The guest; with virtio-mem, memoryBytes is its boot memory (QEMU -m). */
  readonly guest: GuestConfig;
  readonly host: HostConfigInput;
  readonly balloon: VmBalloonConfig;
  /**
   * A virtio-mem device instead of the balloon for size changes: its region starts fully
   * plugged, and setBalloonTarget sets its requested size to target - boot memory.
   */
  readonly virtioMem?: { readonly regionBytes: number; readonly blockBytes: number };
  /**
   * An already-built guest memory (a proc import) to run instead of booting one from `guest`,
   * which must then be `memory.config`. Its allocated frames count as written (host-resident).
   * Not with virtioMem (the device region is part of the layout at boot).
   */
  readonly memory?: GuestMemory;
}

export interface VmSim {
  readonly config: VmConfig;
  readonly guest: GuestSim;
  readonly ram: GuestRam;
  readonly map: GuestRamMap;
  readonly policy: BalloonPolicy;
  readonly driver: BalloonDriver;
  readonly device: QemuBalloonDevice;
  readonly reporting: PageReportingState | undefined;
  /** num_pages: the balloon size QEMU asks for, in 4 KiB pages. */
  targetPages: number;
  /** When the balloon work item runs again (after "Out of puff!"), or Infinity. */
  balloonRetryMs: number;
  /** When host khugepaged next wakes. */
  hostKhugepagedNextMs: number;
  /** Guest-side work of balloon rounds (allocations, zeroing), for the cost model. */
  readonly work: WorkCounts;
  /** Simulated time spent in balloon and reporting work, in milliseconds. */
  balloonTimeMs: number;
  /** A balloon round is running (its time passing must not start another). */
  balloonRunning: boolean;
  /** The virtio-mem device and driver, when the VM has one. */
  readonly virtioMem: VirtioMem | undefined;
  /** When the virtio-mem driver's retry timer fires, or Infinity. */
  virtioMemRetryMs: number;
}

/** The guest: the given memory, or one booted from config.guest (with its virtio-mem region). */
function vmGuest(config: VmConfig): GuestSim {
  if (config.memory !== undefined) {
    assert(config.virtioMem === undefined, "an already-built guest cannot get a virtio-mem region");
    assert(config.guest === config.memory.config, "config.guest must be the memory's config");
    return createGuestSimFromMemory(config.memory);
  }
  const guestConfig: GuestConfig =
    config.virtioMem === undefined
      ? config.guest
      : { ...config.guest, virtioMem: { ...config.virtioMem, movable: true } };
  return createGuestSim(guestConfig);
}

export function createVmSim(config: VmConfig): VmSim {
  const guest = vmGuest(config);
  const hostConfig = createHostConfig(config.host);
  // The RAMBlock behind the guest's boot RAM, from its layout (pc_memory_init's aliases).
  const map = guestRamMapOfRanges(guest.memory.layout.ramRanges);
  const ram = createGuestRam(hostConfig, map.pageCount);
  const policy = balloonPolicy(config.balloon.policy, config.balloon.policyOptions);
  const memory = guest.memory;
  const work = createWorkCounts();
  const alloc = countAllocFailures(policy.alloc, work);
  const driver = createBalloonDriver(memory, alloc, config.balloon.deflateOnOom);
  const device = createQemuBalloonDevice(ram, map, {
    hostHandling: policy.hostHandling,
    hostDiscardsWholeHugeOnly: policy.hostDiscardsWholeHugeOnly,
    thpSizeKnown: config.balloon.thpSizeKnown,
  });
  const reporting = config.balloon.freePageReporting.enabled
    ? registerPageReporting(memory, config.balloon.freePageReporting.order)
    : undefined;
  const vm: VmSim = {
    config,
    guest,
    ram,
    map,
    policy,
    driver,
    device,
    reporting,
    targetPages: 0,
    balloonRetryMs: Number.POSITIVE_INFINITY,
    hostKhugepagedNextMs: hostConfig.khugepaged.scanSleepMs,
    work,
    balloonTimeMs: 0,
    balloonRunning: false,
    virtioMem: config.virtioMem === undefined ? undefined : createVirtioMem(memory, hostConfig),
    virtioMemRetryMs: Number.POSITIVE_INFINITY,
  };
  memory.onTouch = (pfn, count) => guestWrote(vm, pfn, count);
  memory.onBalloonMigrate = (oldPfn, newPfn) => balloonMigrated(vm, oldPfn, newPfn);
  if (config.balloon.deflateOnOom) memory.oomNotify = () => deflateOnOom(vm);
  touchBootMemory(vm);
  touchAllocatedFrames(vm);
  // A booted guest's kernel allocates before userspace starts; an imported one already did.
  if (config.memory === undefined) {
    const bytes = guest.memory.config.postBootKernelBytes ?? DEFAULT_POST_BOOT_KERNEL_BYTES;
    allocPostBootKernel(memory, bytes);
  }
  // The region starts plugged: the guest boots at its full logical size.
  if (vm.virtioMem !== undefined)
    virtioMemSetRequestedSize(vm.virtioMem, config.virtioMem!.regionBytes);
  return vm;
}

/** A guest write reaches the RAMBlock behind the pfn: boot RAM or the virtio-mem memdev. */
function guestWrote(vm: VmSim, pfn: number, count: number): void {
  const pair = vm.virtioMem;
  if (pair !== undefined && virtioMemContainsPfn(pair.device, pfn)) {
    virtioMemGuestWrite(pair.device, pfn, count);
    return;
  }
  hostGuestWrite(vm.ram, ramPageOfPfn(vm.map, pfn), count);
}

/**
 * What the guest wrote while booting: the ranges Linux kept back (its image, the memmap, early
 * allocations) and the ranges it wrote and freed (layout.bootWritten: the loaded bzImage, the
 * decompressor's copy, the image's init sections, the initrd), where they are RAM. Other free
 * memory is untouched (init_on_free is off).
 */
function touchBootMemory(vm: VmSim): void {
  const layout = vm.guest.memory.layout;
  const ranges = [...layout.reserved, ...(layout.bootWritten ?? [])];
  const touched = new Uint8Array(layout.frameCount);
  for (const range of ranges) touched.fill(1, range.startPfn, range.endPfn);
  for (const ram of layout.ramRanges) {
    let pfn = ram.startPfn;
    while (pfn < ram.endPfn) {
      if (touched[pfn] === 0) {
        pfn++;
        continue;
      }
      const start = pfn;
      while (pfn < ram.endPfn && touched[pfn] === 1) pfn++;
      hostGuestWrite(vm.ram, ramPageOfPfn(vm.map, start), pfn - start);
    }
  }
}

/**
 * Frames in use when the VM is created (an imported guest's allocations; a freshly booted guest
 * has none) were written by the guest at some point: they are resident on the host.
 */
function touchAllocatedFrames(vm: VmSim): void {
  const state = vm.guest.memory.table.state;
  let pfn = 0;
  while (pfn < state.length) {
    if (!inUse(state[pfn]!)) {
      pfn++;
      continue;
    }
    const start = pfn;
    while (pfn < state.length && inUse(state[pfn]!)) pfn++;
    guestWrote(vm, start, pfn - start);
  }
}

function inUse(state: number): boolean {
  const kind = state & FRAME_KIND_MASK;
  return kind !== FrameKind.Free && kind !== FrameKind.Reserved;
}

/** virtballoon_migratepage's two tell_host calls: inflate [new], then deflate [old]. */
function balloonMigrated(vm: VmSim, oldPfn: number, newPfn: number): void {
  const request = singlePageRequest(newPfn, true);
  handleInflate(vm.device, request);
  const old = singlePageRequest(oldPfn, false);
  handleDeflate(vm.device, old);
}

const migrateRequest: BalloonRequest = {
  inflate: true,
  entryCount: 1,
  entryPfn: new Int32Array(1),
  entryPages: new Int32Array(1),
  blockCount: 1,
  blockPfn: new Int32Array(1),
  blockOrder: new Uint8Array(1),
};

function singlePageRequest(pfn: number, inflate: boolean): BalloonRequest {
  migrateRequest.inflate = inflate;
  migrateRequest.entryPfn[0] = pfn;
  migrateRequest.entryPages[0] = 1;
  migrateRequest.blockPfn[0] = pfn;
  return migrateRequest;
}

/** virtio_balloon_oom_notify: leak VIRTIO_BALLOON_OOM_NR_PAGES, telling the host first. */
function deflateOnOom(vm: VmSim): number {
  const round = leakBalloon(vm.driver, VIRTIO_BALLOON_OOM_NR_PAGES, (request) =>
    deflateRequest(vm, request),
  );
  // The OOM path shrinks the balloon under QEMU's target; the work item inflates again later.
  if (round.pages > 0) vm.balloonRetryMs = Math.min(vm.balloonRetryMs, vm.guest.memory.clockMs);
  return round.pages;
}

/** QMP `balloon`: the guest's logical size becomes `targetBytes`; the driver runs now. */
export function setBalloonTarget(vm: VmSim, targetBytes: number): void {
  if (vm.virtioMem !== undefined) {
    setVirtioMemTarget(vm, vm.virtioMem, targetBytes);
    return;
  }
  const ramBytes = vm.map.pageCount * PAGE_SIZE;
  assert(targetBytes >= 0 && targetBytes <= ramBytes, () => `balloon target ${targetBytes}`);
  // virtio_balloon_to_target: num_pages = (ram_size - target) >> VIRTIO_BALLOON_PFN_SHIFT.
  vm.targetPages = Math.floor((ramBytes - targetBytes) / PAGE_SIZE);
  runBalloon(vm);
}

/**
 * virtio-mem's answer to a logical size: QMP qom-set requested-size = target - boot memory;
 * the driver works now, taking the simulated time of its work, and retries on its timer.
 */
function setVirtioMemTarget(vm: VmSim, pair: VirtioMem, targetBytes: number): void {
  const bootBytes = vm.map.pageCount * PAGE_SIZE;
  assert(targetBytes >= bootBytes, () => `virtio-mem target ${targetBytes} below boot memory`);
  const before = virtioMemWorkNs(pair);
  const result = virtioMemSetRequestedSize(pair, targetBytes - bootBytes);
  virtioMemWorked(vm, pair, before, result.retryAfterMs);
}

/** Pages onlined by plugs (add_memory or fake-online), for the cost model (reused). */
const virtioMemOnlineWork = createWorkCounts();

/**
 * The cost model's time of the virtio-mem device's and driver's work so far: the device's work
 * counts plus the onlining of every subblock a PLUG added (memmap init, freeing to the buddy).
 */
function virtioMemWorkNs(pair: VirtioMem): number {
  virtioMemOnlineWork.guestOnlinePages = pair.driver.stats.subblocksPlugged * pair.driver.sbPages;
  return workTimeNs(pair.device.work) + workTimeNs(virtioMemOnlineWork);
}

function virtioMemWorked(vm: VmSim, pair: VirtioMem, beforeNs: number, retryMs: number): void {
  const spentMs = (virtioMemWorkNs(pair) - beforeNs) / 1e6;
  vm.balloonTimeMs += spentMs;
  vm.virtioMemRetryMs = Number.POSITIVE_INFINITY;
  passTime(vm, spentMs);
  vm.virtioMemRetryMs = vm.guest.memory.clockMs + retryMs;
}

function runVirtioMemRetry(vm: VmSim): void {
  const pair = vm.virtioMem!;
  const before = virtioMemWorkNs(pair);
  const result = virtioMemRetry(pair);
  virtioMemWorked(vm, pair, before, result.retryAfterMs);
}

/**
 * Models update_balloon_size_func's loop: rounds until the balloon is at its target, or a round
 * runs out of memory (retry in 200 ms) or cannot make progress (a thp-order remainder).
 */
export function runBalloon(vm: VmSim): void {
  if (vm.balloonRunning) return;
  vm.balloonRunning = true;
  vm.balloonRetryMs = Number.POSITIVE_INFINITY;
  try {
    balloonRounds(vm);
  } finally {
    vm.balloonRunning = false;
  }
}

function balloonRounds(vm: VmSim): void {
  const memory = vm.guest.memory;
  for (let guard = 0; guard < 1 << 30; guard++) {
    const diff = vm.targetPages - vm.driver.list.pageCount;
    if (diff === 0) return;
    const before = hostWorkMark(vm);
    const round =
      diff > 0
        ? fillBalloon(vm.driver, diff, (request) => inflateRequest(vm, request))
        : leakBalloon(vm.driver, -diff, (request) => deflateRequest(vm, request));
    const roundMs = roundTimeNs(vm, before) / 1e6;
    vm.balloonTimeMs += roundMs;
    passTime(vm, roundMs);
    if (round.outOfPuff) {
      vm.balloonRetryMs = memory.clockMs + BALLOON_RETRY_DELAY_MS;
      return;
    }
    if (round.pages === 0) return;
  }
}

// Cost accounting. A round's time is the cost model's (cost_model.ts) of the work counted
// between hostWorkMark and roundTimeNs: the device's virtqueue work, the guest's allocations
// (failed attempts too), zeroing, reclaim and compaction, and the host's syscalls, faults and
// discards. What a discard did to host memory is read per request off the blocks it names
// (DiscardProbe, work_counts.ts): a THP freed whole by its PMD, PTEs zapped one by one, splits.

/** The policy's allocation side, counting each allocation fill_balloon tries (one gfp each). */
function countAllocFailures(alloc: BalloonAllocPolicy, work: WorkCounts): BalloonAllocPolicy {
  return {
    ...alloc,
    gfpForOrder(order: number): number {
      // Every attempt counts as a failure here; inflateRequest takes the successes back out.
      work.guestAllocFailures++;
      return alloc.gfpForOrder(order);
    },
  };
}

const discardProbes = new WeakMap<GuestRam, DiscardProbe>();

/** The VM's discard probe, created on first use. */
function discardProbe(vm: VmSim): DiscardProbe {
  let probe = discardProbes.get(vm.ram);
  if (probe === undefined) {
    probe = createDiscardProbe(vm.ram);
    discardProbes.set(vm.ram, probe);
  }
  return probe;
}

function inflateRequest(vm: VmSim, request: BalloonRequest): void {
  let pages = 0;
  for (let block = 0; block < request.blockCount; block++) pages += 1 << request.blockOrder[block]!;
  vm.work.guestAllocCalls += request.blockCount;
  vm.work.guestAllocFailures -= request.blockCount;
  vm.work.guestAllocPages += pages;
  if (vm.guest.memory.config.initOnAlloc) vm.work.guestZeroPages += pages;
  const probe = discardProbe(vm);
  discardProbeBegin(probe);
  for (let entry = 0; entry < request.entryCount; entry++) {
    const page = ramPageOfPfn(vm.map, request.entryPfn[entry]!);
    discardProbeRange(probe, page, request.entryPages[entry]!);
  }
  handleInflate(vm.device, request);
  discardProbeEnd(probe, vm.work);
}

/**
 * A deflate request: QEMU hints the entries (handleDeflate), then release_pages_balloon gives
 * the request's blocks back to the allocator (leakBalloon frees them after this returns).
 */
function deflateRequest(vm: VmSim, request: BalloonRequest): void {
  let pages = 0;
  for (let block = 0; block < request.blockCount; block++) pages += 1 << request.blockOrder[block]!;
  vm.work.guestFreeCalls += request.blockCount;
  vm.work.guestFreePages += pages;
  handleDeflate(vm.device, request);
}

/** A free page report: the guest isolates the blocks, the host discards them. */
function reportRequest(vm: VmSim, pfns: Int32Array, orders: Uint8Array, count: number): number {
  vm.work.guestReportBlocks += count;
  const probe = discardProbe(vm);
  discardProbeBegin(probe);
  for (let entry = 0; entry < count; entry++) {
    discardProbeRange(probe, ramPageOfPfn(vm.map, pfns[entry]!), 1 << orders[entry]!);
  }
  const result = handleReport(vm.device, pfns, orders, count);
  discardProbeEnd(probe, vm.work);
  return result;
}

/** Counters before a round, to charge the round its own work. */
interface WorkMark {
  /** The cost model's time of the VM's and the device's work counts. */
  timeNs: number;
  hostSyscalls: number;
  faults4k: number;
  faults2m: number;
  collapses: number;
  /** Guest events: pages migrated, pfns compaction scanned, pages reclaimed. */
  migrated: number;
  compactScanned: number;
  reclaimed: number;
}

function hostWorkMark(vm: VmSim): WorkMark {
  const counters = vm.ram.counters;
  const events = vm.guest.memory.events;
  return {
    // The model is a sum over counts, so the two sets of counts can be timed apart.
    timeNs: workTimeNs(vm.work) + workTimeNs(vm.device.work),
    hostSyscalls: counters.madvise + counters.fallocate,
    faults4k: counters.faults4k,
    faults2m: counters.faults2m + counters.faultsHugetlb,
    collapses: counters.collapses,
    migrated: events[VmEvent.pgmigrate_success]!,
    compactScanned:
      events[VmEvent.compact_migrate_scanned]! + events[VmEvent.compact_free_scanned]!,
    reclaimed: events[VmEvent.pgsteal_direct]! + events[VmEvent.pgsteal_kswapd]!,
  };
}

/** Counts read off the host's and the guest's counters for one round (reused, not shared). */
const roundExtra = createWorkCounts();

/** The simulated time of what happened since `before`. */
function roundTimeNs(vm: VmSim, before: WorkMark): number {
  const after = hostWorkMark(vm);
  const extra = roundExtra;
  extra.hostSyscalls = after.hostSyscalls - before.hostSyscalls;
  extra.hostFaults4k = after.faults4k - before.faults4k;
  extra.hostFaults2m = after.faults2m - before.faults2m;
  extra.hostCollapses = after.collapses - before.collapses;
  extra.guestMigratePages = after.migrated - before.migrated;
  extra.guestCompactScanPages = after.compactScanned - before.compactScanned;
  extra.guestReclaimPages = after.reclaimed - before.reclaimed;
  const timeNs = after.timeNs - before.timeNs + workTimeNs(extra);
  assert(timeNs >= 0, () => `a round took negative time ${timeNs}`);
  return timeNs;
}

/** Lets simulated time pass with every background thread and event at its time. */
export function passTime(vm: VmSim, durationMs: number): void {
  assert(durationMs >= 0, "time cannot go backwards");
  const memory = vm.guest.memory;
  const endMs = memory.clockMs + durationMs;
  for (let guard = 0; guard < 1 << 24; guard++) {
    noticeReporting(vm);
    const reportAt = vm.reporting?.runAtMs ?? Number.POSITIVE_INFINITY;
    const timerMs = Math.min(vm.balloonRetryMs, vm.virtioMemRetryMs);
    const nextMs = Math.min(reportAt, vm.hostKhugepagedNextMs, timerMs);
    if (nextMs > endMs) break;
    advanceTime(vm.guest, Math.max(0, nextMs - memory.clockMs));
    if (nextMs === reportAt) runReporting(vm);
    else if (nextMs === vm.virtioMemRetryMs) runVirtioMemRetry(vm);
    else if (nextMs === vm.hostKhugepagedNextMs) runHostKhugepaged(vm);
    else if (vm.balloonRunning) vm.balloonRetryMs = Number.POSITIVE_INFINITY;
    else runBalloon(vm);
  }
  advanceTime(vm.guest, Math.max(0, endMs - memory.clockMs));
  noticeReporting(vm);
}

function noticeReporting(vm: VmSim): void {
  if (vm.reporting !== undefined) pageReportingNotice(vm.guest.memory, vm.reporting);
}

function runReporting(vm: VmSim): void {
  const reporting = vm.reporting!;
  const before = hostWorkMark(vm);
  pageReportingProcess(vm.guest.memory, reporting, (pfns, orders, count) =>
    reportRequest(vm, pfns, orders, count),
  );
  vm.balloonTimeMs += roundTimeNs(vm, before) / 1e6;
}

function runHostKhugepaged(vm: VmSim): void {
  const knobs = vm.ram.config.khugepaged;
  hostKhugepagedScan(vm.ram, knobs.pagesToScan);
  vm.hostKhugepagedNextMs = vm.guest.memory.clockMs + knobs.scanSleepMs;
}

/** Runs guest work that an operation woke, then notices reporting. */
export function settle(vm: VmSim): void {
  runWokenThreads(vm.guest);
  noticeReporting(vm);
}

/** Everything a snapshot records, now. */
export function snapshotVm(vm: VmSim): VmSnapshot {
  return vmSnapshot({
    memory: vm.guest.memory,
    thp: vm.guest.thp,
    ram: vm.ram,
    map: vm.map,
    balloonList: vm.driver.list,
    balloonTargetPages: vm.targetPages,
    device: vm.device.counters,
    ...(vm.virtioMem === undefined
      ? {}
      : {
          virtioMem: {
            ram: vm.virtioMem.device.ram,
            startPfn: vm.virtioMem.device.startPfn,
            regionBytes: vm.virtioMem.device.regionBytes,
            requestedBytes: vm.virtioMem.device.requestedBytes,
            pluggedBytes: vm.virtioMem.device.pluggedBytes,
            requests: virtioMemRequests(vm.virtioMem),
          },
        }),
  });
}

/** The host needs `otherUsedBytes` for everything but this guest: kswapd and its shrinkers run. */
export function applyHostPressure(vm: VmSim, otherUsedBytes: number): number {
  hostSetPressure(vm.ram, otherUsedBytes);
  return hostReclaim(vm.ram, 0);
}

function virtioMemRequests(pair: VirtioMem): number {
  const counters = pair.device.counters;
  return (
    counters.plugRequests +
    counters.unplugRequests +
    counters.unplugAllRequests +
    counters.stateRequests
  );
}
