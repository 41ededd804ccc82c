// Goal: the guest side of virtio-mem stands on its own: the device region sits where QEMU puts
// it (the end of RAM above 4 GiB rounded up to 1 GiB) and the frame table and one zone cover
// it from boot with nothing present; an empty zone breaks neither the checker nor the /proc
// views; gfp_zone sends only movable requests to ZONE_MOVABLE; alloc_contig_range takes a free
// range, migrates movable pages out of a used one, and refuses (leaving everything as it was
// but the pages it already moved) a range with kernel memory outside ZONE_MOVABLE or a pinned
// page; and a 5.6 guest, which predates virtio-mem (Linux 5.8), refuses the driver.
// Method: small guests with a region; the driver is probed against a minimal in-test device
// that acknowledges every request, so these tests need nothing from src/virtio; the
// independent checker runs after every step.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { MIGRATE_ISOLATE, PAGE_SIZE, pageblock_nr_pages } from "../../src/core/limits.ts";
import {
  allocContigRange,
  CONTIG_EBUSY,
  CONTIG_OK,
  createContigRangeStats,
} from "../../src/guest/contig_range.ts";
import { FRAME_KIND_MASK, FrameKind, NO_PFN } from "../../src/guest/frame_table.ts";
import { GFP_HIGHUSER_MOVABLE, GFP_KERNEL } from "../../src/guest/gfp.ts";
import { createGuestMemory, type GuestMemory, zoneOfPfn } from "../../src/guest/guest_memory.ts";
import { allocKernelMemory } from "../../src/guest/kernel_alloc.ts";
import { createOwner } from "../../src/guest/owners.ts";
import {
  allocPages,
  assignFrames,
  kswapdBalance,
  wakeupKswapd,
} from "../../src/guest/page_alloc.ts";
import { readFileIntoCache } from "../../src/guest/page_cache.ts";
import {
  createVirtioMemDriver,
  VIRTIO_MEM_REQ_PLUG,
  VIRTIO_MEM_REQ_UNPLUG,
  VIRTIO_MEM_RESP_ACK,
  type VirtioMemDriver,
  virtioMemDriverRun,
} from "../../src/guest/virtio_mem_driver.ts";
import { type Zone, ZoneType } from "../../src/guest/zone.ts";
import {
  formatBuddyinfo,
  formatMeminfo,
  formatPagetypeinfo,
  formatZoneinfo,
  meminfoKb,
} from "../../src/metrics/proc_views.ts";
import { createGuestSim } from "../../src/sim/guest_sim.ts";
import { GiB, MiB } from "./helpers.ts";

function guestWithRegion(movable: boolean, memoryBytes = 1 * GiB, kernel = "6.1"): GuestMemory {
  return createGuestMemory({
    memoryBytes,
    machine: "pc",
    kernel,
    cpus: 2,
    thpEnabled: "never",
    thpDefrag: "madvise",
    initOnAlloc: false,
    virtioMem: { regionBytes: 2 * GiB, blockBytes: 2 * MiB, movable },
  });
}

/** A device that acknowledges every request and keeps the plugged size: the driver's peer. */
function ackingDriver(memory: GuestMemory): {
  driver: VirtioMemDriver;
  setRequested: (bytes: number) => void;
} {
  const region = memory.layout.deviceMemory!;
  const config = {
    blockBytes: region.blockPages * PAGE_SIZE,
    addrBytes: region.startPfn * PAGE_SIZE,
    regionBytes: (region.endPfn - region.startPfn) * PAGE_SIZE,
    usableRegionBytes: 0,
    pluggedBytes: 0,
    requestedBytes: 0,
  };
  const request = (type: number, _addrBytes: number, nbBlocks: number): number => {
    const size = nbBlocks * config.blockBytes;
    if (type === VIRTIO_MEM_REQ_PLUG) config.pluggedBytes += size;
    if (type === VIRTIO_MEM_REQ_UNPLUG) config.pluggedBytes -= size;
    return VIRTIO_MEM_RESP_ACK;
  };
  const driver = createVirtioMemDriver(memory, { config, request });
  const setRequested = (bytes: number): void => {
    config.requestedBytes = bytes;
    config.usableRegionBytes = Math.min(config.regionBytes, bytes + 256 * MiB);
  };
  return { driver, setRequested };
}

