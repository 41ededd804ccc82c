// Kernel constants for x86-64 with 4 KiB pages, under the kernel's own names.
// Each one cites where the kernel defines it.

/** PAGE_SHIFT (arch/x86/include/asm/page_types.h). */
export const PAGE_SHIFT = 12;
/** PAGE_SIZE in bytes. */
export const PAGE_SIZE = 1 << PAGE_SHIFT;
/** MAX_PAGE_ORDER (include/linux/mmzone.h, 6.8+; MAX_ORDER - 1 before 6.4): largest block 4 MiB. */
export const MAX_PAGE_ORDER = 10;
/** NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1 (include/linux/mmzone.h): free_area[] has 11 entries. */
export const NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1;
/** MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER (include/linux/mmzone.h). */
export const MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER;
/** pageblock_order = HUGETLB_PAGE_ORDER = 9 on x86-64 (include/linux/pageblock-flags.h). */
export const pageblock_order = 9;
/** pageblock_nr_pages = 1 << pageblock_order (include/linux/pageblock-flags.h). */
export const pageblock_nr_pages = 1 << pageblock_order;
/** HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT = 9 (include/linux/huge_mm.h). */
export const HPAGE_PMD_ORDER = 9;
/** HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER (include/linux/huge_mm.h). */
export const HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER;
/** PAGE_ALLOC_COSTLY_ORDER (include/linux/mmzone.h). */
export const PAGE_ALLOC_COSTLY_ORDER = 3;
/** CONFIG_PCP_BATCH_SCALE_MAX default (mm/Kconfig, v6.7): pcp batches scale up to batch << 5. */
export const CONFIG_PCP_BATCH_SCALE_MAX = 5;

/**
 * enum migratetype (include/linux/mmzone.h) as Debian's amd64 kernels build it: CONFIG_CMA off,
 * CONFIG_MEMORY_ISOLATION on, so there is no MIGRATE_CMA.
 */
export const MIGRATE_UNMOVABLE = 0;
export const MIGRATE_MOVABLE = 1;
export const MIGRATE_RECLAIMABLE = 2;
/** MIGRATE_PCPTYPES: the number of types with per-cpu lists. */
export const MIGRATE_PCPTYPES = 3;
export const MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES;
export const MIGRATE_ISOLATE = 4;
export const MIGRATE_TYPES = 5;

/** migratetype_names[] (mm/page_alloc.c), as /proc/pagetypeinfo prints them. */
export const migratetype_names: readonly string[] = [
  "Unmovable",
  "Movable",
  "Reclaimable",
  "HighAtomic",
  "Isolate",
];

/** 4 KiB frames in a size given in bytes (exact division is asserted by callers). */
export function framesFromBytes(sizeBytes: number): number {
  return Math.floor(sizeBytes / PAGE_SIZE);
}
