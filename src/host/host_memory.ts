// Host RAM as one zone: how much is free, the watermarks, and the order-9 watermark test that
// decides whether the host "has 2 MiB" for a THP.
//
// Theory of operation. Host free memory = MemTotal - guest RAM's allocation - everything else
// (otherUsedBytes, set by the scenario through hostSetPressure). For hugetlbfs the whole pool is
// taken out of MemFree when it is reserved, so pool pages freed by a discard raise
// HugePages_Free and leave MemFree alone. The watermarks follow the kernel for a single zone:
//   min_free_kbytes = clamp(int_sqrt(KiB * 16), 128, 65536 or 262144)  calculate_min_free_kbytes
//   raised, while khugepaged runs, to pageblock_nr_pages * zones * (2 + MIGRATE_PCPTYPES^2)
//   pages capped at 5 % of RAM                               set_recommended_min_free_kbytes
//   min = min_free_kbytes / 4 pages; delta = max(min / 4, pages * 10 / 10000)
//   low = min + delta; high = low + delta                    __setup_per_zone_wmarks
// Example: a 64 GiB host has int_sqrt(64 Mi KiB * 16) = 32768 KiB, raised by khugepaged to
// 512 * 3 zones * 11 = 16896 pages (67584 KiB); delta = max(16896 / 4, 16777216 * 10 / 10000)
// = 16777 pages; so min = 16896 pages (66 MiB), low = 33673 (131.5 MiB), high = 50450.
// Free memory may go negative: the real host would then reclaim page cache, swap or OOM-kill,
// which this model leaves to the caller.
//
// Left out: zones and lowmem_reserve, watermark boosting, the highatomic reserve, memcg limits.

import { MIGRATE_PCPTYPES, PAGE_SIZE, pageblock_nr_pages } from "../core/limits.ts";
import type { GuestRam } from "./guest_ram.ts";
import { type HostConfig, HPAGE_PMD_SIZE } from "./host_config.ts";
import type { HostKernelRules } from "./host_kernel.ts";
import { khugepagedRunning } from "./thp_policy.ts";

/** vm.watermark_scale_factor default (mm/page_alloc.c): 10, i.e. 0.1 % of the zone. */
export const WATERMARK_SCALE_FACTOR = 10;
/** ZONE_DMA32 ends at 4 GiB on x86-64: above it the host also has ZONE_NORMAL. */
const DMA32_END_BYTES = 4 * 1024 * 1024 * 1024;

export interface HostWatermarks {
  /** min_free_kbytes as the host ends up with it. */
  readonly minFreeKbytes: number;
  /** WMARK_MIN, WMARK_LOW and WMARK_HIGH in 4 KiB pages. */
  readonly minPages: number;
  readonly lowPages: number;
  readonly highPages: number;
}

/** int_sqrt (lib/math/int_sqrt.c). */
function intSqrt(value: number): number {
  return Math.floor(Math.sqrt(value));
}

/** Models set_recommended_min_free_kbytes (mm/khugepaged.c) for DMA, DMA32 and Normal zones. */
function recommendedMinFreeKbytes(memoryBytes: number): number {
  const zones = memoryBytes > DMA32_END_BYTES ? 3 : 2;
  let pages = pageblock_nr_pages * zones * 2;
  pages += pageblock_nr_pages * zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES;
  pages = Math.min(pages, Math.floor(memoryBytes / PAGE_SIZE / 20));
  return pages * (PAGE_SIZE / 1024);
}

/** The host's watermarks (calculate_min_free_kbytes, __setup_per_zone_wmarks, one zone). */
export function hostWatermarks(config: HostConfig, rules: HostKernelRules): HostWatermarks {
  const managedPages = Math.floor(config.memoryBytes / PAGE_SIZE);
  const kbytes = config.memoryBytes / 1024;
  let minFreeKbytes = Math.min(Math.max(intSqrt(kbytes * 16), 128), rules.minFreeKbytesMax);
  if (khugepagedRunning(config, rules)) {
    minFreeKbytes = Math.max(minFreeKbytes, recommendedMinFreeKbytes(config.memoryBytes));
  }
  const minPages = Math.floor(minFreeKbytes / (PAGE_SIZE / 1024));
  const scaled = Math.floor((managedPages * WATERMARK_SCALE_FACTOR) / 10000);
  const delta = Math.max(Math.floor(minPages / 4), scaled);
  return { minFreeKbytes, minPages, lowPages: minPages + delta, highPages: minPages + 2 * delta };
}

/** Host pages taken by guest RAM: its allocation, or the whole hugetlb pool once reserved. */
export function guestRamHostPages(ram: GuestRam): number {
  if (ram.hugetlbPagePages > 0) return ram.hugetlbPagesTotal * ram.hugetlbPagePages;
  return ram.allocatedPages;
}

/** MemFree in 4 KiB pages (may be negative: see the file comment). */
export function hostFreePages(ram: GuestRam): number {
  const totalPages = Math.floor(ram.config.memoryBytes / PAGE_SIZE);
  const otherPages = Math.ceil(ram.otherUsedBytes / PAGE_SIZE);
  return totalPages - guestRamHostPages(ram) - otherPages;
}

export function hostFreeBytes(ram: GuestRam): number {
  return hostFreePages(ram) * PAGE_SIZE;
}

/** The scenario's memory pressure: host memory used by everything but guest RAM. */
export function hostSetPressure(ram: GuestRam, otherUsedBytes: number): void {
  if (!Number.isFinite(otherUsedBytes) || otherUsedBytes < 0) {
    throw new RangeError(`otherUsedBytes ${otherUsedBytes}: expected a number >= 0`);
  }
  ram.otherUsedBytes = otherUsedBytes;
}

/**
 * Models __zone_watermark_ok (mm/page_alloc.c) for an order-9 allocation at WMARK_MIN, the
 * mark of the allocation slow path: free - (2^9 - 1) > min. Fragmentation is not modelled, so
 * enough free pages always hold a free 2 MiB block.
 */
export function hugePageFits(ram: GuestRam): boolean {
  const pages = HPAGE_PMD_SIZE / PAGE_SIZE;
  return hostFreePages(ram) - (pages - 1) > ram.watermarks.minPages;
}
