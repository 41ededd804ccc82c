// The host's deferred split queue of anon THPs and its shrinker (mm/huge_memory.c:
// deferred_split_folio, deferred_split_scan, split_huge_page; mm/rmap.c).
//
// Theory of operation. A partial MADV_DONTNEED of a PMD-mapped anon THP splits the PMD; each
// zapped PTE unmaps one subpage, but the compound page stays whole and allocated, and goes on
// the queue (deferred_split_folio, counted once as thp_deferred_split_page). When its last
// subpage is unmapped the whole 2 MiB is freed at once and leaves the queue (case a of
// semantics 3.4). Otherwise only the shrinker frees memory (case b): deferred_split_scan takes
// THPs from the head (oldest first) and splits them; mapped subpages become 4 KiB pages and the
// unmapped ones, which nothing references any more, are freed. From v6.12 every THP is queued
// when created, fully mapped ones are split only if thp_underused() (more than max_ptes_none
// zero-filled subpages), otherwise just dropped from the queue; and a split maps zero-filled
// subpages to the shared zero page, freeing them too.
//
// The queue is a doubly linked list through per-block Int32Arrays (a THP is 2 MiB-aligned, so
// there is at most one per block), like the kernel's list_head in the folio.
//
// Left out: memcg split queues (one queue, as without memcg), split failures of anon THPs
// (QEMU's guest RAM is not pinned in this model), the shrinker's batch size and seeks (it scans
// until it has freed what its caller wants), and mlocked guest RAM (-overcommit mem-lock).

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import { countRange } from "./bitmap.ts";
import {
  BlockState,
  blockFirstPage,
  dropCompound,
  type GuestRam,
  NO_BLOCK,
  splitAnonSubpages,
  THP_PARTIALLY_MAPPED,
  THP_QUEUED,
} from "./guest_ram.ts";

function queueAppend(ram: GuestRam, block: number): void {
  ram.thpFlags[block]! |= THP_QUEUED;
  ram.queuePrev[block] = ram.splitQueueTail;
  ram.queueNext[block] = NO_BLOCK;
  if (ram.splitQueueTail === NO_BLOCK) ram.splitQueueHead = block;
  else ram.queueNext[ram.splitQueueTail] = block;
  ram.splitQueueTail = block;
  ram.splitQueueLen++;
}

function queueRemove(ram: GuestRam, block: number): void {
  assert((ram.thpFlags[block]! & THP_QUEUED) !== 0, () => `block ${block} is not queued`);
  const next = ram.queueNext[block]!;
  const prev = ram.queuePrev[block]!;
  if (prev === NO_BLOCK) ram.splitQueueHead = next;
  else ram.queueNext[prev] = next;
  if (next === NO_BLOCK) ram.splitQueueTail = prev;
  else ram.queuePrev[next] = prev;
  ram.queueNext[block] = NO_BLOCK;
  ram.queuePrev[block] = NO_BLOCK;
  ram.thpFlags[block] = 0;
  ram.splitQueueLen--;
}

/**
 * Models deferred_split_folio (mm/huge_memory.c): queue the block's anon THP once; a partially
 * mapped one is flagged (PG_partially_mapped) and counted once as thp_deferred_split_page.
 */
export function deferredSplitFolio(ram: GuestRam, block: number, partiallyMapped: boolean): void {
  const state = ram.blockState[block];
  assert(state === BlockState.ThpPmd || state === BlockState.ThpPte, () => `block ${block}`);
  if (partiallyMapped && (ram.thpFlags[block]! & THP_PARTIALLY_MAPPED) === 0) {
    ram.thpFlags[block]! |= THP_PARTIALLY_MAPPED;
    ram.counters.deferredSplitPage++;
  }
  if ((ram.thpFlags[block]! & THP_QUEUED) === 0) queueAppend(ram, block);
}

/**
 * Models the last folio_put of an anon THP (folio_undo_large_rmappable, then the order-9 free):
 * it leaves the queue and all 2 MiB return to the host at once; the block is now in `state`.
 */
export function freeAnonThp(ram: GuestRam, block: number, state: BlockState): void {
  if ((ram.thpFlags[block]! & THP_QUEUED) !== 0) queueRemove(ram, block);
  ram.thpFlags[block] = 0;
  dropCompound(ram, block, state);
}

/**
 * Models split_huge_page on the block's anon THP (__folio_split): a PMD mapping is split first
 * (unmap_folio with TTU_SPLIT_HUGE_PMD, thp_split_pmd), mapped subpages become 4 KiB pages
 * (remap_page; zero-filled ones go to the shared zero page from v6.12), the others are freed.
 * Counts thp_split_page. Returns the host pages freed.
 */
export function splitAnonThp(ram: GuestRam, block: number): number {
  const state = ram.blockState[block];
  assert(state === BlockState.ThpPmd || state === BlockState.ThpPte, () => `block ${block}`);
  if (state === BlockState.ThpPmd) ram.counters.splitPmd++;
  if ((ram.thpFlags[block]! & THP_QUEUED) !== 0) queueRemove(ram, block);
  ram.thpFlags[block] = 0;
  const kept = splitAnonSubpages(ram, block, ram.rules.splitRemapsZeroPages);
  dropCompound(ram, block, BlockState.Pte);
  ram.counters.splitDeferred++;
  return HPAGE_PMD_NR - kept;
}

/**
 * Models thp_underused (mm/huge_memory.c, v6.12): more than max_ptes_none zero-filled subpages.
 * At max_ptes_none = HPAGE_PMD_NR - 1 it returns false at once. The guest's untouched pages are
 * the zero-filled ones.
 */
export function thpUnderused(ram: GuestRam, block: number): boolean {
  const maxPtesNone = ram.config.khugepaged.maxPtesNone;
  if (!ram.rules.thpUnderusedShrinker || maxPtesNone === HPAGE_PMD_NR - 1) return false;
  const first = blockFirstPage(block);
  const zeroPages = HPAGE_PMD_NR - countRange(ram.touched, first, first + HPAGE_PMD_NR);
  return zeroPages > maxPtesNone;
}

/**
 * Models deferred_split_scan (mm/huge_memory.c), oldest first, until `pagesWanted` host pages
 * are freed or the queue is empty: partially mapped THPs are split; fully mapped ones (v6.12+)
 * are split if underused and otherwise dropped from the queue ("don't add it back").
 * Returns the pages freed.
 */
export function deferredSplitScan(ram: GuestRam, pagesWanted: number): number {
  assert(pagesWanted >= 0, "pagesWanted must not be negative");
  ram.counters.shrinkerRuns++;
  let freed = 0;
  // Every pass removes the head, so the queue's length bounds the loop.
  const passesMax = ram.splitQueueLen;
  for (let pass = 0; pass < passesMax && freed < pagesWanted; pass++) {
    const block = ram.splitQueueHead;
    assert(block !== NO_BLOCK, "split queue shorter than its length");
    const partiallyMapped = (ram.thpFlags[block]! & THP_PARTIALLY_MAPPED) !== 0;
    if (partiallyMapped || thpUnderused(ram, block)) freed += splitAnonThp(ram, block);
    else queueRemove(ram, block);
  }
  ram.counters.freedByShrinkerBytes += freed * PAGE_SIZE;
  return freed;
}
