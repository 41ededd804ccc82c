// Taking free blocks off the buddy lists for someone else's use and giving them back
// (mm/page_alloc.c: __isolate_free_page, __putback_isolated_page): compaction's free scanner
// isolates migration targets, free page reporting isolates blocks while the host discards them.

import {
  MIGRATE_ISOLATE,
  MIGRATE_MOVABLE,
  MIGRATE_PCPTYPES,
  pageblock_nr_pages,
  pageblock_order,
} from "../core/limits.ts";
import {
  delFromFreeList,
  FPI_SKIP_REPORT_NOTIFY,
  FPI_TO_TAIL,
  freeOnePage,
  moveFreepagesBlock,
} from "./buddy.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { zoneWatermarkOk } from "./watermarks.ts";
import { WMARK_MIN, type Zone } from "./zone.ts";

/**
 * Models __isolate_free_page (mm/page_alloc.c): take a free block off the buddy lists unless
 * that would leave the zone below MIN (as if allocating it); a block of at least half a
 * pageblock turns its pageblock MOVABLE (moving its other free pages too from v6.10).
 */
export function isolateFreePage(
  memory: GuestMemory,
  zone: Zone,
  pfn: number,
  order: number,
): number {
  const table = memory.table;
  const migratetype = table.pageblockMt[pfn >>> pageblock_order]!;
  if (migratetype !== MIGRATE_ISOLATE) {
    // _watermark[WMARK_MIN], without the boost, plus the block: "emulate a high-order check".
    const watermark = zone.watermark[WMARK_MIN]! + 2 ** order;
    if (!zoneWatermarkOk(zone, 0, watermark, 0, zone.freePages)) return 0;
  }
  delFromFreeList(table, zone, pfn);
  if (order >= pageblock_order - 1) {
    const end = pfn + 2 ** order - 1;
    for (let block = pfn; block < end; block += pageblock_nr_pages) {
      const index = block >>> pageblock_order;
      if (table.pageblockMt[index]! >= MIGRATE_PCPTYPES) continue;
      if (memory.rules.freelistHygiene) moveFreepagesBlock(table, zone, block, MIGRATE_MOVABLE);
      table.pageblockMt[index] = MIGRATE_MOVABLE;
    }
  }
  return 2 ** order;
}

/**
 * Models __putback_isolated_page (mm/page_alloc.c, v5.7+): a reported block returns to the tail
 * of its free list without arming reporting again (FPI_SKIP_REPORT_NOTIFY | FPI_TO_TAIL), so it
 * is allocated last.
 */
export function putbackIsolatedPage(
  memory: GuestMemory,
  zone: Zone,
  pfn: number,
  order: number,
): void {
  const migratetype = memory.table.pageblockMt[pfn >>> pageblock_order]!;
  freeOnePage(memory.table, zone, pfn, order, migratetype, FPI_SKIP_REPORT_NOTIFY | FPI_TO_TAIL);
}
