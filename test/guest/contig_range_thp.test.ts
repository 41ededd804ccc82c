// Goal: alloc_contig_range moves a guest THP out of the range the way each kernel's source does:
// whole to a new 2 MiB page outside the range (isolate_migratepages_block takes compound pages
// when cc->alloc_contig, alloc_migration_target asks for an order-9 page), with its mapping and
// THP state at the new head and its queue membership dropped; split and migrated page by page
// when no 2 MiB target can be had (migrate_pages' -ENOMEM → try_split_thp), in the order each
// version retries the split pages; and, from 6.12, split at once when it is partially mapped
// and queued (migrate_pages_batch). The copy is a guest write of the target (memory.onTouch).
// Method: 512 MiB guests (THP on) for 5.6, 6.1 and 6.18; a process faults THPs; alloc_contig_range
// takes one THP's pageblock, as virtio-mem's fake-offline does; the buddy checker and an
// independent check of the THP state (every order-9 anon head has state, every state a head,
// the split queue consistent) run after each step.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../../src/core/limits.ts";
import {
  createProcess,
  exitProcess,
  freeRange,
  PMD_HUGE,
  PMD_TABLE,
  type Process,
  touchProcess,
} from "../../src/guest/anon.ts";
import {
  allocContigRange,
  CONTIG_OK,
  createContigRangeStats,
} from "../../src/guest/contig_range.ts";
import {
  FRAME_KIND_MASK,
  FRAME_TAIL,
  FrameKind,
  NO_PFN,
  ORDER_MASK,
} from "../../src/guest/frame_table.ts";
import { __GFP_HIGHMEM, __GFP_MOVABLE } from "../../src/guest/gfp.ts";
import { type GuestMemory, zoneOfPfn } from "../../src/guest/guest_memory.ts";
import { allocKernelMemory } from "../../src/guest/kernel_alloc.ts";
import { createOwner } from "../../src/guest/owners.ts";
import { allocPages, assignFrames, drainAllPages } from "../../src/guest/page_alloc.ts";
import {
  createThpState,
  deferredSplitCount,
  deferredSplitScan,
  type ThpState,
  thpPmdMapped,
} from "../../src/guest/thp.ts";
import { VmEvent } from "../../src/guest/vm_event.ts";
import { MiB, smallGuest } from "./helpers.ts";

const KERNELS = ["5.6", "6.1", "6.18"] as const;

interface Setup {
  readonly memory: GuestMemory;
  readonly thpState: ThpState;
  readonly process: Process;
  /** Every memory.onTouch call, as [pfn, count] pairs. */
  readonly touches: number[];
}

function setup(kernel: string, thpBytes: number): Setup {
  const memory = smallGuest(kernel, 512 * MiB, "always");
  const touches: number[] = [];
  memory.onTouch = (pfn, count) => {
    touches.push(pfn, count);
  };
  const thpState = createThpState(memory);
  const process = createProcess(memory, "thp", thpBytes, { thp: true, thpState });
  expect(touchProcess(memory, process, 0, process.sizePages)).toBe(0);
  expect(process.owner.hugePages).toBe(process.sizePages);
  const s = { memory, thpState, process, touches };
  expectClean(s);
  return s;
}

/** The buddy checker and an independent check of the THP state against the frame table. */
function expectClean(s: Setup): void {
  expect(checkGuestMemory(s.memory)).toEqual([]);
  expect(checkThpState(s)).toEqual([]);
}

function isThpHead(memory: GuestMemory, pfn: number): boolean {
  const state = memory.table.state[pfn]!;
  return (
    (state & FRAME_KIND_MASK) === FrameKind.Anon &&
    (state & FRAME_TAIL) === 0 &&
    (memory.table.order[pfn]! & ORDER_MASK) === 9
  );
}

