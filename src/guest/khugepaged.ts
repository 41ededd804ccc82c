// khugepaged: collapses PTE-mapped 2 MiB ranges of anonymous memory back into THPs
// (mm/khugepaged.c: khugepaged_do_scan, khugepaged_scan_mm_slot, hpage_collapse_scan_pmd,
// collapse_huge_page).
//
// Theory of operation. khugepagedScan is one wake-up of the thread (khugepaged_do_scan): it
// walks the registered processes in order, resuming at the process and 2 MiB range where the
// last wake-up stopped, and charges 1 per process visited, 1 per ineligible VMA and 512 per
// 2 MiB range looked at, until pages_to_scan (4096 = 8 ranges) is used up or the list head has
// been passed twice. A range with a PTE table, at least one present page and no more than
// max_ptes_none empty PTEs is collapsed: an order-9 page is allocated with khugepaged's gfp
// (GFP_TRANSHUGE when khugepaged/defrag is 1, else GFP_TRANSHUGE_LIGHT), the present pages are
// copied, the empty ones zero-filled (so resident memory grows by their number), the PMD maps
// the new THP and the old 4 KiB pages are freed. After a collapse attempt the mmap lock is
// dropped, so the scan of that process resumes at the next range. The first allocation failure
// of a wake-up makes the thread sleep alloc_sleep_millisecs and then finish the same wake-up;
// a second failure ends it. The caller owns time: it sleeps `sleepMs` of the result, then calls
// again.
//
// Left out: swap PTEs (no swap), shared pages (one mapping each), the writable and young checks
// (every anon page is written, and every present page is treated as referenced), memcg charging,
// MADV_COLLAPSE, file/shmem collapse, and khugepaged_max_ptes_swap/shared (never reached).

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, HPAGE_PMD_ORDER } from "../core/limits.ts";
import { mapHugePage, PMD_TABLE, type Process, thpAllowed } from "./anon.ts";
import { NO_PFN } from "./frame_table.ts";
import { GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT } from "./gfp.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { allocPages, freePages } from "./page_alloc.ts";
import { type ThpState, thpHeadOf, unmapThpSubpage } from "./thp.ts";
import { VmEvent } from "./vm_event.ts";

/** The scan cursor's "no mm_slot" value: the next visit starts at the list head. */
const SCAN_AT_HEAD = -1;

export interface KhugepagedState {
  /** khugepaged/pages_to_scan: HPAGE_PMD_NR * 8 = 4096. */
  pagesToScan: number;
  /** khugepaged/scan_sleep_millisecs: 10000. */
  scanSleepMillisecs: number;
  /** khugepaged/alloc_sleep_millisecs: 60000. */
  allocSleepMillisecs: number;
  /** khugepaged/max_ptes_none: HPAGE_PMD_NR - 1 = 511. */
  maxPtesNone: number;
  /** khugepaged/defrag: 1 allocates with GFP_TRANSHUGE, 0 with GFP_TRANSHUGE_LIGHT. */
  defrag: boolean;
  /** khugepaged_scan.mm_slot, as the owner id of the process, or SCAN_AT_HEAD. */
  scanOwnerId: number;
  /** khugepaged_scan.address, as the index of the next 2 MiB range in that process. */
  scanRange: number;
  /** khugepaged/pages_collapsed. */
  pagesCollapsed: number;
  /** khugepaged/full_scans. */
  fullScans: number;
  /** A wake-up interrupted by its first allocation failure: the pages it still may scan. */
  pendingPages: number;
  /** pass_through_head of that interrupted wake-up. */
  pendingPassThroughHead: number;
}

export interface KhugepagedKnobs {
  readonly pagesToScan?: number;
  readonly scanSleepMillisecs?: number;
  readonly allocSleepMillisecs?: number;
  readonly maxPtesNone?: number;
  readonly defrag?: boolean;
}

/** Models khugepaged_init (mm/khugepaged.c): the sysfs defaults, overridable. */
export function createKhugepagedState(knobs: KhugepagedKnobs = {}): KhugepagedState {
  const state: KhugepagedState = {
    pagesToScan: knobs.pagesToScan ?? HPAGE_PMD_NR * 8,
    scanSleepMillisecs: knobs.scanSleepMillisecs ?? 10000,
    allocSleepMillisecs: knobs.allocSleepMillisecs ?? 60000,
    maxPtesNone: knobs.maxPtesNone ?? HPAGE_PMD_NR - 1,
    defrag: knobs.defrag ?? true,
    scanOwnerId: SCAN_AT_HEAD,
    scanRange: 0,
    pagesCollapsed: 0,
    fullScans: 0,
    pendingPages: 0,
    pendingPassThroughHead: 0,
  };
  assert(state.pagesToScan > 0, "pages_to_scan must be positive");
  // max_ptes_none_store refuses values above HPAGE_PMD_NR - 1.
  assert(state.maxPtesNone >= 0 && state.maxPtesNone < HPAGE_PMD_NR, "max_ptes_none 0..511");
  return state;
}

