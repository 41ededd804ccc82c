// The host kernel behaviours that differ between the supported versions, in ONE table (the host
// counterpart of src/guest/kernel_version.ts, kept separate because host/ never imports guest/).
// Code asks the table, never a version string.
//
// Theory of operation. Each row names the change that introduced a behaviour and the first
// release that has it; the three supported host kernels are 5.6 (the February 2020 LKML thread),
// 6.1 (LTS) and 6.18. A row that no supported version tells apart still documents the boundary.
//
// Left out, because nothing this model counts changes with them:
// - the 6.15+ non-uniform "buddy" split of a partially punched shmem folio (try_folio_split,
//   Zi Yan): it leaves order-1..8 folios instead of 4 KiB pages, but the same pages stay
//   allocated and unmapped, so resident and allocated bytes are the same;
// - the 2025 change that unmaps a large folio whose truncate split failed (truncate.c, Kiryl
//   Shutsemau): shmem is excepted;
// - finish_fault mapping a whole large folio (v6.11, Baolin Wang): only for anonymous shmem
//   (vma_is_anon_shmem), not for a memfd or a tmpfs file;
// - mTHP orders below PMD order: their sysfs default is "never".

export const HOST_KERNEL_VERSIONS = ["5.6", "6.1", "6.18"] as const;
export type HostKernelVersion = (typeof HOST_KERNEL_VERSIONS)[number];

export interface HostKernelRules {
  readonly version: HostKernelVersion;
  /**
   * A partial hole punch splits a shmem THP and frees the punched pages (Hugh Dickins,
   * 71725ed10c40 "mm: huge tmpfs: try to split_huge_page() when punching hole", v5.7). Before,
   * shmem_undo_range only zeroed the subpages, and the THP stayed whole even when all 512 were
   * punched one by one.
   */
  readonly shmemSplitOnPunch: boolean;
  /**
   * calculate_min_free_kbytes upper clamp (mm/page_alloc.c): 65536, raised to 262144 in v5.7
   * ("mm/page_alloc.c: increase default min_free_kbytes bound", Joel Savitz).
   */
  readonly minFreeKbytesMax: number;
  /**
   * khugepaged collapses a range still mapped by a PTE-mapped THP ("khugepaged: allow to
   * collapse PTE-mapped compound pages", v5.8, Kirill Shutemov); 5.6 gives up with
   * SCAN_PAGE_COMPOUND (mm/khugepaged.c khugepaged_scan_pmd).
   */
  readonly collapsePteMappedThp: boolean;
  /**
   * Every THP is queued on the deferred split list when it is created, at fault and at collapse,
   * and PG_partially_mapped tells the partially mapped ones apart ("mm: split underused THPs",
   * Usama Arif, v6.12; mm/huge_memory.c deferred_split_folio(folio, false)).
   */
  readonly thpQueueAtFault: boolean;
  /**
   * deferred_split_scan splits a fully mapped queued THP when thp_underused() finds more than
   * max_ptes_none zero-filled subpages (same series, v6.12); at max_ptes_none 511 thp_underused
   * returns false at once, so the shrinker only drops such THPs from the queue.
   */
  readonly thpUnderusedShrinker: boolean;
  /**
   * Splitting an anon THP maps its zero-filled subpages to the shared zero page and frees them
   * (remap_page(folio, nr, RMP_USE_SHARED_ZEROPAGE), Yu Zhao "mm: remap unused subpages to
   * shared zeropage when splitting isolated thp", v6.12).
   */
  readonly splitRemapsZeroPages: boolean;
  /**
   * MADV_DONTNEED over a whole 2 MiB range frees the emptied PTE table (CONFIG_PT_RECLAIM,
   * mm/pt_reclaim.c reclaim_pt_is_enabled: reclaim_pt && end - start >= PMD_SIZE; Qi Zheng
   * "mm: pgtable: reclaim empty PTE page in madvise(MADV_DONTNEED)"). x86-64 selects it from
   * commit 4817f70c25b6 "x86: select ARCH_SUPPORTS_PT_RECLAIM if X86_64", which a bisection on
   * v6.14-rc1 found (linux-mm, Feb 2025): so v6.14, not v6.15. The range is then pmd_none and
   * can take a THP fault again.
   */
  readonly ptReclaim: boolean;
  /**
   * khugepaged also runs when only shmem THP is enabled (shmem_hpage_pmd_enabled() in
   * hugepage_pmd_enabled(), Baolin Wang, posted Sept 2024; the exact release, 6.12 or 6.13,
   * was not checked). Before, it ran only while anon THP was always or madvise.
   */
  readonly khugepagedForShmem: boolean;
}

const RULES: Record<HostKernelVersion, HostKernelRules> = {
  "5.6": {
    version: "5.6",
    shmemSplitOnPunch: false,
    minFreeKbytesMax: 65536,
    collapsePteMappedThp: false,
    thpQueueAtFault: false,
    thpUnderusedShrinker: false,
    splitRemapsZeroPages: false,
    ptReclaim: false,
    khugepagedForShmem: false,
  },
  "6.1": {
    version: "6.1",
    shmemSplitOnPunch: true,
    minFreeKbytesMax: 262144,
    collapsePteMappedThp: true,
    thpQueueAtFault: false,
    thpUnderusedShrinker: false,
    splitRemapsZeroPages: false,
    ptReclaim: false,
    khugepagedForShmem: false,
  },
  "6.18": {
    version: "6.18",
    shmemSplitOnPunch: true,
    minFreeKbytesMax: 262144,
    collapsePteMappedThp: true,
    thpQueueAtFault: true,
    thpUnderusedShrinker: true,
    splitRemapsZeroPages: true,
    ptReclaim: true,
    khugepagedForShmem: true,
  },
};

export function isHostKernelVersion(value: string): value is HostKernelVersion {
  return (HOST_KERNEL_VERSIONS as readonly string[]).includes(value);
}

/** The rules of a supported host kernel; any other version is refused with a clear message. */
export function hostKernelRules(version: string): HostKernelRules {
  if (!isHostKernelVersion(version)) {
    throw new RangeError(
      `unsupported host kernel "${version}": expected one of ${HOST_KERNEL_VERSIONS.join(", ")}`,
    );
  }
  return RULES[version];
}
