// QEMU's virtio-mem device (hw/virtio/virtio-mem.c, QEMU 5.1+) and its pairing with the guest
// driver (src/guest/virtio_mem_driver.ts): what the host does with each PLUG, UNPLUG,
// UNPLUG_ALL and STATE request, and the entry points the simulator calls.
//
// Theory of operation. The device owns a memory backend of `regionBytes` (its own RAMBlock: a
// separate host GuestRam, created with the host model's createGuestRam) mapped at `addr` in
// guest-physical space, a `block-size`, and a bitmap with one bit per block. The host sets
// `requested-size`; the guest driver plugs and unplugs blocks toward it and `size` (the plugged
// size) follows. virtio_mem_state_change_request checks each request: block aligned and inside
// the usable region (else ERROR), a plug may not exceed the requested size (NACK), every block
// must be in the opposite state (ERROR). An UNPLUG discards its range with
// ram_block_discard_range: block aligned, so on a THP host it frees whole THPs. A PLUG only
// flips bits (no prealloc). The usable region is the requested size plus
// VIRTIO_MEM_USABLE_EXTENT (256 MiB on x86-64), never shrinking while memory is plugged.
// Guest writes to the region go to the device's RAMBlock at pfn - addr (virtioMemRamPage).
//
// Work counts (for the cost model): each request is one virtqueue round trip with one element;
// each discard adds the madvise/fallocate calls it made and what the discard probe
// (work_counts.ts) sees it free (whole THPs, PTEs, split PMDs, TLB flushes); the guest side
// adds the pages it isolated, migrated and reclaimed and the allocations it made (migration
// targets, memmap).
//
// Left out: prealloc, dynamic memslots, unplugged-inaccessible (the guest never reads unplugged
// memory), migration (virtio_mem_is_busy), NUMA nodes, RamDiscardListeners (vfio): the memdev's
// discards are coordinated, so vfio's discard inhibition does not apply to it.

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import type { ContigRangeStats } from "../guest/contig_range.ts";
import type { GuestMemory } from "../guest/guest_memory.ts";
import { VIRTIO_MEM_MIN_BLOCK_SIZE } from "../guest/memory_layout.ts";
import {
  createVirtioMemDriver,
  SBM_MB_STATE_NAMES,
  type SbmMbState,
  VIRTIO_MEM_REQ_PLUG,
  VIRTIO_MEM_REQ_STATE,
  VIRTIO_MEM_REQ_UNPLUG,
  VIRTIO_MEM_REQ_UNPLUG_ALL,
  VIRTIO_MEM_RESP_ACK,
  VIRTIO_MEM_RESP_BUSY,
  VIRTIO_MEM_RESP_ERROR,
  VIRTIO_MEM_RESP_NACK,
  VIRTIO_MEM_STATE_MIXED,
  VIRTIO_MEM_STATE_PLUGGED,
  VIRTIO_MEM_STATE_UNPLUGGED,
  type VirtioMemConfigSpace,
  type VirtioMemDriver,
  type VirtioMemDriverStats,
  type VirtioMemRunResult,
  virtioMemDriverRun,
  virtioMemDriverView,
  virtioMemRetryTimerExpired,
} from "../guest/virtio_mem_driver.ts";
import {
  createGuestRam,
  type GuestRam,
  type HostConfig,
  hostGuestWrite,
  hostSnapshot,
  ramBlockDiscardRange,
  ramBlockPageBytes,
} from "../host/host_api.ts";
import {
  createDiscardProbe,
  createWorkCounts,
  type DiscardProbe,
  discardProbeBegin,
  discardProbeEnd,
  discardProbeRange,
  type WorkCounts,
} from "./work_counts.ts";

const MiB = 1024 * 1024;
/** VIRTIO_MEM_USABLE_EXTENT for x86-64 (hw/virtio/virtio-mem.c): 2 * 128 MiB. */
export const VIRTIO_MEM_USABLE_EXTENT = 2 * 128 * MiB;
/** The host THP size (virtio_mem_thp_size: hpage_pmd_size on x86-64). */
const HOST_THP_BYTES = HPAGE_PMD_NR * PAGE_SIZE;

export interface VirtioMemDeviceCounters {
  plugRequests: number;
  unplugRequests: number;
  unplugAllRequests: number;
  stateRequests: number;
  acks: number;
  nacks: number;
  busy: number;
  errors: number;
  /** Blocks plugged and unplugged by ACKed requests. */
  blocksPlugged: number;
  blocksUnplugged: number;
  /** ram_block_discard_range calls, and the ones that failed (answered BUSY). */
  discards: number;
  discardErrors: number;
}