export interface KhugepagedScanResult {
  /** Progress charged in this wake-up (pages_to_scan units). */
  pagesScanned: number;
  /** Ranges collapsed into THPs. */
  collapsed: number;
  /** Huge page allocations that failed (thp_collapse_alloc_failed). */
  allocFailed: number;
  /** How long the thread sleeps before the next call: alloc_sleep or scan_sleep. */
  sleepMs: number;
}

/** The outcome of one range (enum scan_result, reduced). */
const SCAN_FAIL = 0;
const SCAN_SUCCEED = 1;
const SCAN_ALLOC_HUGE_PAGE_FAIL = 2;

/**
 * Models khugepaged_do_scan (mm/khugepaged.c): one wake-up over `processes`, the mm_slot list
 * in registration order. Processes whose VMA is not THP-eligible are charged and skipped.
 */
export function khugepagedScan(
  memory: GuestMemory,
  state: KhugepagedState,
  thpState: ThpState,
  processes: readonly Process[],
): KhugepagedScanResult {
  const result: KhugepagedScanResult = {
    pagesScanned: 0,
    collapsed: 0,
    allocFailed: 0,
    sleepMs: state.scanSleepMillisecs,
  };
  // hugepage_flags_enabled: the thread only runs while THP is always or madvise.
  if (memory.thpEnabled === "never" || processes.length === 0) return result;
  const resumed = state.pendingPages > 0;
  const pages = resumed ? state.pendingPages : state.pagesToScan;
  let passThroughHead = resumed ? state.pendingPassThroughHead : 0;
  let wait = !resumed;
  state.pendingPages = 0;
  let progress = 0;
  // Each visit charges at least 1, so pages + 2 visits always end the loop.
  for (let visit = 0; visit <= pages + 2; visit++) {
    resolveScanCursor(state, processes);
    if (state.scanOwnerId === SCAN_AT_HEAD) passThroughHead++;
    if (passThroughHead >= 2) break;
    const outcome = khugepagedScanMmSlot(memory, state, thpState, processes, pages - progress);
    progress += outcome.progress;
    result.collapsed += outcome.result === SCAN_SUCCEED ? 1 : 0;
    if (progress >= pages) break;
    if (outcome.result === SCAN_ALLOC_HUGE_PAGE_FAIL) {
      result.allocFailed++;
      if (!wait) break;
      wait = false;
      // khugepaged_alloc_sleep: the rest of this wake-up runs after the caller's sleep.
      state.pendingPages = pages - progress;
      state.pendingPassThroughHead = passThroughHead;
      result.sleepMs = state.allocSleepMillisecs;
      break;
    }
  }
  result.pagesScanned = progress;
  return result;
}

/** The cursor's process left the list (exit): move on to the next one, or to the list head. */
function resolveScanCursor(state: KhugepagedState, processes: readonly Process[]): void {
  if (state.scanOwnerId === SCAN_AT_HEAD) return;
  if (processIndexOf(processes, state.scanOwnerId) >= 0) return;
  let next = SCAN_AT_HEAD;
  for (const process of processes) {
    if (process.owner.id > state.scanOwnerId) {
      next = process.owner.id;
      break;
    }
  }
  state.scanOwnerId = next;
  state.scanRange = 0;
}

function processIndexOf(processes: readonly Process[], ownerId: number): number {
  for (let i = 0; i < processes.length; i++) if (processes[i]!.owner.id === ownerId) return i;
  return -1;
}

interface MmSlotOutcome {
  progress: number;
  result: number;
}

// Models khugepaged_scan_mm_slot (mm/khugepaged.c) for a process with one anonymous VMA.
function khugepagedScanMmSlot(
  memory: GuestMemory,
  state: KhugepagedState,
  thpState: ThpState,
  processes: readonly Process[],
  pages: number,
): MmSlotOutcome {
  if (state.scanOwnerId === SCAN_AT_HEAD) {
    state.scanOwnerId = processes[0]!.owner.id;
    state.scanRange = 0;
  }
  const slot = processIndexOf(processes, state.scanOwnerId);
  const process = processes[slot]!;
  const outcome: MmSlotOutcome = { progress: 1, result: SCAN_FAIL };
  if (process.exited) {
    outcome.progress++; // khugepaged_test_exit
  } else if (!thpAllowed(memory, process)) {
    outcome.progress++; // hugepage_vma_check fails: skip the VMA
  } else {
    // hend = round_down(vm_end, HPAGE_PMD_SIZE): only ranges wholly inside the VMA.
    const rangeEnd = Math.floor(process.sizePages / HPAGE_PMD_NR);
    while (state.scanRange < rangeEnd) {
      const range = state.scanRange;
      outcome.result = hpageCollapseScanPmd(memory, state, thpState, process, range);
      state.scanRange = range + 1;
      outcome.progress += HPAGE_PMD_NR;
      if (outcome.result === SCAN_SUCCEED) state.pagesCollapsed++;
      // collapse_huge_page dropped mmap_lock: leave this mm, resume here next time.
      if (outcome.result !== SCAN_FAIL) return outcome;
      if (outcome.progress >= pages) return outcome;
    }
  }
  // The mm is done: the next mm_slot, or the list head after the last one.
  const next = processes[slot + 1];
  if (next === undefined) state.fullScans++;
  state.scanOwnerId = next === undefined ? SCAN_AT_HEAD : next.owner.id;
  state.scanRange = 0;
  return outcome;
}

