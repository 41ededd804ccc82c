// GFP flags (include/linux/gfp_types.h), reduced to the bits the model acts on. The values are
// the model's own; the names and meanings are the kernel's.

/** __GFP_MOVABLE: the page can be migrated; it comes from MOVABLE pageblocks. */
export const __GFP_MOVABLE = 1 << 0;
/** __GFP_RECLAIMABLE: slab that a shrinker can free; RECLAIMABLE pageblocks. */
export const __GFP_RECLAIMABLE = 1 << 1;
/** __GFP_DIRECT_RECLAIM: the caller may reclaim and compact itself. */
export const __GFP_DIRECT_RECLAIM = 1 << 2;
/** __GFP_KSWAPD_RECLAIM: the caller wakes kswapd when the low watermark is hit. */
export const __GFP_KSWAPD_RECLAIM = 1 << 3;
/** __GFP_NORETRY: one light attempt at reclaim/compaction, no OOM. */
export const __GFP_NORETRY = 1 << 4;
/** __GFP_RETRY_MAYFAIL: retry reclaim and compaction hard, but fail rather than OOM. */
export const __GFP_RETRY_MAYFAIL = 1 << 5;
/** __GFP_COMP: a compound page (THP). */
export const __GFP_COMP = 1 << 6;
/** __GFP_DMA32 / highest zone DMA32 (GFP_DMA32). */
export const __GFP_DMA32 = 1 << 7;
/** __GFP_HIGHMEM: may use every zone up to Normal (and Movable with __GFP_MOVABLE). */
export const __GFP_HIGHMEM = 1 << 8;

/** __GFP_RECLAIM = direct + kswapd reclaim. */
export const __GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM;
/** GFP_KERNEL: unmovable kernel memory, may reclaim. */
export const GFP_KERNEL = __GFP_RECLAIM;
/** GFP_KERNEL | __GFP_RECLAIMABLE: reclaimable slab (dentries, inodes). */
export const GFP_KERNEL_RECLAIMABLE = __GFP_RECLAIM | __GFP_RECLAIMABLE;
/** GFP_HIGHUSER_MOVABLE: user pages, page cache, balloon pages. */
export const GFP_HIGHUSER_MOVABLE = __GFP_RECLAIM | __GFP_HIGHMEM | __GFP_MOVABLE;
/** GFP_TRANSHUGE_LIGHT (include/linux/gfp_types.h): movable compound, no reclaim at all. */
export const GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP) & ~__GFP_RECLAIM;
/** GFP_TRANSHUGE: GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM. */
export const GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM;

/** gfp_migratetype (include/linux/gfp.h): MOVABLE, RECLAIMABLE or UNMOVABLE. */
export function gfpMigratetype(gfp: number): number {
  if ((gfp & __GFP_MOVABLE) !== 0) return 1;
  if ((gfp & __GFP_RECLAIMABLE) !== 0) return 2;
  return 0;
}
