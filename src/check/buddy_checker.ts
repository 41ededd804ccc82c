// An independent checker of the guest's memory: it rebuilds the free lists, per-cpu lists,
// counters and ownership from the frame table alone and compares them with the allocator's own
// bookkeeping. It reports the first problems found, each naming the pfn and both values (the
// kernel's bad_reason style). O(frames): tests and --paranoid runs switch it on.

import { MIGRATE_TYPES, NR_PAGE_ORDERS } from "../core/limits.ts";
import {
  FRAME_BUDDY,
  FRAME_KIND_MASK,
  FRAME_PCP,
  FRAME_TAIL,
  FrameKind,
  type FrameTable,
  NO_PFN,
  ORDER_MASK,
  ORDER_MT_SHIFT,
} from "../guest/frame_table.ts";
import type { GuestMemory } from "../guest/guest_memory.ts";
import type { PcpSet } from "../guest/pcp.ts";
import type { Zone } from "../guest/zone.ts";

const PROBLEMS_MAX = 20;

/** Covered-frame marks in the scratch array. */
const COVER_NONE = 0;
const COVER_BUDDY = 1;
const COVER_PCP = 2;

class Problems {
  readonly list: string[] = [];
  add(text: string): void {
    if (this.list.length < PROBLEMS_MAX) this.list.push(text);
  }
}

/** Walks one buddy free list, marking covered frames; checks links, flags and order. */
function checkFreeList(
  table: FrameTable,
  zone: Zone,
  order: number,
  mt: number,
  cover: Uint8Array,
  problems: Problems,
): { blocks: number } {
  const index = order * MIGRATE_TYPES + mt;
  let pfn = zone.freeArea.head[index]!;
  let prev = NO_PFN;
  let blocks = 0;
  const blocksMax = (zone.endPfn - zone.startPfn) >> order;
  while (pfn !== NO_PFN && blocks <= blocksMax) {
    const where = `zone ${zone.name} order ${order} mt ${mt} pfn ${pfn}`;
    if (pfn < zone.startPfn || pfn + (1 << order) > zone.endPfn)
      problems.add(`${where}: outside zone`);
    if ((pfn & ((1 << order) - 1)) !== 0) problems.add(`${where}: not aligned to its order`);
    if ((table.state[pfn]! & FRAME_BUDDY) === 0)
      problems.add(`${where}: on a free list without PageBuddy`);
    const orderByte = table.order[pfn]!;
    if ((orderByte & ORDER_MASK) !== order)
      problems.add(`${where}: order byte says ${orderByte & ORDER_MASK}`);
    if (orderByte >>> ORDER_MT_SHIFT !== mt)
      problems.add(`${where}: list type byte says ${orderByte >>> ORDER_MT_SHIFT}`);
    if (table.link1[pfn] !== prev)
      problems.add(`${where}: prev link ${table.link1[pfn]} expected ${prev}`);
    for (let i = 0; i < 1 << order; i++) {
      const frame = pfn + i;
      if (cover[frame] !== COVER_NONE) problems.add(`pfn ${frame}: in two free blocks (${where})`);
      cover[frame] = COVER_BUDDY;
      if ((table.state[frame]! & FRAME_KIND_MASK) !== FrameKind.Free) {
        problems.add(`pfn ${frame}: inside free block (${where}) but owned`);
      }
    }
    blocks++;
    prev = pfn;
    pfn = table.link0[pfn]!;
  }
  if (blocks > blocksMax)
    problems.add(`zone ${zone.name} order ${order} mt ${mt}: list has a cycle`);
  if (zone.freeArea.tail[index] !== prev)
    problems.add(
      `zone ${zone.name} order ${order} mt ${mt}: tail ${zone.freeArea.tail[index]} expected ${prev}`,
    );
  if (zone.freeArea.count[index] !== blocks)
    problems.add(
      `zone ${zone.name} order ${order} mt ${mt}: count ${zone.freeArea.count[index]} but list holds ${blocks}`,
    );
  return { blocks };
}

