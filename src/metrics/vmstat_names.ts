// The /proc/vmstat name lists, one per supported kernel version, in the order mm/vmstat.c's
// vmstat_text[] prints them under Debian's amd64 config (CONFIG_NUMA, NUMA_BALANCING, ZSMALLOC,
// SWAP, ZSWAP, KSM, MIGRATION, COMPACTION, HUGETLB_PAGE, THP with PUD, MEMORY_BALLOON,
// BALLOON_COMPACTION, ZONE_DMA/DMA32/DEVICE on; CMA and DEBUG_TLBFLUSH off). Sources and
// confidence: /work/research/procfs.md §3 (6.1 read from Debian 6.1.192; 6.18 matched name for
// name against a live 6.18 /proc/vmstat; 5.6 rebuilt from 5.10 by undoing later changes).
//
// The lists also give the groups /proc/zoneinfo prints (zone items, NUMA items, node items): the
// zone items run up to numa_hit, the NUMA items to numa_other, the node items up to
// nr_dirty_threshold (mm/vmstat.c: vmstat_start fills the array in that order).

import type { KernelVersion } from "../guest/kernel_version.ts";

/** 5.6, Debian-like config: 138 lines, no trailing `nr_unstable 0` (research §3.4, rebuilt). */
const VMSTAT_5_6 = `
nr_free_pages nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file
nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_page_table_pages
nr_kernel_stack nr_bounce nr_zspages nr_free_cma numa_hit numa_miss numa_foreign numa_interleave
numa_local numa_other nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file
nr_unevictable nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file
workingset_nodes workingset_refault workingset_activate workingset_restore
workingset_nodereclaim nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback
nr_writeback_temp nr_shmem nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages
nr_file_pmdmapped nr_anon_transparent_hugepages nr_unstable nr_vmscan_write
nr_vmscan_immediate_reclaim nr_dirtied nr_written nr_kernel_misc_reclaimable nr_dirty_threshold
nr_dirty_background_threshold pgpgin pgpgout pswpin pswpout pgalloc_dma pgalloc_dma32
pgalloc_normal pgalloc_movable allocstall_dma allocstall_dma32 allocstall_normal
allocstall_movable pgskip_dma pgskip_dma32 pgskip_normal pgskip_movable pgfree pgactivate
pgdeactivate pglazyfree pgfault pgmajfault pglazyfreed pgrefill pgsteal_kswapd pgsteal_direct
pgscan_kswapd pgscan_direct pgscan_direct_throttle zone_reclaim_failed pginodesteal
slabs_scanned kswapd_inodesteal kswapd_low_wmark_hit_quickly kswapd_high_wmark_hit_quickly
pageoutrun pgrotated drop_pagecache drop_slab oom_kill numa_pte_updates numa_huge_pte_updates
numa_hint_faults numa_hint_faults_local numa_pages_migrated pgmigrate_success pgmigrate_fail
compact_migrate_scanned compact_free_scanned compact_isolated compact_stall compact_fail
compact_success compact_daemon_wake compact_daemon_migrate_scanned compact_daemon_free_scanned
htlb_buddy_alloc_success htlb_buddy_alloc_fail unevictable_pgs_culled unevictable_pgs_scanned
unevictable_pgs_rescued unevictable_pgs_mlocked unevictable_pgs_munlocked
unevictable_pgs_cleared unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback
thp_collapse_alloc thp_collapse_alloc_failed thp_file_alloc thp_file_mapped thp_split_page
thp_split_page_failed thp_deferred_split_page thp_split_pmd thp_split_pud thp_zero_page_alloc
thp_zero_page_alloc_failed thp_swpout thp_swpout_fallback balloon_inflate balloon_deflate
balloon_migrate swap_ra swap_ra_hit
`;

