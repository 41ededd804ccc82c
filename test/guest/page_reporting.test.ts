// Goal: free page reporting reports what mm/page_reporting.c reports, when it does: blocks of at
// least page_reporting_order from every migratetype but ISOLATE, 32 per report, about 1/16 of
// a list per pass (so an idle guest takes several passes 2 s apart), only in zones above
// LOW + 64 MiB, reported blocks back at the tail and marked, pageblocks turned MOVABLE by
// isolation, the flag cleared when a reported block is allocated, and no reporting at all on
// 5.6 (it arrived in 5.7).
// Method: 1 GiB guests; the report callback records (pfn, order); the worker is run whenever it
// is due; the checker runs after every pass; the free lists are read back from the frame table.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import {
  MIGRATE_MOVABLE,
  MIGRATE_UNMOVABLE,
  pageblock_nr_pages,
  pageblock_order,
} from "../../src/core/limits.ts";
import { FRAME_BUDDY, FRAME_REPORTED, FrameKind, ORDER_MASK } from "../../src/guest/frame_table.ts";
import { GFP_HIGHUSER_MOVABLE, GFP_KERNEL } from "../../src/guest/gfp.ts";
import type { GuestMemory } from "../../src/guest/guest_memory.ts";
import { createOwner } from "../../src/guest/owners.ts";
import { allocPages, assignFrames, drainAllPages, freePages } from "../../src/guest/page_alloc.ts";
import {
  PAGE_REPORTING_CAPACITY,
  PAGE_REPORTING_DELAY_MS,
  PAGE_REPORTING_IDLE,
  type PageReportingState,
  pageReportingNotice,
  pageReportingProcess,
  registerPageReporting,
} from "../../src/guest/page_reporting.ts";
import { ZoneType } from "../../src/guest/zone.ts";
import { GiB, smallGuest } from "./helpers.ts";

function runUntilIdle(
  memory: GuestMemory,
  reporting: PageReportingState,
  reports: [number, number][][],
): number {
  let passes = 0;
  while (reporting.state !== PAGE_REPORTING_IDLE && passes < 100) {
    memory.clockMs = reporting.runAtMs;
    pageReportingProcess(memory, reporting, (pfns, orders, count) => {
      const report: [number, number][] = [];
      for (let entry = 0; entry < count; entry++) report.push([pfns[entry]!, orders[entry]!]);
      reports.push(report);
      return 0;
    });
    expect(checkGuestMemory(memory)).toEqual([]);
    passes++;
  }
  return passes;
}

function unreportedHighOrderBlocks(memory: GuestMemory, minOrder: number): number {
  let blocks = 0;
  const zone = memory.zoneByType[ZoneType.DMA32]!;
  for (let pfn = zone.startPfn; pfn < zone.endPfn; pfn++) {
    const state = memory.table.state[pfn]!;
    if ((state & FRAME_BUDDY) === 0) continue;
    if ((memory.table.order[pfn]! & ORDER_MASK) < minOrder) continue;
    if ((state & FRAME_REPORTED) === 0) blocks++;
  }
  return blocks;
}

describe("free page reporting (mm/page_reporting.c)", () => {
  test("5.6 has no free page reporting", () => {
    expect(() => registerPageReporting(smallGuest("5.6", GiB), pageblock_order)).toThrow(/5\.7/);
  });

  test("an idle guest is reported in several 2 s passes, 32 blocks per report", () => {
    const memory = smallGuest("6.1", GiB);
    const reporting = registerPageReporting(memory, pageblock_order);
    expect(reporting.runAtMs).toBe(PAGE_REPORTING_DELAY_MS);
    const reports: [number, number][][] = [];
    const passes = runUntilIdle(memory, reporting, reports);
    expect(passes).toBeGreaterThan(1);
    expect(memory.clockMs).toBe(passes * PAGE_REPORTING_DELAY_MS);
    expect(reports.every((report) => report.length <= PAGE_REPORTING_CAPACITY)).toBe(true);
    expect(reports.flat().every(([, order]) => order >= pageblock_order)).toBe(true);
    expect(unreportedHighOrderBlocks(memory, pageblock_order)).toBe(0);
    // The DMA zone (16 MiB) is below LOW + (32 << 9) pages: never reported.
    const dma = memory.zoneByType[ZoneType.DMA]!;
    expect(reports.flat().some(([pfn]) => pfn < dma.endPfn)).toBe(false);
  });

  test("reported blocks are allocated last; allocation clears PageReported", () => {
    const memory = smallGuest("6.1", GiB);
    const reporting = registerPageReporting(memory, pageblock_order);
    runUntilIdle(memory, reporting, []);
    // Every free block is reported now: an allocation takes one and clears its flag; freeing
    // it again (through the pcp lists, then drained) arms the worker, which reports it anew.
    const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, pageblock_order);
    expect(memory.table.state[pfn]! & FRAME_REPORTED).toBe(0);
    freePages(memory, pfn, pageblock_order);
    drainAllPages(memory);
    pageReportingNotice(memory, reporting);
    expect(reporting.state).not.toBe(PAGE_REPORTING_IDLE);
    const reports: [number, number][][] = [];
    runUntilIdle(memory, reporting, reports);
    expect(reports.flat().map(([reported]) => reported)).toContain(pfn & ~1023);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("isolation for a report turns a free UNMOVABLE pageblock MOVABLE", () => {
    const memory = smallGuest("6.1", GiB);
    // An unmovable allocation steals a whole free pageblock, then frees it again.
    const pfn = allocPages(memory, GFP_KERNEL, 0);
    const block = pfn >>> pageblock_order;
    expect(memory.table.pageblockMt[block]).toBe(MIGRATE_UNMOVABLE);
    freePages(memory, pfn, 0);
    drainAllPages(memory);
    const reporting = registerPageReporting(memory, pageblock_order);
    runUntilIdle(memory, reporting, []);
    expect(memory.table.pageblockMt[block]).toBe(MIGRATE_MOVABLE);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("page_reporting_order below pageblock_order reports smaller blocks (v5.14+)", () => {
    const memory = smallGuest("6.18", GiB);
    const pfns: number[] = [];
    const owner = createOwner(memory.owners, FrameKind.Anon, "holes", 4 * pageblock_nr_pages);
    for (let index = 0; index < 4 * pageblock_nr_pages; index++) {
      pfns.push(allocPages(memory, GFP_HIGHUSER_MOVABLE, 0));
      assignFrames(memory, pfns[index]!, 0, FrameKind.Anon, owner.id, index);
      owner.pages[index] = pfns[index]!;
    }
    for (let index = 0; index < pfns.length; index += 2) freePages(memory, pfns[index]!, 0);
    drainAllPages(memory);
    const reporting = registerPageReporting(memory, 0);
    const reports: [number, number][][] = [];
    runUntilIdle(memory, reporting, reports);
    expect(reports.flat().some(([, order]) => order === 0)).toBe(true);
  });
});