function checkPcp(
  table: FrameTable,
  zone: Zone,
  set: PcpSet,
  cover: Uint8Array,
  problems: Problems,
): void {
  let pages = 0;
  for (let index = 0; index < set.head.length; index++) {
    let pfn = set.head[index]!;
    let prev = NO_PFN;
    let guard = 0;
    while (pfn !== NO_PFN && guard <= zone.endPfn - zone.startPfn) {
      const order = table.order[pfn]! & ORDER_MASK;
      if ((table.state[pfn]! & FRAME_PCP) === 0)
        problems.add(`pcp ${zone.name} pfn ${pfn}: on a pcp list without the pcp flag`);
      if (table.link1[pfn] !== prev) problems.add(`pcp ${zone.name} pfn ${pfn}: prev link broken`);
      for (let i = 0; i < 1 << order; i++) {
        if (cover[pfn + i] !== COVER_NONE)
          problems.add(`pfn ${pfn + i}: on a pcp list and elsewhere`);
        cover[pfn + i] = COVER_PCP;
      }
      pages += 1 << order;
      prev = pfn;
      pfn = table.link0[pfn]!;
      guard++;
    }
    if (set.tail[index] !== prev) problems.add(`pcp ${zone.name} list ${index}: tail broken`);
  }
  if (pages !== set.count)
    problems.add(`pcp ${zone.name}: count ${set.count} but lists hold ${pages}`);
}

function checkZoneLists(
  memory: GuestMemory,
  zone: Zone,
  cover: Uint8Array,
  problems: Problems,
): void {
  const table = memory.table;
  let freePages = 0;
  for (let order = 0; order < NR_PAGE_ORDERS; order++) {
    let blocksAtOrder = 0;
    for (let mt = 0; mt < MIGRATE_TYPES; mt++) {
      blocksAtOrder += checkFreeList(table, zone, order, mt, cover, problems).blocks;
    }
    if (zone.freeArea.nrFree[order] !== blocksAtOrder) {
      problems.add(
        `zone ${zone.name} order ${order}: nr_free ${zone.freeArea.nrFree[order]} but lists hold ${blocksAtOrder}`,
      );
    }
    freePages += blocksAtOrder << order;
  }
  if (zone.freePages !== freePages)
    problems.add(`zone ${zone.name}: NR_FREE_PAGES ${zone.freePages} but lists hold ${freePages}`);
}

/** Every frame: free ones covered by a list, owned ones mapped back by their owner. */
function checkFrames(memory: GuestMemory, zone: Zone, cover: Uint8Array, problems: Problems): void {
  const table = memory.table;
  let owned = 0;
  let free = 0;
  let balloonFrames = 0;
  for (let pfn = zone.startPfn; pfn < zone.endPfn; pfn++) {
    const state = table.state[pfn]!;
    const kind = state & FRAME_KIND_MASK;
    if (kind === FrameKind.Reserved) continue;
    if (kind === FrameKind.Free) {
      free++;
      if (cover[pfn] === COVER_NONE) problems.add(`pfn ${pfn}: free but on no list (leaked)`);
      continue;
    }
    owned++;
    if ((state & FRAME_BUDDY) !== 0) problems.add(`pfn ${pfn}: owned and marked PageBuddy`);
    if (kind === FrameKind.Balloon) {
      balloonFrames++;
      continue;
    }
    const owner = memory.owners.owners[table.link0[pfn]!];
    if (owner === undefined) {
      problems.add(`pfn ${pfn}: owner id ${table.link0[pfn]} does not exist`);
      continue;
    }
    const mapped = owner.pages[table.link1[pfn]!];
    const compound = (state & FRAME_TAIL) !== 0 || (table.order[pfn]! & ORDER_MASK) > 0;
    // A subpage unmapped from a THP waiting for its split is still allocated, while its index
    // may already be unmapped or refaulted (the kernel's stale page->mapping).
    if (mapped !== pfn && !compound) {
      problems.add(`pfn ${pfn}: owner ${owner.name} index ${table.link1[pfn]} maps ${mapped}`);
    }
  }
  const zonePcp = memory.pcp[memory.zones.indexOf(zone)]!;
  let pcpPages = 0;
  for (const set of zonePcp) pcpPages += set.count;
  // adjust_managed_page_count: an unmanaged balloon's pages left the zone's managed pages.
  const unmanaged = memory.balloonList?.unmanaged === true ? balloonFrames : 0;
  if (owned + free !== zone.managedPages + unmanaged) {
    problems.add(
      `zone ${zone.name}: managed ${zone.managedPages} + ${unmanaged} ballooned but frames hold ` +
        `${owned} owned + ${free} free`,
    );
  }
  if (free !== zone.freePages + pcpPages) {
    problems.add(
      `zone ${zone.name}: ${free} free frames but ${zone.freePages} in buddy + ${pcpPages} on pcp`,
    );
  }
}

