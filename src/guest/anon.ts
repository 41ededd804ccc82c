// A process's anonymous memory, as usemem-like workloads use it: one private anonymous VMA,
// faulted in address order, partly discarded with MADV_DONTNEED, released at exit
// (mm/memory.c, mm/huge_memory.c, mm/madvise.c).
//
// Theory of operation. The VMA is `sizePages` 4 KiB pages starting 2 MiB-aligned; the owner's
// `pages` array is its page table (index → pfn), and `pmd` holds one byte per 2 MiB range:
// PMD_NONE (pmd_none: no page table yet), PMD_TABLE (a PTE table) or PMD_HUGE (a PMD maps a THP).
// A fault in a PMD_NONE range that lies wholly inside the VMA, with THP allowed for the VMA, tries
// an order-9 page with vma_thp_gfp_mask (do_huge_pmd_anonymous_page); if that fails the range
// gets a PTE table and 4 KiB faults (GFP_HIGHUSER_MOVABLE) until khugepaged collapses it.
// MADV_DONTNEED over a whole PMD-mapped range frees the THP at once (zap_huge_pmd); over part of
// it, the PMD is split and the THP waits on the deferred split queue (thp.ts). 4 KiB pages are
// freed at once. Invariants: owner.residentPages is the number of indexes with a pfn;
// owner.hugePages is 512 times the number of PMD_HUGE ranges.
//
// Page tables. `pageTables` is a FrameKind.Kernel owner (KernelUse.PageTable: meminfo
// PageTables) with one slot per 2 MiB range, holding that range's PTE table page: it has a page
// exactly where pmd[range] !== PMD_NONE. A 4 KiB fault in a PMD_NONE range allocates it before
// the page (pte_alloc); a THP fault allocates it right after the THP and deposits it
// (pgtable_trans_huge_deposit); a PMD split withdraws the deposit as the range's PTE table;
// khugepaged deposits the existing table; zap_huge_pmd frees the deposit; exit frees the rest
// after the pages (free_pgtables). PMD, PUD and P4D pages (one per 1 GiB, 512 GiB, ...) and the
// PGD are left out.
//
// Left out: the huge zero page on read faults (usemem writes), OOM (a failed 4 KiB fault stops
// the touch and reports the shortfall), VM_NOHUGEPAGE and prctl, mTHP orders, swap, and
// unaligned VMA starts (the whole VMA is assumed to start on a 2 MiB boundary, as
// thp_get_unmapped_area gives large anonymous mappings from v6.7).

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE } from "../core/limits.ts";
import { FrameKind, NO_PFN } from "./frame_table.ts";
import {
  __GFP_DIRECT_RECLAIM,
  __GFP_KSWAPD_RECLAIM,
  __GFP_NORETRY,
  GFP_HIGHUSER_MOVABLE,
  GFP_TRANSHUGE,
  GFP_TRANSHUGE_LIGHT,
} from "./gfp.ts";
import type { GuestMemory, ThpDefrag } from "./guest_memory.ts";
import { allocPageTablePage, freePageTablePage } from "./kernel_alloc.ts";
import { createOwner, KernelUse, type Owner } from "./owners.ts";
import { allocPages, assignFrames, freePages } from "./page_alloc.ts";
import {
  freeHugePage,
  registerThpPmdSplitter,
  splitHugePmd,
  type ThpState,
  thpHeadOf,
  thpMapped,
  unmapThpSubpage,
} from "./thp.ts";
import { VmEvent } from "./vm_event.ts";

/** pmd_none: no page table for the range yet. */
export const PMD_NONE = 0;
/** The range has a PTE table (4 KiB pages, or a THP after __split_huge_pmd). */
export const PMD_TABLE = 1;
/** A PMD maps a THP (pmd_trans_huge). */
export const PMD_HUGE = 2;

