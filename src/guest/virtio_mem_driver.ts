// The guest's virtio-mem driver in Sub Block Mode (drivers/virtio/virtio_mem.c, Linux 5.8+,
// David Hildenbrand): memory hot(un)plug in device blocks instead of ballooning.
//
// Theory of operation. The device offers a region of guest-physical memory (memory_layout.ts
// places it); the host sets `requested_size`, the driver plugs or unplugs toward it and the
// device's `plugged_size` follows. Linux adds and removes memory in memory blocks of 128 MiB
// (memory_block_size_bytes); the driver manages each block as subblocks of
// max(device block size, pageblock size) = 2 MiB (v5.19+), one plugged bit each, and one state
// per memory block (enum virtio_mem_sbm_mb_state). One run of the work item
// (virtio_mem_run_wq) re-reads the config and plugs or unplugs the difference:
// - plug (virtio_mem_sbm_plug_request): first unplugged subblocks of partially plugged online
//   blocks (lowest block first, lowest subblock first), then new memory blocks: PLUG requests
//   first, then add_memory, which allocates the block's memmap from existing memory
//   (vmemmap_populate: 2 MiB of struct page per 128 MiB, GFP_KERNEL) and, with auto-onlining
//   (memhp_default_state), onlines it into the device's zone: plugged subblocks are freed to the
//   buddy allocator in max-order blocks (generic_online_page → __free_pages_core, FPI_TO_TAIL
//   from v5.10), unplugged ones stay PG_offline (reserved frames, not managed);
// - unplug (virtio_mem_sbm_unplug_request): blocks in the state order offline-partial, offline,
//   movable-partial, kernel-partial, movable, kernel, each state from the last added block
//   down; in an online block, the whole block in one request when that much is to go and it is
//   fully plugged, else subblock by subblock from the highest, skipping busy ones. A subblock is
//   fake-offlined first (alloc_contig_range, contig_range.ts: isolate, migrate, take; it leaves
//   managed memory), then UNPLUG is sent; a failed request puts it back (fake-online). A block
//   whose subblocks are all unplugged is offlined and removed, freeing its memmap.
// Errors follow the kernel's: -EBUSY (nothing more can be freed now) and -ENOMEM / -ETXTBSY
// arm the retry timer (50 s doubling to 300 s), -ENOSPC stops (no more memory blocks fit the
// usable region), -EAGAIN (NACK: the config changed) retries at once, anything else marks the
// device broken.
//
// Per-block and per-subblock state lives in typed arrays sized at probe for the whole region.
//
// Left out: Big Block Mode (device blocks of a memory block or more), offline memory blocks
// (blocks are always auto-onlined, so the offline states and the offline threshold never bite),
// UNPLUG_ALL at probe (the device starts with nothing plugged), unplug_online=false, NUMA node
// ids, kdump, suspend, the memory notifier's refusal paths, and memmap_on_memory.

import { assert } from "../core/assert.ts";
import {
  MAX_PAGE_ORDER,
  MIGRATE_MOVABLE,
  PAGE_SIZE,
  pageblock_nr_pages,
  pageblock_order,
} from "../core/limits.ts";
import { FPI_NONE, FPI_TO_TAIL, freeOnePage } from "./buddy.ts";
import type { ContigRangeStats } from "./contig_range.ts";
import {
  allocContigRange,
  CONTIG_ENOMEM,
  CONTIG_OK,
  createContigRangeStats,
} from "./contig_range.ts";
import { FRAME_KIND_MASK, FRAME_TAIL, FrameKind, NO_PFN, ORDER_MASK } from "./frame_table.ts";
import { __GFP_RETRY_MAYFAIL, GFP_KERNEL } from "./gfp.ts";
import { type GuestMemory, recalculateZoneLimits } from "./guest_memory.ts";
import {
  STRUCT_PAGE_BYTES,
  virtioMemSubblockMinPages,
  virtioMemUnsupported,
} from "./memory_layout.ts";
import { createOwner, KernelUse, type Owner } from "./owners.ts";
import { allocPages, assignFrames, freePages } from "./page_alloc.ts";
import { type Zone, ZoneType } from "./zone.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Request types (include/uapi/linux/virtio_mem.h). */
export const VIRTIO_MEM_REQ_PLUG = 0;
export const VIRTIO_MEM_REQ_UNPLUG = 1;
export const VIRTIO_MEM_REQ_UNPLUG_ALL = 2;
export const VIRTIO_MEM_REQ_STATE = 3;
/** Response types (include/uapi/linux/virtio_mem.h). */
export const VIRTIO_MEM_RESP_ACK = 0;
export const VIRTIO_MEM_RESP_NACK = 1;
export const VIRTIO_MEM_RESP_BUSY = 2;
export const VIRTIO_MEM_RESP_ERROR = 3;
/** STATE response values (include/uapi/linux/virtio_mem.h). */
export const VIRTIO_MEM_STATE_PLUGGED = 0;
export const VIRTIO_MEM_STATE_UNPLUGGED = 1;
export const VIRTIO_MEM_STATE_MIXED = 2;

/** memory_block_size_bytes() on x86-64 below MEM_SIZE_FOR_LARGE_BLOCK (64 GiB of boot RAM). */
export const MEMORY_BLOCK_SIZE_BYTES = 128 * MiB;
/** VIRTIO_MEM_RETRY_TIMER_MIN_MS / _MAX_MS (drivers/virtio/virtio_mem.c). */
export const VIRTIO_MEM_RETRY_TIMER_MIN_MS = 50_000;
export const VIRTIO_MEM_RETRY_TIMER_MAX_MS = 300_000;
/** VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD (drivers/virtio/virtio_mem.c). */
const VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD = GiB;

