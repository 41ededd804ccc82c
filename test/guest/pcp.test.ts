// Goal: the per-cpu lists drain as each kernel version drains them (src/guest/pcp.ts): 5.6
// frees `batch` pages each time count reaches high; 6.1 doubles the drain while frees run without
// an allocation (free_factor) and empties the whole cache on an order 1..3 free after such a run
// (free_high); 6.18 lets high grow up to high_max while the zone is above its high watermark and
// decays it back to high_min from vmstat refresh. And the page index tree of a large file
// (src/guest/xarray_nodes.ts) is what makes a 6.1 guest hand back its per-cpu pages after the
// file is deleted, as the real guest does (validate/scenarios/anon-no-reporting.yaml).
// Method: 1 GiB guests (THP madvise, so the watermarks are khugepaged's); pages allocated and
// freed through the real entry points; pcp state read from the per-cpu set; the checker after
// each scenario.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import { FrameKind, NO_PFN } from "../../src/guest/frame_table.ts";
import { GFP_HIGHUSER_MOVABLE, GFP_KERNEL } from "../../src/guest/gfp.ts";
import type { GuestMemory } from "../../src/guest/guest_memory.ts";
import { allocPages, freePages } from "../../src/guest/page_alloc.ts";
import { releaseFile, writeTmpfsFile } from "../../src/guest/page_cache.ts";
import type { PcpSet } from "../../src/guest/pcp.ts";
import { indexTreeBytes, xarrayNodes } from "../../src/guest/xarray_nodes.ts";
import { WMARK_LOW } from "../../src/guest/zone.ts";
import { meminfoKb } from "../../src/metrics/proc_views.ts";
import { advanceTime, createGuestSimFromMemory } from "../../src/sim/guest_sim.ts";
import { GiB, MiB, smallGuest } from "./helpers.ts";

function dma32(memory: GuestMemory): { set: PcpSet; index: number } {
  const index = memory.zones.findIndex((zone) => zone.name === "DMA32");
  return { set: memory.pcp[index]![0]!, index };
}

/** Allocates `count` order-0 movable pages (frames left Free, as the tests only free them). */
function allocMany(memory: GuestMemory, count: number): number[] {
  const pfns: number[] = [];
  for (let i = 0; i < count; i++) {
    const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 0);
    expect(pfn).not.toBe(NO_PFN);
    pfns.push(pfn);
  }
  return pfns;
}

/** Frees the pages one by one, recording the per-cpu count after each free. */
function freeAll(memory: GuestMemory, pfns: number[], set: PcpSet): number[] {
  const counts: number[] = [];
  for (const pfn of pfns) {
    freePages(memory, pfn, 0);
    counts.push(set.count);
  }
  return counts;
}

/** Sizes of the drains seen in a run of per-cpu counts (a fall between two frees). */
function drainSizes(counts: number[]): number[] {
  const sizes: number[] = [];
  for (let i = 1; i < counts.length; i++) {
    if (counts[i]! < counts[i - 1]!) sizes.push(counts[i - 1]! + 1 - counts[i]!);
  }
  return sizes;
}