function expectClean(memory: GuestMemory): void {
  expect(checkGuestMemory(memory)).toEqual([]);
}

/** NR_FREE_PAGES plus the pages on the zone's per-cpu lists. */
function freeWithPcp(memory: GuestMemory, zone: Zone): number {
  let pages = zone.freePages;
  for (const set of memory.pcp[memory.zones.indexOf(zone)]!) pages += set.count;
  return pages;
}

function kindIn(memory: GuestMemory, start: number, end: number, kind: FrameKind): number {
  let count = 0;
  for (let pfn = start; pfn < end; pfn++) {
    if ((memory.table.state[pfn]! & FRAME_KIND_MASK) === kind) count++;
  }
  return count;
}

describe("the device region in the guest's layout", () => {
  test("it starts at the end of RAM above 4 GiB, 1 GiB aligned, covered and not present", () => {
    // 1 GiB (pc): all RAM below the hole, so pc_above_4g_end = 4 GiB.
    const small = guestWithRegion(true);
    expect(small.layout.deviceMemory!.startPfn * PAGE_SIZE).toBe(4 * GiB);
    // 5 GiB (pc): 3 GiB below, 2 GiB above 4 GiB: the end is 6 GiB, already aligned.
    const mid = guestWithRegion(true, 5 * GiB);
    expect(mid.layout.deviceMemory!.startPfn * PAGE_SIZE).toBe(6 * GiB);
    // 4.5 GiB: 1.5 GiB above 4 GiB ends at 5.5 GiB, rounded up to 6 GiB.
    const odd = guestWithRegion(false, 4.5 * GiB);
    const region = odd.layout.deviceMemory!;
    expect(region.startPfn * PAGE_SIZE).toBe(6 * GiB);
    expect(odd.table.frameCount).toBe(region.endPfn);
    expect(kindIn(odd, region.startPfn, region.endPfn, FrameKind.Reserved)).toBe(
      region.endPfn - region.startPfn,
    );
    // ZONE_NORMAL is stretched over the gap and the region; its present pages are boot RAM only.
    const normal = odd.zoneByType[ZoneType.Normal]!;
    expect(normal.endPfn).toBe(region.endPfn);
    expect(normal.presentPages).toBe((1.5 * GiB) / PAGE_SIZE);
    expectClean(odd);
  });

  test("an empty ZONE_MOVABLE or ZONE_NORMAL breaks neither the checker nor /proc views", () => {
    for (const movable of [true, false]) {
      const memory = guestWithRegion(movable);
      const zone = memory.zoneByType[movable ? ZoneType.Movable : ZoneType.Normal]!;
      expect(zone.managedPages).toBe(0);
      expect(zone.presentPages).toBe(0);
      expectClean(memory);
      expect(meminfoKb(memory).MemTotal).toBe(meminfoKb(guestWithoutRegion()).MemTotal);
      for (const view of [formatZoneinfo, formatMeminfo, formatBuddyinfo, formatPagetypeinfo]) {
        expect(view(memory).length).toBeGreaterThan(0);
      }
      // Allocations still succeed from the populated zones below.
      expect(allocPages(memory, GFP_HIGHUSER_MOVABLE, 0)).not.toBe(NO_PFN);
      expect(allocPages(memory, GFP_KERNEL, 0)).not.toBe(NO_PFN);
    }
  });
});

