// Allocating a given pfn range (mm/page_alloc.c alloc_contig_range, mm/page_isolation.c
// start_isolate_page_range / has_unmovable_pages / undo_isolate_page_range), as virtio-mem
// uses it to fake-offline a subblock before unplugging it.
//
// Theory of operation. The range is pageblock aligned and lies in one zone. First the free
// blocks that cross its ends are split (isolate_single_pageblock, v5.19), then pageblock by
// pageblock has_unmovable_pages looks for memory that can never move (reserved frames always;
// outside ZONE_MOVABLE also kernel pages and compound non-LRU pages) and, if there is none, the
// pageblock becomes MIGRATE_ISOLATE and its free pages move to the isolate lists, so the
// allocator cannot hand them out; one unmovable page undoes the isolation (-EBUSY). Then the
// per-cpu lists are drained and every allocated page in the range is dealt with in address
// order (__alloc_contig_migrate_range): clean page cache is dropped
// (reclaim_clean_pages_from_list), other movable pages (anon, shmem, order-0 balloon pages)
// migrate to a page the allocator gives alloc_migration_target; an anonymous THP is isolated
// whole (isolate_migratepages_block skips compound pages only when !cc->alloc_contig, 5.6 to
// 6.18) and migrates to a new order-9 page, or, when none can be allocated, is split
// (migrate_pages' -ENOMEM → try_split_thp) and its mapped pages migrate one by one; a page that
// cannot move (pinned, kernel memory in ZONE_MOVABLE, a compound balloon block) fails the range
// with -EBUSY, a failed target allocation with -ENOMEM. The isolated pageblocks are
// MIGRATE_ISOLATE, so no target ever comes from the range itself (their free pages are on the
// isolate lists, and frees into them bypass the per-cpu lists). Migrated pages stay migrated
// on failure. On success every frame of the range is free on the isolate lists
// (test_pages_isolated); they leave the buddy allocator (isolate_freepages_range) and the
// caller owns them. Either way the pageblocks leave MIGRATE_ISOLATE (undo_isolate_page_range
// with MIGRATE_MOVABLE).
//
// The taken frames become FrameKind.Reserved and stay counted in the zone's managed pages: the
// caller adjusts them at once (virtio_mem_fake_offline calls adjust_managed_page_count).
//
// Left out: the retry passes of migrate_pages (a page that fails once fails every pass here),
// the batching of COMPACT_CLUSTER_MAX pages (the range stops at its first unmovable page, not
// at the end of that batch; a split THP's pages are migrated right after the split, where the
// kernel first finishes the rest of its batch), THPs in page cache or shmem (the model has
// none), and the thp_migration_success/fail/split events (not in vm_event.ts; the stats below
// count the same things).

import { assert } from "../core/assert.ts";
import {
  HPAGE_PMD_NR,
  HPAGE_PMD_ORDER,
  MAX_PAGE_ORDER,
  MIGRATE_ISOLATE,
  MIGRATE_MOVABLE,
  pageblock_nr_pages,
  pageblock_order,
} from "../core/limits.ts";
import { delFromFreeList, FPI_NONE, freeOnePage, moveFreepagesBlock } from "./buddy.ts";
import {
  FRAME_BUDDY,
  FRAME_KIND_MASK,
  FRAME_TAIL,
  FrameKind,
  type FrameTable,
  isMovableKind,
  NO_PFN,
  ORDER_MASK,
} from "./frame_table.ts";
import {
  __GFP_HIGHMEM,
  __GFP_MOVABLE,
  __GFP_RECLAIM,
  __GFP_RETRY_MAYFAIL,
  GFP_TRANSHUGE,
} from "./gfp.ts";
import { type GuestMemory, zoneIndexOf, zoneOfPfn } from "./guest_memory.ts";
import { migrateFolio } from "./migrate.ts";
import { allocPages, freePages } from "./page_alloc.ts";
import { putbackIsolatedPage } from "./page_isolation.ts";
import { drainPcp } from "./pcp.ts";
import {
  splitThpForMigration,
  type ThpState,
  thpHeadOf,
  thpPartiallyMappedQueued,
  thpStateOf,
} from "./thp.ts";
import { VmEvent } from "./vm_event.ts";
import { type Zone, ZoneType } from "./zone.ts";

