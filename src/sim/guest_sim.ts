// One simulated guest: the memory model with reclaim and compaction wired in, the state of its
// background threads, the workload operations scenarios drive, and the clock.
//
// Time is the model's own (memory.clockMs), advanced by `advanceTime`, never the wall clock.
// Background threads run at their kernel periods inside that time: kswapd and kcompactd as soon
// as they are woken, kcompactd's proactive check every HPAGE_FRAG_CHECK_INTERVAL_MSEC (500 ms)
// when the version has it, khugepaged every scan_sleep_millisecs (or alloc_sleep after a failed
// allocation). Workload operations take no simulated time of their own (the cost model belongs
// to the experiment runner); background work they wake runs right after them.
import { assert } from "../core/assert.ts";
import { PAGE_SIZE } from "../core/limits.ts";
import { createPrng } from "../core/prng.ts";
import {
  createProcess,
  exitProcess,
  type Process,
  punchHoles,
  touchProcess,
} from "../guest/anon.ts";
import {
  compactMemory,
  createKcompactdState,
  type KcompactdState,
  kcompactdDoWork,
  proactiveCompactionCheck,
  tryToCompactPagesResult,
} from "../guest/compaction.ts";
import { createGuestMemory, type GuestConfig, type GuestMemory } from "../guest/guest_memory.ts";
import { allocKernelMemory } from "../guest/kernel_alloc.ts";
import {
  createKhugepagedState,
  type KhugepagedKnobs,
  type KhugepagedState,
  khugepagedScan,
} from "../guest/khugepaged.ts";
import type { Owner } from "../guest/owners.ts";
import { kswapdBalance, vmstatRefreshPcp } from "../guest/page_alloc.ts";
import {
  createPageCacheState,
  dropCaches,
  type PageCacheState,
  readFileIntoCache,
  reclaimPageCache,
  releaseFile,
  writeTmpfsFile,
} from "../guest/page_cache.ts";
import {
  createThpState,
  deferredSplitCount,
  deferredSplitScan,
  type ThpState,
} from "../guest/thp.ts";

/** HPAGE_FRAG_CHECK_INTERVAL_MSEC (mm/compaction.c): kcompactd's proactive check period. */
export const HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500;
/** SHRINK_BATCH (include/linux/shrinker.h): objects a shrinker scans per call. */
const SHRINK_BATCH = 128;

export interface GuestSim {
  readonly memory: GuestMemory;
  readonly pageCache: PageCacheState;
  readonly thp: ThpState;
  readonly khugepaged: KhugepagedState;
  readonly kcompactd: KcompactdState;
  /** Live processes by their scenario id. */
  readonly processes: Map<string, Process>;
  /** When khugepaged and kcompactd's timer next wake, in sim milliseconds. */
  khugepagedNextMs: number;
  kcompactdNextMs: number;
  /** When vmstat refresh next runs (per-cpu high decay on 6.7+), in sim milliseconds. */
  vmstatNextMs: number;
}

/** sysctl_stat_interval = HZ (mm/vmstat.c): vmstat_update runs once a second. */
const STAT_INTERVAL_MS = 1000;

export interface GuestSimOptions {
  readonly khugepaged?: KhugepagedKnobs;
}

/** Models shrink_node for the model's reclaimable memory: clean page cache, then shrink_slab. */
function reclaim(sim: GuestSim, targetPages: number, direct: boolean): number {
  let freed = reclaimPageCache(sim.memory, sim.pageCache, targetPages, direct);
  for (let round = 0; freed < targetPages && round < 64; round++) {
    if (deferredSplitCount(sim.thp) === 0) break;
    freed += deferredSplitScan(sim.memory, sim.thp, SHRINK_BATCH);
  }
  return freed;
}

/** A guest booted from `config`: a fresh GuestMemory wrapped by createGuestSimFromMemory. */
export function createGuestSim(config: GuestConfig, options: GuestSimOptions = {}): GuestSim {
  return createGuestSimFromMemory(createGuestMemory(config), options);
}

/**
 * A GuestSim around an already-built memory (a fresh boot, or a proc import's guest): it adds
 * the background threads' state and installs the reclaim and compaction hooks. The memory must
 * not belong to another GuestSim (the hooks are replaced).
 */
export function createGuestSimFromMemory(
  memory: GuestMemory,
  options: GuestSimOptions = {},
): GuestSim {
  const khugepaged = createKhugepagedState(options.khugepaged);
  const sim: GuestSim = {
    memory,
    pageCache: createPageCacheState(),
    thp: createThpState(memory),
    khugepaged,
    kcompactd: createKcompactdState(),
    processes: new Map(),
    khugepagedNextMs: khugepaged.scanSleepMillisecs,
    kcompactdNextMs: HPAGE_FRAG_CHECK_INTERVAL_MSEC,
    vmstatNextMs: memory.rules.pcpHighAutoTune ? STAT_INTERVAL_MS : Number.POSITIVE_INFINITY,
  };
  memory.hooks = {
    reclaim: (_memory, targetPages, direct) => reclaim(sim, targetPages, direct),
    compact: (target, order, migratetype, priority) =>
      tryToCompactPagesResult(target, order, migratetype, priority),
  };
  return sim;
}

/** Runs the background work that operations woke: kswapd, then kcompactd. */
export function runWokenThreads(sim: GuestSim): void {
  const background = sim.memory.background;
  for (let round = 0; round < 4; round++) {
    if (background.kswapdWoken) kswapdBalance(sim.memory);
    else if (background.kcompactdOrder >= 0) runKcompactd(sim);
    else return;
  }
}

