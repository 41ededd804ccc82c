// Zapping QEMU's mapping of guest RAM (mm/memory.c zap_pmd_range / zap_pte_range,
// mm/huge_memory.c zap_huge_pmd / __split_huge_pmd): what MADV_DONTNEED does, and what
// unmap_mapping_range does before a shmem hole punch.
//
// Theory of operation, per 2 MiB block of the range:
// - private anon (semantics 3.4): a PMD-mapped THP covered whole is freed at once
//   (zap_huge_pmd); covered in part, its PMD is split into 512 PTEs (thp_split_pmd) and the
//   zapped subpages are only unmapped: the THP is freed when its last subpage goes (case a),
//   else it waits on the deferred split queue (case b). 4 KiB pages are freed at once.
// - shared file (shmem): zapping only unmaps; the page cache keeps the pages (the hole punch
//   frees them). A PMD-mapped file THP covered in part loses its whole PMD: __split_huge_pmd on
//   a file VMA clears the PMD and leaves refaulting to the fault path (__split_huge_pmd_locked,
//   !vma_is_anonymous branch), so the whole block stops being resident.
// - MADV_DONTNEED over a whole block then frees the emptied PTE table from v6.14
//   (reclaim_pt_is_enabled: end - start >= PMD_SIZE), so the block is pmd_none again and can
//   take a THP fault. unmap_mapping_range does not set reclaim_pt.
//
// Left out: MADV_FREE (QEMU does not use it), the huge zero page, uffd-wp markers (which stop
// PT reclaim), and TLB batching.

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR } from "../core/limits.ts";
import { deferredSplitFolio, freeAnonThp } from "./deferred_split.ts";
import {
  BlockState,
  blockFirstPage,
  blockOfPage,
  blockPages,
  blockSubpagesMapped,
  clearBlockResident,
  type GuestRam,
  unmapPages,
  zapAnonPages,
} from "./guest_ram.ts";

/** Models zap_pmd_range for one block of private anon memory; `whole` covers the full PMD. */
function zapAnonBlock(ram: GuestRam, block: number, first: number, end: number, whole: boolean) {
  const state = ram.blockState[block]!;
  if (state === BlockState.None) return;
  if (state === BlockState.ThpPmd) {
    if (whole) {
      // zap_huge_pmd: the PMD and its deposited page table go; the THP is freed whole.
      clearBlockResident(ram, block);
      freeAnonThp(ram, block, BlockState.None);
      return;
    }
    // __split_huge_pmd: 512 PTEs now map the same compound page.
    ram.blockState[block] = BlockState.ThpPte;
    ram.counters.splitPmd++;
  }
  const subpagesUnmapped = zapAnonPages(ram, block, first, end);
  if (ram.blockState[block] !== BlockState.ThpPte || subpagesUnmapped === 0) return;
  // folio_remove_rmap_ptes (mm/rmap.c): the last mapping frees the THP; a partial one queues it.
  if (blockSubpagesMapped(ram, block) === 0) freeAnonThp(ram, block, BlockState.Pte);
  else deferredSplitFolio(ram, block, true);
}

/** Models zap_pmd_range for one block of a shared file (shmem) mapping: unmap only. */
function zapFileBlock(ram: GuestRam, block: number, first: number, end: number, whole: boolean) {
  const state = ram.blockState[block]!;
  if (state === BlockState.ThpPmd) {
    // Whole: zap_huge_pmd. Partial: __split_huge_pmd counts thp_split_pmd and, for a file VMA,
    // just clears the PMD. Either way no PTE table is left: the block is pmd_none.
    if (!whole) ram.counters.splitPmd++;
    clearBlockResident(ram, block);
    ram.blockState[block] = BlockState.ThpUnmapped;
    return;
  }
  if (state === BlockState.Pte || state === BlockState.ThpPte) unmapPages(ram, block, first, end);
}

/** Models the PT reclaim at the end of zap_pte_range (mm/memory.c, try_to_free_pte). */
function reclaimPteTable(ram: GuestRam, block: number): void {
  const state = ram.blockState[block]!;
  if (state !== BlockState.Pte && state !== BlockState.ThpPte) return;
  assert(ram.residentCount[block] === 0, () => `block ${block}: zapped but still resident`);
  ram.blockState[block] = state === BlockState.Pte ? BlockState.None : BlockState.ThpUnmapped;
  ram.counters.ptTablesReclaimed++;
}

/**
 * Models zap_page_range_single over pages [first, end) of QEMU's mapping. `reclaimPt` is set by
 * madvise_dontneed_single_vma (zap_details.reclaim_pt) and acts only where the kernel has it.
 */
export function zapPageRange(ram: GuestRam, first: number, end: number, reclaimPt: boolean): void {
  if (end <= first) return;
  const anon = ram.config.backing === "anon";
  for (let block = blockOfPage(first); block <= blockOfPage(end - 1); block++) {
    const blockFirst = blockFirstPage(block);
    const blockEnd = blockFirst + blockPages(ram, block);
    const lo = Math.max(first, blockFirst);
    const hi = Math.min(end, blockEnd);
    const whole = lo === blockFirst && hi === blockEnd && blockEnd - blockFirst === HPAGE_PMD_NR;
    if (anon) zapAnonBlock(ram, block, lo, hi, whole);
    else zapFileBlock(ram, block, lo, hi, whole);
    if (reclaimPt && whole && ram.rules.ptReclaim) reclaimPteTable(ram, block);
  }
}
