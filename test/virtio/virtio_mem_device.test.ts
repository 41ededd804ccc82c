// Goal: virtio-mem as the alternative to the balloon behaves as Linux's driver and QEMU's device
// do together: plugging 1 GiB grows MemTotal and the zone's managed pages by exactly 1 GiB and
// free memory by that less the new memmap; unplugging 512 MiB of an idle, host-backed region
// frees exactly 512 MiB of host memory in whole 2 MiB THPs; movable pages in the way are
// migrated out and the unplug still succeeds, a guest THP too (whole to a free 2 MiB page, or
// split and migrated page by page when none is left); kernel memory in a ZONE_NORMAL subblock keeps
// it plugged (the driver skips it and reports -EBUSY) while everything stays consistent, and
// with ZONE_MOVABLE that never happens because kernel allocations never land there; QEMU
// answers a plug beyond the requested size with NACK and malformed requests with ERROR; a 5.6
// guest refuses the device.
// Method: 1 GiB guests (pc: all boot RAM below 4 GiB) with a 4 GiB virtio-mem region on a 6.1
// host backed by anonymous memory with THP; guest writes to the region are routed to the
// device's RAMBlock; after every step the guest checker, the host checker and a cross-check of
// the driver's subblock bitmap against the device's block bitmap and the frame table run.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import { createProcess, PMD_HUGE, PMD_TABLE, touchProcess } from "../../src/guest/anon.ts";
import { FRAME_KIND_MASK, FrameKind, NO_PFN } from "../../src/guest/frame_table.ts";
import { __GFP_HIGHMEM, __GFP_MOVABLE } from "../../src/guest/gfp.ts";
import { createGuestMemory, type GuestMemory } from "../../src/guest/guest_memory.ts";
import { allocKernelMemory } from "../../src/guest/kernel_alloc.ts";
import { createOwner } from "../../src/guest/owners.ts";
import { allocPages, assignFrames, drainAllPages } from "../../src/guest/page_alloc.ts";
import { createThpState, thpPmdMapped } from "../../src/guest/thp.ts";
import {
  EBUSY,
  sbPlugged,
  VIRTIO_MEM_REQ_PLUG,
  VIRTIO_MEM_REQ_STATE,
  VIRTIO_MEM_REQ_UNPLUG,
  VIRTIO_MEM_REQ_UNPLUG_ALL,
  VIRTIO_MEM_RESP_ACK,
  VIRTIO_MEM_RESP_ERROR,
  VIRTIO_MEM_RESP_NACK,
  VIRTIO_MEM_RETRY_TIMER_MIN_MS,
  VIRTIO_MEM_STATE_MIXED,
  VIRTIO_MEM_STATE_PLUGGED,
  VIRTIO_MEM_STATE_UNPLUGGED,
} from "../../src/guest/virtio_mem_driver.ts";
import { VmEvent } from "../../src/guest/vm_event.ts";
import type { Zone } from "../../src/guest/zone.ts";
import { createHostConfig, type HostConfig, hostSnapshot } from "../../src/host/host_api.ts";
import { meminfoKb } from "../../src/metrics/proc_views.ts";
import {
  createVirtioMem,
  createVirtioMemDevice,
  type VirtioMem,
  virtioMemBlockPlugged,
  virtioMemContainsPfn,
  virtioMemDefaultBlockBytes,
  virtioMemGuestWrite,
  virtioMemHandleRequest,
  virtioMemRetry,
  virtioMemSetDeviceRequestedSize,
  virtioMemSetRequestedSize,
  virtioMemSnapshot,
  virtioMemStateRequest,
} from "../../src/virtio/virtio_mem_device.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const BLOCK_PAGES = (2 * MiB) / PAGE_SIZE;
/** vmemmap for one 128 MiB memory block: 32768 struct pages of 64 bytes. */
const MEMMAP_BYTES_PER_MB = 2 * MiB;

interface Setup {
  readonly memory: GuestMemory;
  readonly pair: VirtioMem;
  readonly zone: Zone;
}

