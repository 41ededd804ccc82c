// Anonymous transparent huge pages after they exist: PMD splitting, the deferred split queue and
// split_huge_page (mm/huge_memory.c, mm/rmap.c).
//
// Theory of operation. A THP is an order-9 anon block (head order 9, FRAME_TAIL on the 511
// tails, reverse map (owner id, index + i) on every frame), first mapped by one PMD. A partial
// MADV_DONTNEED splits the PMD into 512 PTEs that still map the same compound page
// (__split_huge_pmd, thp_split_pmd); each zapped PTE drops one subpage's mapping, but the page is
// not freed: the whole 2 MiB stays allocated and the THP goes on the deferred split queue
// (deferred_split_folio, thp_deferred_split_page). Only the shrinker (deferred_split_scan, run by
// reclaim or drop_caches=2) splits it (split_huge_page, thp_split_page): the unmapped subpages are
// then freed as order-0 pages and the mapped ones become ordinary order-0 anon pages. When the
// last mapping of a THP goes, the whole block is freed as order 9 and leaves the queue.
//
// State per THP lives in typed arrays indexed by pageblock (pfn >> 9): a THP head is order-9
// aligned, so at most one THP starts in each pageblock. Compaction never moves a THP (it skips
// order-9 compound pages in every supported version); alloc_contig_range does (contig_range.ts):
// a THP migrated whole hands its state to the new head (thpMigrate, called by migrate.ts
// migrateFolio), and one that cannot get a 2 MiB target is split (splitThpForMigration).
//
// Call contract (for the guest's composition root and for anon.ts / khugepaged.ts):
// - createThpState(memory) once per guest, stored beside the GuestMemory; every process of that
//   guest is created with it (anon.ts createProcess options.thpState).
// - anon.ts calls thpMapped after a THP fault, splitHugePmd / unmapThpSubpage / freeHugePage from
//   its zap paths; khugepaged.ts calls thpMapped after a collapse and unmapThpSubpage on the PTEs
//   it replaces. Nothing else changes these arrays.
// - anon.ts createProcess registers how to split the process's PMDs (registerThpPmdSplitter), so
//   that a migration's split can reach a PMD-mapped THP from its reverse map alone.
// - Reclaim's shrink_slab (and drop_caches=2) calls deferredSplitScan(memory, thpState, n) with
//   the shrinker batch (128 in the kernel); deferredSplitCount is the shrinker's count_objects.
// - An unmapped subpage of a queued THP keeps its reverse map (the kernel's page->mapping stays
//   until the page is freed) but its owner's page table no longer points at it: a checker must
//   accept frames with FRAME_TAIL or a head of order 9 whose owner.pages[index] !== pfn.
//
// Left out: the huge zero page (usemem writes, so read faults do not happen), memcg split queues
// (one queue per guest, as without memcg), trylock and pin failures (a split never fails),
// mTHP orders below 9 (their sysfs default is "never"), and the 6.12+ underused split: it only
// acts on THPs with more than max_ptes_none zero-filled subpages, which at the default 511 never
// happens (thp_underused returns false at once) — but 6.12+ fault-time queueing is modelled,
// because those entries use up the shrinker's scan budget.

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, HPAGE_PMD_ORDER, pageblock_order } from "../core/limits.ts";
import {
  FRAME_KIND_MASK,
  FRAME_TAIL,
  FrameKind,
  type FrameTable,
  NO_PFN,
  ORDER_MASK,
} from "./frame_table.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { freePages } from "./page_alloc.ts";
import { VmEvent } from "./vm_event.ts";

/** The THP is on the deferred split queue (!list_empty(&folio->_deferred_list)). */
const THP_QUEUED = 0x01;
/** PG_partially_mapped (v6.12); before 6.12 every queued THP is partially mapped. */
const THP_PARTIALLY_MAPPED = 0x02;
/** The THP is mapped by a PMD (pmd_trans_huge), not by PTEs. */
const THP_PMD_MAPPED = 0x04;

export interface ThpState {
  /** Per pageblock: THP_* flags of the THP whose head is the pageblock's first frame. */
  readonly flags: Uint8Array;
  /** Per pageblock: subpages of a PTE-mapped THP still mapped (the sum of _mapcount + 1). */
  readonly ptesMapped: Int16Array;
  /** Per pageblock: next pageblock on the split queue, NO_PFN at the tail. */
  readonly queueNext: Int32Array;
  /** Per pageblock: previous pageblock on the split queue, NO_PFN at the head. */
  readonly queuePrev: Int32Array;
  /** First (oldest) pageblock on the queue: deferred_split_scan starts here. */
  queueHead: number;
  /** Last pageblock on the queue: deferred_split_folio appends here (list_add_tail). */
  queueTail: number;
  /** ds_queue->split_queue_len. */
  splitQueueLen: number;
  /** 6.12+: THPs are queued when created, not only when partially unmapped. */
  readonly queueAtFault: boolean;
  /** Per owner id: splits that process's PMD over a range (anon.ts splitProcessPmd). */
  readonly pmdSplitters: Map<number, (range: number) => void>;
}

