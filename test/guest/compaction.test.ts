// Goal: compaction moves what the kernel moves and nothing else, keeps every owner's page table
// true, forms the free blocks the kernel would, and follows the kernel's rules for deferral,
// suitability (fragmentation index), kcompactd and proactive compaction in 5.6, 6.1 and 6.18.
// Method: build small guests (256 MiB) fragmented the way a workload does it (order-0 movable
// pages allocated through page_alloc, every other one freed), run compact_memory, direct
// compaction, kcompactd and the proactive check, and compare the frame table, the owners, the
// free lists and the vmstat counters with what the kernel functions named in each test imply.
// The fragmentation indices are checked against values computed by hand from mm/vmstat.c.

import { describe, expect, test } from "vitest";
import { MIGRATE_MOVABLE, pageblock_nr_pages, pageblock_order } from "../../src/core/limits.ts";
import { delFromFreeList, expand } from "../../src/guest/buddy.ts";
import {
  compactionSuitable,
  compactMemory,
  createKcompactdState,
  fragmentationScoreNode,
  kcompactdDoWork,
  proactiveCompactionCheck,
  tryToCompactPages,
  tryToCompactPagesResult,
} from "../../src/guest/compaction.ts";
import {
  CompactResult,
  compactionDeferReset,
  compactionDeferred,
  compactionRestarting,
  deferCompaction,
} from "../../src/guest/compaction_defer.ts";
import {
  extfragForOrder,
  formatThousandths,
  fragmentationIndex,
  unusableFreeIndex,
} from "../../src/guest/fragmentation_index.ts";
import {
  FRAME_BUDDY,
  FRAME_KIND_MASK,
  FrameKind,
  type FrameTable,
  NO_PFN,
  ORDER_MASK,
  ORDER_MT_SHIFT,
} from "../../src/guest/frame_table.ts";
import { GFP_HIGHUSER_MOVABLE, GFP_KERNEL } from "../../src/guest/gfp.ts";
import { createGuestMemory, type GuestMemory } from "../../src/guest/guest_memory.ts";
import { kernelRules } from "../../src/guest/kernel_version.ts";
import { createOwner, type Owner } from "../../src/guest/owners.ts";
import {
  allocPages,
  assignFrames,
  COMPACT_PRIO_ASYNC,
  COMPACT_PRIO_SYNC_LIGHT,
  drainAllPages,
  freePages,
} from "../../src/guest/page_alloc.ts";
import { VmEvent } from "../../src/guest/vm_event.ts";
import { createZone, type Zone, ZoneType } from "../../src/guest/zone.ts";

const VERSIONS = ["5.6", "6.1", "6.18"] as const;
const OWNER_PAGES_MAX = 80_000;

