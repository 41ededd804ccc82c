// The kernel behaviours a guest (and later a host) can run. Everything that differs between the
// supported versions is in this one table; code asks the table, never a version string.

export const KERNEL_VERSIONS = ["5.6", "6.1", "6.18"] as const;
export type KernelVersion = (typeof KERNEL_VERSIONS)[number];

export interface KernelRules {
  readonly version: KernelVersion;
  /** MAX_ORDER inclusive (commit 23baf831a32c "mm, treewide: redefine MAX_ORDER sanely", v6.4). */
  readonly maxOrderInclusive: boolean;
  /** The first 1 MiB is always reserved (arch/x86/kernel/setup.c, v5.13); 64 KiB before. */
  readonly reserveFirstMiB: boolean;
  /** Proactive compaction, vm.compaction_proactiveness (mm/compaction.c, v5.9, Nitin Gupta). */
  readonly proactiveCompaction: boolean;
  /**
   * Pages go to the tail of the free lists when boot memory or onlined memory is freed
   * (__free_pages_core), when isolated (reported) pages are put back (__putback_isolated_page)
   * and when move_to_free_list moves them between lists: the series "mm: place pages to the tail
   * when onlining and undoing isolation" (v5.10, David Hildenbrand). Before it, all went to the head.
   */
  readonly placePagesToTail: boolean;
  /** High-order pcp lists, orders 1..3 and pageblock_order (commit 44042b449872, v5.14). */
  readonly highOrderPcp: boolean;
  /** Free page reporting, mm/page_reporting.c (Alexander Duyck, v5.7). */
  readonly freePageReporting: boolean;
  /** page_reporting_order module parameter (mm/page_reporting.c, v5.14, Gavin Shan). */
  readonly pageReportingOrderParam: boolean;
  /**
   * __free_one_page refuses to merge pageblocks of different types when either is not
   * migratetype_is_mergeable (ISOLATE, CMA, HIGHATOMIC) (mm/page_alloc.c, v5.18); before, only
   * ISOLATE blocks stopped a merge.
   */
  readonly mergeRuleMergeable: boolean;
  /**
   * Freelist migratetype hygiene (mm/page_alloc.c, v6.10, Johannes Weiner): a free block is always
   * on its pageblock's list, merging retypes the buddy's block, stealing takes exactly the order.
   */
  readonly freelistHygiene: boolean;
  /** __rmqueue_claim / __rmqueue_steal split of the fallback path (mm/page_alloc.c, v6.15). */
  readonly rmqueueClaimSteal: boolean;
  /** min_free_kbytes upper clamp in calculate_min_free_kbytes (mm/page_alloc.c): 262144 since 5.7. */
  readonly minFreeKbytesMax: number;
  /** Shmem THP split on a partial hole punch (commit 71725ed10c40, v5.7); used for host kernels. */
  readonly shmemSplitOnPunch: boolean;
  /**
   * Empty PTE tables are freed by MADV_DONTNEED over a whole 2 MiB range, so the range can take a
   * THP again (CONFIG_PT_RECLAIM, mm/pt_reclaim.c, v6.14, Qi Zheng).
   */
  readonly ptReclaim: boolean;
  /**
   * deferred_split_folio at fault and collapse time, for the underused-THP shrinker
   * ("mm: split underused THPs", v6.12, Usama Arif).
   */
  readonly thpQueueAtFault: boolean;
  /**
   * khugepaged collapses a range still mapped by a PTE-mapped THP ("mm: thp: khugepaged: add
   * support for collapsing PTE-mapped THP", v5.8, Kirill Shutemov); 5.6 fails SCAN_PAGE_COMPOUND.
   */
  readonly collapsePteMappedThp: boolean;
  /**
   * Per-cpu bulk frees scale with pcp->free_factor (nr_pcp_free, v5.14, Mel Gorman), and an
   * order 1..PAGE_ALLOC_COSTLY_ORDER free while free_factor is set empties the whole list
   * (free_high in free_unref_page_commit), as in 6.1; v6.7 replaced both (pcpHighAutoTune).
   */
  readonly pcpFreeFactor: boolean;
  /**
   * Per-cpu high auto-tuning between high_min (low watermark / CPUs) and high_max (managed / 8 /
   * CPUs), free_count, alloc_factor, PCPF_PREV_FREE_HIGH_ORDER and decay_pcp_high from vmstat
   * refresh (mm/page_alloc.c, v6.7, Huang Ying); free_high needs free_count >= batch +
   * high_min / 2 (v6.15).
   */
  readonly pcpHighAutoTune: boolean;
  /**
   * Compaction keeps isolated free pages as per-order chunks split on demand, and migrates large
   * folios below the target order and pageblock order ("compacting >0 order folios",
   * mm/compaction.c, v6.10, Zi Yan); before, free pages were split to order 0 (split_map_pages)
   * and every compound page was skipped.
   */
  readonly compactionFolioOrders: boolean;
  /**
   * Migration counts a THP as its 512 subpages in pgmigrate_success/fail and has the
   * thp_migration_success/fail/split events (migrate_pages, "mm/vmstat: add events for THP
   * migration without split", 1a5bae25e3cf, v5.9); 5.6 counts a migrated THP as one page.
   */
  readonly thpMigrationCountsSubpages: boolean;
  /**
   * A THP's migration target is allocated without __GFP_RECLAIM before GFP_TRANSHUGE is added
   * (alloc_migration_target, "mm/migrate: clear __GFP_RECLAIM to make the migration callback
   * consistent with regular THP allocations", Joonsoo Kim, v5.9), so it does not wake kswapd;
   * 5.6's new_page_nodemask keeps GFP_USER's kswapd reclaim.
   */
  readonly thpMigrationTargetNoKswapd: boolean;
  /**
   * The order migrate_pages retries a THP's pages in after splitting it on -ENOMEM: 5.6
   * split_huge_page_to_list(page, from) retries the head at once and appends the tails 511..1
   * (__split_huge_page's descending loop); 6.1 try_split_thp puts tails 511..1 then the head on
   * thp_split_pages; 6.15+ __folio_split walks folio_next (tails 1..511), try_split_folio moves
   * the head last.
   */
  readonly thpSplitRetryOrder: ThpSplitRetryOrder;
  /**
   * migrate_pages_batch splits a partially mapped THP on the deferred split queue instead of
   * migrating it ("mm/migrate: split source folio if it is on deferred split list", v6.10, Zi
   * Yan; only folio_test_partially_mapped ones from v6.12, Usama Arif).
   */
  readonly migrateSplitsPartiallyMappedThp: boolean;
}