/** The device: struct VirtIOMEM's state, its RAMBlock and its work counts. */
export interface VirtioMemDevice extends VirtioMemConfigSpace {
  /** The memdev's RAMBlock on the host. */
  readonly ram: GuestRam;
  /** The guest pfn of `addr`. */
  readonly startPfn: number;
  /** One bit per block: plugged (vmem->bitmap). */
  readonly bitmap: Uint8Array;
  readonly blockCount: number;
  /** size: the plugged size. */
  pluggedBytes: number;
  requestedBytes: number;
  usableRegionBytes: number;
  readonly counters: VirtioMemDeviceCounters;
  /** Cumulative work of requests, discards and the guest driver, for the cost model. */
  readonly work: WorkCounts;
  /** Block states before a discard, to count what it freed. */
  readonly probe: DiscardProbe;
}

/**
 * Models virtio_mem_default_block_size (hw/virtio/virtio-mem.c): the THP size for memory with
 * host-sized pages, else the backend's page size (e.g. 1 GiB hugetlbfs), at least 1 MiB.
 */
export function virtioMemDefaultBlockBytes(host: HostConfig): number {
  const pageBytes = ramBlockPageBytes(host);
  if (pageBytes === PAGE_SIZE) return Math.max(pageBytes, HOST_THP_BYTES);
  return Math.max(pageBytes, VIRTIO_MEM_MIN_BLOCK_SIZE);
}

/**
 * Models virtio_mem_device_realize for the guest's region (memory_layout.ts placed it): the
 * block size must be at least the memdev's page size, and the region and address multiples of
 * it; the memdev is a fresh RAMBlock of the region's size (discarded at realize).
 */
export function createVirtioMemDevice(memory: GuestMemory, host: HostConfig): VirtioMemDevice {
  const region = memory.layout.deviceMemory;
  assert(region !== undefined, "the guest has no virtio-mem region (GuestConfig.virtioMem)");
  const blockBytes = region.blockPages * PAGE_SIZE;
  const regionPages = region.endPfn - region.startPfn;
  const pageBytes = ramBlockPageBytes(host);
  assert(blockBytes >= pageBytes, () => {
    return `virtio-mem block-size ${blockBytes} has to be at least the page size (${pageBytes})`;
  });
  assert(regionPages % region.blockPages === 0 && region.startPfn % region.blockPages === 0, () => {
    return `virtio-mem memdev size and addr have to be multiples of block-size (${blockBytes})`;
  });
  const blockCount = regionPages / region.blockPages;
  // Coordinated discards (RamDiscardManager) keep working when vfio inhibits the balloon's.
  const ram = createGuestRam({ ...host, discardInhibited: false }, regionPages);
  return {
    ram,
    startPfn: region.startPfn,
    blockBytes,
    addrBytes: region.startPfn * PAGE_SIZE,
    regionBytes: regionPages * PAGE_SIZE,
    usableRegionBytes: 0,
    pluggedBytes: 0,
    requestedBytes: 0,
    bitmap: new Uint8Array(Math.ceil(blockCount / 8)),
    blockCount,
    counters: createCounters(),
    work: createWorkCounts(),
    probe: createDiscardProbe(ram),
  };
}

function createCounters(): VirtioMemDeviceCounters {
  return {
    plugRequests: 0,
    unplugRequests: 0,
    unplugAllRequests: 0,
    stateRequests: 0,
    acks: 0,
    nacks: 0,
    busy: 0,
    errors: 0,
    blocksPlugged: 0,
    blocksUnplugged: 0,
    discards: 0,
    discardErrors: 0,
  };
}

// ---------------------------------------------------------------------------------------------
// The bitmap.

function blockBit(device: VirtioMemDevice, block: number): boolean {
  return (device.bitmap[block >>> 3]! & (1 << (block & 7))) !== 0;
}

function setBlocks(device: VirtioMemDevice, first: number, count: number, plugged: boolean): void {
  for (let block = first; block < first + count; block++) {
    if (plugged) device.bitmap[block >>> 3]! |= 1 << (block & 7);
    else device.bitmap[block >>> 3]! &= ~(1 << (block & 7));
  }
}

/** Models virtio_mem_is_range_plugged / _unplugged: every block in the range is in `state`. */
function rangeIs(device: VirtioMemDevice, first: number, count: number, plugged: boolean): boolean {
  for (let block = first; block < first + count; block++) {
    if (blockBit(device, block) !== plugged) return false;
  }
  return true;
}

