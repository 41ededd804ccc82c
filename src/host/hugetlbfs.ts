// Guest RAM on hugetlbfs (mm/hugetlb.c, fs/hugetlbfs/inode.c): pages of 2 MiB or 1 GiB from a
// pool reserved for the whole RAM, never split.
//
// Theory of operation. A fault anywhere in a huge page takes one page from the pool and maps
// all of it (hugetlb_fault → hugetlb_no_page → alloc_hugetlb_folio), so its 512 or 262,144
// 4 KiB pages become resident together. A hole punch frees only whole huge pages, back to the
// pool (hugetlbfs_punch_hole → remove_inode_hugepages → free_huge_folio): HugePages_Free rises
// and MemFree does not, because the pool was taken out of MemFree when it was reserved. The
// per-2 MiB blocks of a 1 GiB page all carry BlockState.Hugetlb together; each counts its 512
// pages, so the sums stay exact.
//
// Left out: surplus pages and overcommit (nr_overcommit_hugepages), reservations per mapping
// (resv_map), per-node pools, and the zeroing of partial pages at the edges of a hole (QEMU
// only punches whole pages).

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR } from "../core/limits.ts";
import {
  BlockState,
  clearBlockResident,
  dropCompound,
  FillCause,
  fillBlockResident,
  type GuestRam,
  installCompound,
} from "./guest_ram.ts";

function blocksPerHugePage(ram: GuestRam): number {
  return ram.hugetlbPagePages / HPAGE_PMD_NR;
}

/** Models hugetlb_no_page for a write to `block`: the huge page around it comes from the pool. */
export function hugetlbFault(ram: GuestRam, block: number): void {
  if (ram.blockState[block] === BlockState.Hugetlb) return;
  const span = blocksPerHugePage(ram);
  const firstBlock = block - (block % span);
  assert(ram.hugetlbPagesFree > 0, "hugetlb pool exhausted although it covers guest RAM");
  for (let b = firstBlock; b < firstBlock + span; b++) {
    assert(ram.blockState[b] === BlockState.None, () => `block ${b}: half a hugetlb page`);
    installCompound(ram, b, BlockState.Hugetlb, FillCause.HugetlbFault);
    fillBlockResident(ram, b);
  }
  ram.hugetlbPagesFree--;
  ram.counters.faultsHugetlb++;
}

/**
 * Models hugetlbfs_punch_hole over pages [first, end), which QEMU aligned to the huge page:
 * every present huge page in it is unmapped and returned to the pool.
 */
export function hugetlbfsPunchHole(ram: GuestRam, first: number, end: number): void {
  const pagesPer = ram.hugetlbPagePages;
  assert(first % pagesPer === 0 && end % pagesPer === 0, "hugetlbfs hole not page-aligned");
  const span = blocksPerHugePage(ram);
  for (let page = first; page < end; page += pagesPer) {
    const firstBlock = page / HPAGE_PMD_NR;
    if (ram.blockState[firstBlock] !== BlockState.Hugetlb) continue;
    for (let b = firstBlock; b < firstBlock + span; b++) {
      clearBlockResident(ram, b);
      dropCompound(ram, b, BlockState.None);
    }
    ram.hugetlbPagesFree++;
  }
}