function hostConfig(backing = "anon", hugetlbPageBytes?: number): HostConfig {
  return createHostConfig({ kernel: "6.1", memoryBytes: 32 * GiB, backing, hugetlbPageBytes });
}

function setup(movable: boolean, thp: "never" | "always" = "never", kernel = "6.1"): Setup {
  const host = hostConfig();
  const memory = createGuestMemory({
    memoryBytes: 1 * GiB,
    machine: "pc",
    kernel,
    cpus: 2,
    thpEnabled: thp,
    thpDefrag: "madvise",
    initOnAlloc: false,
    virtioMem: { regionBytes: 4 * GiB, blockBytes: virtioMemDefaultBlockBytes(host), movable },
  });
  const pair = createVirtioMem(memory, host);
  // Boot RAM has no host model here; writes to the region reach the device's RAMBlock.
  memory.onTouch = (pfn, count) => {
    if (virtioMemContainsPfn(pair.device, pfn)) virtioMemGuestWrite(pair.device, pfn, count);
  };
  const zone = memory.zoneByType[memory.layout.deviceMemory!.zoneType]!;
  expectClean({ memory, pair, zone });
  return { memory, pair, zone };
}

/** Both checkers, and the driver's, the device's and the frame table's view of every block. */
function expectClean(setup: Setup): void {
  const { memory, pair } = setup;
  const { device, driver } = pair;
  expect(checkGuestMemory(memory)).toEqual([]);
  expect(checkHostRam(device.ram)).toEqual([]);
  expect(driver.pluggedBytes).toBe(device.pluggedBytes);
  const mismatches: string[] = [];
  for (let block = 0; block < device.blockCount; block++) {
    const pfn = device.startPfn + block * BLOCK_PAGES;
    const mbId = Math.floor(pfn / driver.mbPages);
    const sbId = (pfn % driver.mbPages) / driver.sbPages;
    const inDriver = mbId < driver.nextMbId && sbPlugged(driver, mbId, sbId, 1);
    if (inDriver !== virtioMemBlockPlugged(device, block)) mismatches.push(`block ${block}`);
    const reserved = countKind(memory, pfn, pfn + BLOCK_PAGES, FrameKind.Reserved);
    if (reserved !== (inDriver ? 0 : BLOCK_PAGES)) mismatches.push(`block ${block}: ${reserved}`);
  }
  expect(mismatches).toEqual([]);
}

function countKind(memory: GuestMemory, start: number, end: number, kind: FrameKind): number {
  let count = 0;
  for (let pfn = start; pfn < end; pfn++) {
    if ((memory.table.state[pfn]! & FRAME_KIND_MASK) === kind) count++;
  }
  return count;
}

/** Free pages of every zone, per-cpu lists included (they are free memory too). */
function freePagesWithPcp(memory: GuestMemory): number {
  let pages = 0;
  memory.zones.forEach((zone, index) => {
    pages += zone.freePages;
    for (const set of memory.pcp[index]!) pages += set.count;
  });
  return pages;
}