/** Kernel error numbers the driver passes around (include/uapi/asm-generic/errno-base.h). */
export const EAGAIN = -11;
export const ENOMEM = -12;
export const EBUSY = -16;
export const EINVAL = -22;
export const ETXTBSY = -26;
export const ENOSPC = -28;

/** enum virtio_mem_sbm_mb_state (drivers/virtio/virtio_mem.c, v5.12+ names). */
export enum SbmMbState {
  /** Unplugged, not added to Linux. Can be reused later. */
  UNUSED = 0,
  /** (Partially) plugged, not added to Linux: add_memory failed and so did the unplug. */
  PLUGGED = 1,
  /** Fully plugged, added, offline. */
  OFFLINE = 2,
  /** Partially plugged, added, offline. */
  OFFLINE_PARTIAL = 3,
  /** Fully plugged, onlined to a kernel zone. */
  KERNEL = 4,
  /** Partially plugged, onlined to a kernel zone. */
  KERNEL_PARTIAL = 5,
  /** Fully plugged, onlined to ZONE_MOVABLE. */
  MOVABLE = 6,
  /** Partially plugged, onlined to ZONE_MOVABLE. */
  MOVABLE_PARTIAL = 7,
}
const SBM_MB_COUNT = 8;
/** The states' names, in enum order, for reports. */
export const SBM_MB_STATE_NAMES: readonly string[] = [
  "unused",
  "plugged",
  "offline",
  "offlinePartial",
  "kernel",
  "kernelPartial",
  "movable",
  "movablePartial",
];

/** The order virtio_mem_sbm_plug_request tries partially plugged blocks in. */
const PLUG_STATES: readonly SbmMbState[] = [
  SbmMbState.KERNEL_PARTIAL,
  SbmMbState.MOVABLE_PARTIAL,
  SbmMbState.OFFLINE_PARTIAL,
];
/**
 * virtio_mem_sbm_unplug_request's order (v5.12+): partially plugged blocks first, to remove
 * whole blocks; ZONE_MOVABLE before kernel zones, as unplugging there is more reliable.
 */
const UNPLUG_STATES: readonly SbmMbState[] = [
  SbmMbState.OFFLINE_PARTIAL,
  SbmMbState.OFFLINE,
  SbmMbState.MOVABLE_PARTIAL,
  SbmMbState.KERNEL_PARTIAL,
  SbmMbState.MOVABLE,
  SbmMbState.KERNEL,
];

/** struct virtio_mem_config (include/uapi/linux/virtio_mem.h), as the driver reads it. */
export interface VirtioMemConfigSpace {
  /** block_size. */
  readonly blockBytes: number;
  /** addr: the region's guest-physical start. */
  readonly addrBytes: number;
  /** region_size. */
  readonly regionBytes: number;
  /** usable_region_size: the part the driver may plug. */
  readonly usableRegionBytes: number;
  /** plugged_size. */
  readonly pluggedBytes: number;
  /** requested_size. */
  readonly requestedBytes: number;
}

/** The driver's view of the device: its config space and its one request queue. */
export interface VirtioMemTransport {
  /** virtio_cread: the config space as it is now. */
  readonly config: VirtioMemConfigSpace;
  /** virtio_mem_send_request: one request; returns the response type. */
  request(type: number, addrBytes: number, nbBlocks: number): number;
}

/** The model's counters of driver work (the real driver exports none; dev_dbg only). */
export interface VirtioMemDriverStats {
  plugRequests: number;
  unplugRequests: number;
  nackResponses: number;
  busyResponses: number;
  errorResponses: number;
  /** Subblocks plugged and unplugged through ACKed requests. */
  subblocksPlugged: number;
  subblocksUnplugged: number;
  /** Subblocks whose fake-offline failed with -EBUSY (skipped) or -ENOMEM. */
  subblocksBusy: number;
  subblocksNoMemory: number;
  memoryBlocksAdded: number;
  memoryBlocksRemoved: number;
  /** Memmap allocations (one per block, or 512 base pages) and their pages, and pages freed. */
  memmapAllocCalls: number;
  memmapPagesAllocated: number;
  memmapPagesFreed: number;
  /** Runs of the work item (virtio_mem_run_wq). */
  runs: number;
}

export interface VirtioMemDriver {
  readonly memory: GuestMemory;
  readonly transport: VirtioMemTransport;
  /** The zone memory blocks are onlined to (ZONE_MOVABLE or ZONE_NORMAL). */
  readonly zone: Zone;
  /** device_block_size. */
  readonly deviceBlockBytes: number;
  /** vm->sbm.sb_size and its derived sizes. */
  readonly sbBytes: number;
  readonly sbPages: number;
  readonly sbsPerMb: number;
  readonly mbPages: number;
  /** sbm.first_mb_id, last_usable_mb_id, next_mb_id: memory block ids (addr / 128 MiB). */
  readonly firstMbId: number;
  lastUsableMbId: number;
  nextMbId: number;
  /** sbm.mb_states, indexed by mb id - firstMbId, for every memory block of the region. */
  readonly mbStates: Uint8Array;
  /** sbm.mb_count: memory blocks per state. */
  readonly mbCount: Int32Array;
  /** sbm.sb_states: 1 when plugged, per (mb id - firstMbId) * sbsPerMb + sb id. */
  readonly sbPlugged: Uint8Array;
  /** plugged_size and requested_size as the driver last read or changed them. */
  pluggedBytes: number;
  requestedBytes: number;
  /** offline_size and offline_threshold (virtio_mem_could_add_memory). */
  offlineBytes: number;
  readonly offlineThresholdBytes: number;
  /** retry_timer_ms: the next retry timer's delay. */
  retryTimerMs: number;
  /** An error the driver cannot handle: it stops processing requests. */
  broken: boolean;
  /** virtio_mem_retry was called during the run (a memory block was removed). */
  retryQueued: boolean;
  /** The running request's *nb_sb: subblocks still to plug or unplug. */
  nbSb: number;
  /** Owner of the memmap pages of added memory blocks: 512 entries per memory block. */
  readonly memmap: Owner;
  /** alloc_contig_range's work and failures for fake-offlining. */
  readonly contig: ContigRangeStats;
  readonly stats: VirtioMemDriverStats;
}

