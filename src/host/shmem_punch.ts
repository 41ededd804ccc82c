// fallocate(FALLOC_FL_PUNCH_HOLE) on the shmem file behind guest RAM (memfd or a huge=always
// tmpfs): mm/shmem.c shmem_fallocate → unmap_mapping_range, then shmem_truncate_range →
// shmem_undo_range (→ truncate_inode_partial_folio in mm/truncate.c from v5.17).
//
// Theory of operation, per 2 MiB block of the hole, after the mapping is zapped (zap.ts):
// - 4 KiB page-cache pages in the hole are freed.
// - A THP covered whole is truncated whole, in every version.
// - A THP covered in part:
//   before v5.7 the in-range subpages are only zeroed (clear_highpage): the THP stays whole
//   and allocated even when all 512 are punched one by one (Yang Shi, semantics 3.6);
//   from v5.7 (Hugh Dickins, 71725ed10c40) it is split (split_huge_page) and the punched pages
//   freed; the other 511 stay in the page cache as 4 KiB pages. A split needs no extra
//   references; with shmemSplitFailPerMille a seeded share of splits fails ("the result can be
//   flaky") and the subpages are zeroed as before 5.7.
//   After a split none of the block is mapped any more: split_huge_page unmaps the folio and
//   remap_page returns at once for a file folio (mm/huge_memory.c: "if
//   (!folio_test_anon(folio)) return;"), so the pages refault one by one.
//
// Left out: swap entries in the page cache, the 6.15+ non-uniform split (same counts, see
// host_kernel.ts), fallocate's own races with faults (shmem_falloc), and i_size changes.

import { HPAGE_PMD_NR } from "../core/limits.ts";
import {
  BlockState,
  blockFirstPage,
  blockOfPage,
  blockPages,
  clearBlockResident,
  dropCompound,
  freeOwnPages,
  type GuestRam,
  stateHoldsCompound,
  subpagesBecomeOwn,
} from "./guest_ram.ts";
import { zapPageRange } from "./zap.ts";

/** The state a block is left in when its compound page goes: its PTE table, if any, stays. */
function stateWithoutCompound(state: BlockState): BlockState {
  return state === BlockState.ThpPte ? BlockState.Pte : BlockState.None;
}

/** Hugh's caveat: an extra reference makes split_huge_page fail. Drawn from the seeded PRNG. */
function shmemSplitFails(ram: GuestRam): boolean {
  const perMille = ram.config.shmemSplitFailPerMille;
  return perMille > 0 && ram.prng.below(1000) < perMille;
}

/**
 * Models split_huge_page of a shmem THP (__split_huge_page): every subpage becomes a 4 KiB
 * page-cache page; the folio was unmapped (unmap_folio) and file folios are not remapped.
 */
function splitShmemThp(ram: GuestRam, block: number): void {
  const state = ram.blockState[block]!;
  clearBlockResident(ram, block);
  subpagesBecomeOwn(ram, block);
  dropCompound(ram, block, stateWithoutCompound(state));
  ram.counters.splitShmem++;
}

/** Models shmem_undo_range for [first, end) of one block, after the mapping was zapped. */
function shmemUndoBlock(ram: GuestRam, block: number, first: number, end: number): void {
  const state = ram.blockState[block]!;
  if (!stateHoldsCompound(state)) {
    freeOwnPages(ram, block, first, end);
    return;
  }
  if (end - first === HPAGE_PMD_NR) {
    // truncate_inode_folio: the hole covers the whole THP.
    dropCompound(ram, block, stateWithoutCompound(state));
    return;
  }
  if (!ram.rules.shmemSplitOnPunch) return; // clear_highpage on the punched subpages only
  if (shmemSplitFails(ram)) {
    ram.counters.splitShmemFailed++;
    return;
  }
  splitShmemThp(ram, block);
  freeOwnPages(ram, block, first, end);
}

/** Models shmem_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) on pages [first, end). */
export function shmemPunchHole(ram: GuestRam, first: number, end: number): void {
  if (end <= first) return;
  zapPageRange(ram, first, end, false);
  for (let block = blockOfPage(first); block <= blockOfPage(end - 1); block++) {
    const blockFirst = blockFirstPage(block);
    const lo = Math.max(first, blockFirst);
    const hi = Math.min(end, blockFirst + blockPages(ram, block));
    shmemUndoBlock(ram, block, lo, hi);
  }
}