/** alloc_contig_range returned 0: the range is the caller's. */
export const CONTIG_OK = 0;
/** -EBUSY: an unmovable page (isolation or migration failed). */
export const CONTIG_EBUSY = 1;
/** -ENOMEM: no page to migrate to (migrate_pages bails out at once). */
export const CONTIG_ENOMEM = 2;

/** What ranges cost and why they failed; cumulative, owned by the caller. */
export interface ContigRangeStats {
  /** alloc_contig_range calls. */
  calls: number;
  /** Pages of pageblocks set MIGRATE_ISOLATE (the isolation work). */
  isolatedPages: number;
  /** Pages migrated out (pgmigrate_success for these ranges; 5.6 counts a THP as one). */
  migratedPages: number;
  /** THPs migrated whole to a new order-9 page (thp_migration_success). */
  thpMigrated: number;
  /** THPs split so that their pages migrate one by one (thp_migration_split). */
  thpSplit: number;
  /** Clean page cache pages dropped instead of migrated. */
  reclaimedPages: number;
  /** Migration targets allocated (a THP's order-9 target counts once). */
  targetAllocations: number;
  /** Pages of the migration targets allocated (512 for a THP's). */
  targetPages: number;
  /** Calls that failed in has_unmovable_pages (nothing was migrated). */
  failedIsolation: number;
  /** Calls that failed on a page that could not migrate. */
  failedMigration: number;
  /** Calls that failed because no migration target could be allocated. */
  failedNoMemory: number;
}

export function createContigRangeStats(): ContigRangeStats {
  return {
    calls: 0,
    isolatedPages: 0,
    migratedPages: 0,
    thpMigrated: 0,
    thpSplit: 0,
    reclaimedPages: 0,
    targetAllocations: 0,
    targetPages: 0,
    failedIsolation: 0,
    failedMigration: 0,
    failedNoMemory: 0,
  };
}

/**
 * Models alloc_contig_range(start, end, MIGRATE_MOVABLE, GFP_KERNEL) (mm/page_alloc.c, 6.1)
 * for a pageblock-aligned range inside one zone. Returns CONTIG_OK, CONTIG_EBUSY or
 * CONTIG_ENOMEM; on CONTIG_OK every frame of the range is FrameKind.Reserved and off the buddy
 * lists, still counted in the zone's managed pages.
 */