/** How a run of the work item ended. */
export type VirtioMemOutcome = "done" | "busy" | "nomem" | "nospc" | "hostBusy" | "nack" | "broken";

export interface VirtioMemRunResult {
  readonly outcome: VirtioMemOutcome;
  /** The kernel's return code (0 or a negative errno). */
  readonly rc: number;
  /** When the retry timer fires, in ms after the run; Infinity when none is armed. */
  readonly retryAfterMs: number;
}

/**
 * Models virtio_mem_probe → virtio_mem_init for Sub Block Mode: reads the fixed config, sizes
 * the subblocks and the state arrays. Refuses kernels without the driver (5.6: virtio-mem
 * arrived in Linux 5.8) and guests whose layout lacks the device's region.
 */
export function createVirtioMemDriver(
  memory: GuestMemory,
  transport: VirtioMemTransport,
): VirtioMemDriver {
  const sbMinPages = virtioMemSubblockMinPages(memory.rules);
  assert(sbMinPages > 0, () => virtioMemUnsupported(memory.rules));
  const config = transport.config;
  const region = memory.layout.deviceMemory;
  assert(region !== undefined, "the guest has no virtio-mem region (GuestConfig.virtioMem)");
  assert(
    region.startPfn * PAGE_SIZE === config.addrBytes &&
      (region.endPfn - region.startPfn) * PAGE_SIZE === config.regionBytes,
    "the device's region differs from the guest's layout",
  );
  assert(config.pluggedBytes === 0, "UNPLUG_ALL at probe is not modelled: start unplugged");
  const zone = memory.zoneByType[region.zoneType];
  assert(zone !== undefined, "the virtio-mem zone is missing");
  // virtio_mem_init: "We want subblocks to span at least ... pageblock_nr_pages pages".
  const sbBytes = Math.max(sbMinPages * PAGE_SIZE, config.blockBytes);
  assert(sbBytes < MEMORY_BLOCK_SIZE_BYTES, "Big Block Mode (blocks >= 128 MiB) is not modelled");
  const sbsPerMb = MEMORY_BLOCK_SIZE_BYTES / sbBytes;
  // "Round up to the next full memory block".
  const firstMbId = Math.ceil(config.addrBytes / MEMORY_BLOCK_SIZE_BYTES);
  const endMbId = Math.floor((config.addrBytes + config.regionBytes) / MEMORY_BLOCK_SIZE_BYTES);
  const mbSlots = Math.max(0, endMbId - firstMbId);
  const memmapPagesPerMb = (MEMORY_BLOCK_SIZE_BYTES / PAGE_SIZE) * (STRUCT_PAGE_BYTES / PAGE_SIZE);
  return {
    memory,
    transport,
    zone,
    deviceBlockBytes: config.blockBytes,
    sbBytes,
    sbPages: sbBytes / PAGE_SIZE,
    sbsPerMb,
    mbPages: MEMORY_BLOCK_SIZE_BYTES / PAGE_SIZE,
    firstMbId,
    lastUsableMbId: firstMbId - 1,
    nextMbId: firstMbId,
    mbStates: new Uint8Array(mbSlots),
    mbCount: new Int32Array(SBM_MB_COUNT),
    sbPlugged: new Uint8Array(mbSlots * sbsPerMb),
    pluggedBytes: 0,
    requestedBytes: 0,
    offlineBytes: 0,
    offlineThresholdBytes: Math.max(
      2 * MEMORY_BLOCK_SIZE_BYTES,
      VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD,
    ),
    retryTimerMs: VIRTIO_MEM_RETRY_TIMER_MIN_MS,
    broken: false,
    retryQueued: false,
    nbSb: 0,
    memmap: createOwner(
      memory.owners,
      FrameKind.Kernel,
      "virtio_mem memmap",
      mbSlots * memmapPagesPerMb,
      0,
      // vmemmap_populate → vmemmap_alloc_block: alloc_pages users with no counter of their own.
      KernelUse.Direct,
    ),
    contig: createContigRangeStats(),
    stats: createStats(),
  };
}

function createStats(): VirtioMemDriverStats {
  return {
    plugRequests: 0,
    unplugRequests: 0,
    nackResponses: 0,
    busyResponses: 0,
    errorResponses: 0,
    subblocksPlugged: 0,
    subblocksUnplugged: 0,
    subblocksBusy: 0,
    subblocksNoMemory: 0,
    memoryBlocksAdded: 0,
    memoryBlocksRemoved: 0,
    memmapAllocCalls: 0,
    memmapPagesAllocated: 0,
    memmapPagesFreed: 0,
    runs: 0,
  };
}

// ---------------------------------------------------------------------------------------------
// The work item.

/** Bounds the immediate re-runs after a removed memory block (virtio_mem_retry). */
const RUNS_PER_CALL_MAX = 1024;

/**
 * Runs the work item until it has nothing left to do right now: virtio_mem_run_wq, then again
 * at once while a removed memory block queued the work again (virtio_mem_remove_memory calls
 * virtio_mem_retry) and the size is not reached.
 */
export function virtioMemDriverRun(driver: VirtioMemDriver): VirtioMemRunResult {
  let result = virtioMemRunWq(driver);
  for (let run = 1; run < RUNS_PER_CALL_MAX && driver.retryQueued; run++) {
    if (result.outcome === "done" || result.outcome === "broken") break;
    result = virtioMemRunWq(driver);
  }
  driver.retryQueued = false;
  return result;
}

