// Moving an allocated folio to new frames (mm/migrate.c): what compaction's migrate_pages and
// alloc_contig_range do once a target is found. The reverse map (owner id and index in the
// frame table's link words) finds the owner's page table entry to update; balloon pages go
// through their driver's migratepage callback instead.

import { assert } from "../core/assert.ts";
import { balloonMigratePage } from "./balloon_driver.ts";
import { FRAME_KIND_MASK, FrameKind } from "./frame_table.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { freePages } from "./page_alloc.ts";
import { VmEvent } from "./vm_event.ts";

/**
 * Models a successful migrate_folio (mm/migrate.c, move_to_new_folio and
 * remove_migration_ptes), for compaction and alloc_contig_range alike: the target frames take the source's kind,
 * order and reverse map, the owner's page table points at the target, balloon pages tell the
 * driver (virtballoon_migratepage), and the source is freed like any put_page.
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
    assert(owner.pages[index] === source, () => `owner ${owner.id} does not map pfn ${source}`);
    table.state[target] = table.state[source]!;
    table.order[target] = table.order[source]!;
    table.link0[target] = table.link0[source]!;
    table.link1[target] = index;
    owner.pages[index] = target;
  }
  freePages(memory, sourcePfn, order);
  memory.events[VmEvent.pgmigrate_success]! += count;
}