/** Each guest's THP state, found from its memory by code that only has the reverse map. */
const THP_STATES = new WeakMap<GuestMemory, ThpState>();

/** The THP state createThpState made for `memory` (the latest one), or undefined. */
export function thpStateOf(memory: GuestMemory): ThpState | undefined {
  return THP_STATES.get(memory);
}

/** anon.ts createProcess: how to split this owner's PMD over a 2 MiB range (__split_huge_pmd). */
export function registerThpPmdSplitter(
  thpState: ThpState,
  ownerId: number,
  splitPmd: (range: number) => void,
): void {
  thpState.pmdSplitters.set(ownerId, splitPmd);
}

export function createThpState(memory: GuestMemory): ThpState {
  const blocks = memory.table.pageblockMt.length;
  const thpState: ThpState = {
    flags: new Uint8Array(blocks),
    ptesMapped: new Int16Array(blocks),
    queueNext: new Int32Array(blocks).fill(NO_PFN),
    queuePrev: new Int32Array(blocks).fill(NO_PFN),
    queueHead: NO_PFN,
    queueTail: NO_PFN,
    splitQueueLen: 0,
    queueAtFault: memory.rules.thpQueueAtFault,
    pmdSplitters: new Map(),
  };
  THP_STATES.set(memory, thpState);
  return thpState;
}

/** The head pfn of the anon THP containing `pfn`, or NO_PFN for an order-0 page. */
export function thpHeadOf(table: FrameTable, pfn: number): number {
  const state = table.state[pfn]!;
  if ((state & FRAME_TAIL) !== 0) {
    const head = pfn & ~(HPAGE_PMD_NR - 1);
    assert(
      (table.order[head]! & ORDER_MASK) === HPAGE_PMD_ORDER,
      () => `tail pfn ${pfn} without an order-9 head`,
    );
    return head;
  }
  if ((state & FRAME_KIND_MASK) !== FrameKind.Anon) return NO_PFN;
  return (table.order[pfn]! & ORDER_MASK) === HPAGE_PMD_ORDER ? pfn : NO_PFN;
}

/** True while the THP at `headPfn` is mapped by a PMD. */
export function thpPmdMapped(thpState: ThpState, headPfn: number): boolean {
  return (thpState.flags[headPfn >>> pageblock_order]! & THP_PMD_MAPPED) !== 0;
}

/** The THP is on the deferred split queue because part of it was unmapped. */
export function thpPartiallyMappedQueued(thpState: ThpState, headPfn: number): boolean {
  const flags = thpState.flags[headPfn >>> pageblock_order]!;
  return (flags & (THP_QUEUED | THP_PARTIALLY_MAPPED)) === (THP_QUEUED | THP_PARTIALLY_MAPPED);
}

/** Pages on the split queue, as the shrinker's count_objects (deferred_split_count) reports. */
export function deferredSplitCount(thpState: ThpState): number {
  return thpState.splitQueueLen;
}

/**
 * A new THP was mapped by a PMD (the end of __do_huge_pmd_anonymous_page or of
 * collapse_huge_page); 6.12+ also queue it for the underused shrinker.
 */
export function thpMapped(thpState: ThpState, headPfn: number): void {
  assert((headPfn & (HPAGE_PMD_NR - 1)) === 0, () => `THP head ${headPfn} not aligned`);
  const block = headPfn >>> pageblock_order;
  assert(thpState.flags[block] === 0, () => `pageblock ${block} already holds a THP`);
  thpState.flags[block] = THP_PMD_MAPPED;
  thpState.ptesMapped[block] = 0;
  if (thpState.queueAtFault) queueAppend(thpState, block);
}

// Models deferred_split_folio (mm/huge_memory.c): queue once, count once per THP.
function deferredSplitFolio(memory: GuestMemory, thpState: ThpState, block: number): void {
  const flags = thpState.flags[block]!;
  if ((flags & THP_PARTIALLY_MAPPED) === 0) {
    thpState.flags[block] = flags | THP_PARTIALLY_MAPPED;
    memory.events[VmEvent.thp_deferred_split_page]!++;
  }
  if ((thpState.flags[block]! & THP_QUEUED) === 0) queueAppend(thpState, block);
}