/** Bounds virtio_mem_run_wq's "goto retry" on -EAGAIN. */
const EAGAIN_RETRIES_MAX = 4;

/**
 * Models virtio_mem_run_wq: refresh the config, unplug leftovers, plug or unplug the
 * difference, and map the result to the retry timer.
 */
export function virtioMemRunWq(driver: VirtioMemDriver): VirtioMemRunResult {
  if (driver.broken) return { outcome: "broken", rc: EINVAL, retryAfterMs: Infinity };
  driver.stats.runs++;
  driver.retryQueued = false;
  let rc = 0;
  for (let attempt = 0; attempt < EAGAIN_RETRIES_MAX; attempt++) {
    refreshConfig(driver);
    rc = unplugPendingMb(driver);
    if (rc === 0 && driver.requestedBytes !== driver.pluggedBytes) {
      rc =
        driver.requestedBytes > driver.pluggedBytes
          ? plugRequest(driver, driver.requestedBytes - driver.pluggedBytes)
          : unplugRequest(driver, driver.pluggedBytes - driver.requestedBytes);
    }
    if (rc !== EAGAIN) break;
  }
  return runResult(driver, rc);
}

function runResult(driver: VirtioMemDriver, rc: number): VirtioMemRunResult {
  switch (rc) {
    case 0:
      driver.retryTimerMs = VIRTIO_MEM_RETRY_TIMER_MIN_MS;
      return { outcome: "done", rc, retryAfterMs: Infinity };
    case ENOSPC:
      // "We cannot add any more memory (alignment, physical limit)".
      return { outcome: "nospc", rc, retryAfterMs: Infinity };
    case ETXTBSY:
      return { outcome: "hostBusy", rc, retryAfterMs: driver.retryTimerMs };
    case EBUSY:
      return { outcome: "busy", rc, retryAfterMs: driver.retryTimerMs };
    case ENOMEM:
      // hrtimer_start(&vm->retry_timer, ms_to_ktime(vm->retry_timer_ms)).
      return { outcome: "nomem", rc, retryAfterMs: driver.retryTimerMs };
    case EAGAIN:
      return { outcome: "nack", rc, retryAfterMs: 0 };
    default:
      // "unknown error, marking device broken".
      driver.broken = true;
      return { outcome: "broken", rc, retryAfterMs: Infinity };
  }
}

/**
 * Models virtio_mem_timer_expired: the retry timer fired, so the work item runs again and the
 * next timer waits twice as long (up to VIRTIO_MEM_RETRY_TIMER_MAX_MS; a run that succeeds
 * resets it).
 */
export function virtioMemRetryTimerExpired(driver: VirtioMemDriver): VirtioMemRunResult {
  const timer = driver.retryTimerMs;
  driver.retryTimerMs = Math.min(timer * 2, VIRTIO_MEM_RETRY_TIMER_MAX_MS);
  return virtioMemDriverRun(driver);
}

/** Models virtio_mem_refresh_config: plugged size, last usable memory block, requested size. */
function refreshConfig(driver: VirtioMemDriver): void {
  const config = driver.transport.config;
  assert(config.pluggedBytes === driver.pluggedBytes, () => {
    return `device plugged ${config.pluggedBytes} but the driver counted ${driver.pluggedBytes}`;
  });
  const endAddr = config.addrBytes + config.usableRegionBytes - 1;
  let lastUsable = Math.floor(endAddr / MEMORY_BLOCK_SIZE_BYTES);
  if ((endAddr + 1) % MEMORY_BLOCK_SIZE_BYTES !== 0) lastUsable--;
  driver.lastUsableMbId = lastUsable;
  driver.requestedBytes = config.requestedBytes;
}

// ---------------------------------------------------------------------------------------------
// Memory block and subblock state.

export function mbState(driver: VirtioMemDriver, mbId: number): SbmMbState {
  return driver.mbStates[mbId - driver.firstMbId]! as SbmMbState;
}

/** Models virtio_mem_sbm_set_mb_state: the state and its counter. */
function setMbState(driver: VirtioMemDriver, mbId: number, state: SbmMbState): void {
  const index = mbId - driver.firstMbId;
  const old = driver.mbStates[index]!;
  assert(driver.mbCount[old]! > 0, () => `memory block ${mbId}: no block counted in state ${old}`);
  driver.mbCount[old]!--;
  driver.mbCount[state]!++;
  driver.mbStates[index] = state;
}

function sbIndex(driver: VirtioMemDriver, mbId: number, sbId: number): number {
  return (mbId - driver.firstMbId) * driver.sbsPerMb + sbId;
}

/** Models virtio_mem_sbm_test_sb_plugged: all `count` subblocks from sbId are plugged. */
export function sbPlugged(
  driver: VirtioMemDriver,
  mbId: number,
  sbId: number,
  count: number,
): boolean {
  const first = sbIndex(driver, mbId, sbId);
  for (let index = first; index < first + count; index++) {
    if (driver.sbPlugged[index] === 0) return false;
  }
  return true;
}

/** Models virtio_mem_sbm_test_sb_unplugged: all `count` subblocks from sbId are unplugged. */
function sbUnplugged(driver: VirtioMemDriver, mbId: number, sbId: number, count: number): boolean {
  const first = sbIndex(driver, mbId, sbId);
  for (let index = first; index < first + count; index++) {
    if (driver.sbPlugged[index] !== 0) return false;
  }
  return true;
}

/** The first pfn of a subblock. */
function sbPfn(driver: VirtioMemDriver, mbId: number, sbId: number): number {
  return mbId * driver.mbPages + sbId * driver.sbPages;
}

/** The guest-physical address of a subblock (virtio_mem_mb_id_to_phys + sb_id * sb_size). */
function sbAddr(driver: VirtioMemDriver, mbId: number, sbId: number): number {
  return sbPfn(driver, mbId, sbId) * PAGE_SIZE;
}