describe("per-cpu list drains", () => {
  test("5.6: each drain frees batch pages, so the cache stays between high - batch and high", () => {
    const memory = smallGuest("5.6", GiB, "madvise");
    const { set } = dma32(memory);
    const counts = freeAll(memory, allocMany(memory, 20_000), set);
    const sizes = drainSizes(counts);
    expect(sizes.length).toBeGreaterThan(10);
    for (const size of sizes) expect(size).toBe(set.batch);
    expect(set.high).toBe(6 * set.batch);
    expect(Math.min(...counts.slice(-1000))).toBeGreaterThanOrEqual(set.high - set.batch);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("6.1: drains double while frees run without an allocation, up to high - batch", () => {
    const memory = smallGuest("6.1", GiB, "madvise");
    const { set, index } = dma32(memory);
    expect(set.high).toBe(Math.max(memory.zones[index]!.watermark[WMARK_LOW]!, 4 * set.batch));
    const counts = freeAll(memory, allocMany(memory, 60_000), set);
    const sizes = drainSizes(counts);
    // batch, 2 batch, 4 batch, ... then clamped at high - batch.
    expect(sizes.slice(0, 4)).toEqual([1, 2, 4, 8].map((k) => k * set.batch));
    expect(Math.max(...sizes)).toBe(set.high - set.batch);
    expect(set.freeFactor).toBeGreaterThan(0);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("6.1: after such a run an order-1 free empties the cache; after allocations it does not", () => {
    const memory = smallGuest("6.1", GiB, "madvise");
    const { set } = dma32(memory);
    const order1 = [allocPages(memory, GFP_KERNEL, 1), allocPages(memory, GFP_KERNEL, 1)];
    freeAll(memory, allocMany(memory, 30_000), set);
    expect(set.count).toBeGreaterThan(set.batch);
    const freeBefore = meminfoKb(memory).MemFree!;
    const cached = set.count;
    freePages(memory, order1[0]!, 1);
    expect(set.count).toBe(0);
    expect(meminfoKb(memory).MemFree! - freeBefore).toBe(((cached + 2) * PAGE_SIZE) / 1024);
    // Refill the cache, then allocate: each allocation halves free_factor.
    freeAll(memory, allocMany(memory, 30_000), set);
    const held = allocMany(memory, 16);
    expect(set.freeFactor).toBe(0);
    const kept = set.count;
    freePages(memory, order1[1]!, 1);
    expect(set.count).toBe(kept + 2);
    for (const pfn of held) freePages(memory, pfn, 0);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("6.18: high grows toward high_max during a free run, then vmstat refresh decays it", () => {
    const memory = smallGuest("6.18", GiB, "madvise");
    const sim = createGuestSimFromMemory(memory);
    const { set, index } = dma32(memory);
    const zone = memory.zones[index]!;
    expect(set.highMin).toBe(Math.max(zone.watermark[WMARK_LOW]!, 4 * set.batch));
    expect(set.highMax).toBe(Math.max(Math.floor(zone.managedPages / 8), 4 * set.batch));
    expect(set.highMax).toBeGreaterThan(set.highMin);
    freeAll(memory, allocMany(memory, 60_000), set);
    expect(set.high).toBeGreaterThan(set.highMin);
    expect(set.high).toBeLessThanOrEqual(set.highMax);
    expect(set.count).toBeGreaterThan(set.highMin);
    // decay_pcp_high: an eighth a second (bounded by batch << 5 below count), down to high_min.
    const before = set.high;
    advanceTime(sim, 1000);
    expect(set.high).toBe(Math.max(set.count, before - (before >> 3), set.highMin));
    advanceTime(sim, 60_000);
    expect(set.high).toBe(set.highMin);
    expect(set.count).toBeLessThanOrEqual(set.highMin);
    expect(checkGuestMemory(memory)).toEqual([]);
  });
});

describe("a file's page index tree", () => {
  test("nodes per level of 64 slots; whole 14-node slabs of its own", () => {
    expect(xarrayNodes(1)).toBe(0);
    expect(xarrayNodes(64)).toBe(1);
    expect(xarrayNodes(65)).toBe(3);
    expect(xarrayNodes(98_304)).toBe(1536 + 24 + 1);
    // 1561 nodes fill 111 slabs of 14 (2 pages each): 888 KiB for a 384 MiB file.
    expect(indexTreeBytes(384 * MiB)).toBe(111 * 2 * PAGE_SIZE);
    expect(indexTreeBytes(2 * MiB)).toBe(0);
  });

  test("a 384 MiB tmpfs file holds reclaimable slab pages; deleting it on 6.1 empties the cache", () => {
    const memory = smallGuest("6.1", 768 * MiB, "madvise");
    const { set } = dma32(memory);
    const before = meminfoKb(memory);
    const file = writeTmpfsFile(memory, "touch", 384 * MiB);
    const tree = file.indexTree!;
    expect(tree.kind).toBe(FrameKind.KernelReclaimable);
    expect(tree.residentPages).toBe(222);
    expect(meminfoKb(memory).SReclaimable! - before.SReclaimable!).toBe(888);
    releaseFile(memory, file);
    expect(tree.residentPages).toBe(0);
    // The file's 98304 pages went through the per-cpu list (free_factor rising), then the tree's
    // order-1 slab frees triggered free_high: nothing is left cached.
    expect(set.count).toBe(0);
    expect(meminfoKb(memory).MemFree).toBe(meminfoKb(memory).MemTotal);
    expect(checkGuestMemory(memory)).toEqual([]);
  });
});