/** Checks everything; returns the problems found (empty when the state is consistent). */
export function checkGuestMemory(memory: GuestMemory): string[] {
  const problems = new Problems();
  const cover = new Uint8Array(memory.table.frameCount);
  memory.zones.forEach((zone, index) => {
    checkZoneLists(memory, zone, cover, problems);
    for (const set of memory.pcp[index]!) checkPcp(memory.table, zone, set, cover, problems);
    checkFrames(memory, zone, cover, problems);
  });
  checkBalloonLists(memory, problems);
  let buddyHeads = 0;
  for (let pfn = 0; pfn < memory.table.frameCount; pfn++) {
    if ((memory.table.state[pfn]! & FRAME_BUDDY) !== 0) buddyHeads++;
  }
  let listed = 0;
  for (const zone of memory.zones) for (const count of zone.freeArea.count) listed += count;
  if (buddyHeads !== listed)
    problems.add(`${buddyHeads} PageBuddy heads but ${listed} listed blocks`);
  return problems.list;
}

/**
 * The balloon's lists (balloon_dev_info.pages per order): every head on its order's list once,
 * links consistent, tails pointing at their head, counts matching, every balloon frame covered.
 */
function checkBalloonLists(memory: GuestMemory, problems: Problems): void {
  const list = memory.balloonList;
  const table = memory.table;
  let framesListed = 0;
  if (list !== undefined) {
    for (let order = 0; order < NR_PAGE_ORDERS; order++) {
      let previous = NO_PFN;
      let blocks = 0;
      for (let pfn = list.head[order]!; pfn !== NO_PFN; pfn = table.link0[pfn]!) {
        const state = table.state[pfn]!;
        if ((state & FRAME_KIND_MASK) !== FrameKind.Balloon || (state & FRAME_TAIL) !== 0) {
          problems.add(`balloon list ${order}: pfn ${pfn} is not a balloon head`);
          return;
        }
        if ((table.order[pfn]! & ORDER_MASK) !== order)
          problems.add(`balloon list ${order}: pfn ${pfn} has order ${table.order[pfn]}`);
        if (table.link1[pfn] !== previous)
          problems.add(`balloon pfn ${pfn}: prev ${table.link1[pfn]} but came from ${previous}`);
        for (let page = 1; page < 1 << order; page++) {
          if (table.link0[pfn + page] !== pfn || (table.state[pfn + page]! & FRAME_TAIL) === 0)
            problems.add(`balloon pfn ${pfn + page}: not a tail of ${pfn}`);
        }
        previous = pfn;
        blocks++;
        framesListed += 1 << order;
        if (blocks > list.blockCount[order]!) break;
      }
      if (blocks !== list.blockCount[order])
        problems.add(
          `balloon list ${order}: ${blocks} blocks but counted ${list.blockCount[order]}`,
        );
    }
    if (framesListed !== list.pageCount)
      problems.add(`balloon: ${framesListed} pages listed but num_pages ${list.pageCount}`);
  }
  let balloonFrames = 0;
  for (let pfn = 0; pfn < table.frameCount; pfn++) {
    if ((table.state[pfn]! & FRAME_KIND_MASK) === FrameKind.Balloon) balloonFrames++;
  }
  if (balloonFrames !== framesListed)
    problems.add(`${balloonFrames} balloon frames but ${framesListed} on the balloon lists`);
}