describe("plug", () => {
  for (const movable of [true, false]) {
    const zoneName = movable ? "ZONE_MOVABLE" : "ZONE_NORMAL";
    test(`plugging 1 GiB into ${zoneName} grows MemTotal by 1 GiB, free memory by less`, () => {
      const s = setup(movable);
      const before = meminfoKb(s.memory);
      const freeBefore = freePagesWithPcp(s.memory);
      const result = virtioMemSetRequestedSize(s.pair, 1 * GiB);
      expect(result.outcome).toBe("done");
      expect(result.pluggedBytes).toBe(1 * GiB);
      const after = meminfoKb(s.memory);
      expect(after.MemTotal! - before.MemTotal!).toBe(GiB / 1024);
      expect(s.zone.managedPages * PAGE_SIZE).toBe(1 * GiB);
      expect(s.zone.presentPages * PAGE_SIZE).toBe(1 * GiB);
      // Eight memory blocks were added, each with 2 MiB of memmap taken from existing memory.
      const memmapPages = (8 * MEMMAP_BYTES_PER_MB) / PAGE_SIZE;
      expect(freePagesWithPcp(s.memory) - freeBefore).toBe(GiB / PAGE_SIZE - memmapPages);
      expect(after.MemFree!).toBeGreaterThan(before.MemFree! + 1000 * 1024);
      const snapshot = virtioMemSnapshot(s.pair);
      expect(snapshot.memoryBlocks[movable ? "movable" : "kernel"]).toBe(8);
      expect(snapshot.device.plugRequests).toBe(8);
      expect(snapshot.device.blocksPlugged).toBe(512);
      expect(snapshot.managedBytesInRegion).toBe(1 * GiB);
      expect(snapshot.usableRegionBytes).toBe(1 * GiB + 256 * MiB);
      // ZONE_MOVABLE takes no kernel memory, so the host backs nothing of the region yet; in
      // ZONE_NORMAL the memmap of blocks 2..8 was allocated (and written) in block 1.
      expect(snapshot.hostAllocatedBytes).toBe(movable ? 0 : 7 * MEMMAP_BYTES_PER_MB);
      expectClean(s);
    });
  }
});