// ---------------------------------------------------------------------------------------------
// Requests.

/** Models virtio_mem_sbm_plug_sb → virtio_mem_send_plug_request. */
function plugSb(driver: VirtioMemDriver, mbId: number, sbId: number, count: number): number {
  const size = count * driver.sbBytes;
  const nbBlocks = size / driver.deviceBlockBytes;
  driver.stats.plugRequests++;
  const response = driver.transport.request(
    VIRTIO_MEM_REQ_PLUG,
    sbAddr(driver, mbId, sbId),
    nbBlocks,
  );
  if (response === VIRTIO_MEM_RESP_ACK) {
    driver.pluggedBytes += size;
    driver.sbPlugged.fill(1, sbIndex(driver, mbId, sbId), sbIndex(driver, mbId, sbId) + count);
    driver.stats.subblocksPlugged += count;
    return 0;
  }
  return responseError(driver, response, true);
}

/** Models virtio_mem_sbm_unplug_sb → virtio_mem_send_unplug_request. */
function unplugSb(driver: VirtioMemDriver, mbId: number, sbId: number, count: number): number {
  const size = count * driver.sbBytes;
  const nbBlocks = size / driver.deviceBlockBytes;
  driver.stats.unplugRequests++;
  const type = VIRTIO_MEM_REQ_UNPLUG;
  const response = driver.transport.request(type, sbAddr(driver, mbId, sbId), nbBlocks);
  if (response === VIRTIO_MEM_RESP_ACK) {
    driver.pluggedBytes -= size;
    driver.sbPlugged.fill(0, sbIndex(driver, mbId, sbId), sbIndex(driver, mbId, sbId) + count);
    driver.stats.subblocksUnplugged += count;
    return 0;
  }
  return responseError(driver, response, false);
}

/**
 * The errno a response becomes: NACK → -EAGAIN for a plug (an unplug does not expect it:
 * -ENOMEM, the function's initial rc), BUSY → -ETXTBSY, ERROR → -EINVAL.
 */
function responseError(driver: VirtioMemDriver, response: number, plug: boolean): number {
  switch (response) {
    case VIRTIO_MEM_RESP_NACK:
      driver.stats.nackResponses++;
      return plug ? EAGAIN : ENOMEM;
    case VIRTIO_MEM_RESP_BUSY:
      driver.stats.busyResponses++;
      return ETXTBSY;
    case VIRTIO_MEM_RESP_ERROR:
      driver.stats.errorResponses++;
      return EINVAL;
    default:
      return ENOMEM;
  }
}

// ---------------------------------------------------------------------------------------------
// Plug.

/** Models virtio_mem_sbm_plug_request: partially plugged blocks, unused blocks, new blocks. */
function plugRequest(driver: VirtioMemDriver, diffBytes: number): number {
  driver.nbSb = Math.floor(diffBytes / driver.sbBytes);
  if (driver.nbSb === 0) return 0;
  for (const state of PLUG_STATES) {
    for (let mbId = driver.firstMbId; mbId < driver.nextMbId; mbId++) {
      if (mbState(driver, mbId) !== state) continue;
      const rc = plugAnySb(driver, mbId);
      if (rc !== 0 || driver.nbSb === 0) return rc;
    }
  }
  for (let mbId = driver.firstMbId; mbId < driver.nextMbId; mbId++) {
    if (mbState(driver, mbId) !== SbmMbState.UNUSED) continue;
    if (!couldAddMemory(driver, MEMORY_BLOCK_SIZE_BYTES)) return ENOSPC;
    const rc = plugAndAddMb(driver, mbId);
    if (rc !== 0 || driver.nbSb === 0) return rc;
  }
  while (driver.nbSb > 0) {
    if (!couldAddMemory(driver, MEMORY_BLOCK_SIZE_BYTES)) return ENOSPC;
    const mbId = prepareNextMb(driver);
    if (mbId < 0) return ENOSPC;
    const rc = plugAndAddMb(driver, mbId);
    if (rc !== 0) return rc;
  }
  return 0;
}

/** Models virtio_mem_could_add_memory: offline memory stays under the threshold. */
function couldAddMemory(driver: VirtioMemDriver, sizeBytes: number): boolean {
  return driver.offlineBytes + sizeBytes <= driver.offlineThresholdBytes;
}

/** Models virtio_mem_sbm_prepare_next_mb: the next memory block id, or -1 (-ENOSPC). */
function prepareNextMb(driver: VirtioMemDriver): number {
  if (driver.nextMbId > driver.lastUsableMbId) return -1;
  if (driver.nextMbId - driver.firstMbId >= driver.mbStates.length) return -1;
  driver.mbCount[SbmMbState.UNUSED]!++;
  return driver.nextMbId++;
}

/**
 * Models virtio_mem_sbm_plug_and_add_mb: plug the first subblocks of an unused block, then add
 * it to Linux (which onlines it); if adding fails, unplug them again.
 */
function plugAndAddMb(driver: VirtioMemDriver, mbId: number): number {
  const count = Math.min(driver.nbSb, driver.sbsPerMb);
  let rc = plugSb(driver, mbId, 0, count);
  if (rc !== 0) return rc;
  const full = count === driver.sbsPerMb;
  setMbState(driver, mbId, full ? SbmMbState.OFFLINE : SbmMbState.OFFLINE_PARTIAL);
  rc = addMemory(driver, mbId);
  if (rc !== 0) {
    const unplugged = unplugSb(driver, mbId, 0, count) === 0;
    setMbState(driver, mbId, unplugged ? SbmMbState.UNUSED : SbmMbState.PLUGGED);
    return rc;
  }
  driver.nbSb -= count;
  return 0;
}

