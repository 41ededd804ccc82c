// Zone watermarks and lowmem reserves (mm/page_alloc.c: calculate_min_free_kbytes,
// __setup_per_zone_wmarks, setup_per_zone_lowmem_reserve; mm/khugepaged.c:
// set_recommended_min_free_kbytes), and the watermark test itself (__zone_watermark_ok).

import {
  MIGRATE_PCPTYPES,
  MIGRATE_TYPES,
  NR_PAGE_ORDERS,
  pageblock_nr_pages,
} from "../core/limits.ts";
import type { KernelRules } from "./kernel_version.ts";
import { WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO, type Zone, ZoneType } from "./zone.ts";

/** vm.watermark_scale_factor default (mm/page_alloc.c): 10, i.e. 0.1 % of the zone. */
export const WATERMARK_SCALE_FACTOR_DEFAULT = 10;
/** vm.watermark_boost_factor default (mm/page_alloc.c): 15000, i.e. 150 % of the high mark. */
export const WATERMARK_BOOST_FACTOR_DEFAULT = 15000;
/** sysctl_lowmem_reserve_ratio (mm/page_alloc.c): DMA 256, DMA32 256, Normal 32, Movable 0. */
export const LOWMEM_RESERVE_RATIO: readonly number[] = [256, 256, 32, 0];

/** int_sqrt (lib/math/int_sqrt.c): floor of the square root. */
function intSqrt(value: number): number {
  return Math.floor(Math.sqrt(value));
}

/** Pages of the zones the kernel calls lowmem (every zone but Movable on x86-64). */
function lowmemManagedPages(zones: readonly Zone[]): number {
  let pages = 0;
  for (const zone of zones) if (zone.type !== ZoneType.Movable) pages += zone.managedPages;
  return pages;
}

/** int_sqrt(lowmem_kbytes * 16) clamped to [128, minFreeKbytesMax] (calculate_min_free_kbytes). */
function sqrtMinFreeKbytes(lowmemPages: number, rules: KernelRules): number {
  const minFreeKbytes = intSqrt(lowmemPages * 4 * 16);
  return Math.min(Math.max(minFreeKbytes, 128), rules.minFreeKbytesMax);
}

/**
 * Models calculate_min_free_kbytes (mm/page_alloc.c): int_sqrt(lowmem_kbytes * 16), clamped to
 * [128, 262144] (65536 before v5.7).
 */
export function calculateMinFreeKbytes(zones: readonly Zone[], rules: KernelRules): number {
  return sqrtMinFreeKbytes(lowmemManagedPages(zones), rules);
}

/**
 * Models set_recommended_min_free_kbytes (mm/khugepaged.c, the same from 5.6 to 6.18): with THP
 * enabled, at least pageblock_nr_pages * nr_zones * (2 + MIGRATE_PCPTYPES^2) pages, capped at
 * nr_free_buffer_pages() / 20 (5 % of the lowmem managed pages above each zone's high
 * watermark, with the watermarks min_free_kbytes = `minFreeKbytesNow` gives), counting
 * populated zones up to gfp_zone(GFP_USER) (Normal; Movable is left out).
 */
function recommendedMinFreeKbytes(
  zones: readonly Zone[],
  managed: readonly number[],
  minFreeKbytesNow: number,
): number {
  let zoneCount = 0;
  let lowmemPages = 0;
  zones.forEach((zone, index) => {
    if (zone.type === ZoneType.Movable) return;
    if (zone.presentPages > 0) zoneCount++;
    lowmemPages += managed[index]!;
  });
  // nr_free_buffer_pages → nr_free_zone_pages: managed - high_wmark_pages per zone.
  const pagesMin = Math.floor(minFreeKbytesNow / 4);
  let freeBufferPages = 0;
  zones.forEach((zone, index) => {
    if (zone.type === ZoneType.Movable || lowmemPages === 0) return;
    const pages = managed[index]!;
    const min = Math.floor((pagesMin * pages) / lowmemPages);
    const delta = Math.max(
      Math.floor(min / 4),
      Math.floor((pages * WATERMARK_SCALE_FACTOR_DEFAULT) / 10000),
    );
    freeBufferPages += Math.max(0, pages - (min + 2 * delta));
  });
  let recommendedPages = pageblock_nr_pages * zoneCount * 2;
  recommendedPages += pageblock_nr_pages * zoneCount * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES;
  recommendedPages = Math.min(recommendedPages, Math.floor(freeBufferPages / 20));
  return recommendedPages * 4;
}