/** Whether a block of the device is plugged (for tests and views). */
export function virtioMemBlockPlugged(device: VirtioMemDevice, block: number): boolean {
  assert(block >= 0 && block < device.blockCount, () => `virtio-mem block ${block} out of range`);
  return blockBit(device, block);
}

// ---------------------------------------------------------------------------------------------
// Requests.

/**
 * Models virtio_mem_handle_request for one element: dispatch on the request type and return
 * the response type (the STATE request's state is virtioMemStateRequest's). Counts one
 * virtqueue round trip with one entry.
 */
export function virtioMemHandleRequest(
  device: VirtioMemDevice,
  type: number,
  addrBytes: number,
  nbBlocks: number,
): number {
  device.work.virtqueueRequests++;
  device.work.virtqueueEntries++;
  let response: number;
  switch (type) {
    case VIRTIO_MEM_REQ_PLUG:
      device.counters.plugRequests++;
      response = stateChangeRequest(device, addrBytes, nbBlocks, true);
      break;
    case VIRTIO_MEM_REQ_UNPLUG:
      device.counters.unplugRequests++;
      response = stateChangeRequest(device, addrBytes, nbBlocks, false);
      break;
    case VIRTIO_MEM_REQ_UNPLUG_ALL:
      device.counters.unplugAllRequests++;
      response = unplugAll(device) ? VIRTIO_MEM_RESP_ACK : VIRTIO_MEM_RESP_BUSY;
      break;
    case VIRTIO_MEM_REQ_STATE:
      device.counters.stateRequests++;
      response = virtioMemStateRequest(device, addrBytes, nbBlocks) < 0 ? VIRTIO_MEM_RESP_ERROR : 0;
      break;
    default:
      assert(false, () => `virtio-mem protocol violation: unknown request type: ${type}`);
  }
  countResponse(device, response);
  return response;
}

function countResponse(device: VirtioMemDevice, response: number): void {
  if (response === VIRTIO_MEM_RESP_ACK) device.counters.acks++;
  else if (response === VIRTIO_MEM_RESP_NACK) device.counters.nacks++;
  else if (response === VIRTIO_MEM_RESP_BUSY) device.counters.busy++;
  else device.counters.errors++;
}

/** Models virtio_mem_valid_range: block aligned, not empty, inside the usable region. */
function validRange(device: VirtioMemDevice, gpa: number, size: number): boolean {
  if (gpa % device.blockBytes !== 0 || size <= 0) return false;
  const usableEnd = device.addrBytes + device.usableRegionBytes;
  if (gpa < device.addrBytes || gpa >= usableEnd) return false;
  return gpa + size <= usableEnd;
}

/**
 * Models virtio_mem_state_change_request: the checks, then virtio_mem_set_block_state (an
 * UNPLUG discards the range; a failed discard is BUSY), then `size` follows.
 */
function stateChangeRequest(
  device: VirtioMemDevice,
  gpa: number,
  nbBlocks: number,
  plug: boolean,
): number {
  const size = nbBlocks * device.blockBytes;
  if (!validRange(device, gpa, size)) return VIRTIO_MEM_RESP_ERROR;
  if (plug && device.pluggedBytes + size > device.requestedBytes) return VIRTIO_MEM_RESP_NACK;
  const first = (gpa - device.addrBytes) / device.blockBytes;
  // "test if really all blocks are in the opposite state".
  if (!rangeIs(device, first, nbBlocks, !plug)) return VIRTIO_MEM_RESP_ERROR;
  if (!plug && !discard(device, gpa - device.addrBytes, size)) return VIRTIO_MEM_RESP_BUSY;
  setBlocks(device, first, nbBlocks, plug);
  if (plug) {
    device.pluggedBytes += size;
    device.counters.blocksPlugged += nbBlocks;
  } else {
    device.pluggedBytes -= size;
    device.counters.blocksUnplugged += nbBlocks;
  }
  return VIRTIO_MEM_RESP_ACK;
}

/**
 * ram_block_discard_range on the memdev's RAMBlock, counting its host work with the shared
 * discard probe (THPs freed whole, PTEs zapped, PMDs split, TLB flushes) and its syscalls.
 */