/**
 * Models virtio_mem_sbm_plug_any_sb: plug runs of unplugged subblocks of an added block and,
 * when the block is online, fake-online them; a block that becomes fully plugged leaves its
 * _PARTIAL state (old_state - 1).
 */
function plugAnySb(driver: VirtioMemDriver, mbId: number): number {
  const oldState = mbState(driver, mbId);
  while (driver.nbSb > 0) {
    let sbId = 0;
    while (sbId < driver.sbsPerMb && sbPlugged(driver, mbId, sbId, 1)) sbId++;
    if (sbId >= driver.sbsPerMb) break;
    let count = 1;
    while (
      count < driver.nbSb &&
      sbId + count < driver.sbsPerMb &&
      !sbPlugged(driver, mbId, sbId + count, 1)
    ) {
      count++;
    }
    const rc = plugSb(driver, mbId, sbId, count);
    if (rc !== 0) return rc;
    driver.nbSb -= count;
    if (oldState === SbmMbState.OFFLINE_PARTIAL) continue;
    fakeOnline(driver, sbPfn(driver, mbId, sbId), count * driver.sbPages);
  }
  if (sbPlugged(driver, mbId, 0, driver.sbsPerMb)) setMbState(driver, mbId, oldState - 1);
  return 0;
}

/**
 * Models virtio_mem_sbm_add_mb → add_memory_driver_managed with auto-onlining
 * (memhp_default_state=online or online_movable): the memmap is allocated, then the block is
 * onlined (the memory notifier moves it from OFFLINE* to KERNEL* or MOVABLE*).
 */
function addMemory(driver: VirtioMemDriver, mbId: number): number {
  driver.offlineBytes += MEMORY_BLOCK_SIZE_BYTES;
  if (!populateMemmap(driver, mbId)) {
    driver.offlineBytes -= MEMORY_BLOCK_SIZE_BYTES;
    return ENOMEM;
  }
  driver.stats.memoryBlocksAdded++;
  onlineMemoryBlock(driver, mbId);
  driver.offlineBytes -= MEMORY_BLOCK_SIZE_BYTES;
  return 0;
}

/**
 * Models online_pages (mm/memory_hotplug.c) on a memory block: present pages grow by the whole
 * block; each subblock goes through virtio_mem_online_page_cb: plugged ones to the buddy
 * allocator, unplugged ones stay PG_offline; then init_per_zone_wmark_min and zone_pcp_update.
 * MEM_ONLINE (virtio_mem_sbm_notify_online): OFFLINE → KERNEL/MOVABLE, _PARTIAL likewise.
 */
function onlineMemoryBlock(driver: VirtioMemDriver, mbId: number): void {
  const { memory, zone } = driver;
  const first = sbPfn(driver, mbId, 0);
  // move_pfn_range_to_zone → memmap_init_range: the block's pageblocks start MOVABLE.
  for (let pfn = first; pfn < first + driver.mbPages; pfn += pageblock_nr_pages) {
    memory.table.pageblockMt[pfn >>> pageblock_order] = MIGRATE_MOVABLE;
  }
  zone.presentPages += driver.mbPages;
  for (let sbId = 0; sbId < driver.sbsPerMb; sbId++) {
    if (sbPlugged(driver, mbId, sbId, 1))
      onlinePages(driver, sbPfn(driver, mbId, sbId), driver.sbPages);
  }
  zoneLimitsChanged(driver);
  const partial = mbState(driver, mbId) === SbmMbState.OFFLINE_PARTIAL;
  const movable = zone.type === ZoneType.Movable;
  const online = movable ? SbmMbState.MOVABLE : SbmMbState.KERNEL;
  setMbState(driver, mbId, partial ? online + 1 : online);
}

/**
 * Models generic_online_page → __free_pages_core (mm/page_alloc.c): frames that were never
 * handed to the buddy allocator (or were fake-offline) are freed in naturally aligned blocks of
 * up to MAX_PAGE_ORDER, placed at the tail from v5.10, and become managed.
 */
function onlinePages(driver: VirtioMemDriver, startPfn: number, count: number): void {
  const { memory, zone } = driver;
  const table = memory.table;
  const fpi = memory.rules.placePagesToTail ? FPI_TO_TAIL : FPI_NONE;
  let pfn = startPfn;
  const end = startPfn + count;
  while (pfn < end) {
    let order = Math.min(MAX_PAGE_ORDER, 31 - Math.clz32(pfn & -pfn));
    while (pfn + (1 << order) > end) order--;
    for (let frame = pfn; frame < pfn + (1 << order); frame++) {
      assert(table.state[frame] === FrameKind.Reserved, () => `onlining pfn ${frame}: not offline`);
    }
    table.state.fill(FrameKind.Free, pfn, pfn + (1 << order));
    zone.managedPages += 1 << order;
    const migratetype = table.pageblockMt[pfn >>> pageblock_order]!;
    freeOnePage(table, zone, pfn, order, migratetype, fpi);
    pfn += 1 << order;
  }
}

/**
 * Memory hotplug changed present or managed pages: init_per_zone_wmark_min recomputes every
 * zone's watermarks and reserves, zone_pcp_update the zone's per-cpu high and batch.
 */
function zoneLimitsChanged(driver: VirtioMemDriver): void {
  recalculateZoneLimits(driver.memory);
}

/** GFP mask of vmemmap_alloc_block (mm/sparse-vmemmap.c) once the slab allocator is up. */
const MEMMAP_GFP = GFP_KERNEL | __GFP_RETRY_MAYFAIL;

/**
 * Models vmemmap_populate for a hot-added memory block (arch/x86/mm/init_64.c,
 * vmemmap_populate_hugepages): 64 bytes of struct page per 4 KiB is 2 MiB per 128 MiB block,
 * one PMD-sized GFP_KERNEL allocation, or base pages when none is free
 * (vmemmap_populate_basepages). Returns false when memory runs out (add_memory fails).
 */