test("kswapd leaves an empty ZONE_MOVABLE alone instead of reclaiming for it", () => {
  const config = { ...guestWithRegion(true).config };
  const sim = createGuestSim(config);
  const file = readFileIntoCache(sim.memory, sim.pageCache, "file", 64 * MiB);
  wakeupKswapd(sim.memory, 0);
  kswapdBalance(sim.memory);
  // Every populated zone is above its high watermark: nothing needed reclaiming.
  expect(file.residentPages).toBe((64 * MiB) / PAGE_SIZE);
  expectClean(sim.memory);
});

function guestWithoutRegion(): GuestMemory {
  return createGuestMemory({
    memoryBytes: 1 * GiB,
    machine: "pc",
    kernel: "6.1",
    cpus: 2,
    thpEnabled: "never",
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
}

describe("the driver against a device that acknowledges everything", () => {
  test("a 5.6 guest refuses virtio-mem: the driver arrived in Linux 5.8", () => {
    expect(() => guestWithRegion(true, 1 * GiB, "5.6")).toThrow(
      /virtio-mem needs Linux 5\.8\+.*5\.6/,
    );
  });

  test("GFP_KERNEL never lands in ZONE_MOVABLE; GFP_HIGHUSER_MOVABLE goes there first", () => {
    const memory = guestWithRegion(true);
    const { driver, setRequested } = ackingDriver(memory);
    setRequested(512 * MiB);
    expect(virtioMemDriverRun(driver).outcome).toBe("done");
    const region = memory.layout.deviceMemory!;
    // 256 MiB of slab, spread over 4x as many pages while it is built.
    allocKernelMemory(memory, "slab", 256 * MiB, 4, false);
    allocKernelMemory(memory, "dentries", 64 * MiB, 1, true);
    expect(kindIn(memory, region.startPfn, region.endPfn, FrameKind.Kernel)).toBe(0);
    expect(kindIn(memory, region.startPfn, region.endPfn, FrameKind.KernelReclaimable)).toBe(0);
    const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 0);
    expect(zoneOfPfn(memory, pfn)!.type).toBe(ZoneType.Movable);
    const owner = createOwner(memory.owners, FrameKind.Anon, "anon", 1);
    assignFrames(memory, pfn, 0, FrameKind.Anon, owner.id, 0);
    owner.pages[0] = pfn;
    expectClean(memory);
  });
});

describe("alloc_contig_range", () => {
  /** A Normal-zone guest with 256 MiB plugged and online; returns the first plugged pfn. */
  function plugged(movable: boolean): { memory: GuestMemory; first: number } {
    const memory = guestWithRegion(movable);
    const { driver, setRequested } = ackingDriver(memory);
    setRequested(256 * MiB);
    expect(virtioMemDriverRun(driver).outcome).toBe("done");
    return { memory, first: memory.layout.deviceMemory!.startPfn };
  }

  test("takes a free range and keeps it off the buddy lists", () => {
    // The top of the plugged 256 MiB: the region's first pageblock holds the second memory
    // block's memmap (GFP_KERNEL prefers ZONE_NORMAL, which is only the region here).
    const { memory, first: regionStart } = plugged(false);
    const end = regionStart + (256 * MiB) / PAGE_SIZE;
    const first = end - 2 * pageblock_nr_pages;
    const zone = zoneOfPfn(memory, first)!;
    const free = freeWithPcp(memory, zone);
    const stats = createContigRangeStats();
    expect(allocContigRange(memory, first, end, stats)).toBe(CONTIG_OK);
    expect(kindIn(memory, first, end, FrameKind.Reserved)).toBe(end - first);
    // drain_all_pages put the per-cpu pages back on the buddy lists: count them with the free.
    expect(freeWithPcp(memory, zone)).toBe(free - (end - first));
    expect(memory.table.pageblockMt[first / pageblock_nr_pages]).not.toBe(MIGRATE_ISOLATE);
    // The caller owns the frames: it takes them out of managed memory at once.
    zone.managedPages -= end - first;
    expectClean(memory);
  });

  /** An allocated order-0 page of `kind` with an owner (one page per owner). */
  function page(memory: GuestMemory, gfp: number, kind: FrameKind): { pfn: number; id: number } {
    const owner = createOwner(memory.owners, kind, "test", 1);
    const pfn = allocPages(memory, gfp, 0);
    expect(pfn).not.toBe(NO_PFN);
    assignFrames(memory, pfn, 0, kind, owner.id, 0);
    owner.pages[0] = pfn;
    return { pfn, id: owner.id };
  }

  function blockOf(pfn: number): number {
    return pfn - (pfn % pageblock_nr_pages);
  }

  test("migrates movable pages out and refuses kernel memory outside ZONE_MOVABLE", () => {
    // ZONE_NORMAL holds only the region here, so it serves both kinds of allocation first.
    const { memory, first } = plugged(false);
    const anon = page(memory, GFP_HIGHUSER_MOVABLE, FrameKind.Anon);
    const slab = page(memory, GFP_KERNEL, FrameKind.Kernel);
    expect(anon.pfn).toBeGreaterThanOrEqual(first);
    expect(slab.pfn).toBeGreaterThanOrEqual(first);
    // Mobility grouping keeps them in different pageblocks.
    expect(blockOf(anon.pfn)).not.toBe(blockOf(slab.pfn));
    expectClean(memory);
    const stats = createContigRangeStats();
    const start = blockOf(anon.pfn);
    expect(allocContigRange(memory, start, start + pageblock_nr_pages, stats)).toBe(CONTIG_OK);
    expect(stats.migratedPages).toBeGreaterThanOrEqual(1);
    const moved = memory.owners.owners[anon.id]!.pages[0]!;
    expect(blockOf(moved)).not.toBe(start);
    expect(memory.table.state[moved]! & FRAME_KIND_MASK).toBe(FrameKind.Anon);
    zoneOfPfn(memory, start)!.managedPages -= pageblock_nr_pages;
    expectClean(memory);
    // The kernel page's pageblock: has_unmovable_pages refuses, nothing moves.
    const next = createContigRangeStats();
    const kernelBlock = blockOf(slab.pfn);
    const zone = zoneOfPfn(memory, kernelBlock)!;
    const freeBefore = zone.freePages;
    const range = kernelBlock + pageblock_nr_pages;
    expect(allocContigRange(memory, kernelBlock, range, next)).toBe(CONTIG_EBUSY);
    expect(next.failedIsolation).toBe(1);
    expect(next.migratedPages).toBe(0);
    expect(zone.freePages).toBe(freeBefore);
    expect(memory.table.pageblockMt[kernelBlock / pageblock_nr_pages]).not.toBe(MIGRATE_ISOLATE);
    expectClean(memory);
  });

  test("a pinned page fails the range after isolation; pages before it stay migrated", () => {
    const { memory } = plugged(true);
    const a = page(memory, GFP_HIGHUSER_MOVABLE, FrameKind.Anon);
    const b = page(memory, GFP_HIGHUSER_MOVABLE, FrameKind.Anon);
    expect(blockOf(a.pfn)).toBe(blockOf(b.pfn));
    // The higher page gets pinned (GUP/vfio): has_unmovable_pages lets it pass (PageLRU).
    const [low, high] = a.pfn < b.pfn ? [a, b] : [b, a];
    memory.table.state[high.pfn] = FrameKind.Pinned;
    const start = blockOf(low.pfn);
    const stats = createContigRangeStats();
    expect(allocContigRange(memory, start, start + pageblock_nr_pages, stats)).toBe(CONTIG_EBUSY);
    expect(stats.failedMigration).toBe(1);
    expect(stats.migratedPages).toBeGreaterThanOrEqual(1);
    expect(blockOf(memory.owners.owners[low.id]!.pages[0]!)).not.toBe(start);
    expect(memory.owners.owners[high.id]!.pages[0]).toBe(high.pfn);
    expect(memory.table.pageblockMt[start / pageblock_nr_pages]).not.toBe(MIGRATE_ISOLATE);
    expectClean(memory);
  });
});
