// The guest's virtio-balloon driver (drivers/virtio/virtio_balloon.c, mm/balloon_compaction.c):
// inflate (fill_balloon), deflate (leak_balloon), balloon compaction and deflate-on-OOM, with
// the allocation side of every proposal from the 2020 thread as a BalloonAllocPolicy.
//
// Theory of operation. The device's target is QEMU's (num_pages, the guest's logical size
// subtracted from its RAM); update_balloon_size_func calls fill_balloon or leak_balloon with the
// difference, at most VIRTIO_BALLOON_ARRAY_PFNS_MAX entries per request, and requeues itself
// until the difference is gone. One round here is one such call: it allocates (or dequeues)
// blocks, builds one request and hands it to `tellHost`, which the virtio layer connects to
// QEMU's device; a deflate tells the host before the pages are freed (MUST_TELL_HOST order).
// When an allocation fails the round stops ("Out of puff!") and the caller waits 200 ms
// before the next one (fill_balloon's msleep(200)).
//
// Linux's driver allocates order-0 movable pages (balloon_page_alloc). The proposals differ in
// the orders they try, the GFP flags per order, whether blocks are split into order-0 balloon
// pages (Zhu's cont-pages) or kept whole, and the request format; BalloonAllocPolicy carries
// exactly those choices and src/policies/ defines one per proposal.
//
// Left out: the stats queue and free page hinting (QEMU uses hints only for migration).

import { assert } from "../core/assert.ts";
import { NR_PAGE_ORDERS } from "../core/limits.ts";
import {
  type BalloonList,
  balloonListPop,
  balloonListPush,
  balloonListRemove,
  createBalloonList,
} from "./balloon_list.ts";
import { FrameKind, NO_PFN } from "./frame_table.ts";
import { type GuestMemory, zoneOfPfn } from "./guest_memory.ts";
import { allocPages, freePages } from "./page_alloc.ts";
import { VmEvent } from "./vm_event.ts";

/** VIRTIO_BALLOON_ARRAY_PFNS_MAX (drivers/virtio/virtio_balloon.c): entries per request. */
export const VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256;
/** VIRTIO_BALLOON_OOM_NR_PAGES (drivers/virtio/virtio_balloon.c): pages freed per OOM call. */
export const VIRTIO_BALLOON_OOM_NR_PAGES = 256;
/** fill_balloon's msleep(200) after a failed allocation ("Out of puff!"). */
export const BALLOON_RETRY_DELAY_MS = 200;

/** How a request names memory: 4 KiB PFNs, (pfn, order) pairs, or (address, length) ranges. */
export type BalloonRequestFormat = "pfn" | "pfnOrder" | "range";

/** The allocation side of a balloon proposal. */
export interface BalloonAllocPolicy {
  readonly name: string;
  /** Highest order tried; a round starts at the driver's current order, reset to this. */
  readonly orderMax: number;
  /** Lowest order tried: below it the round is out of puff. */
  readonly orderMin: number;
  /** Orders tried: every order from max down to min, or max then min only. */
  readonly orderSteps: "descending" | "maxThenMin";
  /** GFP flags for an allocation of `order`. */
  gfpForOrder(order: number): number;
  /** Blocks become order-0 movable balloon pages after allocation (split_page). */
  readonly splitToBasePages: boolean;
  /** A round that got pages at one order stops when that order fails (Zhu v4 fill_balloon). */
  readonly singleOrderPerRound: boolean;
  readonly requestFormat: BalloonRequestFormat;
}

/** One virtqueue request: entries of (pfn, pages), preallocated and reused. */
export interface BalloonRequest {
  inflate: boolean;
  entryCount: number;
  readonly entryPfn: Int32Array;
  readonly entryPages: Int32Array;
  /** The blocks behind the entries (the driver frees them after a deflate). */
  blockCount: number;
  readonly blockPfn: Int32Array;
  readonly blockOrder: Uint8Array;
}

export interface BalloonDriver {
  readonly memory: GuestMemory;
  readonly policy: BalloonAllocPolicy;
  readonly list: BalloonList;
  /** VIRTIO_BALLOON_F_DEFLATE_ON_OOM negotiated. */
  readonly deflateOnOom: boolean;
  /** The order the next inflate round starts at (Zhu v4's current_pages_order). */
  currentOrder: number;
  readonly request: BalloonRequest;
  /** Rounds that stopped because an allocation failed. */
  outOfPuffCount: number;
}

export type TellHost = (request: BalloonRequest) => void;

