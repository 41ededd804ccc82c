// Host page faults on guest RAM when the guest writes it (KVM's get_user_pages with FOLL_WRITE
// → handle_mm_fault, mm/memory.c).
//
// Theory of operation, per 2 MiB block of the written range:
// - anon: a block with no page table (pmd_none) takes a THP fault when THP is enabled for the
//   VMA and the whole block lies in the RAMBlock (do_huge_pmd_anonymous_page): the order-9
//   allocation passes the watermark test, or, if the defrag mode allows direct reclaim, passes
//   after the deferred split shrinker ran; then all 2 MiB are resident (thp_fault_alloc) and
//   from v6.12 queued for the underused shrinker. If the allocation fails, thp_fault_fallback
//   counts it and the block gets a PTE table. A block with a PTE table faults 4 KiB pages until
//   khugepaged collapses it (semantics 3.2); in a split THP a hole gets a new 4 KiB page while
//   the compound page stays held.
// - shmem (memfd, tmpfs-huge): write faults on a shared mapping go through do_shared_fault →
//   shmem_fault → finish_fault, with no fault-around. shmem_get_folio allocates a THP only when
//   no page of the 2 MiB range is in the page cache (shmem_add_to_page_cache refuses a huge
//   folio over existing entries), else a 4 KiB page; a page already cached is only mapped.
//   finish_fault maps a THP with a PMD when the range is pmd_none (do_set_pmd), otherwise one
//   PTE per faulting page.
// - hugetlbfs: the whole huge page comes from the pool (hugetlbfs.ts).
// The written pages are then marked touched.
//
// Left out: read faults and the huge zero page, mTHP sizes, NUMA placement, OOM (a 4 KiB fault
// always succeeds; host free memory may then be negative), and KVM's own EPT/NPT state.

import { assert } from "../core/assert.ts";
import { deferredSplitFolio } from "./deferred_split.ts";
import {
  BlockState,
  blockFirstPage,
  blockOfPage,
  blockPages,
  FillCause,
  faultSmallPages,
  fillBlockResident,
  type GuestRam,
  installCompound,
  mapSubpages,
  setTouched,
} from "./guest_ram.ts";
import { hostAllocHugePage } from "./host_reclaim.ts";
import { hugetlbFault } from "./hugetlbfs.ts";
import { anonThpEnabled, shmemThpEnabled, thpFaultDirectReclaim } from "./thp_policy.ts";

function blockIsWhole(ram: GuestRam, block: number): boolean {
  return block < ram.fullBlockCount;
}

/** Models do_anonymous_page / do_huge_pmd_anonymous_page for [first, end) of one block. */
function anonWrite(ram: GuestRam, block: number, first: number, end: number): void {
  const state = ram.blockState[block]!;
  if (state === BlockState.ThpPmd) return;
  if (state === BlockState.None && blockIsWhole(ram, block) && anonThpEnabled(ram.config)) {
    if (hostAllocHugePage(ram, thpFaultDirectReclaim(ram.config))) {
      installCompound(ram, block, BlockState.ThpPmd, FillCause.ThpFault);
      fillBlockResident(ram, block);
      ram.counters.faults2m++;
      if (ram.rules.thpQueueAtFault) deferredSplitFolio(ram, block, false);
      return;
    }
    ram.counters.thpFaultFallback++;
  }
  // __pte_alloc: the block gets a PTE table on its first 4 KiB fault.
  if (state === BlockState.None) ram.blockState[block] = BlockState.Pte;
  faultSmallPages(ram, block, first, end);
}

/** Models shmem_fault + finish_fault for [first, end) of one block of the shmem file. */
function shmemWrite(ram: GuestRam, block: number, first: number, end: number): void {
  const state = ram.blockState[block]!;
  switch (state) {
    case BlockState.ThpPmd:
      return;
    case BlockState.ThpUnmapped:
      // The THP is still in the page cache and the range is pmd_none: do_set_pmd.
      ram.blockState[block] = BlockState.ThpPmd;
      fillBlockResident(ram, block);
      ram.counters.faultsMapped++;
      return;
    case BlockState.ThpPte:
      ram.counters.faultsMapped += mapSubpages(ram, block, first, end);
      return;
  }
  const rangeEmpty = ram.ownCount[block] === 0;
  if (rangeEmpty && blockIsWhole(ram, block) && shmemThpEnabled(ram.config)) {
    if (hostAllocHugePage(ram, thpFaultDirectReclaim(ram.config))) {
      const mappedByPmd = state === BlockState.None;
      installCompound(
        ram,
        block,
        mappedByPmd ? BlockState.ThpPmd : BlockState.ThpPte,
        FillCause.ThpFault,
      );
      ram.counters.faults2m++;
      if (mappedByPmd) fillBlockResident(ram, block);
      else mapSubpages(ram, block, first, end);
      return;
    }
    ram.counters.thpFileFallback++;
  }
  if (state === BlockState.None) ram.blockState[block] = BlockState.Pte;
  faultSmallPages(ram, block, first, end);
}

/**
 * The guest writes RAMBlock pages [pageOffset, pageOffset + pageCount): the host faults in what
 * is not resident (see the file comment) and the pages are marked touched.
 */
export function hostGuestWrite(ram: GuestRam, pageOffset: number, pageCount: number): void {
  assert(Number.isInteger(pageOffset) && Number.isInteger(pageCount), "whole pages only");
  assert(pageOffset >= 0 && pageCount >= 0, "negative page range");
  assert(pageOffset + pageCount <= ram.pageCount, () => `write beyond ${ram.pageCount} pages`);
  if (pageCount === 0) return;
  const end = pageOffset + pageCount;
  const backing = ram.config.backing;
  for (let block = blockOfPage(pageOffset); block <= blockOfPage(end - 1); block++) {
    const blockFirst = blockFirstPage(block);
    const lo = Math.max(pageOffset, blockFirst);
    const hi = Math.min(end, blockFirst + blockPages(ram, block));
    if (backing === "anon") anonWrite(ram, block, lo, hi);
    else if (backing === "hugetlbfs") hugetlbFault(ram, block);
    else shmemWrite(ram, block, lo, hi);
  }
  setTouched(ram, pageOffset, end);
}