// Models hpage_collapse_scan_pmd (khugepaged_scan_pmd before 6.1) for one 2 MiB range.
function hpageCollapseScanPmd(
  memory: GuestMemory,
  state: KhugepagedState,
  thpState: ThpState,
  process: Process,
  range: number,
): number {
  // find_pmd_or_thp_or_none: SCAN_PMD_NULL / SCAN_PMD_MAPPED.
  if (process.pmd[range] !== PMD_TABLE) return SCAN_FAIL;
  if (!collapseAllowed(memory, state, process, range)) return SCAN_FAIL;
  return collapseHugePage(memory, state, thpState, process, range);
}

// The PTE checks of hpage_collapse_scan_pmd and __collapse_huge_page_isolate: empty PTEs within
// max_ptes_none (so at least one page is present), and no compound page on 5.6.
function collapseAllowed(
  memory: GuestMemory,
  state: KhugepagedState,
  process: Process,
  range: number,
): boolean {
  const pages = process.owner.pages;
  const firstIndex = range << HPAGE_PMD_ORDER;
  const compoundAllowed = memory.rules.collapsePteMappedThp;
  let none = 0;
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    const pfn = pages[firstIndex + i]!;
    if (pfn === NO_PFN) {
      if (++none > state.maxPtesNone) return false; // SCAN_EXCEED_NONE_PTE
    } else if (!compoundAllowed && thpHeadOf(memory.table, pfn) !== NO_PFN) {
      return false; // SCAN_PAGE_COMPOUND
    }
  }
  return true;
}

// Models collapse_huge_page (mm/khugepaged.c): allocate, revalidate, copy, map, free the old.
function collapseHugePage(
  memory: GuestMemory,
  state: KhugepagedState,
  thpState: ThpState,
  process: Process,
  range: number,
): number {
  // alloc_hugepage_khugepaged_gfpmask (| __GFP_THISNODE, one node here).
  const gfp = state.defrag ? GFP_TRANSHUGE : GFP_TRANSHUGE_LIGHT;
  const pfn = allocPages(memory, gfp, HPAGE_PMD_ORDER);
  if (pfn === NO_PFN) {
    memory.events[VmEvent.thp_collapse_alloc_failed]!++;
    return SCAN_ALLOC_HUGE_PAGE_FAIL;
  }
  memory.events[VmEvent.thp_collapse_alloc]!++;
  // hugepage_vma_revalidate + __collapse_huge_page_isolate: compaction during the allocation
  // may have moved pages, never added or removed them, but check as the kernel does.
  if (process.pmd[range] !== PMD_TABLE || !collapseAllowed(memory, state, process, range)) {
    freePages(memory, pfn, HPAGE_PMD_ORDER);
    return SCAN_FAIL;
  }
  releaseOldPages(memory, thpState, process, range);
  // collapse_huge_page (6.1): the range's PTE table (pmd_pgtable of the collapsed PMD) is
  // deposited under the new PMD (pgtable_trans_huge_deposit): no table is allocated or freed.
  mapHugePage(memory, process, range, pfn);
  return SCAN_SUCCEED;
}

// __collapse_huge_page_copy's release of the source pages: 4 KiB pages are freed, subpages of a
// PTE-mapped THP lose their mapping (the old THP is freed whole when its last one goes).
function releaseOldPages(
  memory: GuestMemory,
  thpState: ThpState,
  process: Process,
  range: number,
): void {
  const owner = process.owner;
  const firstIndex = range << HPAGE_PMD_ORDER;
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    const pfn = owner.pages[firstIndex + i]!;
    if (pfn === NO_PFN) continue;
    owner.pages[firstIndex + i] = NO_PFN;
    owner.residentPages--;
    const headPfn = thpHeadOf(memory.table, pfn);
    if (headPfn === NO_PFN) freePages(memory, pfn, 0);
    else unmapThpSubpage(memory, thpState, headPfn);
  }
}