export function allocContigRange(
  memory: GuestMemory,
  startPfn: number,
  endPfn: number,
  stats: ContigRangeStats,
): number {
  assert(startPfn % pageblock_nr_pages === 0 && endPfn % pageblock_nr_pages === 0, () => {
    return `contig range ${startPfn}-${endPfn} is not pageblock aligned`;
  });
  const zone = zoneOfPfn(memory, startPfn);
  assert(zone !== undefined && endPfn > startPfn && endPfn <= zone.endPfn, () => {
    return `contig range ${startPfn}-${endPfn} is not inside one zone`;
  });
  stats.calls++;
  if (!startIsolatePageRange(memory, zone, startPfn, endPfn)) {
    stats.failedIsolation++;
    return CONTIG_EBUSY;
  }
  stats.isolatedPages += endPfn - startPfn;
  // alloc_contig_range: drain_all_pages(cc.zone) after isolation, so that no free page of the
  // range waits on a per-cpu list.
  for (const set of memory.pcp[zoneIndexOf(memory, zone)]!) drainPcp(memory.table, zone, set);
  isolateFreePages(memory.table, zone, startPfn, endPfn);
  let result = migrateRange(memory, zone, startPfn, endPfn, stats);
  if (result === CONTIG_OK && !testPagesIsolated(memory.table, startPfn, endPfn)) {
    result = CONTIG_EBUSY;
  }
  if (result === CONTIG_OK) takeFreePages(memory.table, zone, startPfn, endPfn);
  else if (result === CONTIG_EBUSY) stats.failedMigration++;
  else stats.failedNoMemory++;
  undoIsolatePageRange(memory, zone, startPfn, endPfn);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Isolation.

/**
 * Models start_isolate_page_range (mm/page_isolation.c, v5.19+): set_migratetype_isolate on
 * each pageblock, undoing the ones done so far when one holds unmovable memory (or is isolated
 * already); then the range's free pages go to the isolate lists.
 */
function startIsolatePageRange(
  memory: GuestMemory,
  zone: Zone,
  startPfn: number,
  endPfn: number,
): boolean {
  const table = memory.table;
  for (let block = startPfn; block < endPfn; block += pageblock_nr_pages) {
    const migratetype = table.pageblockMt[block >>> pageblock_order]!;
    const unmovable =
      migratetype === MIGRATE_ISOLATE ||
      hasUnmovablePages(memory, zone, block, block + pageblock_nr_pages);
    if (unmovable) {
      undoIsolatePageRange(memory, zone, startPfn, block);
      return false;
    }
    table.pageblockMt[block >>> pageblock_order] = MIGRATE_ISOLATE;
  }
  isolateFreePages(table, zone, startPfn, endPfn);
  return true;
}

/** The head of the free buddy block that contains `pfn`, or NO_PFN. */
function freeBlockHead(table: FrameTable, zone: Zone, pfn: number): number {
  for (let order = 0; order <= MAX_PAGE_ORDER; order++) {
    const head = pfn & ~((1 << order) - 1);
    if (head < zone.startPfn) break;
    if ((table.state[head]! & FRAME_BUDDY) === 0) continue;
    if ((table.order[head]! & ORDER_MASK) >= order) {
      return head + (1 << (table.order[head]! & ORDER_MASK)) > pfn ? head : NO_PFN;
    }
  }
  return NO_PFN;
}

/**
 * Models the free-page part of isolate_single_pageblock (v5.19, Zi Yan): a free block larger
 * than a pageblock that straddles `boundary` is split into pageblocks (split_free_page), each
 * freed again with its own pageblock's type so the two sides can be isolated separately.
 */
function splitCrossingFreeBlock(
  table: FrameTable,
  zone: Zone,
  pfn: number,
  boundary: number,
): void {
  const head = freeBlockHead(table, zone, pfn);
  if (head === NO_PFN) return;
  const order = table.order[head]! & ORDER_MASK;
  const end = head + (1 << order);
  if (order <= pageblock_order || head === boundary || end === boundary) return;
  if (boundary < head || boundary > end) return;
  delFromFreeList(table, zone, head);
  for (let block = head; block < end; block += pageblock_nr_pages) {
    const migratetype = table.pageblockMt[block >>> pageblock_order]!;
    freeOnePage(table, zone, block, pageblock_order, migratetype, FPI_NONE);
  }
}

/** Movable frames as has_unmovable_pages sees them: LRU pages and __PageMovable balloon pages. */
function movableForIsolation(table: FrameTable, pfn: number, kind: number): boolean {
  if (kind === FrameKind.Balloon) return (table.order[pfn]! & ORDER_MASK) === 0;
  return (
    kind === FrameKind.Anon ||
    kind === FrameKind.PageCache ||
    kind === FrameKind.Shmem ||
    kind === FrameKind.Pinned
  );
}

/**
 * Models has_unmovable_pages (mm/page_isolation.c, v5.19+ checks only the given range):
 * PageReserved is always unmovable; in ZONE_MOVABLE everything else is assumed movable; else
 * free pages, LRU pages (pinned ones included: the pin shows only when migration fails) and
 * movable non-LRU pages pass, and anything else (kernel memory) is unmovable.
 */
function hasUnmovablePages(
  memory: GuestMemory,
  zone: Zone,
  startPfn: number,
  endPfn: number,
): boolean {
  const table = memory.table;
  for (let pfn = startPfn; pfn < endPfn; pfn++) {
    const state = table.state[pfn]!;
    const kind = state & FRAME_KIND_MASK;
    if (kind === FrameKind.Reserved) return true;
    if (zone.type === ZoneType.Movable) continue;
    if ((state & FRAME_BUDDY) !== 0) {
      pfn += (1 << (table.order[pfn]! & ORDER_MASK)) - 1;
      continue;
    }
    if (kind === FrameKind.Free) continue;
    const head = (state & FRAME_TAIL) !== 0 ? compoundHead(table, pfn) : pfn;
    if (!movableForIsolation(table, head, table.state[head]! & FRAME_KIND_MASK)) return true;
  }
  return false;
}

/** The head of the allocated compound block holding the tail frame `pfn`. */
function compoundHead(table: FrameTable, pfn: number): number {
  for (let order = 1; order <= MAX_PAGE_ORDER; order++) {
    const head = pfn & ~((1 << order) - 1);
    if ((table.state[head]! & FRAME_TAIL) === 0) return head;
  }
  assert(false, () => `tail frame ${pfn} has no compound head`);
}

/**
 * The range's free pages onto the isolate lists: the free blocks that straddle its ends are
 * split first (isolate_single_pageblock), then move_freepages_block for each pageblock. Run
 * again after drain_all_pages: the model's 5.6/6.1 per-cpu drain frees with the type recorded
 * at free time, where free_pcppages_bulk checks has_isolate_pageblock and uses the pageblock's.
 */
function isolateFreePages(table: FrameTable, zone: Zone, startPfn: number, endPfn: number): void {
  splitCrossingFreeBlock(table, zone, startPfn, startPfn);
  splitCrossingFreeBlock(table, zone, endPfn - 1, endPfn);
  for (let block = startPfn; block < endPfn; block += pageblock_nr_pages) {
    moveFreepagesBlock(table, zone, block, MIGRATE_ISOLATE);
  }
}

/**
 * Models undo_isolate_page_range(start, end, MIGRATE_MOVABLE) → unset_migratetype_isolate:
 * each isolated pageblock becomes MOVABLE again; its free blocks of pageblock order and more are
 * put back through __putback_isolated_page so that they merge with their buddies outside.
 */
function undoIsolatePageRange(
  memory: GuestMemory,
  zone: Zone,
  startPfn: number,
  endPfn: number,
): void {
  const table = memory.table;
  for (let block = startPfn; block < endPfn; block += pageblock_nr_pages) {
    if (table.pageblockMt[block >>> pageblock_order] !== MIGRATE_ISOLATE) continue;
    table.pageblockMt[block >>> pageblock_order] = MIGRATE_MOVABLE;
    const head = (table.state[block]! & FRAME_BUDDY) !== 0 ? block : NO_PFN;
    const order = head === NO_PFN ? 0 : table.order[head]! & ORDER_MASK;
    if (head !== NO_PFN && order >= pageblock_order) {
      delFromFreeList(table, zone, head);
      putbackIsolatedPage(memory, zone, head, order);
    } else {
      moveFreepagesBlock(table, zone, block, MIGRATE_MOVABLE);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Migration.

/**
 * alloc_migration_target's mask for alloc_contig_range (__alloc_contig_migrate_range: GFP_USER |
 * __GFP_MOVABLE | __GFP_RETRY_MAYFAIL, plus __GFP_HIGHMEM when the page is in ZONE_MOVABLE).
 */
function migrationGfp(zone: Zone): number {
  const gfp = __GFP_RECLAIM | __GFP_MOVABLE | __GFP_RETRY_MAYFAIL;
  return zone.type === ZoneType.Movable ? gfp | __GFP_HIGHMEM : gfp;
}

/**
 * Models alloc_migration_target for a THP (mm/migrate.c, 6.1 and 6.18): the order-9 target is
 * allocated with the caller's mask less __GFP_RECLAIM, plus GFP_TRANSHUGE (direct reclaim and
 * compaction, __GFP_COMP, movable, any zone up to ZONE_MOVABLE); 5.6's new_page_nodemask
 * (include/linux/migrate.h) adds GFP_TRANSHUGE without clearing, so it also wakes kswapd.
 */
function thpMigrationGfp(memory: GuestMemory, gfp: number): number {
  const base = memory.rules.thpMigrationTargetNoKswapd ? gfp & ~__GFP_RECLAIM : gfp;
  return base | GFP_TRANSHUGE;
}

/**
 * Models __alloc_contig_migrate_range: every allocated page of the range, in address order,
 * is reclaimed (clean page cache) or migrated; the first page that cannot move ends the range.
 */
function migrateRange(
  memory: GuestMemory,
  zone: Zone,
  startPfn: number,
  endPfn: number,
  stats: ContigRangeStats,
): number {
  const table = memory.table;
  const gfp = migrationGfp(zone);
  for (let pfn = startPfn; pfn < endPfn; pfn++) {
    const state = table.state[pfn]!;
    if ((state & FRAME_BUDDY) !== 0) {
      pfn += (1 << (table.order[pfn]! & ORDER_MASK)) - 1;
      continue;
    }
    const kind = state & FRAME_KIND_MASK;
    if (kind === FrameKind.Free) continue;
    const compound = (state & FRAME_TAIL) !== 0 || (table.order[pfn]! & ORDER_MASK) > 0;
    if (compound) {
      // isolate_migratepages_block (mm/compaction.c, 5.6 to 6.18): with cc->alloc_contig a
      // compound LRU page is isolated whole; the range is pageblock aligned, so a THP's head
      // comes first. A compound non-LRU page (a balloon block kept whole) is never isolated.
      const head = (state & FRAME_TAIL) === 0 ? thpHeadOf(table, pfn) : NO_PFN;
      if (head !== pfn) {
        memory.events[VmEvent.pgmigrate_fail]!++;
        return CONTIG_EBUSY;
      }
      const rc = migrateThp(memory, pfn, gfp, startPfn, endPfn, stats);
      if (rc !== CONTIG_OK) return rc;
      pfn += HPAGE_PMD_NR - 1;
      continue;
    }
    if (!isMovableKind(kind)) {
      memory.events[VmEvent.pgmigrate_fail]!++;
      return CONTIG_EBUSY;
    }
    if (kind === FrameKind.PageCache) {
      reclaimCleanPage(memory, pfn);
      stats.reclaimedPages++;
      continue;
    }
    const rc = migrateBasePage(memory, pfn, gfp, startPfn, endPfn, stats);
    if (rc !== CONTIG_OK) return rc;
  }
  return CONTIG_OK;
}

/**
 * One order-0 page through unmap_and_move with alloc_migration_target's page: -ENOMEM when the
 * allocator has none (migrate_pages bails out, counting the page in pgmigrate_fail).
 */
function migrateBasePage(
  memory: GuestMemory,
  pfn: number,
  gfp: number,
  startPfn: number,
  endPfn: number,
  stats: ContigRangeStats,
): number {
  const target = allocPages(memory, gfp, 0);
  if (target === NO_PFN) {
    memory.events[VmEvent.pgmigrate_fail]!++;
    return CONTIG_ENOMEM;
  }
  assertOutsideRange(target, 1, startPfn, endPfn);
  stats.targetAllocations++;
  stats.targetPages++;
  // The source goes to the isolate lists: its pageblock is isolated.
  migrateFolio(memory, pfn, target, 0);
  stats.migratedPages++;
  return CONTIG_OK;
}

/** The isolated range is never a migration target (MIGRATE_ISOLATE pageblocks). */
function assertOutsideRange(target: number, pages: number, startPfn: number, endPfn: number): void {
  assert(target + pages <= startPfn || target >= endPfn, () => {
    return `migration target ${target} inside the isolated range ${startPfn}-${endPfn}`;
  });
}

/**
 * Models migrate_pages (mm/migrate.c) on one anonymous THP of an alloc_contig_range range:
 * 6.12+ first split a partially mapped THP on the deferred split queue (migrate_pages_batch);
 * otherwise alloc_migration_target asks for a new THP and migrateFolio moves the whole folio
 * (the mapping and THP state go with it, thp.ts thpMigrate). When that allocation fails
 * (-ENOMEM) the THP is split (try_split_thp, 6.1: nr_thp_failed and nr_thp_split, no
 * pgmigrate_fail) and its still-mapped pages migrate as order-0 pages.
 */
function migrateThp(
  memory: GuestMemory,
  headPfn: number,
  gfp: number,
  startPfn: number,
  endPfn: number,
  stats: ContigRangeStats,
): number {
  const thpState = thpStateOf(memory);
  assert(thpState !== undefined, () => `THP ${headPfn} without a THP state`);
  if (memory.rules.migrateSplitsPartiallyMappedThp && thpPartiallyMappedQueued(thpState, headPfn)) {
    return migrateSplitThp(memory, thpState, headPfn, gfp, startPfn, endPfn, stats);
  }
  const target = allocPages(memory, thpMigrationGfp(memory, gfp), HPAGE_PMD_ORDER);
  if (target === NO_PFN) {
    return migrateSplitThp(memory, thpState, headPfn, gfp, startPfn, endPfn, stats);
  }
  assertOutsideRange(target, HPAGE_PMD_NR, startPfn, endPfn);
  stats.targetAllocations++;
  stats.targetPages += HPAGE_PMD_NR;
  migrateFolio(memory, headPfn, target, HPAGE_PMD_ORDER);
  stats.migratedPages += HPAGE_PMD_NR;
  stats.thpMigrated++;
  return CONTIG_OK;
}

/**
 * The subpage (0..511) migrate_pages retries at `step` after splitting a THP, per version
 * (kernel_version.ts thpSplitRetryOrder): 5.6 the head, then the tails 511..1; 6.1 the tails
 * 511..1, then the head; 6.15+ the tails 1..511, then the head.
 */
function splitRetrySubpage(memory: GuestMemory, step: number): number {
  switch (memory.rules.thpSplitRetryOrder) {
    case "head-then-tails-down":
      return step === 0 ? 0 : HPAGE_PMD_NR - step;
    case "tails-down-then-head":
      return HPAGE_PMD_NR - 1 - step;
    case "tails-up-then-head":
      return step === HPAGE_PMD_NR - 1 ? 0 : step + 1;
  }
}

/**
 * Models the split branch of migrate_pages: split_huge_page frees the unmapped subpages (onto
 * the isolate lists), then the mapped ones migrate one by one, the first failed allocation
 * ending the range with -ENOMEM.
 */
function migrateSplitThp(
  memory: GuestMemory,
  thpState: ThpState,
  headPfn: number,
  gfp: number,
  startPfn: number,
  endPfn: number,
  stats: ContigRangeStats,
): number {
  const table = memory.table;
  const owner = memory.owners.owners[table.link0[headPfn]!];
  assert(owner !== undefined, () => `THP ${headPfn} has no owner`);
  const firstIndex = table.link1[headPfn]!;
  splitThpForMigration(memory, thpState, headPfn);
  stats.thpSplit++;
  for (let step = 0; step < HPAGE_PMD_NR; step++) {
    const page = splitRetrySubpage(memory, step);
    const pfn = headPfn + page;
    // A subpage nobody mapped was freed by the split.
    if (owner.pages[firstIndex + page] !== pfn) continue;
    const rc = migrateBasePage(memory, pfn, gfp, startPfn, endPfn, stats);
    if (rc !== CONTIG_OK) return rc;
  }
  return CONTIG_OK;
}

/**
 * Models reclaim_clean_pages_from_list (mm/vmscan.c): a clean, unmapped-or-unmappable file
 * page is dropped from its file instead of being migrated (shrink_folio_list, may_unmap).
 */
function reclaimCleanPage(memory: GuestMemory, pfn: number): void {
  const table = memory.table;
  const owner = memory.owners.owners[table.link0[pfn]!];
  assert(owner !== undefined, () => `page cache pfn ${pfn} has no owner`);
  const index = table.link1[pfn]!;
  assert(owner.pages[index] === pfn, () => `owner ${owner.id} does not map pfn ${pfn}`);
  owner.pages[index] = NO_PFN;
  owner.residentPages--;
  freePages(memory, pfn, 0);
}

// ---------------------------------------------------------------------------------------------
// Taking the range.

/** Models test_pages_isolated: every frame of the range is in a free block on the buddy lists. */
function testPagesIsolated(table: FrameTable, startPfn: number, endPfn: number): boolean {
  let pfn = startPfn;
  while (pfn < endPfn) {
    if ((table.state[pfn]! & FRAME_BUDDY) === 0) return false;
    pfn += 1 << (table.order[pfn]! & ORDER_MASK);
  }
  return pfn === endPfn;
}

/**
 * Models isolate_freepages_range for a range test_pages_isolated accepted: every free block
 * leaves its list and its frames become the caller's (FrameKind.Reserved here).
 */
function takeFreePages(table: FrameTable, zone: Zone, startPfn: number, endPfn: number): void {
  let pfn = startPfn;
  while (pfn < endPfn) {
    const order = table.order[pfn]! & ORDER_MASK;
    delFromFreeList(table, zone, pfn);
    table.state.fill(FrameKind.Reserved, pfn, pfn + (1 << order));
    table.order[pfn] = 0;
    pfn += 1 << order;
  }
}