export interface Process {
  /** The owner: page table, resident and huge page counts, reverse-map id. */
  readonly owner: Owner;
  readonly name: string;
  /** VM_HUGEPAGE: the VMA was madvised MADV_HUGEPAGE. */
  readonly thp: boolean;
  /** VM_NOHUGEPAGE: the VMA was madvised MADV_NOHUGEPAGE. */
  readonly noHugepage: boolean;
  /** VMA length in 4 KiB pages. */
  readonly sizePages: number;
  /** Per 2 MiB range: PMD_NONE, PMD_TABLE or PMD_HUGE. */
  readonly pmd: Uint8Array;
  /** The PTE table pages (KernelUse.PageTable), slot = 2 MiB range: present iff pmd !== NONE. */
  readonly pageTables: Owner;
  /** The guest's THP state (deferred split queue). */
  readonly thpState: ThpState;
  /** exit_mmap ran: nothing is mapped any more. */
  exited: boolean;
}

export interface ProcessOptions {
  /** The VMA has MADV_HUGEPAGE. */
  readonly thp: boolean;
  /** The VMA has MADV_NOHUGEPAGE (VM_NOHUGEPAGE): never THP, whatever `enabled` says. */
  readonly noHugepage?: boolean;
  /** The guest's THP state from createThpState, shared by all its processes. */
  readonly thpState: ThpState;
}

export function createProcess(
  memory: GuestMemory,
  name: string,
  sizeBytes: number,
  options: ProcessOptions,
): Process {
  assert(sizeBytes > 0 && sizeBytes % PAGE_SIZE === 0, "process size must be whole pages");
  const sizePages = sizeBytes / PAGE_SIZE;
  const noHugepage = options.noHugepage === true;
  const eligible =
    !noHugepage &&
    (memory.thpEnabled === "always" || (memory.thpEnabled === "madvise" && options.thp));
  const faultOrder = eligible ? HPAGE_PMD_ORDER : 0;
  const owner = createOwner(memory.owners, FrameKind.Anon, name, sizePages, faultOrder);
  const ranges = Math.ceil(sizePages / HPAGE_PMD_NR);
  const pageTables = createOwner(
    memory.owners,
    FrameKind.Kernel,
    `${name} page tables`,
    ranges,
    0,
    KernelUse.PageTable,
  );
  const process: Process = {
    owner,
    name,
    thp: options.thp,
    noHugepage,
    sizePages,
    pmd: new Uint8Array(ranges),
    pageTables,
    thpState: options.thpState,
    exited: false,
  };
  // A migration that must split one of this process's THPs splits its PMD first (thp.ts).
  registerThpPmdSplitter(options.thpState, owner.id, (range) => {
    splitProcessPmd(memory, process, range);
  });
  return process;
}

/** Models hugepage_vma_check / thp_vma_allowable_order for an anon VMA under `enabled`. */
export function thpAllowed(memory: GuestMemory, process: Process): boolean {
  const enabled = memory.thpEnabled;
  // hugepage_vma_check: VM_NOHUGEPAGE refuses THP before `enabled` is looked at.
  if (process.noHugepage) return false;
  return enabled === "always" || (enabled === "madvise" && process.thp);
}

/** Models vma_thp_gfp_mask (mm/huge_memory.c; alloc_hugepage_direct_gfpmask in 5.6). */
export function vmaThpGfpMask(defrag: ThpDefrag, vmaMadvised: boolean): number {
  switch (defrag) {
    case "always":
      return vmaMadvised ? GFP_TRANSHUGE : GFP_TRANSHUGE | __GFP_NORETRY;
    case "defer":
      return GFP_TRANSHUGE_LIGHT | __GFP_KSWAPD_RECLAIM;
    case "defer+madvise":
      return GFP_TRANSHUGE_LIGHT | (vmaMadvised ? __GFP_DIRECT_RECLAIM : __GFP_KSWAPD_RECLAIM);
    case "madvise":
      return GFP_TRANSHUGE_LIGHT | (vmaMadvised ? __GFP_DIRECT_RECLAIM : 0);
    case "never":
      return GFP_TRANSHUGE_LIGHT;
  }
}

/**
 * Faults in every absent page of [firstIndex, firstIndex + pageCount) in address order, as a
 * process writing its memory does. Returns the pages that could not be allocated: the first
 * failed 4 KiB fault stops the touch (where the kernel would OOM) and every absent page from
 * there on counts.
 */