export interface BalloonRound {
  /** Pages added to (inflate) or removed from (deflate) the balloon. */
  pages: number;
  /** An allocation failed: wait BALLOON_RETRY_DELAY_MS before the next round. */
  outOfPuff: boolean;
}

export function createBalloonDriver(
  memory: GuestMemory,
  policy: BalloonAllocPolicy,
  deflateOnOom: boolean,
): BalloonDriver {
  assert(memory.balloonList === undefined, "the guest already has a balloon");
  assert(policy.orderMin >= 0 && policy.orderMax < NR_PAGE_ORDERS, "policy orders out of range");
  assert(policy.orderMin <= policy.orderMax, "policy orderMin above orderMax");
  const list = createBalloonList(!deflateOnOom);
  memory.balloonList = list;
  return {
    memory,
    policy,
    list,
    deflateOnOom,
    currentOrder: policy.orderMax,
    request: createBalloonRequest(),
    outOfPuffCount: 0,
  };
}

function createBalloonRequest(): BalloonRequest {
  return {
    inflate: true,
    entryCount: 0,
    entryPfn: new Int32Array(VIRTIO_BALLOON_ARRAY_PFNS_MAX),
    entryPages: new Int32Array(VIRTIO_BALLOON_ARRAY_PFNS_MAX),
    blockCount: 0,
    blockPfn: new Int32Array(VIRTIO_BALLOON_ARRAY_PFNS_MAX),
    blockOrder: new Uint8Array(VIRTIO_BALLOON_ARRAY_PFNS_MAX),
  };
}

function resetRequest(request: BalloonRequest, inflate: boolean): void {
  request.inflate = inflate;
  request.entryCount = 0;
  request.blockCount = 0;
}

/** Adds a block; the "range" format merges it into the previous entry when they touch. */
function requestAdd(driver: BalloonDriver, pfn: number, order: number): void {
  const request = driver.request;
  const pages = 1 << order;
  request.blockPfn[request.blockCount] = pfn;
  request.blockOrder[request.blockCount] = order;
  request.blockCount++;
  const last = request.entryCount - 1;
  const merge = driver.policy.requestFormat === "range" && last >= 0;
  if (merge && request.entryPfn[last]! + request.entryPages[last]! === pfn) {
    request.entryPages[last]! += pages;
    return;
  }
  if (driver.policy.requestFormat === "pfn") {
    assert(order === 0, "the PFN format carries 4 KiB pages only");
  }
  request.entryPfn[request.entryCount] = pfn;
  request.entryPages[request.entryCount] = pages;
  request.entryCount++;
}

/** The next order a round tries after `order` failed or was too large, or -1. */
function nextLowerOrder(policy: BalloonAllocPolicy, order: number): number {
  if (order <= policy.orderMin) return -1;
  return policy.orderSteps === "maxThenMin" ? policy.orderMin : order - 1;
}

/** Pages leave (or return to) managed memory: adjust_managed_page_count without DEFLATE_ON_OOM. */
function adjustManaged(driver: BalloonDriver, pfn: number, pages: number): void {
  if (!driver.list.unmanaged) return;
  const zone = zoneOfPfn(driver.memory, pfn);
  assert(zone !== undefined, () => `balloon pfn ${pfn} outside every zone`);
  zone.managedPages += pages;
}

/**
 * Models fill_balloon (and the proposals' fill_balloon_order): allocate up to `diffPages` in at
 * most VIRTIO_BALLOON_ARRAY_PFNS_MAX blocks, enqueue them, then tell the host.
 */
export function fillBalloon(
  driver: BalloonDriver,
  diffPages: number,
  tellHost: TellHost,
): BalloonRound {
  const { memory, policy, request } = driver;
  resetRequest(request, true);
  let remaining = diffPages;
  let order = driver.currentOrder;
  let outOfPuff = false;
  while (remaining > 0 && request.blockCount < VIRTIO_BALLOON_ARRAY_PFNS_MAX && order >= 0) {
    if (1 << order > remaining) {
      // Zhu v4: "if (num < (1 << order)) continue; ... if (got > 0) break;".
      if (policy.singleOrderPerRound && request.blockCount > 0) break;
      order = nextLowerOrder(policy, order);
      continue;
    }
    const pfn = allocPages(memory, policy.gfpForOrder(order), order);
    if (pfn === NO_PFN) {
      const lower = nextLowerOrder(policy, order);
      if (lower < 0 || (policy.singleOrderPerRound && request.blockCount > 0)) {
        outOfPuff = lower < 0;
        if (lower >= 0) driver.currentOrder = lower;
        break;
      }
      driver.currentOrder = lower;
      order = lower;
      continue;
    }
    enqueueBlock(driver, pfn, order);
    requestAdd(driver, pfn, order);
    remaining -= 1 << order;
  }
  if (outOfPuff) driver.outOfPuffCount++;
  const pages = diffPages - remaining;
  if (remaining === 0) driver.currentOrder = policy.orderMax;
  if (request.entryCount > 0) tellHost(request);
  return { pages, outOfPuff };
}