/** See KernelRules.thpSplitRetryOrder. */
export type ThpSplitRetryOrder =
  | "head-then-tails-down"
  | "tails-down-then-head"
  | "tails-up-then-head";

const RULES: Record<KernelVersion, KernelRules> = {
  "5.6": {
    version: "5.6",
    maxOrderInclusive: false,
    reserveFirstMiB: false,
    proactiveCompaction: false,
    placePagesToTail: false,
    highOrderPcp: false,
    freePageReporting: false,
    pageReportingOrderParam: false,
    mergeRuleMergeable: false,
    freelistHygiene: false,
    rmqueueClaimSteal: false,
    minFreeKbytesMax: 65536,
    shmemSplitOnPunch: false,
    pcpFreeFactor: false,
    pcpHighAutoTune: false,
    ptReclaim: false,
    thpQueueAtFault: false,
    collapsePteMappedThp: false,
    compactionFolioOrders: false,
    thpMigrationCountsSubpages: false,
    thpMigrationTargetNoKswapd: false,
    thpSplitRetryOrder: "head-then-tails-down",
    migrateSplitsPartiallyMappedThp: false,
  },
  "6.1": {
    version: "6.1",
    maxOrderInclusive: false,
    reserveFirstMiB: true,
    proactiveCompaction: true,
    placePagesToTail: true,
    highOrderPcp: true,
    freePageReporting: true,
    pageReportingOrderParam: true,
    mergeRuleMergeable: true,
    freelistHygiene: false,
    rmqueueClaimSteal: false,
    minFreeKbytesMax: 262144,
    shmemSplitOnPunch: true,
    pcpFreeFactor: true,
    pcpHighAutoTune: false,
    ptReclaim: false,
    thpQueueAtFault: false,
    collapsePteMappedThp: true,
    compactionFolioOrders: false,
    thpMigrationCountsSubpages: true,
    thpMigrationTargetNoKswapd: true,
    thpSplitRetryOrder: "tails-down-then-head",
    migrateSplitsPartiallyMappedThp: false,
  },
  "6.18": {
    version: "6.18",
    maxOrderInclusive: true,
    reserveFirstMiB: true,
    proactiveCompaction: true,
    placePagesToTail: true,
    highOrderPcp: true,
    freePageReporting: true,
    pageReportingOrderParam: true,
    mergeRuleMergeable: true,
    freelistHygiene: true,
    rmqueueClaimSteal: true,
    minFreeKbytesMax: 262144,
    shmemSplitOnPunch: true,
    pcpFreeFactor: false,
    pcpHighAutoTune: true,
    ptReclaim: true,
    thpQueueAtFault: true,
    collapsePteMappedThp: true,
    compactionFolioOrders: true,
    thpMigrationCountsSubpages: true,
    thpMigrationTargetNoKswapd: true,
    thpSplitRetryOrder: "tails-up-then-head",
    migrateSplitsPartiallyMappedThp: true,
  },
};

export function isKernelVersion(value: string): value is KernelVersion {
  return (KERNEL_VERSIONS as readonly string[]).includes(value);
}

/** The rules of a supported version; any other version is refused with a clear message. */
export function kernelRules(version: string): KernelRules {
  if (!isKernelVersion(version)) {
    throw new RangeError(
      `unsupported kernel version "${version}": expected one of ${KERNEL_VERSIONS.join(", ")}`,
    );
  }
  return RULES[version];
}