export function touchProcess(
  memory: GuestMemory,
  process: Process,
  firstIndex: number,
  pageCount: number,
): number {
  checkRange(process, firstIndex, pageCount);
  const pages = process.owner.pages;
  const endIndex = firstIndex + pageCount;
  let index = firstIndex;
  while (index < endIndex) {
    if (pages[index] !== NO_PFN) {
      index++;
      continue;
    }
    const range = index >>> HPAGE_PMD_ORDER;
    if (process.pmd[range] === PMD_NONE) {
      const huge = doHugePmdAnonymousPage(memory, process, range);
      if (huge === THP_FAULT_MAPPED) {
        index = (range + 1) << HPAGE_PMD_ORDER;
        continue;
      }
      if (huge === THP_FAULT_OOM) return shortfallFrom(process, index, endIndex);
    }
    if (!doAnonymousPage(memory, process, index)) return shortfallFrom(process, index, endIndex);
    index++;
  }
  return 0;
}

// The absent pages of [index, endIndex): what a touch stopped by an OOM fault could not map.
function shortfallFrom(process: Process, index: number, endIndex: number): number {
  const pages = process.owner.pages;
  let shortfall = 0;
  for (let i = index; i < endIndex; i++) if (pages[i] === NO_PFN) shortfall++;
  return shortfall;
}

/** do_huge_pmd_anonymous_page's outcomes: VM_FAULT_FALLBACK, a PMD-mapped THP, VM_FAULT_OOM. */
const THP_FAULT_FALLBACK = 0;
const THP_FAULT_MAPPED = 1;
const THP_FAULT_OOM = 2;

// Models do_huge_pmd_anonymous_page (mm/huge_memory.c): THP_FAULT_MAPPED when a THP now maps
// the range; THP_FAULT_FALLBACK leaves the caller to fall back to a 4 KiB fault.
function doHugePmdAnonymousPage(memory: GuestMemory, process: Process, range: number): number {
  const firstIndex = range << HPAGE_PMD_ORDER;
  // transhuge_vma_suitable: the aligned 2 MiB must lie inside the VMA.
  if (firstIndex + HPAGE_PMD_NR > process.sizePages) return THP_FAULT_FALLBACK;
  if (!thpAllowed(memory, process)) return THP_FAULT_FALLBACK;
  const gfp = vmaThpGfpMask(memory.config.thpDefrag, process.thp);
  const pfn = allocPages(memory, gfp, HPAGE_PMD_ORDER);
  if (pfn === NO_PFN) {
    memory.events[VmEvent.thp_fault_fallback]!++;
    return THP_FAULT_FALLBACK;
  }
  mapHugePage(memory, process, range, pfn);
  // __do_huge_pmd_anonymous_page (6.1): pte_alloc_one after the THP, deposited with the PMD.
  if (!allocPageTablePage(memory, process.pageTables, range)) {
    // The release path: the fresh THP goes back, VM_FAULT_OOM (no fallback).
    unmapFreshHugePage(memory, process, range);
    return THP_FAULT_OOM;
  }
  memory.events[VmEvent.thp_fault_alloc]!++;
  memory.events[VmEvent.pgfault]!++;
  return THP_FAULT_MAPPED;
}

// Undoes mapHugePage for a THP fault whose page table allocation failed (put_page on release).
function unmapFreshHugePage(memory: GuestMemory, process: Process, range: number): void {
  freeHugePage(memory, process.thpState, clearHugePmd(process, range));
}

/** Clears the PMD mapping of `range` and the owner's pages under it; returns the THP's head. */
function clearHugePmd(process: Process, range: number): number {
  const owner = process.owner;
  const firstIndex = range << HPAGE_PMD_ORDER;
  const headPfn = owner.pages[firstIndex]!;
  owner.pages.fill(NO_PFN, firstIndex, firstIndex + HPAGE_PMD_NR);
  owner.residentPages -= HPAGE_PMD_NR;
  owner.hugePages -= HPAGE_PMD_NR;
  process.pmd[range] = PMD_NONE;
  return headPfn;
}

/**
 * Installs a freshly allocated order-9 block as the PMD mapping of `range` (set_pmd_at after
 * clear_huge_page or the collapse copy). The range must hold no pages.
 */