describe("unplug", () => {
  test("unplugging 512 MiB of an idle region frees exactly 512 MiB of host THPs", () => {
    const s = setup(true);
    virtioMemSetRequestedSize(s.pair, 1 * GiB);
    // The guest used all of it earlier: the host backs the whole plugged GiB with THPs.
    virtioMemGuestWrite(s.pair.device, s.pair.device.startPfn, GiB / PAGE_SIZE);
    const hostBefore = hostSnapshot(s.pair.device.ram);
    expect(hostBefore.allocatedBytes).toBe(1 * GiB);
    expect(hostBefore.blocks.huge).toBe(512);
    const managedBefore = meminfoKb(s.memory).MemTotal!;
    const result = virtioMemSetRequestedSize(s.pair, 512 * MiB);
    expect(result.outcome).toBe("done");
    expect(result.pluggedBytes).toBe(512 * MiB);
    const hostAfter = hostSnapshot(s.pair.device.ram);
    expect(hostBefore.allocatedBytes - hostAfter.allocatedBytes).toBe(512 * MiB);
    expect(hostAfter.blocks.huge).toBe(256);
    expect(managedBefore - meminfoKb(s.memory).MemTotal!).toBe((512 * MiB) / 1024);
    const snapshot = virtioMemSnapshot(s.pair);
    // The last four memory blocks went whole: one alloc_contig_range, UNPLUG and discard each.
    expect(snapshot.device.unplugRequests).toBe(4);
    expect(snapshot.device.discards).toBe(4);
    expect(snapshot.driver.memoryBlocksRemoved).toBe(4);
    expect(snapshot.contig.migratedPages).toBe(0);
    expect(snapshot.work.guestIsolatePages).toBe((512 * MiB) / PAGE_SIZE);
    expect(snapshot.work.hostFreedPages2m).toBe(256);
    expect(snapshot.work.hostFreedPages4k).toBe(0);
    // The upper half of the plugged range is gone, the lower half stays.
    expect(virtioMemBlockPlugged(s.pair.device, 255)).toBe(true);
    expect(virtioMemBlockPlugged(s.pair.device, 256)).toBe(false);
    expectClean(s);
  });

  for (const [kernel, movable] of [
    ["6.1", true],
    ["6.1", false],
    ["6.18", true],
  ] as const) {
    const zoneName = movable ? "ZONE_MOVABLE" : "ZONE_NORMAL";
    test(`${kernel}: movable pages in the way leave ${zoneName} and the unplug succeeds`, () => {
      const s = setup(movable, "never", kernel);
      virtioMemSetRequestedSize(s.pair, 1 * GiB);
      const thpState = createThpState(s.memory);
      const process = createProcess(s.memory, "app", 768 * MiB, { thp: false, thpState });
      expect(touchProcess(s.memory, process, 0, process.sizePages)).toBe(0);
      const start = s.pair.device.startPfn;
      const upperHalf = start + (512 * MiB) / PAGE_SIZE;
      const inUpperHalf = (): number =>
        process.owner.pages.filter((pfn) => pfn >= upperHalf && pfn < start + GiB / PAGE_SIZE)
          .length;
      expect(inUpperHalf()).toBeGreaterThan(0);
      const migratedBefore = s.memory.events[VmEvent.pgmigrate_success]!;
      const result = virtioMemSetRequestedSize(s.pair, 512 * MiB);
      expect(result.outcome).toBe("done");
      expect(result.pluggedBytes).toBe(512 * MiB);
      const snapshot = virtioMemSnapshot(s.pair);
      expect(snapshot.contig.migratedPages).toBeGreaterThan(0);
      const migrated = s.memory.events[VmEvent.pgmigrate_success]! - migratedBefore;
      expect(migrated).toBe(snapshot.contig.migratedPages);
      expect(snapshot.work.guestMigratePages).toBe(migrated);
      // Nothing of the process was lost and none of it is left in the unplugged half.
      expect(process.owner.residentPages).toBe(process.sizePages);
      expect(inUpperHalf()).toBe(0);
      expectClean(s);
    });
  }

  test("kernel memory keeps ZONE_NORMAL subblocks plugged: -EBUSY, all else consistent", () => {
    const s = setup(false);
    virtioMemSetRequestedSize(s.pair, 256 * MiB);
    // Slab spread over 16x its size: GFP_KERNEL prefers ZONE_NORMAL, which is the region here.
    allocKernelMemory(s.memory, "slab", 4 * MiB, 16, false);
    const start = s.pair.device.startPfn;
    expect(countKind(s.memory, start, start + (256 * MiB) / PAGE_SIZE, FrameKind.Kernel)).toBe(
      countKind(s.memory, 0, s.memory.table.frameCount, FrameKind.Kernel) -
        countKind(s.memory, 0, start, FrameKind.Kernel),
    );
    const result = virtioMemSetRequestedSize(s.pair, 0);
    expect(result.outcome).toBe("busy");
    expect(result.rc).toBe(EBUSY);
    expect(result.retryAfterMs).toBe(VIRTIO_MEM_RETRY_TIMER_MIN_MS);
    expect(result.pluggedBytes).toBeGreaterThan(0);
    // Exactly the subblocks holding kernel memory (slab or a memmap) stayed plugged.
    let busy = 0;
    for (let block = 0; block < (256 * MiB) / (2 * MiB); block++) {
      const pfn = start + block * BLOCK_PAGES;
      const kernel = countKind(s.memory, pfn, pfn + BLOCK_PAGES, FrameKind.Kernel) > 0;
      expect(virtioMemBlockPlugged(s.pair.device, block)).toBe(kernel);
      if (kernel) busy++;
    }
    expect(result.pluggedBytes).toBe(busy * 2 * MiB);
    const snapshot = virtioMemSnapshot(s.pair);
    expect(snapshot.contig.failedIsolation).toBeGreaterThan(0);
    expect(snapshot.memoryBlocks.kernelPartial).toBeGreaterThan(0);
    expectClean(s);
    // The retry timer fires: still busy, and the next timer waits twice as long.
    const retry = virtioMemRetry(s.pair);
    expect(retry.outcome).toBe("busy");
    expect(retry.pluggedBytes).toBe(result.pluggedBytes);
    expect(retry.retryAfterMs).toBe(2 * VIRTIO_MEM_RETRY_TIMER_MIN_MS);
    expectClean(s);
  });

  test("with ZONE_MOVABLE kernel memory never lands in the region and unplug completes", () => {
    const s = setup(true);
    virtioMemSetRequestedSize(s.pair, 256 * MiB);
    allocKernelMemory(s.memory, "slab", 4 * MiB, 16, false);
    allocKernelMemory(s.memory, "dentries", 8 * MiB, 4, true);
    const region = s.memory.layout.deviceMemory!;
    expect(countKind(s.memory, region.startPfn, region.endPfn, FrameKind.Kernel)).toBe(0);
    expect(countKind(s.memory, region.startPfn, region.endPfn, FrameKind.KernelReclaimable)).toBe(
      0,
    );
    const result = virtioMemSetRequestedSize(s.pair, 0);
    expect(result.outcome).toBe("done");
    expect(result.pluggedBytes).toBe(0);
    expect(s.zone.managedPages).toBe(0);
    expect(s.zone.presentPages).toBe(0);
    expect(virtioMemSnapshot(s.pair).memoryBlocks.unused).toBe(2);
    expectClean(s);
  });

  test("a guest THP in ZONE_MOVABLE is migrated whole and its subblocks unplug", () => {
    const s = setup(true, "always");
    const touches: number[] = [];
    const routeToDevice = s.memory.onTouch!;
    s.memory.onTouch = (pfn, count) => {
      touches.push(pfn, count);
      routeToDevice(pfn, count);
    };
    virtioMemSetRequestedSize(s.pair, 128 * MiB);
    expectClean(s);
    const thpState = createThpState(s.memory);
    const process = createProcess(s.memory, "thp", 8 * MiB, { thp: true, thpState });
    expect(touchProcess(s.memory, process, 0, process.sizePages)).toBe(0);
    expect(process.owner.hugePages).toBe(process.sizePages);
    const heads = (): number[] => [0, 1, 2, 3].map((range) => process.owner.pages[range * 512]!);
    for (const head of heads()) expect(virtioMemContainsPfn(s.pair.device, head)).toBe(true);
    expectClean(s);
    const migratedBefore = s.memory.events[VmEvent.pgmigrate_success]!;
    const splitBefore = s.memory.events[VmEvent.thp_split_page]!;
    touches.length = 0;
    const result = virtioMemSetRequestedSize(s.pair, 0);
    expect(result.outcome).toBe("done");
    expect(result.pluggedBytes).toBe(0);
    // Each THP went whole to a 2 MiB page outside the region, still mapped by its PMD.
    expect(process.owner.hugePages).toBe(process.sizePages);
    for (const [range, head] of heads().entries()) {
      expect(virtioMemContainsPfn(s.pair.device, head)).toBe(false);
      expect(s.memory.table.order[head]).toBe(9);
      expect(thpPmdMapped(thpState, head)).toBe(true);
      expect(process.pmd[range]).toBe(PMD_HUGE);
      for (let i = 0; i < 512; i++) expect(process.owner.pages[range * 512 + i]).toBe(head + i);
      // The copy was a guest write of the new 2 MiB page.
      let copied = false;
      for (let i = 0; i < touches.length; i += 2) {
        if (touches[i] === head && touches[i + 1] === 512) copied = true;
      }
      expect(copied).toBe(true);
    }
    const snapshot = virtioMemSnapshot(s.pair);
    expect(snapshot.contig.thpMigrated).toBeGreaterThanOrEqual(4);
    expect(snapshot.contig.thpSplit).toBe(0);
    expect(snapshot.contig.failedMigration).toBe(0);
    const migrated = s.memory.events[VmEvent.pgmigrate_success]! - migratedBefore;
    expect(migrated).toBe(snapshot.contig.migratedPages);
    expect(migrated).toBe(snapshot.contig.thpMigrated * 512);
    expect(s.memory.events[VmEvent.thp_split_page]).toBe(splitBefore);
    expectClean(s);
  });

  test("with no free 2 MiB block a guest THP is split, its pages migrate, the unplug succeeds", () => {
    const s = setup(true, "always");
    // Plug what the process takes: the region has no room left for a 2 MiB target (its
    // watermarks even send the last THP to boot RAM).
    virtioMemSetRequestedSize(s.pair, 8 * MiB);
    expectClean(s);
    const thpState = createThpState(s.memory);
    const process = createProcess(s.memory, "thp", 8 * MiB, { thp: true, thpState });
    expect(touchProcess(s.memory, process, 0, process.sizePages)).toBe(0);
    expect(process.owner.hugePages).toBe(process.sizePages);
    const inRegion = [0, 1, 2, 3].filter((range) =>
      virtioMemContainsPfn(s.pair.device, process.owner.pages[range * 512]!),
    );
    expect(inRegion.length).toBeGreaterThan(0);
    expectClean(s);
    useUpHugeBlocks(s.memory);
    expectClean(s);
    const counted = [VmEvent.pgmigrate_success, VmEvent.thp_split_pmd, VmEvent.thp_split_page];
    const before = counted.map((event) => s.memory.events[event]!);
    const result = virtioMemSetRequestedSize(s.pair, 0);
    expect(result.outcome).toBe("done");
    expect(result.pluggedBytes).toBe(0);
    // Each THP in the region was split (its PMD first) and its 512 pages migrated one by one.
    const split = inRegion.length;
    const after = counted.map((event) => s.memory.events[event]!);
    expect(after.map((value, i) => value - before[i]!)).toEqual([split * 512, split, split]);
    const snapshot = virtioMemSnapshot(s.pair);
    expect(snapshot.contig.thpSplit).toBe(split);
    expect(snapshot.contig.thpMigrated).toBe(0);
    expect(snapshot.contig.migratedPages).toBe(split * 512);
    expect(process.owner.hugePages).toBe((4 - split) * 512);
    expect(process.owner.residentPages).toBe(process.sizePages);
    for (let range = 0; range < 4; range++) {
      expect(process.pmd[range]).toBe(inRegion.includes(range) ? PMD_TABLE : PMD_HUGE);
    }
    for (const pfn of process.owner.pages) {
      expect(virtioMemContainsPfn(s.pair.device, pfn)).toBe(false);
    }
    expectClean(s);
  });
});