function queueAppend(thpState: ThpState, block: number): void {
  thpState.flags[block]! |= THP_QUEUED;
  thpState.queuePrev[block] = thpState.queueTail;
  thpState.queueNext[block] = NO_PFN;
  if (thpState.queueTail === NO_PFN) thpState.queueHead = block;
  else thpState.queueNext[thpState.queueTail] = block;
  thpState.queueTail = block;
  thpState.splitQueueLen++;
}

function queueRemove(thpState: ThpState, block: number): void {
  assert((thpState.flags[block]! & THP_QUEUED) !== 0, () => `pageblock ${block} not queued`);
  const next = thpState.queueNext[block]!;
  const prev = thpState.queuePrev[block]!;
  if (prev === NO_PFN) thpState.queueHead = next;
  else thpState.queueNext[prev] = next;
  if (next === NO_PFN) thpState.queueTail = prev;
  else thpState.queuePrev[next] = prev;
  thpState.queueNext[block] = NO_PFN;
  thpState.queuePrev[block] = NO_PFN;
  thpState.flags[block]! &= ~THP_QUEUED;
  thpState.splitQueueLen--;
}

// Models __split_huge_pmd_locked (mm/huge_memory.c): the PMD becomes 512 PTEs that map the same
// compound page; the caller moves the owner's hugePages and its PMD state.
export function splitHugePmd(memory: GuestMemory, thpState: ThpState, headPfn: number): void {
  const block = headPfn >>> pageblock_order;
  assert(thpPmdMapped(thpState, headPfn), () => `THP ${headPfn} is not PMD-mapped`);
  thpState.flags[block]! &= ~THP_PMD_MAPPED;
  thpState.ptesMapped[block] = HPAGE_PMD_NR;
  memory.events[VmEvent.thp_split_pmd]!++;
}

/**
 * Models page_remove_rmap / folio_remove_rmap_ptes (mm/rmap.c) for one PTE of a PTE-mapped THP
 * (the caller has cleared the PTE and the owner's resident count): the last mapping frees the
 * whole THP as order 9; otherwise it is partially mapped and goes on the split queue. Returns
 * the pages freed (512 or 0).
 */
export function unmapThpSubpage(memory: GuestMemory, thpState: ThpState, headPfn: number): number {
  const block = headPfn >>> pageblock_order;
  assert(!thpPmdMapped(thpState, headPfn), () => `THP ${headPfn} is PMD-mapped`);
  const mapped = thpState.ptesMapped[block]! - 1;
  assert(mapped >= 0, () => `THP ${headPfn} unmapped more than 512 times`);
  thpState.ptesMapped[block] = mapped;
  if (mapped === 0) {
    freeHugePage(memory, thpState, headPfn);
    return HPAGE_PMD_NR;
  }
  deferredSplitFolio(memory, thpState, block);
  return 0;
}

/**
 * Models the last folio_put of a THP (free_transhuge_page → folio_undo_large_rmappable, then
 * __free_pages at order 9): it leaves the split queue and returns to the allocator whole. The
 * caller has already dropped every mapping.
 */
export function freeHugePage(memory: GuestMemory, thpState: ThpState, headPfn: number): void {
  const block = headPfn >>> pageblock_order;
  if ((thpState.flags[block]! & THP_QUEUED) !== 0) queueRemove(thpState, block);
  thpState.flags[block] = 0;
  thpState.ptesMapped[block] = 0;
  freePages(memory, headPfn, HPAGE_PMD_ORDER);
}

/**
 * Models split_huge_page → __split_huge_page (mm/huge_memory.c) on a PTE-mapped anon THP: every
 * subpage becomes an order-0 page; those still mapped stay with their owner, the others lose
 * their last reference and are freed (tails in address order, the head last, as the caller's
 * folio_put drops it). Counts thp_split_page. Returns the pages freed.
 */
export function splitHugePage(memory: GuestMemory, thpState: ThpState, headPfn: number): number {
  const { table } = memory;
  const block = headPfn >>> pageblock_order;
  assert(thpHeadOf(table, headPfn) === headPfn, () => `pfn ${headPfn} is not a THP head`);
  assert(!thpPmdMapped(thpState, headPfn), () => `THP ${headPfn} still PMD-mapped`);
  if ((thpState.flags[block]! & THP_QUEUED) !== 0) queueRemove(thpState, block);
  const owner = memory.owners.owners[table.link0[headPfn]!];
  assert(owner !== undefined, () => `THP ${headPfn} has no owner`);
  const firstIndex = table.link1[headPfn]!;
  // __split_huge_page_tail: each tail becomes a page of its own; the head loses its order.
  table.order[headPfn] = 0;
  for (let i = 1; i < HPAGE_PMD_NR; i++) table.state[headPfn + i]! &= ~FRAME_TAIL;
  thpState.flags[block] = 0;
  thpState.ptesMapped[block] = 0;
  memory.events[VmEvent.thp_split_page]!++;
  let freed = 0;
  for (let i = 1; i < HPAGE_PMD_NR; i++) {
    if (owner.pages[firstIndex + i] === headPfn + i) continue;
    freePages(memory, headPfn + i, 0);
    freed++;
  }
  if (owner.pages[firstIndex] !== headPfn) {
    freePages(memory, headPfn, 0);
    freed++;
  }
  return freed;
}