/** Zeroes (init_on_alloc), then balloon_page_enqueue (whole, or split_page into order 0). */
function enqueueBlock(driver: BalloonDriver, pfn: number, order: number): void {
  const { memory, list } = driver;
  const pages = 1 << order;
  // post_alloc_hook → kernel_init_pages: init_on_alloc zeroes the pages, a write the host sees.
  if (memory.config.initOnAlloc) memory.onTouch?.(pfn, pages);
  if (driver.policy.splitToBasePages) {
    for (let page = 0; page < pages; page++) balloonListPush(memory.table, list, pfn + page, 0);
  } else {
    balloonListPush(memory.table, list, pfn, order);
  }
  adjustManaged(driver, pfn, -pages);
  memory.events[VmEvent.balloon_inflate]! += pages;
}

/** The lowest order with balloon blocks, or -1. */
function lowestListOrder(list: BalloonList): number {
  for (let order = 0; order < NR_PAGE_ORDERS; order++) {
    if (list.blockCount[order]! > 0) return order;
  }
  return -1;
}

/** Splits a whole balloon block into order-0 balloon pages (they become movable). */
function splitBalloonBlock(driver: BalloonDriver, pfn: number): void {
  const { memory, list } = driver;
  const order = balloonListRemove(memory.table, list, pfn);
  for (let page = (1 << order) - 1; page >= 0; page--) {
    balloonListPush(memory.table, list, pfn + page, 0);
  }
}

/**
 * Models leak_balloon: dequeue up to `diffPages` (lowest order first: Linux only has order 0;
 * Duyck's proposal deflates small blocks first), tell the host, then free the pages. A block
 * larger than what is left to deflate is split into order-0 balloon pages first.
 */
export function leakBalloon(
  driver: BalloonDriver,
  diffPages: number,
  tellHost: TellHost,
): BalloonRound {
  const { memory, list, request } = driver;
  resetRequest(request, false);
  let remaining = Math.min(diffPages, list.pageCount);
  while (remaining > 0 && request.blockCount < VIRTIO_BALLOON_ARRAY_PFNS_MAX) {
    const order = lowestListOrder(list);
    assert(order >= 0, "balloon lists empty while pages are counted");
    if (1 << order > remaining) {
      splitBalloonBlock(driver, list.head[order]!);
      continue;
    }
    const pfn = balloonListPop(memory.table, list, order);
    requestAdd(driver, pfn, order);
    remaining -= 1 << order;
  }
  if (request.entryCount > 0) tellHost(request);
  let pages = 0;
  for (let block = 0; block < request.blockCount; block++) {
    const pfn = request.blockPfn[block]!;
    const count = 1 << request.blockOrder[block]!;
    adjustManaged(driver, pfn, count);
    freePages(memory, pfn, request.blockOrder[block]!);
    memory.events[VmEvent.balloon_deflate]! += count;
    pages += count;
  }
  return { pages, outOfPuff: false };
}

/**
 * Models virtballoon_migratepage: the new page joins the list at the head (balloon_page_insert),
 * the host is told inflate(new) then deflate(old), and managed pages follow the page between
 * zones. The caller (compaction's move) frees the old page.
 */
export function balloonMigratePage(
  memory: GuestMemory,
  sourcePfn: number,
  targetPfn: number,
): void {
  const list = memory.balloonList;
  assert(list !== undefined, () => `balloon pfn ${sourcePfn} but the guest has no balloon`);
  const order = balloonListRemove(memory.table, list, sourcePfn);
  assert(order === 0, () => `balloon block ${sourcePfn} of order ${order} is not movable`);
  memory.table.state[sourcePfn] = FrameKind.Free;
  // compaction_alloc's pages pass post_alloc_hook: init_on_alloc zeroes the new page.
  if (memory.config.initOnAlloc) memory.onTouch?.(targetPfn, 1);
  balloonListPush(memory.table, list, targetPfn, 0);
  if (list.unmanaged) {
    zoneOfPfn(memory, sourcePfn)!.managedPages++;
    zoneOfPfn(memory, targetPfn)!.managedPages--;
  }
  memory.events[VmEvent.balloon_migrate]!++;
  memory.onBalloonMigrate?.(sourcePfn, targetPfn);
}
