// The balloon's page lists (struct balloon_dev_info, include/linux/balloon_compaction.h).
//
// Theory of operation. The kernel keeps balloon pages on one list through page->lru:
// balloon_page_enqueue and balloon_page_insert add at the head, balloon_page_dequeue takes from
// the head, so deflation is LIFO and a page moved by compaction (balloon_page_migrate inserts
// the new page) is the next to go. The model uses the frame table's link words the same way:
// a balloon block's head frame links to the next and previous heads (link0, link1), so the
// lists cost no memory beyond the frame table. The proposals in the thread keep blocks larger
// than 4 KiB (Duyck: "two balloon lists, 4 KiB and 2 MiB"), so there is one list per order;
// Linux's driver only ever uses the order-0 list.
//
// Frames of a balloon block: the head has kind Balloon and the block's order; the others are
// Balloon | PageTail. Only order-0 balloon pages are movable (balloon_mops); larger blocks are
// compound pages that compaction steps over.
//
// Pages taken out of managed memory: without VIRTIO_BALLOON_F_DEFLATE_ON_OOM the driver calls
// adjust_managed_page_count(page, -1) for each page it inflates (drivers/virtio/
// virtio_balloon.c, set_page_pfns/release_pages_balloon), so MemTotal shrinks as the balloon
// grows; `unmanaged` records which way this balloon counts.

import { assert } from "../core/assert.ts";
import { NR_PAGE_ORDERS } from "../core/limits.ts";
import {
  FRAME_KIND_MASK,
  FRAME_TAIL,
  FrameKind,
  type FrameTable,
  NO_PFN,
  ORDER_MASK,
} from "./frame_table.ts";

export interface BalloonList {
  /** Head pfn of the list of blocks of each order (NO_PFN when empty). */
  readonly head: Int32Array;
  /** Blocks on each order's list. */
  readonly blockCount: Float64Array;
  /** Pages (4 KiB) in the balloon: vb->num_pages. */
  pageCount: number;
  /** Balloon pages are removed from managed pages (no DEFLATE_ON_OOM). */
  readonly unmanaged: boolean;
}

export function createBalloonList(unmanaged: boolean): BalloonList {
  return {
    head: new Int32Array(NR_PAGE_ORDERS).fill(NO_PFN),
    blockCount: new Float64Array(NR_PAGE_ORDERS),
    pageCount: 0,
    unmanaged,
  };
}

/**
 * Models balloon_page_enqueue/balloon_page_insert (mm/balloon_compaction.c): mark the block's
 * frames as balloon pages and add its head at the head of its order's list.
 */
export function balloonListPush(
  table: FrameTable,
  list: BalloonList,
  pfn: number,
  order: number,
): void {
  assert(order >= 0 && order < NR_PAGE_ORDERS, () => `balloon order ${order} out of range`);
  const count = 1 << order;
  table.state[pfn] = FrameKind.Balloon;
  table.order[pfn] = order;
  for (let page = 1; page < count; page++) {
    table.state[pfn + page] = FrameKind.Balloon | FRAME_TAIL;
    table.order[pfn + page] = 0;
    table.link0[pfn + page] = pfn;
    table.link1[pfn + page] = page;
  }
  const next = list.head[order]!;
  table.link0[pfn] = next;
  table.link1[pfn] = NO_PFN;
  if (next !== NO_PFN) table.link1[next] = pfn;
  list.head[order] = pfn;
  list.blockCount[order]!++;
  list.pageCount += count;
}

/** Unlinks a balloon block from its list (list_del); its frames keep their kind. */
export function balloonListRemove(table: FrameTable, list: BalloonList, pfn: number): number {
  assert(isBalloonHead(table, pfn), () => `pfn ${pfn} is not the head of a balloon block`);
  const order = table.order[pfn]! & ORDER_MASK;
  const next = table.link0[pfn]!;
  const previous = table.link1[pfn]!;
  if (previous === NO_PFN) list.head[order] = next;
  else table.link0[previous] = next;
  if (next !== NO_PFN) table.link1[next] = previous;
  list.blockCount[order]!--;
  list.pageCount -= 1 << order;
  return order;
}

/** Models balloon_page_dequeue: the block at the head of an order's list, or NO_PFN. */
export function balloonListPop(table: FrameTable, list: BalloonList, order: number): number {
  const pfn = list.head[order]!;
  if (pfn === NO_PFN) return NO_PFN;
  balloonListRemove(table, list, pfn);
  return pfn;
}

export function isBalloonHead(table: FrameTable, pfn: number): boolean {
  const state = table.state[pfn]!;
  return (state & FRAME_KIND_MASK) === FrameKind.Balloon && (state & FRAME_TAIL) === 0;
}