/** 6.1, Debian 6.1.192 amd64 config: 173 lines incl. the trailing `nr_unstable 0` (§3.3). */
const VMSTAT_6_1 = `
nr_free_pages nr_zone_inactive_anon nr_zone_active_anon nr_zone_inactive_file
nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock nr_bounce nr_zspages
nr_free_cma numa_hit numa_miss numa_foreign numa_interleave numa_local numa_other
nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable
nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes
workingset_refault_anon workingset_refault_file workingset_activate_anon
workingset_activate_file workingset_restore_anon workingset_restore_file workingset_nodereclaim
nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback nr_writeback_temp nr_shmem
nr_shmem_hugepages nr_shmem_pmdmapped nr_file_hugepages nr_file_pmdmapped
nr_anon_transparent_hugepages nr_vmscan_write nr_vmscan_immediate_reclaim nr_dirtied nr_written
nr_throttled_written nr_kernel_misc_reclaimable nr_foll_pin_acquired nr_foll_pin_released
nr_kernel_stack nr_page_table_pages nr_sec_page_table_pages nr_swapcached pgpromote_success
pgpromote_candidate nr_dirty_threshold nr_dirty_background_threshold pgpgin pgpgout pswpin
pswpout pgalloc_dma pgalloc_dma32 pgalloc_normal pgalloc_movable pgalloc_device allocstall_dma
allocstall_dma32 allocstall_normal allocstall_movable allocstall_device pgskip_dma pgskip_dma32
pgskip_normal pgskip_movable pgskip_device pgfree pgactivate pgdeactivate pglazyfree pgfault
pgmajfault pglazyfreed pgrefill pgreuse pgsteal_kswapd pgsteal_direct pgdemote_kswapd
pgdemote_direct pgscan_kswapd pgscan_direct pgscan_direct_throttle pgscan_anon pgscan_file
pgsteal_anon pgsteal_file zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal
kswapd_low_wmark_hit_quickly kswapd_high_wmark_hit_quickly pageoutrun pgrotated drop_pagecache
drop_slab oom_kill numa_pte_updates numa_huge_pte_updates numa_hint_faults
numa_hint_faults_local numa_pages_migrated pgmigrate_success pgmigrate_fail
thp_migration_success thp_migration_fail thp_migration_split compact_migrate_scanned
compact_free_scanned compact_isolated compact_stall compact_fail compact_success
compact_daemon_wake compact_daemon_migrate_scanned compact_daemon_free_scanned
htlb_buddy_alloc_success htlb_buddy_alloc_fail unevictable_pgs_culled unevictable_pgs_scanned
unevictable_pgs_rescued unevictable_pgs_mlocked unevictable_pgs_munlocked
unevictable_pgs_cleared unevictable_pgs_stranded thp_fault_alloc thp_fault_fallback
thp_fault_fallback_charge thp_collapse_alloc thp_collapse_alloc_failed thp_file_alloc
thp_file_fallback thp_file_fallback_charge thp_file_mapped thp_split_page thp_split_page_failed
thp_deferred_split_page thp_split_pmd thp_scan_exceed_none_pte thp_scan_exceed_swap_pte
thp_scan_exceed_share_pte thp_split_pud thp_zero_page_alloc thp_zero_page_alloc_failed
thp_swpout thp_swpout_fallback balloon_inflate balloon_deflate balloon_migrate swap_ra
swap_ra_hit ksm_swpin_copy cow_ksm zswpin zswpout direct_map_level2_splits
direct_map_level3_splits nr_unstable
`;

