// Goal: anonymous memory faults, MADV_DONTNEED and exit follow the kernel's THP rules: a THP per
// aligned 2 MiB when allowed and memory is plentiful, none when THP is off, partial unmaps of a
// THP that free nothing until the deferred split shrinker runs, and an exit that gives back
// every page. Method: build small guests with createGuestMemory, run usemem-like touch / punch /
// exit sequences through anon.ts and thp.ts, and compare the owner's counts, the vmstat events
// and the allocator's free pages (buddy plus per-cpu lists) with what the kernel would show.
import { describe, expect, test } from "vitest";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../../src/core/limits.ts";
import {
  createProcess,
  exitProcess,
  freeRange,
  PMD_HUGE,
  PMD_NONE,
  PMD_TABLE,
  punchHoles,
  touchProcess,
} from "../../src/guest/anon.ts";
import { FRAME_KIND_MASK, FrameKind, NO_PFN } from "../../src/guest/frame_table.ts";
import {
  createGuestMemory,
  type GuestMemory,
  type ThpEnabled,
} from "../../src/guest/guest_memory.ts";
import { drainAllPages } from "../../src/guest/page_alloc.ts";
import { createThpState, deferredSplitCount, deferredSplitScan } from "../../src/guest/thp.ts";
import { VmEvent } from "../../src/guest/vm_event.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function guest(memoryBytes: number, thpEnabled: ThpEnabled, kernel = "6.1"): GuestMemory {
  return createGuestMemory({
    memoryBytes,
    machine: "pc",
    kernel,
    cpus: 1,
    thpEnabled,
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
}

/** Free pages as the allocator sees them: buddy lists plus per-cpu lists. */
function freePagesTotal(memory: GuestMemory): number {
  let total = 0;
  memory.zones.forEach((zone, index) => {
    total += zone.freePages;
    for (const set of memory.pcp[index]!) total += set.count;
  });
  return total;
}

function anonFrames(memory: GuestMemory): number {
  let count = 0;
  for (const state of memory.table.state) {
    if ((state & FRAME_KIND_MASK) === FrameKind.Anon) count++;
  }
  return count;
}

describe("anonymous faults (do_huge_pmd_anonymous_page, do_anonymous_page)", () => {
  test("enabled=always maps every aligned 2 MiB with a THP when memory is plentiful", () => {
    // do_huge_pmd_anonymous_page (mm/huge_memory.c): AnonHugePages equals the VMA's aligned part;
    // the trailing 1 MiB is not a whole PMD range (transhuge_vma_suitable) and gets 4 KiB pages.
    const memory = guest(2 * GiB, "always");
    const thpState = createThpState(memory);
    const process = createProcess(memory, "usemem", GiB + MiB, { thp: false, thpState });
    const shortfall = touchProcess(memory, process, 0, process.sizePages);
    expect(shortfall).toBe(0);
    expect(process.owner.hugePages).toBe(GiB / PAGE_SIZE);
    expect(process.owner.residentPages).toBe(process.sizePages);
    expect(memory.events[VmEvent.thp_fault_alloc]).toBe(GiB / PAGE_SIZE / HPAGE_PMD_NR);
    expect(memory.events[VmEvent.thp_fault_fallback]).toBe(0);
    expect(process.pmd[process.pmd.length - 1]).toBe(PMD_TABLE);
    expect(process.pmd[0]).toBe(PMD_HUGE);
  });

  test("enabled=never gives no THP; madvise gives THP only to MADV_HUGEPAGE VMAs", () => {
    // hugepage_vma_check / vma_thp_gfp_mask (mm/huge_memory.c): the enabled mode decides which
    // VMAs may take a PMD fault at all.
    const never = guest(2 * GiB, "never");
    const neverState = createThpState(never);
    const plain = createProcess(never, "usemem", 64 * MiB, { thp: true, thpState: neverState });
    expect(touchProcess(never, plain, 0, plain.sizePages)).toBe(0);
    expect(plain.owner.hugePages).toBe(0);
    expect(plain.owner.residentPages).toBe(plain.sizePages);
    expect(never.events[VmEvent.thp_fault_alloc]).toBe(0);

    const madvise = guest(2 * GiB, "madvise");
    const thpState = createThpState(madvise);
    const advised = createProcess(madvise, "advised", 8 * MiB, { thp: true, thpState });
    const other = createProcess(madvise, "other", 8 * MiB, { thp: false, thpState });
    touchProcess(madvise, advised, 0, advised.sizePages);
    touchProcess(madvise, other, 0, other.sizePages);
    expect(advised.owner.hugePages).toBe(advised.sizePages);
    expect(other.owner.hugePages).toBe(0);
  });

  test("a guest below 512 MiB gets no THP even with enabled=always", () => {
    // hugepage_init (mm/huge_memory.c): totalram below 512 MiB leaves THP off.
    const memory = guest(256 * MiB, "always");
    expect(memory.thpEnabled).toBe("never");
    const process = createProcess(memory, "usemem", 64 * MiB, {
      thp: true,
      thpState: createThpState(memory),
    });
    expect(touchProcess(memory, process, 0, process.sizePages)).toBe(0);
    expect(process.owner.hugePages).toBe(0);
    expect(memory.events[VmEvent.thp_fault_alloc]).toBe(0);
  });

  test("a THP fault falls back to 4 KiB pages when no order-9 block is free", () => {
    // do_huge_pmd_anonymous_page (mm/huge_memory.c): a failed order-9 allocation counts
    // thp_fault_fallback and the range is faulted with 4 KiB pages. Memory is filled, then every
    // other page freed, so free memory is plentiful but no block above order 0 exists; with no
    // compaction hooks installed the slow path cannot help.
    const memory = guest(2 * GiB, "madvise");
    const thpState = createThpState(memory);
    const filler = createProcess(memory, "filler", 2 * GiB, { thp: false, thpState });
    expect(touchProcess(memory, filler, 0, filler.sizePages)).toBeGreaterThan(0);
    punchHoles(memory, filler, 2);
    // Blocks the filler never reached (the reserve below the min watermark, which THP raises to
    // about 44 MiB in set_recommended_min_free_kbytes, and ZONE_DMA behind its lowmem reserve)
    // still give some THPs; every other range must fall back.
    const process = createProcess(memory, "advised", 256 * MiB, { thp: true, thpState });
    expect(touchProcess(memory, process, 0, process.sizePages)).toBe(0);
    const alloc = memory.events[VmEvent.thp_fault_alloc]!;
    const fallback = memory.events[VmEvent.thp_fault_fallback]!;
    expect(fallback).toBeGreaterThan(64);
    expect(alloc + fallback).toBe(process.sizePages / HPAGE_PMD_NR);
    expect(process.owner.hugePages).toBe(alloc * HPAGE_PMD_NR);
    expect(process.owner.residentPages).toBe(process.sizePages);
  });
});

describe("MADV_DONTNEED, deferred split and exit (zap_pmd_range, deferred_split_scan)", () => {
  test("punching holes in THPs frees nothing until deferredSplitScan, then half", () => {
    // __split_huge_pmd + deferred_split_folio + deferred_split_scan (mm/huge_memory.c): a partial
    // unmap splits the PMD and queues the THP; only the shrinker's split frees the subpages.
    const memory = guest(2 * GiB, "always");
    const thpState = createThpState(memory);
    const process = createProcess(memory, "usemem", 64 * MiB, { thp: false, thpState });
    touchProcess(memory, process, 0, process.sizePages);
    const thps = process.sizePages / HPAGE_PMD_NR;
    const freeBefore = freePagesTotal(memory);
    expect(punchHoles(memory, process, 2)).toBe(0);
    expect(freePagesTotal(memory)).toBe(freeBefore);
    expect(process.owner.residentPages).toBe(process.sizePages / 2);
    expect(process.owner.hugePages).toBe(0);
    expect(memory.events[VmEvent.thp_split_pmd]).toBe(thps);
    expect(memory.events[VmEvent.thp_deferred_split_page]).toBe(thps);
    expect(deferredSplitCount(thpState)).toBe(thps);

    expect(deferredSplitScan(memory, thpState, 10)).toBe(10 * (HPAGE_PMD_NR / 2));
    const freed = deferredSplitScan(memory, thpState, 128);
    expect(freed).toBe((thps - 10) * (HPAGE_PMD_NR / 2));
    expect(freePagesTotal(memory)).toBe(freeBefore + process.sizePages / 2);
    expect(memory.events[VmEvent.thp_split_page]).toBe(thps);
    expect(deferredSplitCount(thpState)).toBe(0);
    expect(process.owner.residentPages).toBe(process.sizePages / 2);
  });

  test("punching holes in 4 KiB pages frees half at once", () => {
    // zap_pte_range (mm/memory.c): order-0 anon pages go back to the allocator immediately.
    const memory = guest(2 * GiB, "never");
    const thpState = createThpState(memory);
    const process = createProcess(memory, "usemem", 64 * MiB, { thp: false, thpState });
    touchProcess(memory, process, 0, process.sizePages);
    const freeBefore = freePagesTotal(memory);
    expect(punchHoles(memory, process, 2)).toBe(process.sizePages / 2);
    expect(freePagesTotal(memory)).toBe(freeBefore + process.sizePages / 2);
    expect(process.owner.residentPages).toBe(process.sizePages / 2);
    expect(deferredSplitCount(thpState)).toBe(0);
  });

  test("a whole-THP MADV_DONTNEED frees 512 pages at once and empties the PMD", () => {
    // zap_huge_pmd (mm/huge_memory.c): the PMD is cleared and the THP freed whole, so the next
    // fault in the range may take a THP again; its deposited PTE table goes too
    // (zap_deposited_table), one page more than the 512 anon pages freeRange counts.
    const memory = guest(2 * GiB, "always");
    const thpState = createThpState(memory);
    const process = createProcess(memory, "usemem", 8 * MiB, { thp: false, thpState });
    touchProcess(memory, process, 0, process.sizePages);
    const freeBefore = freePagesTotal(memory);
    expect(freeRange(memory, process, HPAGE_PMD_NR, HPAGE_PMD_NR)).toBe(HPAGE_PMD_NR);
    expect(freePagesTotal(memory)).toBe(freeBefore + HPAGE_PMD_NR + 1);
    expect(process.pmd[1]).toBe(PMD_NONE);
    expect(process.pageTables.pages[1]).toBe(NO_PFN);
    expect(process.owner.hugePages).toBe(process.sizePages - HPAGE_PMD_NR);
    touchProcess(memory, process, HPAGE_PMD_NR, 1);
    expect(process.owner.hugePages).toBe(process.sizePages);
  });

  test("exitProcess returns the free pages to their initial count", () => {
    // exit_mmap → unmap_vmas (mm/mmap.c, mm/memory.c): THPs freed whole, queued partially
    // unmapped THPs freed whole too, 4 KiB pages one by one; drain_all_pages then empties pcp.
    const memory = guest(2 * GiB, "madvise");
    const thpState = createThpState(memory);
    drainAllPages(memory);
    const freeInitial = freePagesTotal(memory);
    const huge = createProcess(memory, "huge", 32 * MiB + 12 * 1024, { thp: true, thpState });
    const small = createProcess(memory, "small", 16 * MiB, { thp: false, thpState });
    touchProcess(memory, huge, 0, huge.sizePages);
    touchProcess(memory, small, 0, small.sizePages);
    punchHoles(memory, huge, 3);
    freeRange(memory, huge, 0, 100);
    expect(deferredSplitCount(thpState)).toBeGreaterThan(0);
    exitProcess(memory, huge);
    exitProcess(memory, small);
    drainAllPages(memory);
    expect(deferredSplitCount(thpState)).toBe(0);
    expect(anonFrames(memory)).toBe(0);
    expect(memory.zones.reduce((sum, zone) => sum + zone.freePages, 0)).toBe(freeInitial);
    expect(huge.owner.residentPages + small.owner.residentPages).toBe(0);
  });
  test("6.18 queues new THPs for the underused shrinker and frees empty PTE tables", () => {
    // deferred_split_folio(folio, false) at fault time and deferred_split_scan's
    // thp_underused check (mm/huge_memory.c, v6.12); reclaim_pt_is_enabled (mm/pt_reclaim.c,
    // v6.14): a MADV_DONTNEED over a whole PTE-mapped 2 MiB range clears the PMD.
    const memory = guest(2 * GiB, "always", "6.18");
    const thpState = createThpState(memory);
    const process = createProcess(memory, "usemem", 8 * MiB, { thp: false, thpState });
    touchProcess(memory, process, 0, process.sizePages);
    expect(deferredSplitCount(thpState)).toBe(4);
    expect(memory.events[VmEvent.thp_deferred_split_page]).toBe(0);
    expect(deferredSplitScan(memory, thpState, 4)).toBe(0);
    expect(deferredSplitCount(thpState)).toBe(0);
    expect(process.owner.hugePages).toBe(process.sizePages);
    freeRange(memory, process, 0, 1);
    expect(process.pmd[0]).toBe(PMD_TABLE);
    expect(deferredSplitCount(thpState)).toBe(1);
    expect(freeRange(memory, process, 0, HPAGE_PMD_NR)).toBe(HPAGE_PMD_NR);
    expect(process.pmd[0]).toBe(PMD_NONE);
    expect(deferredSplitCount(thpState)).toBe(0);
  });
});