function populateMemmap(driver: VirtioMemDriver, mbId: number): boolean {
  const { memory, memmap } = driver;
  const pages = driver.mbPages / (PAGE_SIZE / STRUCT_PAGE_BYTES);
  const base = (mbId - driver.firstMbId) * pages;
  const order = Math.log2(pages);
  const huge = allocPages(memory, MEMMAP_GFP, order);
  driver.stats.memmapAllocCalls++;
  if (huge !== NO_PFN) {
    assignFrames(memory, huge, order, FrameKind.Kernel, memmap.id, base);
    for (let page = 0; page < pages; page++) memmap.pages[base + page] = huge + page;
  } else {
    for (let page = 0; page < pages; page++) {
      const pfn = allocPages(memory, MEMMAP_GFP, 0);
      driver.stats.memmapAllocCalls++;
      if (pfn === NO_PFN) {
        memmap.residentPages += page;
        depopulateMemmap(driver, mbId);
        return false;
      }
      assignFrames(memory, pfn, 0, FrameKind.Kernel, memmap.id, base + page);
      memmap.pages[base + page] = pfn;
    }
  }
  memmap.residentPages += pages;
  driver.stats.memmapPagesAllocated += pages;
  return true;
}

/** Models vmemmap_free on memory removal: the block's memmap pages go back to the allocator. */
function depopulateMemmap(driver: VirtioMemDriver, mbId: number): void {
  const { memory, memmap } = driver;
  const table = memory.table;
  const pages = driver.mbPages / (PAGE_SIZE / STRUCT_PAGE_BYTES);
  const base = (mbId - driver.firstMbId) * pages;
  let page = 0;
  while (page < pages) {
    const pfn = memmap.pages[base + page]!;
    if (pfn === NO_PFN) {
      page++;
      continue;
    }
    const state = table.state[pfn]!;
    assert((state & FRAME_KIND_MASK) === FrameKind.Kernel && (state & FRAME_TAIL) === 0, () => {
      return `memmap pfn ${pfn} is not the head of a kernel allocation`;
    });
    const count = 1 << (table.order[pfn]! & ORDER_MASK);
    memmap.pages.fill(NO_PFN, base + page, base + page + count);
    memmap.residentPages -= count;
    freePages(memory, pfn, table.order[pfn]! & ORDER_MASK);
    driver.stats.memmapPagesFreed += count;
    page += count;
  }
}

// ---------------------------------------------------------------------------------------------
// Unplug.

/**
 * Models virtio_mem_sbm_unplug_request: memory blocks in UNPLUG_STATES order, each state from
 * the last added block down. Returns -EBUSY when subblocks are left that could not be freed.
 */
function unplugRequest(driver: VirtioMemDriver, diffBytes: number): number {
  driver.nbSb = Math.floor(diffBytes / driver.sbBytes);
  if (driver.nbSb === 0) return 0;
  for (const state of UNPLUG_STATES) {
    for (let mbId = driver.nextMbId - 1; mbId >= driver.firstMbId; mbId--) {
      if (mbState(driver, mbId) !== state) continue;
      const rc = unplugAnySb(driver, mbId);
      if (rc !== 0 || driver.nbSb === 0) return rc;
    }
  }
  return driver.nbSb > 0 ? EBUSY : 0;
}

/** Models virtio_mem_sbm_unplug_any_sb: online and offline blocks take different paths. */
function unplugAnySb(driver: VirtioMemDriver, mbId: number): number {
  switch (mbState(driver, mbId)) {
    case SbmMbState.KERNEL_PARTIAL:
    case SbmMbState.KERNEL:
    case SbmMbState.MOVABLE_PARTIAL:
    case SbmMbState.MOVABLE:
      return unplugAnySbOnline(driver, mbId);
    case SbmMbState.OFFLINE_PARTIAL:
    case SbmMbState.OFFLINE:
      return unplugAnySbRaw(driver, mbId);
    default:
      return EINVAL;
  }
}

/**
 * Models virtio_mem_sbm_unplug_any_sb_raw: unplug plugged subblocks of a block that is not
 * online, highest first, in runs; no fake-offlining is needed.
 */
function unplugAnySbRaw(driver: VirtioMemDriver, mbId: number): number {
  let sbId = driver.sbsPerMb - 1;
  while (driver.nbSb > 0) {
    while (sbId >= 0 && sbUnplugged(driver, mbId, sbId, 1)) sbId--;
    if (sbId < 0) break;
    let count = 1;
    while (count < driver.nbSb && sbId > 0 && sbPlugged(driver, mbId, sbId - 1, 1)) {
      count++;
      sbId--;
    }
    const rc = unplugSb(driver, mbId, sbId, count);
    if (rc !== 0) return rc;
    driver.nbSb -= count;
    sbId--;
  }
  return 0;
}

/**
 * Models virtio_mem_sbm_unplug_any_sb_online: the whole block in one shot when that much is
 * wanted and it is fully plugged; otherwise (or if that was busy) subblock by subblock from the
 * highest, skipping busy ones. A block left with nothing plugged is offlined and removed.
 */
function unplugAnySbOnline(driver: VirtioMemDriver, mbId: number): number {
  let done = false;
  if (driver.nbSb >= driver.sbsPerMb && sbPlugged(driver, mbId, 0, driver.sbsPerMb)) {
    const rc = unplugSbOnline(driver, mbId, 0, driver.sbsPerMb);
    if (rc === 0) {
      driver.nbSb -= driver.sbsPerMb;
      done = true;
    } else if (rc !== EBUSY) {
      return rc;
    }
  }
  for (let sbId = driver.sbsPerMb - 1; !done && sbId >= 0 && driver.nbSb > 0; sbId--) {
    while (sbId >= 0 && !sbPlugged(driver, mbId, sbId, 1)) sbId--;
    if (sbId < 0) break;
    const rc = unplugSbOnline(driver, mbId, sbId, 1);
    if (rc === EBUSY) continue;
    if (rc !== 0) return rc;
    driver.nbSb--;
  }
  // "Once all subblocks of a memory block were unplugged, offline and remove it."
  if (sbUnplugged(driver, mbId, 0, driver.sbsPerMb)) offlineAndRemoveMb(driver, mbId);
  return 0;
}