function discard(device: VirtioMemDevice, offsetBytes: number, lengthBytes: number): boolean {
  const { ram, work, probe } = device;
  discardProbeBegin(probe);
  discardProbeRange(probe, offsetBytes / PAGE_SIZE, lengthBytes / PAGE_SIZE);
  const syscallsBefore = ram.counters.madvise + ram.counters.fallocate;
  device.counters.discards++;
  const result = ramBlockDiscardRange(ram, offsetBytes, lengthBytes);
  work.hostSyscalls += ram.counters.madvise + ram.counters.fallocate - syscallsBefore;
  discardProbeEnd(probe, work);
  if (result.kind === "discarded") return true;
  device.counters.discardErrors++;
  return false;
}

/** Models virtio_mem_unplug_all: discard everything, clear the bitmap, shrink the usable region. */
function unplugAll(device: VirtioMemDevice): boolean {
  if (device.pluggedBytes > 0) {
    if (!discard(device, 0, device.regionBytes)) return false;
    device.bitmap.fill(0);
    device.pluggedBytes = 0;
  }
  resizeUsableRegion(device, device.requestedBytes, true);
  return true;
}

/**
 * Models virtio_mem_state_request: VIRTIO_MEM_STATE_PLUGGED, _UNPLUGGED or _MIXED for a valid
 * range; -1 for an invalid one (the ERROR response).
 */
export function virtioMemStateRequest(
  device: VirtioMemDevice,
  addrBytes: number,
  nbBlocks: number,
): number {
  const size = nbBlocks * device.blockBytes;
  if (!validRange(device, addrBytes, size)) return -1;
  const first = (addrBytes - device.addrBytes) / device.blockBytes;
  if (rangeIs(device, first, nbBlocks, true)) return VIRTIO_MEM_STATE_PLUGGED;
  if (rangeIs(device, first, nbBlocks, false)) return VIRTIO_MEM_STATE_UNPLUGGED;
  return VIRTIO_MEM_STATE_MIXED;
}

/**
 * Models virtio_mem_resize_usable_region: min(region, requested + VIRTIO_MEM_USABLE_EXTENT),
 * rounded up to the block size, 0 when nothing is requested; it only shrinks when allowed.
 */
function resizeUsableRegion(device: VirtioMemDevice, requested: number, canShrink: boolean): void {
  let size = Math.min(device.regionBytes, requested + VIRTIO_MEM_USABLE_EXTENT);
  size = Math.ceil(size / device.blockBytes) * device.blockBytes;
  if (requested === 0) size = 0;
  if (size < device.usableRegionBytes && !canShrink) return;
  device.usableRegionBytes = size;
}

/**
 * Models the `requested-size` property setter (virtio_mem_set_requested_size): a multiple of
 * the block size within the region; the usable region grows to fit, and the guest is notified
 * (virtio_notify_config: the caller runs the driver).
 */
export function virtioMemSetDeviceRequestedSize(device: VirtioMemDevice, bytes: number): void {
  assert(Number.isSafeInteger(bytes) && bytes >= 0 && bytes % device.blockBytes === 0, () => {
    return `'requested-size' has to be multiples of 'block-size' (${device.blockBytes})`;
  });
  assert(bytes <= device.regionBytes, "'requested-size' cannot exceed the memory backend size");
  device.requestedBytes = bytes;
  resizeUsableRegion(device, bytes, false);
}

// ---------------------------------------------------------------------------------------------
// Guest memory in the region.

/** Whether a guest pfn lies in the device's region. */
export function virtioMemContainsPfn(device: VirtioMemDevice, pfn: number): boolean {
  return pfn >= device.startPfn && pfn < device.startPfn + device.ram.pageCount;
}

/** The page of the device's RAMBlock that backs a guest pfn of its region, or -1 outside. */
export function virtioMemRamPage(device: VirtioMemDevice, pfn: number): number {
  return virtioMemContainsPfn(device, pfn) ? pfn - device.startPfn : -1;
}

/** The guest wrote `count` frames from `pfn` (all inside the region): the host backs them. */
export function virtioMemGuestWrite(device: VirtioMemDevice, pfn: number, count: number): void {
  const page = virtioMemRamPage(device, pfn);
  assert(page >= 0 && page + count <= device.ram.pageCount, () => {
    return `guest write ${pfn}+${count} is not inside the virtio-mem region`;
  });
  hostGuestWrite(device.ram, page, count);
}

// ---------------------------------------------------------------------------------------------
// The device and the guest's driver together.

/** A virtio-mem device and the guest's driver bound to it. */
export interface VirtioMem {
  readonly device: VirtioMemDevice;
  readonly driver: VirtioMemDriver;
}

/** What a run of the driver did, and where the sizes stand after it. */
export interface VirtioMemResult extends VirtioMemRunResult {
  readonly requestedBytes: number;
  readonly pluggedBytes: number;
}