/**
 * A woken kcompactd runs at once; on v5.9+ its wait then restarts (kcompactd(): the timeout is
 * reset after kcompactd_do_work), so the next proactive check is a full interval later.
 */
function runKcompactd(sim: GuestSim): void {
  const ran = kcompactdDoWork(sim.memory, sim.kcompactd);
  if (ran && sim.memory.rules.proactiveCompaction) {
    sim.kcompactdNextMs = sim.memory.clockMs + sim.kcompactd.timeoutMs;
  }
}

/** Lets `durationMs` of simulated time pass, running the periodic threads at their times. */
export function advanceTime(sim: GuestSim, durationMs: number): void {
  assert(durationMs >= 0, "time cannot go backwards");
  const memory = sim.memory;
  const endMs = memory.clockMs + durationMs;
  for (;;) {
    runWokenThreads(sim);
    const proactive = memory.rules.proactiveCompaction;
    const nextMs = Math.min(
      sim.khugepagedNextMs,
      proactive ? sim.kcompactdNextMs : endMs + 1,
      sim.vmstatNextMs,
    );
    if (nextMs > endMs) break;
    memory.clockMs = nextMs;
    if (nextMs === sim.vmstatNextMs) {
      vmstatRefreshPcp(memory);
      sim.vmstatNextMs = nextMs + STAT_INTERVAL_MS;
    }
    if (proactive && nextMs === sim.kcompactdNextMs) {
      sim.kcompactdNextMs = nextMs + proactiveCompactionCheck(memory, sim.kcompactd);
    }
    if (nextMs === sim.khugepagedNextMs) {
      const processes = [...sim.processes.values()];
      const result = khugepagedScan(memory, sim.khugepaged, sim.thp, processes);
      sim.khugepagedNextMs = nextMs + result.sleepMs;
    }
  }
  memory.clockMs = endMs;
}

/**
 * usemem: anonymous memory touched, THP allowed (MADV_HUGEPAGE) or not (MADV_NOHUGEPAGE), then
 * all but every k-th page freed.
 */
export function memhog(
  sim: GuestSim,
  id: string,
  sizeBytes: number,
  thp: boolean,
  keepEvery: number,
): number {
  assert(!sim.processes.has(id), () => `process ${id} already exists`);
  // usemem's THP switch: MADV_HUGEPAGE when allowed, MADV_NOHUGEPAGE when not.
  const process = createProcess(sim.memory, id, sizeBytes, {
    thp,
    noHugepage: !thp,
    thpState: sim.thp,
  });
  sim.processes.set(id, process);
  const missing = touchProcess(sim.memory, process, 0, process.sizePages);
  if (keepEvery > 1) punchHoles(sim.memory, process, keepEvery);
  runWokenThreads(sim);
  return missing;
}

/** Ends a process (or all of them): its memory is freed. */
export function freeProcess(sim: GuestSim, id: string): void {
  const ids = id === "all" ? [...sim.processes.keys()] : [id];
  for (const each of ids) {
    const process = sim.processes.get(each);
    assert(process !== undefined, () => `no process ${each}`);
    exitProcess(sim.memory, process);
    sim.processes.delete(each);
  }
  runWokenThreads(sim);
}

/** A tmpfs file written; with `deleteAfter` it is deleted again (touched, then free). */
export function touchTmpfs(
  sim: GuestSim,
  name: string,
  sizeBytes: number,
  deleteAfter: boolean,
): Owner {
  const owner = writeTmpfsFile(sim.memory, name, sizeBytes);
  if (deleteAfter) releaseFile(sim.memory, owner);
  runWokenThreads(sim);
  return owner;
}

/** A file read into the page cache; with `drop` the clean cache is dropped (drop_caches=1). */
export function pageCacheStep(sim: GuestSim, name: string, sizeBytes: number, drop: boolean): void {
  if (sizeBytes > 0) readFileIntoCache(sim.memory, sim.pageCache, name, sizeBytes);
  if (drop) dropCaches(sim.memory, sim.pageCache);
  runWokenThreads(sim);
}

/** Unmovable kernel memory, spread over `spread` times as many pageblocks. */
export function slabStep(sim: GuestSim, name: string, sizeBytes: number, spread: number): void {
  allocKernelMemory(sim.memory, name, sizeBytes, spread, false);
  runWokenThreads(sim);
}

/** echo 1 > /proc/sys/vm/compact_memory. */
export function compactStep(sim: GuestSim): void {
  compactMemory(sim.memory);
  runWokenThreads(sim);
}

/**
 * Fragments a guest as a long-running machine does: files of random size are read into the
 * page cache with slab allocations in between, then every other file is deleted. What stays is
 * scattered movable page cache plus slab pages pinning their pageblocks.
 */
export function fragmentGuest(sim: GuestSim, seed: number): void {
  const prng = createPrng(seed);
  const memory = sim.memory;
  let managedBytes = 0;
  for (const zone of memory.zones) managedBytes += zone.managedPages * PAGE_SIZE;
  const budgetBytes = Math.floor(managedBytes * 0.8);
  const files: Owner[] = [];
  let usedBytes = 0;
  for (let index = 0; usedBytes < budgetBytes; index++) {
    const fileBytes = (64 + prng.below(4032)) * 1024;
    files.push(readFileIntoCache(memory, sim.pageCache, `file-${index}`, fileBytes));
    usedBytes += fileBytes;
    if (index % 16 === 0) {
      allocKernelMemory(memory, `slab-${index}`, 16 * 1024, 1, false);
      usedBytes += 16 * 1024;
    }
  }
  for (let index = 0; index < files.length; index += 2) releaseFile(memory, files[index]!);
  runWokenThreads(sim);
}