/**
 * Models deferred_split_scan (mm/huge_memory.c): take up to `nrToScan` THPs from the head of the
 * queue; split the partially mapped ones; 6.12+ drop fully mapped ones from the queue unsplit
 * (not underused at max_ptes_none 511). Returns the pages freed (the kernel returns the number
 * of THPs split; the caller here wants memory).
 */
export function deferredSplitScan(
  memory: GuestMemory,
  thpState: ThpState,
  nrToScan: number,
): number {
  assert(Number.isInteger(nrToScan) && nrToScan >= 0, "nrToScan must be a whole number");
  let freed = 0;
  let scanned = 0;
  while (scanned < nrToScan && thpState.queueHead !== NO_PFN) {
    const block = thpState.queueHead;
    scanned++;
    if ((thpState.flags[block]! & THP_PARTIALLY_MAPPED) === 0) {
      // thp_underused() is false at max_ptes_none = 511: list_del_init and keep the THP.
      queueRemove(thpState, block);
      continue;
    }
    freed += splitHugePage(memory, thpState, block << pageblock_order);
  }
  return freed;
}

/**
 * Models what a successful THP migration does to the THP's state (migrate_folio_move,
 * remove_migration_ptes; mm/migrate.c, 5.6 to 6.18): the mapping moves to the new head — the PMD
 * (remove_migration_pmd) or the PTEs still mapped, the others staying unmapped. Queue membership
 * does not: the old folio leaves the split queue when it is freed (free_transhuge_page, 6.1;
 * folio_undo_large_rmappable, 6.18) and the new one starts with an empty _deferred_list
 * (prep_transhuge_page / folio_prep_large_rmappable); remove_migration_pte does not requeue it
 * (that came with "mm: migrate: requeue destination folio on deferred split queue",
 * 8a8ca142a488, after 6.18). Before 6.12 being queued is what "partially mapped" meant, so the
 * new THP counts thp_deferred_split_page again when its next PTE goes (deferred_split_huge_page).
 */
export function thpMigrate(thpState: ThpState, oldHeadPfn: number, newHeadPfn: number): void {
  assert((newHeadPfn & (HPAGE_PMD_NR - 1)) === 0, () => `THP head ${newHeadPfn} not aligned`);
  const from = oldHeadPfn >>> pageblock_order;
  const to = newHeadPfn >>> pageblock_order;
  assert(thpState.flags[to] === 0 && thpState.ptesMapped[to] === 0, () => {
    return `pageblock ${to} already holds a THP`;
  });
  const flags = thpState.flags[from]!;
  assert((flags & THP_PMD_MAPPED) !== 0 || thpState.ptesMapped[from]! > 0, () => {
    return `THP ${oldHeadPfn} is not mapped (no THP state for it)`;
  });
  if ((flags & THP_QUEUED) !== 0) queueRemove(thpState, from);
  thpState.flags[to] = flags & THP_PMD_MAPPED;
  thpState.ptesMapped[to] = thpState.ptesMapped[from]!;
  thpState.flags[from] = 0;
  thpState.ptesMapped[from] = 0;
}

/**
 * Models the split_huge_page that migrate_pages falls back to when a THP cannot be migrated
 * whole (split_huge_page_to_list in 5.6, try_split_thp in 6.1, try_split_folio in 6.18): a
 * PMD-mapped THP first has its PMD split (unmap_folio → try_to_migrate with TTU_SPLIT_HUGE_PMD →
 * __split_huge_pmd, counting thp_split_pmd), then __split_huge_page makes 512 order-0 pages,
 * freeing the unmapped ones (splitHugePage). Returns the pages freed.
 */
export function splitThpForMigration(
  memory: GuestMemory,
  thpState: ThpState,
  headPfn: number,
): number {
  if (thpPmdMapped(thpState, headPfn)) {
    const ownerId = memory.table.link0[headPfn]!;
    const splitPmd = thpState.pmdSplitters.get(ownerId);
    assert(splitPmd !== undefined, () => `owner ${ownerId} of THP ${headPfn} cannot split PMDs`);
    splitPmd(memory.table.link1[headPfn]! >>> HPAGE_PMD_ORDER);
  }
  return splitHugePage(memory, thpState, headPfn);
}