export function mapHugePage(
  memory: GuestMemory,
  process: Process,
  range: number,
  pfn: number,
): void {
  const owner = process.owner;
  const firstIndex = range << HPAGE_PMD_ORDER;
  assignFrames(memory, pfn, HPAGE_PMD_ORDER, FrameKind.Anon, owner.id, firstIndex);
  for (let i = 0; i < HPAGE_PMD_NR; i++) {
    assert(owner.pages[firstIndex + i] === NO_PFN, "THP mapped over a present page");
    owner.pages[firstIndex + i] = pfn + i;
  }
  owner.residentPages += HPAGE_PMD_NR;
  owner.hugePages += HPAGE_PMD_NR;
  process.pmd[range] = PMD_HUGE;
  thpMapped(process.thpState, pfn);
}

// Models do_anonymous_page (mm/memory.c): one zeroed 4 KiB page, GFP_HIGHUSER_MOVABLE.
function doAnonymousPage(memory: GuestMemory, process: Process, index: number): boolean {
  const range = index >>> HPAGE_PMD_ORDER;
  if (process.pmd[range] === PMD_NONE) {
    // do_anonymous_page (6.1): pte_alloc → __pte_alloc → pte_alloc_one before the page; the
    // table stays (pmd_populate) even if the page allocation then fails.
    if (!allocPageTablePage(memory, process.pageTables, range)) return false;
    process.pmd[range] = PMD_TABLE;
  }
  const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 0);
  if (pfn === NO_PFN) return false;
  assignFrames(memory, pfn, 0, FrameKind.Anon, process.owner.id, index);
  process.owner.pages[index] = pfn;
  process.owner.residentPages++;
  memory.events[VmEvent.pgfault]!++;
  return true;
}

/**
 * What usemem --punch-holes does: MADV_DONTNEED on every 4 KiB page except every keepEvery-th
 * (with keepEvery 2, pages 0, 2, 4, ... go and 1, 3, 5, ... stay), one madvise call per page.
 * Returns the pages freed at once (not counting THP subpages left for the split shrinker).
 */
export function punchHoles(memory: GuestMemory, process: Process, keepEvery: number): number {
  assert(Number.isInteger(keepEvery) && keepEvery >= 1, "keepEvery must be a positive integer");
  let freed = 0;
  for (let index = 0; index < process.sizePages; index++) {
    if ((index + 1) % keepEvery === 0) continue;
    freed += freeRange(memory, process, index, 1);
  }
  return freed;
}

/**
 * Models madvise(MADV_DONTNEED) → zap_page_range_single over [firstIndex, firstIndex +
 * pageCount): PMD-mapped ranges wholly covered are freed at once (zap_huge_pmd), partly covered
 * ones are split (__split_huge_pmd) and their PTEs zapped. Returns the pages freed at once.
 */
export function freeRange(
  memory: GuestMemory,
  process: Process,
  firstIndex: number,
  pageCount: number,
): number {
  checkRange(process, firstIndex, pageCount);
  const endIndex = firstIndex + pageCount;
  const ptReclaim = memory.rules.ptReclaim;
  let freed = 0;
  let index = firstIndex;
  while (index < endIndex) {
    const range = index >>> HPAGE_PMD_ORDER;
    const rangeStart = range << HPAGE_PMD_ORDER;
    const rangeEnd = Math.min(rangeStart + HPAGE_PMD_NR, endIndex);
    const whole = index === rangeStart && rangeEnd - rangeStart === HPAGE_PMD_NR;
    const pmd = process.pmd[range]!;
    if (pmd === PMD_HUGE && whole) {
      freed += zapHugePmd(memory, process, range);
    } else if (pmd !== PMD_NONE) {
      if (pmd === PMD_HUGE) splitProcessPmd(memory, process, range);
      freed += zapPteRange(memory, process, index, rangeEnd);
      // reclaim_pt_is_enabled: the zap covered the whole PMD and left the table empty
      // (try_to_free_pte frees the PTE table page).
      if (ptReclaim && whole && process.pmd[range] === PMD_TABLE) {
        process.pmd[range] = PMD_NONE;
        freePageTablePage(memory, process.pageTables, range);
      }
    }
    index = rangeEnd;
  }
  return freed;
}

