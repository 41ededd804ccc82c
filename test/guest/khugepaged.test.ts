// Goal: khugepaged collapses PTE-mapped ranges as mm/khugepaged.c does: a range with at least one
// present page and at most max_ptes_none holes becomes a THP (zero-filling the holes, so resident
// memory grows), max_ptes_none=0 refuses a range with holes, one wake-up is bounded by
// pages_to_scan, and 5.6 refuses PTE-mapped THPs. Method: make PTE-mapped ranges with usemem-like
// touch + punchHoles (+ the deferred split shrinker), run khugepagedScan wake-ups, and compare the
// owner's counts, the vmstat events and the result with the kernel's arithmetic.
import { describe, expect, test } from "vitest";
import { HPAGE_PMD_NR } from "../../src/core/limits.ts";
import {
  createProcess,
  PMD_HUGE,
  type Process,
  punchHoles,
  touchProcess,
} from "../../src/guest/anon.ts";
import { createGuestMemory, type GuestMemory } from "../../src/guest/guest_memory.ts";
import { createKhugepagedState, khugepagedScan } from "../../src/guest/khugepaged.ts";
import { drainAllPages } from "../../src/guest/page_alloc.ts";
import {
  createThpState,
  deferredSplitCount,
  deferredSplitScan,
  type ThpState,
} from "../../src/guest/thp.ts";
import { VmEvent } from "../../src/guest/vm_event.ts";

const MiB = 1024 * 1024;

interface Setup {
  memory: GuestMemory;
  thpState: ThpState;
  process: Process;
}

