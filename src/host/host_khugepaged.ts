// The host's khugepaged on QEMU's guest RAM (mm/khugepaged.c: khugepaged_do_scan,
// hpage_collapse_scan_pmd / collapse_huge_page for anon, hpage_collapse_scan_file /
// collapse_file for shmem). This is how the host undoes the balloon's savings (semantics 3.3).
//
// Theory of operation. The caller wakes it every scan_sleep_millisecs with a budget of
// pages_to_scan. It walks the whole blocks of the RAMBlock round-robin from a cursor, charging
// HPAGE_PMD_NR per block looked at (progress += HPAGE_PMD_NR per PMD range), at most once per
// block per call, and stops when the budget is used (checked before each range, so 4096 pays
// for 8 blocks). A block is collapsed into a fresh THP when:
// - anon: it has a PTE table (or, from v5.8, a PTE-mapped THP), at most max_ptes_none empty
//   PTEs and at least one present page (taken as referenced). The present pages are copied,
//   the empty ones zero-filled, the PMD maps the THP (all 2 MiB resident again) and the old
//   pages are freed; from v6.12 the THP is queued like a faulted one.
// - shmem: the 2 MiB range of the file holds no THP and at least HPAGE_PMD_NR - max_ptes_none
//   page-cache pages (present pages, mapped or not). collapse_file unmaps the old pages and
//   retract_page_tables removes the PTE table, so the block is pmd_none: allocated becomes
//   2 MiB but nothing is resident until the guest touches it and do_set_pmd maps it.
// The new page comes from the order-9 allocation with khugepaged's gfp (khugepaged/defrag = 1:
// GFP_TRANSHUGE, direct reclaim allowed). A failed allocation ends the call, as the kernel's
// khugepaged_alloc_sleep does; the caller should then wait alloc_sleep_millisecs (60000).
//
// Left out: max_ptes_swap and max_ptes_shared (no swap, one mapping), the young check (a present
// page counts as referenced), collapse_pte_mapped_thp for a shmem THP that is already in the page
// cache, MADV_COLLAPSE, and the other processes khugepaged would also scan.

import { HPAGE_PMD_NR } from "../core/limits.ts";
import { deferredSplitFolio, freeAnonThp } from "./deferred_split.ts";
import {
  BlockState,
  clearBlockResident,
  dropAllOwn,
  FillCause,
  fillBlockResident,
  type GuestRam,
  installCompound,
  stateHoldsCompound,
} from "./guest_ram.ts";
import { hostAllocHugePage } from "./host_reclaim.ts";
import { khugepagedRunning, ramThpEnabled } from "./thp_policy.ts";

export interface HostKhugepagedResult {
  /** Blocks looked at. */
  blocksScanned: number;
  /** Budget used: HPAGE_PMD_NR per block. */
  pagesScanned: number;
  /** Blocks collapsed into THPs (thp_collapse_alloc). */
  collapsed: number;
  /** Huge page allocations that failed (thp_collapse_alloc_failed); the scan stopped there. */
  allocFailed: number;
}

/** The outcome of one block (enum scan_result, reduced). */
const SCAN_FAIL = 0;
const SCAN_SUCCEED = 1;
const SCAN_ALLOC_HUGE_PAGE_FAIL = 2;

/** hpage_collapse_scan_pmd's checks on an anon block (with v5.8's PTE-mapped THPs). */
function anonCollapsible(ram: GuestRam, block: number): boolean {
  const state = ram.blockState[block];
  const pteMapped =
    state === BlockState.Pte || (state === BlockState.ThpPte && ram.rules.collapsePteMappedThp);
  if (!pteMapped) return false;
  const present = ram.residentCount[block]!;
  return present >= 1 && HPAGE_PMD_NR - present <= ram.config.khugepaged.maxPtesNone;
}

/** hpage_collapse_scan_file's checks on a shmem block: no THP yet, enough cached pages. */
function fileCollapsible(ram: GuestRam, block: number): boolean {
  if (stateHoldsCompound(ram.blockState[block]!)) return false;
  return ram.ownCount[block]! >= HPAGE_PMD_NR - ram.config.khugepaged.maxPtesNone;
}

/** Models collapse_huge_page (anon): the checks are repeated after the allocation, as there. */
function collapseAnon(ram: GuestRam, block: number): number {
  if (!anonCollapsible(ram, block)) return SCAN_FAIL;
  if (!hostAllocHugePage(ram, true)) return SCAN_ALLOC_HUGE_PAGE_FAIL;
  // Direct reclaim may have split this very block; __collapse_huge_page_isolate rechecks.
  if (!anonCollapsible(ram, block)) return SCAN_FAIL;
  clearBlockResident(ram, block);
  dropAllOwn(ram, block);
  if (ram.blockState[block] === BlockState.ThpPte) freeAnonThp(ram, block, BlockState.Pte);
  installCompound(ram, block, BlockState.ThpPmd, FillCause.Collapse);
  fillBlockResident(ram, block);
  if (ram.rules.thpQueueAtFault) deferredSplitFolio(ram, block, false);
  return SCAN_SUCCEED;
}

/** Models collapse_file (shmem) followed by retract_page_tables. */
function collapseFile(ram: GuestRam, block: number): number {
  if (!fileCollapsible(ram, block)) return SCAN_FAIL;
  if (!hostAllocHugePage(ram, true)) return SCAN_ALLOC_HUGE_PAGE_FAIL;
  clearBlockResident(ram, block);
  dropAllOwn(ram, block);
  ram.blockState[block] = BlockState.None;
  installCompound(ram, block, BlockState.ThpUnmapped, FillCause.Collapse);
  return SCAN_SUCCEED;
}

/**
 * Models one khugepaged wake-up (khugepaged_do_scan) over QEMU's RAMBlock with a budget of
 * `budgetPages` (pages_to_scan). Does nothing unless khugepaged runs and THP is enabled for the
 * backing (never for hugetlbfs).
 */
export function hostKhugepagedScan(ram: GuestRam, budgetPages: number): HostKhugepagedResult {
  const result: HostKhugepagedResult = {
    blocksScanned: 0,
    pagesScanned: 0,
    collapsed: 0,
    allocFailed: 0,
  };
  if (!Number.isInteger(budgetPages) || budgetPages < 0) {
    throw new RangeError(`budgetPages ${budgetPages}: expected a whole number >= 0`);
  }
  const { config, rules } = ram;
  if (!khugepagedRunning(config, rules) || !ramThpEnabled(config)) return result;
  const anon = config.backing === "anon";
  while (result.pagesScanned < budgetPages && result.blocksScanned < ram.fullBlockCount) {
    const block = ram.khugepagedCursor;
    ram.khugepagedCursor = (block + 1) % ram.fullBlockCount;
    result.blocksScanned++;
    result.pagesScanned += HPAGE_PMD_NR;
    const outcome = anon ? collapseAnon(ram, block) : collapseFile(ram, block);
    if (outcome === SCAN_SUCCEED) {
      result.collapsed++;
      ram.counters.collapses++;
    } else if (outcome === SCAN_ALLOC_HUGE_PAGE_FAIL) {
      result.allocFailed++;
      ram.counters.collapseAllocFailed++;
      break;
    }
  }
  return result;
}