/** Models exit_mmap → unmap_vmas: every mapping goes; THPs whole, queued THPs too. */
export function exitProcess(memory: GuestMemory, process: Process): number {
  assert(!process.exited, () => `process ${process.name} exited twice`);
  let freed = 0;
  for (let range = 0; range < process.pmd.length; range++) {
    const pmd = process.pmd[range]!;
    if (pmd === PMD_HUGE) {
      freed += zapHugePmd(memory, process, range);
    } else if (pmd === PMD_TABLE) {
      const rangeStart = range << HPAGE_PMD_ORDER;
      const rangeEnd = Math.min(rangeStart + HPAGE_PMD_NR, process.sizePages);
      freed += zapPteRange(memory, process, rangeStart, rangeEnd);
    }
  }
  // free_pgtables (mm/memory.c, 6.1) after unmap_vmas: the PTE tables go, in address order.
  for (let range = 0; range < process.pmd.length; range++) {
    if (process.pmd[range] === PMD_TABLE) freePageTablePage(memory, process.pageTables, range);
    process.pmd[range] = PMD_NONE;
  }
  assert(process.owner.residentPages === 0, "pages left mapped after exit");
  assert(process.owner.hugePages === 0, "huge pages left mapped after exit");
  assert(process.pageTables.residentPages === 0, "page tables left after exit");
  process.owner.released = true;
  process.pageTables.released = true;
  process.exited = true;
  return freed;
}

// Models zap_huge_pmd (mm/huge_memory.c): the PMD is cleared, the deposited table freed at once
// (zap_deposited_table → pte_free, 6.1) and then the THP freed whole (tlb_remove_page_size).
function zapHugePmd(memory: GuestMemory, process: Process, range: number): number {
  const headPfn = clearHugePmd(process, range);
  freePageTablePage(memory, process.pageTables, range);
  freeHugePage(memory, process.thpState, headPfn);
  return HPAGE_PMD_NR;
}

/**
 * Models __split_huge_pmd for a process's range: the THP stays, now mapped by 512 PTEs in the
 * deposited table (__split_huge_pmd_locked: pgtable_trans_huge_withdraw + pmd_populate, 6.1).
 */
export function splitProcessPmd(memory: GuestMemory, process: Process, range: number): void {
  assert(process.pmd[range] === PMD_HUGE, () => `range ${range} is not PMD-mapped`);
  const headPfn = process.owner.pages[range << HPAGE_PMD_ORDER]!;
  splitHugePmd(memory, process.thpState, headPfn);
  process.owner.hugePages -= HPAGE_PMD_NR;
  process.pmd[range] = PMD_TABLE;
}

// Models zap_pte_range (mm/memory.c) over [startIndex, endIndex) within one PTE table: 4 KiB
// pages are freed; a THP subpage only loses its mapping (unmapThpSubpage decides the rest).
function zapPteRange(
  memory: GuestMemory,
  process: Process,
  startIndex: number,
  endIndex: number,
): number {
  const owner = process.owner;
  const pages = owner.pages;
  let freed = 0;
  for (let index = startIndex; index < endIndex; index++) {
    const pfn = pages[index]!;
    if (pfn === NO_PFN) continue;
    pages[index] = NO_PFN;
    owner.residentPages--;
    const headPfn = thpHeadOf(memory.table, pfn);
    if (headPfn === NO_PFN) {
      freePages(memory, pfn, 0);
      freed++;
    } else {
      freed += unmapThpSubpage(memory, process.thpState, headPfn);
    }
  }
  return freed;
}

function checkRange(process: Process, firstIndex: number, pageCount: number): void {
  assert(!process.exited, () => `process ${process.name} has exited`);
  assert(
    Number.isInteger(firstIndex) && Number.isInteger(pageCount) && firstIndex >= 0,
    "page range must be whole pages",
  );
  assert(pageCount >= 0 && firstIndex + pageCount <= process.sizePages, "range outside the VMA");
}