function checkThpState(s: Setup): string[] {
  const { memory, thpState, process } = s;
  const problems: string[] = [];
  for (let block = 0; block < thpState.flags.length; block++) {
    const head = block * HPAGE_PMD_NR;
    const hasState = thpState.flags[block] !== 0 || thpState.ptesMapped[block] !== 0;
    if (hasState !== isThpHead(memory, head)) {
      problems.push(`pageblock ${block}: THP state ${hasState}, THP head ${!hasState}`);
    }
  }
  let queued = 0;
  for (let block = thpState.queueHead; block !== NO_PFN; block = thpState.queueNext[block]!) {
    if (!isThpHead(memory, block * HPAGE_PMD_NR)) problems.push(`queued block ${block}: no THP`);
    if (++queued > thpState.flags.length) break;
  }
  if (queued !== thpState.splitQueueLen)
    problems.push(`queue ${queued} != ${thpState.splitQueueLen}`);
  for (let range = 0; range < process.pmd.length; range++) {
    if (process.pmd[range] !== PMD_HUGE) continue;
    const head = process.owner.pages[range * HPAGE_PMD_NR]!;
    if (!isThpHead(memory, head) || !thpPmdMapped(thpState, head)) {
      problems.push(`range ${range}: PMD maps ${head}, not a PMD-mapped THP`);
    }
    for (let i = 0; i < HPAGE_PMD_NR; i++) {
      if (process.owner.pages[range * HPAGE_PMD_NR + i] !== head + i) {
        problems.push(`range ${range} page ${i}: not head + ${i}`);
        break;
      }
    }
  }
  return problems;
}

/** alloc_contig_range over one pageblock, and the caller's adjust_managed_page_count. */
function takeBlock(memory: GuestMemory, startPfn: number) {
  const stats = createContigRangeStats();
  const rc = allocContigRange(memory, startPfn, startPfn + HPAGE_PMD_NR, stats);
  if (rc === CONTIG_OK) zoneOfPfn(memory, startPfn)!.managedPages -= HPAGE_PMD_NR;
  return { rc, stats };
}

function events(memory: GuestMemory): number[] {
  return [
    memory.events[VmEvent.pgmigrate_success]!,
    memory.events[VmEvent.pgmigrate_fail]!,
    memory.events[VmEvent.thp_split_pmd]!,
    memory.events[VmEvent.thp_split_page]!,
  ];
}

function delta(after: number[], before: number[]): number[] {
  return after.map((value, i) => value - before[i]!);
}

/**
 * Leaves no free block of order 9 or more: kernel slab spread over half of free memory (every
 * other page stays, so nothing merges; GFP_KERNEL, so compaction could not help either), then
 * every larger block left near the watermarks is taken whole by a kernel owner.
 */
function useUpHugeBlocks(memory: GuestMemory): void {
  let free = 0;
  memory.zones.forEach((zone, index) => {
    free += zone.freePages;
    for (const set of memory.pcp[index]!) free += set.count;
  });
  allocKernelMemory(memory, "fragments", Math.floor(free / 2) * PAGE_SIZE, 2, false);
  const hog = createOwner(memory.owners, FrameKind.Kernel, "hog", free);
  for (let block = 0; ; block++) {
    // Pages waiting on the per-cpu lists (order-9 refills too) count once drained, as the slow
    // path's drain_all_pages would drain them for the next 2 MiB request.
    drainAllPages(memory);
    const pfn = allocPages(memory, __GFP_MOVABLE | __GFP_HIGHMEM, 9);
    if (pfn === NO_PFN) break;
    assignFrames(memory, pfn, 9, FrameKind.Kernel, hog.id, block * HPAGE_PMD_NR);
    for (let i = 0; i < HPAGE_PMD_NR; i++) hog.pages[block * HPAGE_PMD_NR + i] = pfn + i;
    hog.residentPages += HPAGE_PMD_NR;
  }
  for (const zone of memory.zones) {
    for (let order = 9; order < zone.freeArea.nrFree.length; order++) {
      expect(zone.freeArea.nrFree[order]).toBe(0);
    }
  }
}