/**
 * Leaves no 2 MiB block to allocate: slab spread over half of boot RAM (every other page stays,
 * nothing merges, and GFP_KERNEL pages never move), then every block of order 9 or more the
 * allocator still hands out is taken whole by a kernel owner.
 */
function useUpHugeBlocks(memory: GuestMemory): void {
  const free = freePagesWithPcp(memory);
  allocKernelMemory(memory, "fragments", Math.floor(free / 2) * PAGE_SIZE, 2, false);
  const hog = createOwner(memory.owners, FrameKind.Kernel, "hog", free);
  for (let block = 0; ; block++) {
    // Pages waiting on the per-cpu lists (order-9 refills too) count once drained, as the slow
    // path's drain_all_pages would drain them for the next 2 MiB request.
    drainAllPages(memory);
    const pfn = allocPages(memory, __GFP_MOVABLE | __GFP_HIGHMEM, 9);
    if (pfn === NO_PFN) break;
    assignFrames(memory, pfn, 9, FrameKind.Kernel, hog.id, block * 512);
    for (let i = 0; i < 512; i++) hog.pages[block * 512 + i] = pfn + i;
    hog.residentPages += 512;
  }
  // What is left of order 9 or more (a ZONE_MOVABLE block below its watermarks) cannot be had.
  expect(allocPages(memory, __GFP_MOVABLE | __GFP_HIGHMEM, 9)).toBe(NO_PFN);
}