/**
 * Realizes the device for the guest's region on `host` and probes the driver against it
 * (virtio_mem_probe). Refuses guests without the driver (Linux < 5.8) or without a region.
 */
export function createVirtioMem(memory: GuestMemory, host: HostConfig): VirtioMem {
  const device = createVirtioMemDevice(memory, host);
  const driver = createVirtioMemDriver(memory, {
    config: device,
    request: (type, addrBytes, nbBlocks) =>
      virtioMemHandleRequest(device, type, addrBytes, nbBlocks),
  });
  return { device, driver };
}

/**
 * QMP `qom-set <virtio-mem> requested-size`: the device takes the new size and notifies the
 * guest (virtio_mem_config_changed), whose work item runs until the size is reached or it is
 * stuck (busy, out of memory, no space, host busy: see the result's outcome and retry time).
 */
export function virtioMemSetRequestedSize(
  pair: VirtioMem,
  requestedBytes: number,
): VirtioMemResult {
  virtioMemSetDeviceRequestedSize(pair.device, requestedBytes);
  return virtioMemRun(pair);
}

/** The driver's work item runs (virtio_mem_config_changed → virtio_mem_retry). */
export function virtioMemRun(pair: VirtioMem): VirtioMemResult {
  return runResult(pair, virtioMemDriverRun(pair.driver));
}

/**
 * The driver's retry timer fired (the previous result's retryAfterMs passed): the work item
 * runs again, and a timer armed after it waits twice as long (virtio_mem_timer_expired).
 */
export function virtioMemRetry(pair: VirtioMem): VirtioMemResult {
  return runResult(pair, virtioMemRetryTimerExpired(pair.driver));
}

function runResult(pair: VirtioMem, result: VirtioMemRunResult): VirtioMemResult {
  syncGuestWork(pair);
  return {
    ...result,
    requestedBytes: pair.device.requestedBytes,
    pluggedBytes: pair.device.pluggedBytes,
  };
}

/** The guest side's cumulative work into the device's work counts. */
function syncGuestWork(pair: VirtioMem): void {
  const { work } = pair.device;
  const { contig, stats } = pair.driver;
  work.guestIsolatePages = contig.isolatedPages;
  work.guestMigratePages = contig.migratedPages;
  work.guestReclaimPages = contig.reclaimedPages;
  work.guestAllocCalls = contig.targetAllocations + stats.memmapAllocCalls;
  work.guestAllocFailures = contig.failedNoMemory;
  work.guestAllocPages = contig.targetPages + stats.memmapPagesAllocated;
}

export interface VirtioMemSnapshot {
  readonly requestedBytes: number;
  /** The device's `size`. */
  readonly pluggedBytes: number;
  readonly usableRegionBytes: number;
  readonly regionBytes: number;
  readonly blockBytes: number;
  readonly subblockBytes: number;
  /** The driver's memory blocks per state (SBM_MB_STATE_NAMES). */
  readonly memoryBlocks: Readonly<Record<string, number>>;
  /** Region memory the guest's buddy allocator manages. */
  readonly managedBytesInRegion: number;
  /** The memdev's RAMBlock on the host. */
  readonly hostResidentBytes: number;
  readonly hostAllocatedBytes: number;
  readonly device: VirtioMemDeviceCounters;
  readonly driver: VirtioMemDriverStats;
  readonly contig: ContigRangeStats;
  readonly work: WorkCounts;
}

/** Sizes, states and counters now (copies: later work does not change the snapshot). */
export function virtioMemSnapshot(pair: VirtioMem): VirtioMemSnapshot {
  const { device, driver } = pair;
  const view = virtioMemDriverView(driver);
  const memoryBlocks: Record<string, number> = {};
  view.memoryBlocksByState.forEach((count, state) => {
    memoryBlocks[SBM_MB_STATE_NAMES[state as SbmMbState]!] = count;
  });
  const host = hostSnapshot(device.ram);
  return {
    requestedBytes: device.requestedBytes,
    pluggedBytes: device.pluggedBytes,
    usableRegionBytes: device.usableRegionBytes,
    regionBytes: device.regionBytes,
    blockBytes: device.blockBytes,
    subblockBytes: driver.sbBytes,
    memoryBlocks,
    managedBytesInRegion: view.managedPagesInRegion * PAGE_SIZE,
    hostResidentBytes: host.residentBytes,
    hostAllocatedBytes: host.allocatedBytes,
    device: { ...device.counters },
    driver: { ...driver.stats },
    contig: { ...driver.contig },
    work: { ...device.work },
  };
}