/** A THP-backed process whose THPs are punched to one page in `keepEvery`, optionally split. */
function punchedProcess(
  sizeBytes: number,
  keepEvery: number,
  split: boolean,
  kernel = "6.1",
): Setup {
  const memory = createGuestMemory({
    memoryBytes: 2048 * MiB,
    machine: "pc",
    kernel,
    cpus: 1,
    thpEnabled: "always",
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
  const thpState = createThpState(memory);
  const process = createProcess(memory, "usemem", sizeBytes, { thp: false, thpState });
  touchProcess(memory, process, 0, process.sizePages);
  punchHoles(memory, process, keepEvery);
  if (split) deferredSplitScan(memory, thpState, 1 << 20);
  return { memory, thpState, process };
}

function zoneFree(memory: GuestMemory): number {
  drainAllPages(memory);
  return memory.zones.reduce((sum, zone) => sum + zone.freePages, 0);
}

describe("khugepaged (khugepaged_do_scan, collapse_huge_page)", () => {
  test("collapses a range with 511 holes into a THP and raises residentPages", () => {
    // hpage_collapse_scan_pmd + collapse_huge_page (mm/khugepaged.c): none_or_zero = 511 <=
    // max_ptes_none = 511, so the range is copied into a new THP and the holes are zero-filled.
    const { memory, thpState, process } = punchedProcess(2 * MiB, HPAGE_PMD_NR, true);
    expect(process.owner.residentPages).toBe(1);
    const freeBefore = zoneFree(memory);
    const state = createKhugepagedState();
    const result = khugepagedScan(memory, state, thpState, [process]);
    expect(result.collapsed).toBe(1);
    expect(result.sleepMs).toBe(10000);
    expect(process.owner.residentPages).toBe(HPAGE_PMD_NR);
    expect(process.owner.hugePages).toBe(HPAGE_PMD_NR);
    expect(process.pmd[0]).toBe(PMD_HUGE);
    expect(memory.events[VmEvent.thp_collapse_alloc]).toBe(1);
    expect(state.pagesCollapsed).toBe(1);
    expect(zoneFree(memory)).toBe(freeBefore - (HPAGE_PMD_NR - 1));
  });

  test("max_ptes_none=0 refuses a range with holes", () => {
    // hpage_collapse_scan_pmd (mm/khugepaged.c): ++none_or_zero > max_ptes_none fails with
    // SCAN_EXCEED_NONE_PTE before any allocation.
    const { memory, thpState, process } = punchedProcess(2 * MiB, HPAGE_PMD_NR, true);
    const state = createKhugepagedState({ maxPtesNone: 0 });
    const result = khugepagedScan(memory, state, thpState, [process]);
    expect(result.collapsed).toBe(0);
    expect(process.owner.residentPages).toBe(1);
    expect(memory.events[VmEvent.thp_collapse_alloc]).toBe(0);
    expect(memory.events[VmEvent.thp_collapse_alloc_failed]).toBe(0);
  });

  test("one wake-up scans pages_to_scan and the next resumes where it stopped", () => {
    // khugepaged_do_scan / khugepaged_scan_mm_slot (mm/khugepaged.c): each visit costs 1, each
    // 2 MiB range 512, and a collapse ends the visit; 4096 pages allow 8 collapses.
    const { memory, thpState, process } = punchedProcess(64 * MiB, 2, true);
    const state = createKhugepagedState();
    const first = khugepagedScan(memory, state, thpState, [process]);
    expect(first.collapsed).toBe(8);
    expect(first.pagesScanned).toBe(8 * (HPAGE_PMD_NR + 1));
    expect(process.owner.hugePages).toBe(8 * HPAGE_PMD_NR);
    const second = khugepagedScan(memory, state, thpState, [process]);
    expect(second.collapsed).toBe(8);
    expect(process.owner.hugePages).toBe(16 * HPAGE_PMD_NR);
    expect(state.scanRange).toBe(16);
  });

  test("a PTE-mapped THP still queued is collapsed on 6.1 but not on 5.6", () => {
    // hpage_collapse_scan_pmd (6.1) takes compound_head; khugepaged_scan_pmd (5.6) fails with
    // SCAN_PAGE_COMPOUND. The old THP loses its last mapping and is freed whole.
    const modern = punchedProcess(2 * MiB, 2, false, "6.1");
    expect(deferredSplitCount(modern.thpState)).toBe(1);
    const state = createKhugepagedState();
    expect(khugepagedScan(modern.memory, state, modern.thpState, [modern.process]).collapsed).toBe(
      1,
    );
    expect(deferredSplitCount(modern.thpState)).toBe(0);
    expect(modern.process.owner.hugePages).toBe(HPAGE_PMD_NR);

    const old = punchedProcess(2 * MiB, 2, false, "5.6");
    const oldState = createKhugepagedState();
    expect(khugepagedScan(old.memory, oldState, old.thpState, [old.process]).collapsed).toBe(0);
    expect(old.process.owner.hugePages).toBe(0);
  });
  test("an allocation failure sleeps alloc_sleep, then a second one ends the wake-up", () => {
    // khugepaged_do_scan (mm/khugepaged.c): after SCAN_ALLOC_HUGE_PAGE_FAIL the first time it
    // sleeps alloc_sleep_millisecs and goes on; the second time it breaks (wait = false).
    // Memory is filled and every other page freed, then THP faults use up the remaining order-9
    // blocks; no compaction hooks are installed, so GFP_TRANSHUGE cannot make one.
    const memory = createGuestMemory({
      memoryBytes: 2048 * MiB,
      machine: "pc",
      kernel: "6.1",
      cpus: 1,
      thpEnabled: "madvise",
      thpDefrag: "madvise",
      initOnAlloc: false,
    });
    const thpState = createThpState(memory);
    const filler = createProcess(memory, "filler", 2048 * MiB, { thp: false, thpState });
    touchProcess(memory, filler, 0, filler.sizePages);
    punchHoles(memory, filler, 2);
    const process = createProcess(memory, "advised", 256 * MiB, { thp: true, thpState });
    touchProcess(memory, process, 0, process.sizePages);
    expect(memory.events[VmEvent.thp_fault_fallback]).toBeGreaterThan(0);
    const state = createKhugepagedState({ pagesToScan: 1 << 20 });
    const first = khugepagedScan(memory, state, thpState, [filler, process]);
    expect(first.allocFailed).toBe(1);
    expect(first.sleepMs).toBe(60000);
    expect(state.pendingPages).toBeGreaterThan(0);
    const second = khugepagedScan(memory, state, thpState, [filler, process]);
    expect(second.allocFailed).toBe(1);
    expect(second.sleepMs).toBe(10000);
    expect(state.pendingPages).toBe(0);
    expect(memory.events[VmEvent.thp_collapse_alloc_failed]).toBe(2);
    expect(memory.events[VmEvent.thp_collapse_alloc]).toBe(0);
  });
});