/**
 * min_free_kbytes as a booted kernel ends up with it: the square-root formula
 * (init_per_zone_wmark_min, a postcore_initcall), raised by khugepaged when THP is enabled
 * (hugepage_init → start_stop_khugepaged → set_recommended_min_free_kbytes, a subsys_initcall).
 * Both run before the kernel frees its init sections and the initrd (free_initmem,
 * free_initrd_mem), so they see `lateFreedPages` fewer managed pages (taken from the largest
 * lowmem zone); memory hotplug recomputes both with every page managed (lateFreedPages 0).
 */
export function minFreeKbytes(
  zones: readonly Zone[],
  rules: KernelRules,
  thpEnabled: boolean,
  lateFreedPages = 0,
): number {
  const managed = zones.map((zone) => zone.managedPages);
  let largest = -1;
  zones.forEach((zone, index) => {
    if (zone.type === ZoneType.Movable) return;
    if (largest < 0 || managed[index]! > managed[largest]!) largest = index;
  });
  if (largest >= 0) managed[largest] = Math.max(0, managed[largest]! - lateFreedPages);
  let lowmemPages = 0;
  zones.forEach((zone, index) => {
    if (zone.type !== ZoneType.Movable) lowmemPages += managed[index]!;
  });
  const formula = sqrtMinFreeKbytes(lowmemPages, rules);
  if (!thpEnabled) return formula;
  return Math.max(formula, recommendedMinFreeKbytes(zones, managed, formula));
}

/**
 * Models __setup_per_zone_wmarks (mm/page_alloc.c): MIN shares min_free_kbytes by managed pages;
 * each further mark adds max(MIN/4, managed * watermark_scale_factor / 10000).
 */
export function setupPerZoneWmarks(
  zones: readonly Zone[],
  minFreeKbytesValue: number,
  watermarkScaleFactor: number,
): void {
  const pagesMin = Math.floor(minFreeKbytesValue / 4);
  const lowmemPages = lowmemManagedPages(zones);
  for (const zone of zones) {
    let min: number;
    if (zone.type === ZoneType.Movable) {
      // Movable zones get a small fixed reserve: managed/1024 clamped to [SWAP_CLUSTER_MAX, 128].
      min = Math.min(Math.max(Math.floor(zone.managedPages / 1024), 32), 128);
    } else {
      min = lowmemPages === 0 ? 0 : Math.floor((pagesMin * zone.managedPages) / lowmemPages);
    }
    const delta = Math.max(
      Math.floor(min / 4),
      Math.floor((zone.managedPages * watermarkScaleFactor) / 10000),
    );
    zone.watermark[WMARK_MIN] = min;
    zone.watermark[WMARK_LOW] = min + delta;
    zone.watermark[WMARK_HIGH] = min + 2 * delta;
    zone.watermark[WMARK_PROMO] = min + 3 * delta;
    zone.watermarkBoost = 0;
  }
}

/**
 * Models setup_per_zone_lowmem_reserve (mm/page_alloc.c): a lower zone keeps back, from
 * allocations that could have used a higher zone, the higher zones' managed pages / ratio.
 */
export function setupPerZoneLowmemReserve(zones: readonly Zone[]): void {
  for (const zone of zones) {
    zone.lowmemReserve.fill(0);
    const ratio = LOWMEM_RESERVE_RATIO[zone.type]!;
    if (ratio === 0 || zone.managedPages === 0) continue;
    let upperManaged = 0;
    for (const upper of zones) {
      if (upper.type <= zone.type) continue;
      upperManaged += upper.managedPages;
      zone.lowmemReserve[upper.type] = Math.floor(upperManaged / ratio);
    }
  }
}

/** The effective watermark, boost included (wmark_pages). */
export function wmarkPages(zone: Zone, mark: number): number {
  return zone.watermark[mark]! + zone.watermarkBoost;
}

/**
 * Models __zone_watermark_ok (mm/page_alloc.c) for callers without ALLOC_RESERVES: free pages,
 * less what this order cannot use and the highatomic reserve, must exceed the mark plus the
 * lowmem reserve; for order > 0 a block of that order must exist on a non-reserve list.
 */
export function zoneWatermarkOk(
  zone: Zone,
  order: number,
  mark: number,
  highestZoneIndex: number,
  freePages: number,
): boolean {
  const usable = freePages - ((1 << order) - 1) - zone.nrReservedHighatomic;
  if (usable <= mark + zone.lowmemReserve[highestZoneIndex]!) return false;
  if (order === 0) return true;
  const head = zone.freeArea.head;
  for (let currentOrder = order; currentOrder < NR_PAGE_ORDERS; currentOrder++) {
    if (zone.freeArea.nrFree[currentOrder] === 0) continue;
    for (let mt = 0; mt < MIGRATE_PCPTYPES; mt++) {
      if (head[currentOrder * MIGRATE_TYPES + mt] !== -1) return true;
    }
  }
  return false;
}