/**
 * Models virtio_mem_sbm_unplug_sb_online: fake-offline the subblocks, then ask the device; if
 * it refuses, give the pages back to the buddy allocator.
 */
function unplugSbOnline(
  driver: VirtioMemDriver,
  mbId: number,
  sbId: number,
  count: number,
): number {
  const startPfn = sbPfn(driver, mbId, sbId);
  const pages = driver.sbPages * count;
  const oldState = mbState(driver, mbId);
  let rc = fakeOffline(driver, startPfn, pages);
  if (rc !== 0) {
    if (rc === EBUSY) driver.stats.subblocksBusy += count;
    else driver.stats.subblocksNoMemory += count;
    return rc;
  }
  rc = unplugSb(driver, mbId, sbId, count);
  if (rc !== 0) {
    fakeOnline(driver, startPfn, pages);
    return rc;
  }
  if (oldState === SbmMbState.KERNEL) setMbState(driver, mbId, SbmMbState.KERNEL_PARTIAL);
  if (oldState === SbmMbState.MOVABLE) setMbState(driver, mbId, SbmMbState.MOVABLE_PARTIAL);
  return 0;
}

/** alloc_contig_range attempts per fake-offline in ZONE_MOVABLE (virtio_mem_fake_offline). */
const FAKE_OFFLINE_MOVABLE_TRIES = 5;

/**
 * Models virtio_mem_fake_offline: alloc_contig_range the range (in ZONE_MOVABLE up to five
 * times, "because that zone is supposed to give some guarantees"), then mark it PG_offline and
 * take it out of managed memory (adjust_managed_page_count).
 */
function fakeOffline(driver: VirtioMemDriver, startPfn: number, pages: number): number {
  const { memory, zone } = driver;
  const tries = zone.type === ZoneType.Movable ? FAKE_OFFLINE_MOVABLE_TRIES : 1;
  for (let attempt = 0; attempt < tries; attempt++) {
    const rc = allocContigRange(memory, startPfn, startPfn + pages, driver.contig);
    if (rc === CONTIG_ENOMEM) return ENOMEM;
    if (rc !== CONTIG_OK) continue;
    zone.managedPages -= pages;
    return 0;
  }
  return EBUSY;
}

/**
 * Models virtio_mem_fake_online: PG_offline pages go (back) to the buddy allocator and into
 * managed memory (generic_online_page, or free_contig_range + adjust_managed_page_count).
 */
function fakeOnline(driver: VirtioMemDriver, startPfn: number, pages: number): void {
  onlinePages(driver, startPfn, pages);
}

/**
 * Models virtio_mem_sbm_offline_and_remove_mb → offline_and_remove_memory: every page of the
 * block is PG_offline, so offlining only drops the present pages (the notifier's managed-page
 * adjustments cancel out); removal frees the memmap and queues the work again.
 */
function offlineAndRemoveMb(driver: VirtioMemDriver, mbId: number): void {
  const { memory, zone } = driver;
  const first = sbPfn(driver, mbId, 0);
  for (let pfn = first; pfn < first + driver.mbPages; pfn++) {
    assert(memory.table.state[pfn] === FrameKind.Reserved, () => `offlining pfn ${pfn}: in use`);
  }
  zone.presentPages -= driver.mbPages;
  depopulateMemmap(driver, mbId);
  zoneLimitsChanged(driver);
  setMbState(driver, mbId, SbmMbState.UNUSED);
  driver.stats.memoryBlocksRemoved++;
  // virtio_mem_remove_memory: "We might have freed up memory we can now unplug, retry".
  driver.retryQueued = true;
}

/**
 * Models virtio_mem_unplug_pending_mb: blocks left plugged after a failed add_memory are
 * unplugged before anything else.
 */
function unplugPendingMb(driver: VirtioMemDriver): number {
  if (driver.mbCount[SbmMbState.PLUGGED] === 0) return 0;
  for (let mbId = driver.firstMbId; mbId < driver.nextMbId; mbId++) {
    if (mbState(driver, mbId) !== SbmMbState.PLUGGED) continue;
    driver.nbSb = driver.sbsPerMb;
    const rc = unplugAnySbRaw(driver, mbId);
    if (rc !== 0) return rc;
    setMbState(driver, mbId, SbmMbState.UNUSED);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Views.

/** Memory blocks per state, pages managed in the region and the driver's sizes. */
export interface VirtioMemDriverView {
  readonly pluggedBytes: number;
  readonly requestedBytes: number;
  readonly subblockBytes: number;
  /** Memory blocks per SbmMbState. */
  readonly memoryBlocksByState: readonly number[];
  /** Pages of the region the buddy allocator manages (plugged and online). */
  readonly managedPagesInRegion: number;
}

export function virtioMemDriverView(driver: VirtioMemDriver): VirtioMemDriverView {
  const region = driver.memory.layout.deviceMemory!;
  const table = driver.memory.table;
  let managed = 0;
  for (let pfn = region.startPfn; pfn < region.endPfn; pfn++) {
    if (table.state[pfn] !== FrameKind.Reserved) managed++;
  }
  return {
    pluggedBytes: driver.pluggedBytes,
    requestedBytes: driver.requestedBytes,
    subblockBytes: driver.sbBytes,
    memoryBlocksByState: Array.from(driver.mbCount),
    managedPagesInRegion: managed,
  };
}