describe("alloc_contig_range over a guest THP", () => {
  for (const kernel of KERNELS) {
    test(`${kernel}: a PMD-mapped THP moves whole to a 2 MiB page outside the range`, () => {
      const s = setup(kernel, 4 * MiB);
      const { memory, thpState, process } = s;
      const oldHead = process.owner.pages[0]!;
      const queuedBefore = deferredSplitCount(thpState);
      const before = events(memory);
      s.touches.length = 0;
      const { rc, stats } = takeBlock(memory, oldHead);
      expect(rc).toBe(CONTIG_OK);
      const newHead = process.owner.pages[0]!;
      expect(newHead < oldHead || newHead >= oldHead + HPAGE_PMD_NR).toBe(true);
      expect(isThpHead(memory, newHead)).toBe(true);
      // Still one PMD mapping the whole THP; its state moved with it.
      expect(process.pmd[0]).toBe(PMD_HUGE);
      expect(process.owner.hugePages).toBe(process.sizePages);
      expect(thpPmdMapped(thpState, newHead)).toBe(true);
      expect(thpPmdMapped(thpState, oldHead)).toBe(false);
      // 6.12+ queue every THP at fault; migration leaves the new folio off the queue.
      expect(deferredSplitCount(thpState)).toBe(
        queuedBefore - (memory.rules.thpQueueAtFault ? 1 : 0),
      );
      // The range is the caller's; the copy was one 2 MiB guest write of the target.
      for (let pfn = oldHead; pfn < oldHead + HPAGE_PMD_NR; pfn++) {
        expect(memory.table.state[pfn]).toBe(FrameKind.Reserved);
      }
      expect(s.touches).toEqual([newHead, HPAGE_PMD_NR]);
      expect(stats).toMatchObject({
        thpMigrated: 1,
        thpSplit: 0,
        migratedPages: HPAGE_PMD_NR,
        targetAllocations: 1,
        targetPages: HPAGE_PMD_NR,
      });
      // pgmigrate_success counts the 512 subpages from 5.9, one page on 5.6; nothing split.
      const migrated = memory.rules.thpMigrationCountsSubpages ? HPAGE_PMD_NR : 1;
      expect(delta(events(memory), before)).toEqual([migrated, 0, 0, 0]);
      expectClean(s);
      // The moved THP is an ordinary THP: exit frees it whole.
      exitProcess(memory, process);
      expect(isThpHead(memory, newHead)).toBe(false);
      expectClean(s);
    });

    test(`${kernel}: without a free 2 MiB block the THP is split and its pages migrate`, () => {
      const s = setup(kernel, 2 * MiB);
      const { memory, thpState, process } = s;
      const oldHead = process.owner.pages[0]!;
      useUpHugeBlocks(memory);
      expectClean(s);
      const before = events(memory);
      s.touches.length = 0;
      const { rc, stats } = takeBlock(memory, oldHead);
      expect(rc).toBe(CONTIG_OK);
      expect(stats).toMatchObject({
        thpMigrated: 0,
        thpSplit: 1,
        migratedPages: HPAGE_PMD_NR,
        targetAllocations: HPAGE_PMD_NR,
        targetPages: HPAGE_PMD_NR,
      });
      // split_huge_page split the PMD first (thp_split_pmd), then the page (thp_split_page).
      expect(delta(events(memory), before)).toEqual([HPAGE_PMD_NR, 0, 1, 1]);
      expect(process.pmd[0]).toBe(PMD_TABLE);
      expect(process.owner.hugePages).toBe(0);
      expect(process.owner.residentPages).toBe(HPAGE_PMD_NR);
      expect(thpPmdMapped(thpState, oldHead)).toBe(false);
      for (let i = 0; i < HPAGE_PMD_NR; i++) {
        const pfn = process.owner.pages[i]!;
        expect(pfn < oldHead || pfn >= oldHead + HPAGE_PMD_NR).toBe(true);
        expect(memory.table.state[pfn]).toBe(FrameKind.Anon);
        expect(memory.table.order[pfn]! & ORDER_MASK).toBe(0);
      }
      // Each page was copied (a 4 KiB guest write of its target) in the order the version's
      // migrate_pages retries the split pages.
      const order: number[] = [];
      for (let i = 0; i < s.touches.length; i += 2) {
        expect(s.touches[i + 1]).toBe(1);
        order.push(process.owner.pages.indexOf(s.touches[i]!));
      }
      const down = Array.from({ length: HPAGE_PMD_NR - 1 }, (_, i) => HPAGE_PMD_NR - 1 - i);
      const up = Array.from({ length: HPAGE_PMD_NR - 1 }, (_, i) => i + 1);
      const expected = {
        "5.6": [0, ...down],
        "6.1": [...down, 0],
        "6.18": [...up, 0],
      }[kernel];
      expect(order).toEqual(expected);
      expectClean(s);
      exitProcess(memory, process);
      expectClean(s);
    });

    test(`${kernel}: a partially mapped THP on the split queue`, () => {
      const s = setup(kernel, 4 * MiB);
      const { memory, thpState, process } = s;
      const oldHead = process.owner.pages[0]!;
      // MADV_DONTNEED on one page: the PMD is split and the THP waits on the split queue.
      expect(freeRange(memory, process, 5, 1)).toBe(0);
      expect(process.pmd[0]).toBe(PMD_TABLE);
      const queuedBefore = deferredSplitCount(thpState);
      expectClean(s);
      const before = events(memory);
      const { rc, stats } = takeBlock(memory, oldHead);
      expect(rc).toBe(CONTIG_OK);
      // Either way the THP left the queue and the unmapped page stays unmapped.
      expect(deferredSplitCount(thpState)).toBe(queuedBefore - 1);
      expect(process.owner.pages[5]).toBe(NO_PFN);
      expect(process.owner.residentPages).toBe(process.sizePages - 1);
      expect(process.pmd[0]).toBe(PMD_TABLE);
      if (memory.rules.migrateSplitsPartiallyMappedThp) {
        // 6.12+ migrate_pages_batch: split, the unmapped page freed, 511 pages migrated.
        expect(stats).toMatchObject({ thpMigrated: 0, thpSplit: 1, migratedPages: 511 });
        expect(delta(events(memory), before)).toEqual([511, 0, 0, 1]);
        for (let i = 0; i < HPAGE_PMD_NR; i++) {
          if (i !== 5) expect(isThpHead(memory, process.owner.pages[i]!)).toBe(false);
        }
        expectClean(s);
      } else {
        // 5.6 and 6.1 migrate the PTE-mapped THP whole; the new one is not on the queue.
        expect(stats).toMatchObject({ thpMigrated: 1, thpSplit: 0, migratedPages: 512 });
        const newHead = process.owner.pages[0]!;
        expect(isThpHead(memory, newHead)).toBe(true);
        expect(thpState.ptesMapped[newHead / HPAGE_PMD_NR]).toBe(HPAGE_PMD_NR - 1);
        const migrated = memory.rules.thpMigrationCountsSubpages ? HPAGE_PMD_NR : 1;
        expect(delta(events(memory), before)).toEqual([migrated, 0, 0, 0]);
        expectClean(s);
        // The shrinker cannot see it until its next PTE goes (deferred_split_huge_page counts
        // again: before 6.12 being queued is being partially mapped).
        expect(deferredSplitScan(memory, thpState, 128)).toBe(0);
        const deferredBefore = memory.events[VmEvent.thp_deferred_split_page]!;
        expect(freeRange(memory, process, 6, 1)).toBe(0);
        expect(memory.events[VmEvent.thp_deferred_split_page]! - deferredBefore).toBe(1);
        expect(deferredSplitScan(memory, thpState, 128)).toBe(2);
        expectClean(s);
      }
      exitProcess(memory, process);
      expectClean(s);
    });
  }
});
