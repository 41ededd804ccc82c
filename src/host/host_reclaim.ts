// Host memory reclaim as far as guest RAM is concerned: kswapd-like reclaim when the scenario
// squeezes the host, and direct reclaim when a THP allocation finds too little free memory.
//
// Theory of operation. Of everything reclaim does (page cache, slab, swap), the only part that
// gives guest RAM back is shrink_slab running the deferred split shrinker (mm/vmscan.c
// shrink_node → shrink_slab → deferred_split_scan). hostReclaim is kswapd woken for an
// allocation of bytesNeeded: it does nothing while free memory stays above the low watermark,
// and otherwise shrinks until free is back above the high watermark (balance_pgdat's goal) or
// the queue is empty. hostAllocHugePage is the order-9 allocation of a THP fault or a collapse:
// the watermark test, then, if its gfp allows direct reclaim, the shrinker and a second test.
//
// Left out: everything else reclaim frees (the scenario's otherUsedBytes is not reclaimable),
// compaction and fragmentation (enough free pages always hold a 2 MiB block), OOM.

import { PAGE_SIZE } from "../core/limits.ts";
import { deferredSplitScan } from "./deferred_split.ts";
import type { GuestRam } from "./guest_ram.ts";
import { HPAGE_PMD_SIZE } from "./host_config.ts";
import { hostFreePages, hugePageFits } from "./host_memory.ts";

/**
 * Host memory pressure for an allocation of `bytesNeeded`: if free memory minus it falls below
 * WMARK_LOW, run the deferred split shrinker until free minus it is above WMARK_HIGH or the
 * queue is empty. Returns the bytes freed.
 */
export function hostReclaim(ram: GuestRam, bytesNeeded: number): number {
  if (!Number.isFinite(bytesNeeded) || bytesNeeded < 0) {
    throw new RangeError(`bytesNeeded ${bytesNeeded}: expected a number >= 0`);
  }
  const neededPages = Math.ceil(bytesNeeded / PAGE_SIZE);
  const freePages = hostFreePages(ram) - neededPages;
  if (freePages >= ram.watermarks.lowPages || ram.splitQueueLen === 0) return 0;
  const wantedPages = ram.watermarks.highPages - freePages;
  return deferredSplitScan(ram, wantedPages) * PAGE_SIZE;
}

/**
 * An order-9 allocation for a THP fault or a collapse (__alloc_pages): the WMARK_MIN test;
 * with `directReclaim`, on failure the shrinker frees what the test lacks and the test is
 * repeated (__alloc_pages_direct_reclaim → get_page_from_freelist).
 */
export function hostAllocHugePage(ram: GuestRam, directReclaim: boolean): boolean {
  if (hugePageFits(ram)) return true;
  if (!directReclaim || ram.splitQueueLen === 0) return false;
  const hugePages = HPAGE_PMD_SIZE / PAGE_SIZE;
  const lackingPages = ram.watermarks.minPages + hugePages - hostFreePages(ram);
  deferredSplitScan(ram, lackingPages);
  return hugePageFits(ram);
}
