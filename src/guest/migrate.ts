// Moving an allocated folio to new frames (mm/migrate.c): what compaction's migrate_pages and
// alloc_contig_range do once a target is found. The reverse map (owner id and index in the
// frame table's link words) finds the owner's page table entry to update; balloon pages go
// through their driver's migratepage callback instead; an anonymous THP also hands its THP state
// (PMD or PTE mapping) to the new head (thp.ts thpMigrate).

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_ORDER } from "../core/limits.ts";
import { balloonMigratePage } from "./balloon_driver.ts";
import { FRAME_KIND_MASK, FrameKind } from "./frame_table.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { freePages } from "./page_alloc.ts";
import { thpMigrate, thpStateOf } from "./thp.ts";
import { VmEvent } from "./vm_event.ts";

/**
 * Models a successful migrate_folio (mm/migrate.c, move_to_new_folio and
 * remove_migration_ptes), for compaction and alloc_contig_range alike: the target frames take
 * the source's kind, order and reverse map, the owner's page table points at the target (for a
 * compound folio only where it still maps the source: the unmapped subpages of a THP on the
 * deferred split queue stay unmapped), balloon pages tell the driver (virtballoon_migratepage),
 * a THP's state moves to the new head, and the source is freed like any put_page.
 * pgmigrate_success counts the folio's pages (migrate_pages: nr_succeeded += nr_subpages, 6.1),
 * or one per THP before 5.9 (nr_succeeded++, 5.6).
 */
export function migrateFolio(
  memory: GuestMemory,
  sourcePfn: number,
  targetPfn: number,
  order: number,
): void {
  const table = memory.table;
  if ((table.state[sourcePfn]! & FRAME_KIND_MASK) === FrameKind.Balloon) {
    balloonMigratePage(memory, sourcePfn, targetPfn);
    freePages(memory, sourcePfn, order);
    memory.events[VmEvent.pgmigrate_success]!++;
    return;
  }
  // The copy is a write of the target page.
  memory.onTouch?.(targetPfn, 2 ** order);
  const owner = memory.owners.owners[table.link0[sourcePfn]!];
  assert(owner !== undefined, () => `movable pfn ${sourcePfn} has no owner`);
  const count = 2 ** order;
  for (let page = 0; page < count; page++) {
    const source = sourcePfn + page;
    const target = targetPfn + page;
    const index = table.link1[source]!;
    const mapped = owner.pages[index] === source;
    assert(mapped || order > 0, () => `owner ${owner.id} does not map pfn ${source}`);
    table.state[target] = table.state[source]!;
    table.order[target] = table.order[source]!;
    table.link0[target] = table.link0[source]!;
    table.link1[target] = index;
    if (mapped) owner.pages[index] = target;
  }
  const thp = order === HPAGE_PMD_ORDER && owner.kind === FrameKind.Anon;
  if (thp) {
    const thpState = thpStateOf(memory);
    assert(thpState !== undefined, () => `THP ${sourcePfn} migrated without a THP state`);
    thpMigrate(thpState, sourcePfn, targetPfn);
  }
  freePages(memory, sourcePfn, order);
  const counted = thp && !memory.rules.thpMigrationCountsSubpages ? 1 : count;
  memory.events[VmEvent.pgmigrate_success]! += counted;
}