describe("the device's request handling", () => {
  test("a plug beyond the requested size gets NACK; malformed requests get ERROR", () => {
    const s = setup(true);
    const device = s.pair.device;
    const addr = device.addrBytes;
    // qom-set requested-size 4 MiB without letting the driver run.
    virtioMemSetDeviceRequestedSize(device, 4 * MiB);
    expect(device.usableRegionBytes).toBe(4 * MiB + 256 * MiB);
    const plug = (gpa: number, blocks: number): number =>
      virtioMemHandleRequest(device, VIRTIO_MEM_REQ_PLUG, gpa, blocks);
    const unplug = (gpa: number, blocks: number): number =>
      virtioMemHandleRequest(device, VIRTIO_MEM_REQ_UNPLUG, gpa, blocks);
    expect(plug(addr, 3)).toBe(VIRTIO_MEM_RESP_NACK);
    expect(plug(addr, 2)).toBe(VIRTIO_MEM_RESP_ACK);
    expect(device.pluggedBytes).toBe(4 * MiB);
    expect(plug(addr + 4 * MiB, 1)).toBe(VIRTIO_MEM_RESP_NACK);
    expect(plug(addr + 1 * MiB, 1)).toBe(VIRTIO_MEM_RESP_ERROR);
    expect(plug(addr + 300 * MiB, 1)).toBe(VIRTIO_MEM_RESP_ERROR);
    expect(plug(addr - 2 * MiB, 1)).toBe(VIRTIO_MEM_RESP_ERROR);
    virtioMemSetDeviceRequestedSize(device, 8 * MiB);
    expect(plug(addr, 1)).toBe(VIRTIO_MEM_RESP_ERROR);
    expect(virtioMemStateRequest(device, addr, 2)).toBe(VIRTIO_MEM_STATE_PLUGGED);
    expect(virtioMemStateRequest(device, addr, 4)).toBe(VIRTIO_MEM_STATE_MIXED);
    expect(virtioMemStateRequest(device, addr + 4 * MiB, 2)).toBe(VIRTIO_MEM_STATE_UNPLUGGED);
    expect(virtioMemHandleRequest(device, VIRTIO_MEM_REQ_STATE, addr, 2)).toBe(0);
    expect(unplug(addr + 4 * MiB, 1)).toBe(VIRTIO_MEM_RESP_ERROR);
    expect(unplug(addr, 2)).toBe(VIRTIO_MEM_RESP_ACK);
    expect(device.pluggedBytes).toBe(0);
    expect(virtioMemHandleRequest(device, VIRTIO_MEM_REQ_UNPLUG_ALL, 0, 0)).toBe(
      VIRTIO_MEM_RESP_ACK,
    );
    expect(device.counters.nacks).toBe(2);
    expect(device.counters.acks).toBe(4);
    expect(device.counters.errors).toBe(5);
    expect(device.work.virtqueueRequests).toBe(11);
    expect(checkHostRam(device.ram)).toEqual([]);
  });

  test("requested-size must be a multiple of block-size within the region", () => {
    const s = setup(true);
    expect(() => virtioMemSetRequestedSize(s.pair, 3 * MiB)).toThrow(/multiples of 'block-size'/);
    expect(() => virtioMemSetRequestedSize(s.pair, 8 * GiB)).toThrow(/backend size/);
  });

  test("the default block size is the THP size, or the hugetlbfs page size", () => {
    expect(virtioMemDefaultBlockBytes(hostConfig("anon"))).toBe(2 * MiB);
    expect(virtioMemDefaultBlockBytes(hostConfig("memfd"))).toBe(2 * MiB);
    expect(virtioMemDefaultBlockBytes(hostConfig("hugetlbfs", 1 * GiB))).toBe(1 * GiB);
    // A 2 MiB block on 1 GiB hugetlbfs pages is refused at realize.
    const memory = createGuestMemory({
      memoryBytes: 1 * GiB,
      machine: "pc",
      kernel: "6.1",
      cpus: 1,
      thpEnabled: "never",
      thpDefrag: "madvise",
      initOnAlloc: false,
      virtioMem: { regionBytes: 2 * GiB, blockBytes: 2 * MiB, movable: true },
    });
    expect(() => createVirtioMemDevice(memory, hostConfig("hugetlbfs", 1 * GiB))).toThrow(
      /at least the page size/,
    );
  });

  test("a 5.6 guest refuses the device: virtio-mem needs Linux 5.8", () => {
    expect(() => setup(true, "never", "5.6")).toThrow(/Linux 5\.8\+/);
  });
});