/** 6.18, Debian 6.12 config: 193 lines incl. the trailing `nr_unstable 0` (§3.5). */
const VMSTAT_6_18 = `
nr_free_pages nr_free_pages_blocks nr_zone_inactive_anon nr_zone_active_anon
nr_zone_inactive_file nr_zone_active_file nr_zone_unevictable nr_zone_write_pending nr_mlock
nr_zspages nr_free_cma nr_unaccepted numa_hit numa_miss numa_foreign numa_interleave numa_local
numa_other nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable
nr_slab_reclaimable nr_slab_unreclaimable nr_isolated_anon nr_isolated_file workingset_nodes
workingset_refault_anon workingset_refault_file workingset_activate_anon
workingset_activate_file workingset_restore_anon workingset_restore_file workingset_nodereclaim
nr_anon_pages nr_mapped nr_file_pages nr_dirty nr_writeback nr_shmem nr_shmem_hugepages
nr_shmem_pmdmapped nr_file_hugepages nr_file_pmdmapped nr_anon_transparent_hugepages
nr_vmscan_write nr_vmscan_immediate_reclaim nr_dirtied nr_written nr_throttled_written
nr_kernel_misc_reclaimable nr_foll_pin_acquired nr_foll_pin_released nr_kernel_stack
nr_page_table_pages nr_sec_page_table_pages nr_iommu_pages nr_swapcached pgpromote_success
pgpromote_candidate pgpromote_candidate_nrl pgdemote_kswapd pgdemote_direct pgdemote_khugepaged
pgdemote_proactive nr_hugetlb nr_balloon_pages nr_kernel_file_pages nr_dirty_threshold
nr_dirty_background_threshold nr_memmap_pages nr_memmap_boot_pages pgpgin pgpgout pswpin pswpout
pgalloc_dma pgalloc_dma32 pgalloc_normal pgalloc_movable pgalloc_device allocstall_dma
allocstall_dma32 allocstall_normal allocstall_movable allocstall_device pgskip_dma pgskip_dma32
pgskip_normal pgskip_movable pgskip_device pgfree pgactivate pgdeactivate pglazyfree pgfault
pgmajfault pglazyfreed pgrefill pgreuse pgsteal_kswapd pgsteal_direct pgsteal_khugepaged
pgsteal_proactive pgscan_kswapd pgscan_direct pgscan_khugepaged pgscan_proactive
pgscan_direct_throttle pgscan_anon pgscan_file pgsteal_anon pgsteal_file zone_reclaim_success
zone_reclaim_failed pginodesteal slabs_scanned kswapd_inodesteal kswapd_low_wmark_hit_quickly
kswapd_high_wmark_hit_quickly pageoutrun pgrotated drop_pagecache drop_slab oom_kill
numa_pte_updates numa_huge_pte_updates numa_hint_faults numa_hint_faults_local
numa_pages_migrated pgmigrate_success pgmigrate_fail thp_migration_success thp_migration_fail
thp_migration_split compact_migrate_scanned compact_free_scanned compact_isolated compact_stall
compact_fail compact_success compact_daemon_wake compact_daemon_migrate_scanned
compact_daemon_free_scanned htlb_buddy_alloc_success htlb_buddy_alloc_fail
unevictable_pgs_culled unevictable_pgs_scanned unevictable_pgs_rescued unevictable_pgs_mlocked
unevictable_pgs_munlocked unevictable_pgs_cleared unevictable_pgs_stranded thp_fault_alloc
thp_fault_fallback thp_fault_fallback_charge thp_collapse_alloc thp_collapse_alloc_failed
thp_file_alloc thp_file_fallback thp_file_fallback_charge thp_file_mapped thp_split_page
thp_split_page_failed thp_deferred_split_page thp_underused_split_page thp_split_pmd
thp_scan_exceed_none_pte thp_scan_exceed_swap_pte thp_scan_exceed_share_pte thp_split_pud
thp_zero_page_alloc thp_zero_page_alloc_failed thp_swpout thp_swpout_fallback balloon_inflate
balloon_deflate balloon_migrate swap_ra swap_ra_hit swpin_zero swpout_zero ksm_swpin_copy
cow_ksm zswpin zswpout zswpwb direct_map_level2_splits direct_map_level3_splits
direct_map_level2_collapses direct_map_level3_collapses nr_unstable
`;

/** The names of one version's /proc/vmstat, split into the groups vmstat_start() fills. */
export interface VmstatNames {
  /** Every line of /proc/vmstat, in order, the trailing constant `nr_unstable` included. */
  readonly all: readonly string[];
  /** enum zone_stat_item names (zone_stat_name): printed per zone in /proc/zoneinfo. */
  readonly zone: readonly string[];
  /** NUMA event names (numa_stat_name): printed per zone in /proc/zoneinfo. */
  readonly numa: readonly string[];
  /** enum node_stat_item names (node_stat_name): zoneinfo's "per-node stats". */
  readonly node: readonly string[];
  /**
   * The last line is vmstat_show's constant "nr_unstable 0" (v5.8+, commit 8d92890bd6b8), not a
   * counter: 6.1 and 6.18 print it, 5.6 has nr_unstable as a real node item instead.
   */
  readonly trailingUnstable: boolean;
}

function splitNames(text: string, trailingUnstable: boolean): VmstatNames {
  const all = text.split(/\s+/).filter((name) => name !== "");
  const numaStart = all.indexOf("numa_hit");
  const nodeStart = all.indexOf("numa_other") + 1;
  const nodeEnd = all.indexOf("nr_dirty_threshold");
  if (numaStart < 0 || nodeStart <= numaStart || nodeEnd <= nodeStart) {
    throw new Error("vmstat name list lost its group markers");
  }
  return {
    all,
    zone: all.slice(0, numaStart),
    numa: all.slice(numaStart, nodeStart),
    node: all.slice(nodeStart, nodeEnd),
    trailingUnstable,
  };
}

const NAMES: Record<KernelVersion, VmstatNames> = {
  "5.6": splitNames(VMSTAT_5_6, false),
  "6.1": splitNames(VMSTAT_6_1, true),
  "6.18": splitNames(VMSTAT_6_18, true),
};

/** The /proc/vmstat names of a supported kernel version. */
export function vmstatNames(version: KernelVersion): VmstatNames {
  return NAMES[version];
}