function createGuest(kernel: string): GuestMemory {
  return createGuestMemory({
    memoryBytes: 256 * 1024 * 1024,
    machine: "pc",
    kernel,
    cpus: 1,
    thpEnabled: "never",
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
}

interface Fragmented {
  memory: GuestMemory;
  owner: Owner;
  /** Pages the owner was given before every other one was freed. */
  count: number;
}

/**
 * A usemem-like workload: `limit` order-0 movable pages (or as many as the allocator gives),
 * then every other page index freed and the per-cpu lists drained, so free memory is order 0.
 */
function fragment(memory: GuestMemory, limit: number): Fragmented {
  const owner = createOwner(memory.owners, FrameKind.Anon, "usemem", OWNER_PAGES_MAX);
  let count = 0;
  while (count < limit) {
    const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 0);
    if (pfn === NO_PFN) break;
    assignFrames(memory, pfn, 0, FrameKind.Anon, owner.id, count);
    owner.pages[count] = pfn;
    count++;
  }
  for (let index = 0; index < count; index += 2) {
    freePages(memory, owner.pages[index]!, 0);
    owner.pages[index] = NO_PFN;
  }
  drainAllPages(memory);
  // The model's kswapd has no reclaim hooks here: treat it as having run and gone back to sleep.
  memory.background.kswapdWoken = false;
  memory.background.kswapdOrder = 0;
  return { memory, owner, count };
}

function fragmentedGuest(kernel: string, limit: number): Fragmented {
  return fragment(createGuest(kernel), limit);
}

/** Takes the lowest free block of DMA32 that holds `order` (rmqueue from a chosen block). */
function allocLowest(memory: GuestMemory, order: number): number {
  const table = memory.table;
  const zone = memory.zoneByType[ZoneType.DMA32]!;
  for (let pfn = zone.startPfn; pfn < zone.endPfn; pfn++) {
    if ((table.state[pfn]! & FRAME_BUDDY) === 0) continue;
    const blockOrder = table.order[pfn]! & ORDER_MASK;
    if (blockOrder < order) continue;
    const migratetype = table.order[pfn]! >>> ORDER_MT_SHIFT;
    delFromFreeList(table, zone, pfn);
    expand(table, zone, pfn, order, blockOrder, migratetype);
    return pfn;
  }
  return NO_PFN;
}

/** Moves one frame from its anonymous owner to a new owner of another kind (slab, pin). */
function rehome(memory: GuestMemory, from: Owner, index: number, to: Owner, toIndex: number) {
  const pfn = from.pages[index]!;
  from.pages[index] = NO_PFN;
  assignFrames(memory, pfn, 0, to.kind, to.id, toIndex);
  to.pages[toIndex] = pfn;
  return pfn;
}

/** Free blocks of at least pageblock order, counted in pageblocks, over all zones. */
function freePageblocks(memory: GuestMemory): number {
  let blocks = 0;
  for (const zone of memory.zones) {
    for (let order = pageblock_order; order < zone.freeArea.nrFree.length; order++) {
      blocks += zone.freeArea.nrFree[order]! * 2 ** (order - pageblock_order);
    }
  }
  return blocks;
}

function isMovable(kind: number): boolean {
  return (
    kind === FrameKind.Anon ||
    kind === FrameKind.PageCache ||
    kind === FrameKind.Shmem ||
    kind === FrameKind.Balloon
  );
}

/** Reverse map and page tables agree both ways; returns the number of disagreements. */
function reverseMapErrors(memory: GuestMemory): number {
  const table = memory.table;
  let errors = 0;
  for (let pfn = 0; pfn < table.frameCount; pfn++) {
    if (!isMovable(table.state[pfn]! & FRAME_KIND_MASK)) continue;
    const owner = memory.owners.owners[table.link0[pfn]!];
    if (owner === undefined || owner.pages[table.link1[pfn]!] !== pfn) errors++;
  }
  for (const owner of memory.owners.owners) {
    owner.pages.forEach((pfn, index) => {
      if (pfn === NO_PFN) return;
      if (table.link0[pfn] !== owner.id || table.link1[pfn] !== index) errors++;
      if ((table.state[pfn]! & FRAME_KIND_MASK) !== owner.kind) errors++;
    });
  }
  return errors;
}

/** Whether the pageblock at blockStart lies inside a free buddy block of order >= 9. */
function insideFreePageblock(table: FrameTable, blockStart: number): boolean {
  for (let order = pageblock_order; order <= 10; order++) {
    const head = blockStart - (blockStart % 2 ** order);
    const state = table.state[head]!;
    if ((state & FRAME_BUDDY) !== 0 && (table.order[head]! & ORDER_MASK) >= order) return true;
  }
  return false;
}

/** A zone outside any guest whose free lists a test sets by hand (only nr_free is read). */
function handZone(nrFree: readonly number[]): Zone {
  const zone = createZone(
    { type: ZoneType.DMA32, startPfn: 0, endPfn: 1 << 20 },
    kernelRules("6.1"),
  );
  nrFree.forEach((blocks, order) => {
    zone.freeArea.nrFree[order] = blocks;
    zone.freePages += blocks * 2 ** order;
  });
  return zone;
}

describe("compact_memory (sysctl_compaction_handler → compact_node → compact_zone)", () => {
  for (const kernel of VERSIONS) {
    test(`${kernel}: a fragmented guest gains free pageblocks; owners stay consistent`, () => {
      const { memory } = fragmentedGuest(kernel, 40_000);
      const before = freePageblocks(memory);
      compactMemory(memory);
      expect(freePageblocks(memory)).toBeGreaterThan(before + 10);
      expect(reverseMapErrors(memory)).toBe(0);
      const events = memory.events;
      expect(events[VmEvent.pgmigrate_success]).toBeGreaterThan(1000);
      // compact_isolated sums both scanners: every migrated page had a source and a target.
      expect(events[VmEvent.compact_isolated]).toBeGreaterThanOrEqual(
        2 * events[VmEvent.pgmigrate_success]!,
      );
      expect(events[VmEvent.compact_migrate_scanned]).toBeGreaterThan(0);
      expect(events[VmEvent.compact_free_scanned]).toBeGreaterThan(0);
      // compact_memory counts neither stalls nor daemon work.
      expect(events[VmEvent.compact_stall]).toBe(0);
      expect(events[VmEvent.compact_daemon_wake]).toBe(0);
      expect(events[VmEvent.compact_daemon_migrate_scanned]).toBe(0);
    });
  }

  test("unmovable, pinned and reserved frames never move (isolate_migratepages_block)", () => {
    const { memory, owner, count } = fragmentedGuest("6.1", 40_000);
    const table = memory.table;
    const slab = createOwner(memory.owners, FrameKind.Kernel, "slab", 256);
    const pinned = createOwner(memory.owners, FrameKind.Pinned, "vfio", 256);
    const fixed: number[] = [];
    for (let index = 0; index < 64; index++) {
      const pfn = allocPages(memory, GFP_KERNEL, 0);
      assignFrames(memory, pfn, 0, FrameKind.Kernel, slab.id, index);
      slab.pages[index] = pfn;
      fixed.push(pfn);
    }
    for (let index = 1, slot = 0; index < count && slot < 64; index += 601, slot++) {
      fixed.push(rehome(memory, owner, index, pinned, slot));
    }
    const reserved: number[] = [];
    for (let pfn = 0; pfn < table.frameCount; pfn++) {
      if ((table.state[pfn]! & FRAME_KIND_MASK) === FrameKind.Reserved) reserved.push(pfn);
    }
    const kinds = fixed.map((pfn) => table.state[pfn]);
    compactMemory(memory);
    expect(memory.events[VmEvent.pgmigrate_success]).toBeGreaterThan(0);
    expect(fixed.map((pfn) => table.state[pfn])).toEqual(kinds);
    expect(slab.pages.slice(0, 64)).toEqual(Int32Array.from(fixed.slice(0, 64)));
    for (const pfn of reserved)
      expect(table.state[pfn]! & FRAME_KIND_MASK).toBe(FrameKind.Reserved);
    expect(reverseMapErrors(memory)).toBe(0);
  });

  test("a pageblock holding one kernel frame never becomes a free pageblock", () => {
    const { memory, owner, count } = fragmentedGuest("6.18", 40_000);
    const table = memory.table;
    const slab = createOwner(memory.owners, FrameKind.Kernel, "slab", 1024);
    const polluted: number[] = [];
    // One kept (odd-index) page in every third pageblock that holds one becomes a slab page.
    const seen = new Set<number>();
    for (let index = 1; index < count; index += 2) {
      const block = owner.pages[index]! >>> pageblock_order;
      if (seen.has(block) || block % 3 !== 0) continue;
      seen.add(block);
      rehome(memory, owner, index, slab, polluted.length);
      polluted.push(block * pageblock_nr_pages);
    }
    expect(polluted.length).toBeGreaterThan(5);
    compactMemory(memory);
    expect(freePageblocks(memory)).toBeGreaterThan(5);
    for (const blockStart of polluted) expect(insideFreePageblock(table, blockStart)).toBe(false);
    polluted.forEach((_, slot) => {
      expect(table.state[slab.pages[slot]!]! & FRAME_KIND_MASK).toBe(FrameKind.Kernel);
    });
  });

  test("order-9 THPs never move; v6.10+ moves smaller folios (skip_isolation_on_order)", () => {
    for (const kernel of VERSIONS) {
      // Folios low in a fresh zone, where the migration scanner finds them and the free scanner
      // finds chunks of their order (running out of those, v6.10+ would split the folio and
      // retry, which the model does not do).
      const memory = createGuest(kernel);
      const folios = createOwner(memory.owners, FrameKind.Anon, "folios", 4096, 9);
      const mthpPfn = allocLowest(memory, 2);
      assignFrames(memory, mthpPfn, 2, FrameKind.Anon, folios.id, 512);
      for (let page = 0; page < 4; page++) folios.pages[512 + page] = mthpPfn + page;
      const thpPfn = allocLowest(memory, 9);
      assignFrames(memory, thpPfn, 9, FrameKind.Anon, folios.id, 0);
      for (let page = 0; page < 512; page++) folios.pages[page] = thpPfn + page;
      compactMemory(memory);
      expect(folios.pages[0]).toBe(thpPfn);
      const mthpMoved = folios.pages[512] !== mthpPfn;
      expect(mthpMoved).toBe(kernel === "6.18");
      expect(folios.pages[512]! % 4).toBe(0);
      expect(reverseMapErrors(memory)).toBe(0);
    }
  });
});

describe("fragmentation indices (mm/vmstat.c)", () => {
  test("fragmentation_index, unusable_free_index, extfrag_for_order by hand", () => {
    // 100 free order-0 pages and 10 order-3 blocks: 180 free pages in 110 blocks.
    const zone = handZone([100, 0, 0, 10]);
    // Order 9: no suitable block; 1000 - (1000 + 180 * 1000 / 512) / 110 = 1000 - 1351 / 110.
    expect(fragmentationIndex(zone, 9)).toBe(988);
    // Order 3: a suitable block exists, so the allocation would succeed.
    expect(fragmentationIndex(zone, 3)).toBe(-1000);
    expect(unusableFreeIndex(zone, 9)).toBe(1000);
    // (180 - 10 * 8) * 1000 / 180 = 555.5, truncated.
    expect(unusableFreeIndex(zone, 3)).toBe(555);
    expect(extfragForOrder(zone, 3)).toBe(55);
    expect(extfragForOrder(zone, 0)).toBe(0);
    const empty = handZone([]);
    expect(fragmentationIndex(empty, 9)).toBe(0);
    expect(unusableFreeIndex(empty, 9)).toBe(1000);
    expect(extfragForOrder(empty, 9)).toBe(0);
    expect(formatThousandths(-1000, 2)).toBe("-1.000");
    expect(formatThousandths(988, 2)).toBe(" 0.988");
    expect(formatThousandths(55, 0)).toBe("0.055");
  });

  test("compaction_suitable skips a zone short of memory (fragindex <= 500)", () => {
    // Five order-8 blocks: 1000 - (1000 + 1280 * 1000 / 512) / 5 = 1000 - 700 = 300.
    const lackOfMemory = handZone([0, 0, 0, 0, 0, 0, 0, 0, 5]);
    expect(fragmentationIndex(lackOfMemory, 9)).toBe(300);
    expect(compactionSuitable(lackOfMemory, 9, ZoneType.DMA32)).toBe(false);
    // 2000 order-0 pages: 1000 - (1000 + 3906) / 2000 = 998, fragmentation: compact.
    const fragmented = handZone([2000]);
    expect(fragmentationIndex(fragmented, 9)).toBe(998);
    expect(compactionSuitable(fragmented, 9, ZoneType.DMA32)).toBe(true);
    // Below low + compact_gap(9) = 1024 order-0 pages: reclaim first (COMPACT_SKIPPED).
    expect(compactionSuitable(handZone([1000]), 9, ZoneType.DMA32)).toBe(false);
    // Non-costly orders ignore the fragmentation index.
    expect(compactionSuitable(lackOfMemory, 3, ZoneType.DMA32)).toBe(true);
  });
});

describe("deferral (defer_compaction, compaction_deferred, compaction_defer_reset)", () => {
  test("after the k-th failure, 2^k - 1 attempts are skipped, up to 64", () => {
    const zone = handZone([]);
    expect(compactionDeferred(zone, 9)).toBe(false);
    for (let failures = 1; failures <= 8; failures++) {
      deferCompaction(zone, 9);
      const skipped = Math.min(2 ** failures, 64) - 1;
      for (let attempt = 0; attempt < skipped; attempt++) {
        expect(compactionDeferred(zone, 9)).toBe(true);
      }
      expect(compactionDeferred(zone, 9)).toBe(false);
    }
    expect(zone.compactDeferShift).toBe(6);
    expect(compactionRestarting(zone, 9)).toBe(true);
    // compact_order_failed starts at 0: deferral covers every order until a success.
    expect(zone.compactOrderFailed).toBe(0);
    compactionDeferReset(zone, 9, false);
    expect(zone.compactOrderFailed).toBe(10);
    expect(zone.compactDeferShift).toBe(6);
    deferCompaction(zone, 6);
    expect(zone.compactOrderFailed).toBe(6);
    // Orders below the lowest failed order are never deferred; the others are.
    expect(compactionDeferred(zone, 4)).toBe(false);
    expect(compactionDeferred(zone, 9)).toBe(true);
    compactionDeferReset(zone, 9, true);
    expect(zone.compactDeferShift).toBe(0);
    expect(compactionDeferred(zone, 9)).toBe(false);
  });

  test("try_to_compact_pages defers a zone after a failed sync run, never after async", () => {
    const { memory, owner, count } = fragmentedGuest("6.1", OWNER_PAGES_MAX);
    // A slab page in every pageblock holding a kept page: no pageblock can be freed.
    const slab = createOwner(memory.owners, FrameKind.Kernel, "slab", 1024);
    const seen = new Set<number>();
    for (let index = 1; index < count; index += 2) {
      const block = owner.pages[index]! >>> pageblock_order;
      if (seen.has(block)) continue;
      seen.add(block);
      rehome(memory, owner, index, slab, seen.size - 1);
    }
    const zone = memory.zoneByType[ZoneType.DMA32]!;
    expect(freePageblocks(memory)).toBe(0);
    const asyncResult = tryToCompactPagesResult(memory, 9, MIGRATE_MOVABLE, COMPACT_PRIO_ASYNC);
    expect(asyncResult).not.toBe(CompactResult.SUCCESS);
    expect(zone.compactDeferShift).toBe(0);
    const sync = tryToCompactPagesResult(memory, 9, MIGRATE_MOVABLE, COMPACT_PRIO_SYNC_LIGHT);
    expect([CompactResult.COMPLETE, CompactResult.PARTIAL_SKIPPED]).toContain(sync);
    expect(zone.compactDeferShift).toBe(1);
    const next = tryToCompactPagesResult(memory, 9, MIGRATE_MOVABLE, COMPACT_PRIO_SYNC_LIGHT);
    expect(next).toBe(CompactResult.DEFERRED);
    expect(reverseMapErrors(memory)).toBe(0);
  });
});

describe("direct compaction (try_to_compact_pages)", () => {
  for (const kernel of VERSIONS) {
    test(`${kernel}: an order-9 request succeeds on a guest with no free pageblock`, () => {
      const { memory } = fragmentedGuest(kernel, OWNER_PAGES_MAX);
      expect(freePageblocks(memory)).toBe(0);
      expect(tryToCompactPages(memory, 9, MIGRATE_MOVABLE, COMPACT_PRIO_ASYNC)).toBe(true);
      expect(freePageblocks(memory)).toBeGreaterThan(0);
      expect(reverseMapErrors(memory)).toBe(0);
      // Already satisfiable: compact_zone returns SUCCESS before scanning.
      const scanned = memory.events[VmEvent.compact_migrate_scanned];
      expect(tryToCompactPages(memory, 9, MIGRATE_MOVABLE, COMPACT_PRIO_ASYNC)).toBe(true);
      expect(memory.events[VmEvent.compact_migrate_scanned]).toBe(scanned);
    });
  }
});

describe("kcompactd (kcompactd_do_work) and proactive compaction", () => {
  test("a wake-up compacts for its order and counts the daemon counters", () => {
    const { memory } = fragmentedGuest("6.18", OWNER_PAGES_MAX);
    const state = createKcompactdState();
    memory.background.kcompactdOrder = 0;
    expect(kcompactdDoWork(memory, state)).toBe(false);
    expect(memory.background.kcompactdOrder).toBe(-1);
    memory.background.kcompactdOrder = 9;
    expect(kcompactdDoWork(memory, state)).toBe(true);
    expect(memory.background.kcompactdOrder).toBe(-1);
    const events = memory.events;
    expect(events[VmEvent.compact_daemon_wake]).toBe(1);
    expect(events[VmEvent.compact_daemon_migrate_scanned]).toBe(
      events[VmEvent.compact_migrate_scanned],
    );
    expect(events[VmEvent.compact_daemon_free_scanned]).toBe(events[VmEvent.compact_free_scanned]);
    expect(freePageblocks(memory)).toBeGreaterThan(0);
    expect(reverseMapErrors(memory)).toBe(0);
  });

  for (const kernel of VERSIONS) {
    test(`${kernel}: the 500 ms check compacts above score 90 only where it exists`, () => {
      const { memory } = fragmentedGuest(kernel, OWNER_PAGES_MAX);
      const state = createKcompactdState();
      const before = fragmentationScoreNode(memory);
      expect(before).toBeGreaterThan(90);
      const timeout = proactiveCompactionCheck(memory, state);
      if (kernel === "5.6") {
        expect(timeout).toBe(Number.POSITIVE_INFINITY);
        expect(memory.events[VmEvent.pgmigrate_success]).toBe(0);
        return;
      }
      expect(timeout).toBe(500);
      expect(state.proactiveRuns).toBe(1);
      expect(fragmentationScoreNode(memory)).toBeLessThan(before);
      expect(memory.events[VmEvent.compact_daemon_migrate_scanned]).toBeGreaterThan(0);
      expect(memory.events[VmEvent.compact_daemon_wake]).toBe(0);
      expect(reverseMapErrors(memory)).toBe(0);
      // Below the high mark the next check does nothing.
      const migrated = memory.events[VmEvent.pgmigrate_success];
      if (fragmentationScoreNode(memory) <= 90) {
        expect(proactiveCompactionCheck(memory, state)).toBe(500);
        expect(memory.events[VmEvent.pgmigrate_success]).toBe(migrated);
      }
    });
  }

  test("a fresh guest (score near 0) is left alone", () => {
    const memory = createGuest("6.1");
    const state = createKcompactdState();
    expect(fragmentationScoreNode(memory)).toBeLessThan(10);
    expect(proactiveCompactionCheck(memory, state)).toBe(500);
    expect(state.proactiveRuns).toBe(0);
    expect(memory.events[VmEvent.compact_migrate_scanned]).toBe(0);
  });
});
