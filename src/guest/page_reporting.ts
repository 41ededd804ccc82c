// Free page reporting (mm/page_reporting.c, v5.7, Alexander Duyck; page_reporting_order v5.14).
//
// Theory of operation. Freeing a block of at least page_reporting_order arms the reporting
// worker (page_reporting_notify_free, modelled in buddy.ts as zone.reportingRequested), which
// runs PAGE_REPORTING_DELAY (2 s) later. The worker walks every zone whose free memory is above
// LOW + (PAGE_REPORTING_CAPACITY << order), each order from the reporting order up and each
// migratetype but ISOLATE; it isolates unreported free blocks from the list heads into a
// scatterlist of PAGE_REPORTING_CAPACITY (32) entries, hands a full list to the device (the
// host discards each range), then puts the blocks back at the tail of their lists and marks
// those that did not merge as PageReported. Each pass reports at most about 1/16 of a list per
// order (the budget); when the budget runs out, the worker runs again 2 s later.
//
// State machine (page_reporting_request / page_reporting_process): IDLE → REQUESTED (armed,
// waiting for its delay) → ACTIVE (running) → IDLE, or REQUESTED again if asked during the
// run or out of budget.
//
// Isolation side effect: a block of at least pageblock_order - 1 turns its pageblocks MOVABLE
// (__isolate_free_page). Reported pages are allocated last (FPI_TO_TAIL on putback, v5.10+).
//
// Left out: the v5.7-5.9 putback order (this model's 6.1/6.18 guests have FPI_TO_TAIL; 5.6
// has no free page reporting at all).

import { assert } from "../core/assert.ts";
import { MAX_PAGE_ORDER, MIGRATE_ISOLATE, MIGRATE_TYPES, pageblock_order } from "../core/limits.ts";
import {
  FRAME_BUDDY,
  FRAME_REPORTED,
  type FrameTable,
  NO_PFN,
  ORDER_MASK,
  ORDER_MT_SHIFT,
} from "./frame_table.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { isolateFreePage, putbackIsolatedPage } from "./page_isolation.ts";
import { zoneWatermarkOk } from "./watermarks.ts";
import { freeListIndex, WMARK_LOW, type Zone } from "./zone.ts";

/** PAGE_REPORTING_CAPACITY (mm/page_reporting.h): scatterlist entries per report. */
export const PAGE_REPORTING_CAPACITY = 32;
/** PAGE_REPORTING_DELAY (mm/page_reporting.c): 2*HZ. */
export const PAGE_REPORTING_DELAY_MS = 2000;

export const PAGE_REPORTING_IDLE = 0;
export const PAGE_REPORTING_REQUESTED = 1;
export const PAGE_REPORTING_ACTIVE = 2;

/**
 * The device's report callback (prdev->report): the blocks of one scatterlist, each a (pfn,
 * order) pair. Returns 0 on success, as virtballoon_free_page_report does.
 */
export type PageReportCallback = (pfns: Int32Array, orders: Uint8Array, count: number) => number;

export interface PageReportingState {
  /** page_reporting_order. */
  readonly order: number;
  /** IDLE, REQUESTED or ACTIVE (prdev->state). */
  state: number;
  /** When the delayed work runs, in sim milliseconds (valid while REQUESTED). */
  runAtMs: number;
  /** The scatterlist: blocks isolated and not yet reported. */
  readonly sglPfn: Int32Array;
  readonly sglOrder: Uint8Array;
  sglCount: number;
  /** Reports sent and pages they carried, for reports and the cost model. */
  reportCount: number;
  reportedPages: number;
}

/** page_reporting_order a guest gets when nothing sets it: pageblock_order (v5.7 and later). */
export function defaultReportingOrder(): number {
  return pageblock_order;
}

/**
 * Models page_reporting_register for a guest (virtio-balloon with VIRTIO_BALLOON_F_REPORTING):
 * from v5.14 the order is a module parameter; before, it is always pageblock_order.
 */
export function registerPageReporting(memory: GuestMemory, order: number): PageReportingState {
  assert(memory.rules.freePageReporting, () => `free page reporting needs Linux 5.7+`);
  assert(order >= 0 && order <= MAX_PAGE_ORDER, () => `page_reporting_order ${order} out of range`);
  const effective = memory.rules.pageReportingOrderParam ? order : pageblock_order;
  for (const zone of memory.zones) zone.reportingOrder = effective;
  // page_reporting_register: "begin initial flush of zones" (__page_reporting_request).
  return {
    order: effective,
    state: PAGE_REPORTING_REQUESTED,
    runAtMs: memory.clockMs + PAGE_REPORTING_DELAY_MS,
    sglPfn: new Int32Array(PAGE_REPORTING_CAPACITY),
    sglOrder: new Uint8Array(PAGE_REPORTING_CAPACITY),
    sglCount: 0,
    reportCount: 0,
    reportedPages: 0,
  };
}

/**
 * Models __page_reporting_request after page_reporting_notify_free armed a zone: an IDLE worker
 * is scheduled PAGE_REPORTING_DELAY later. Call after every operation that frees memory.
 */
export function pageReportingNotice(memory: GuestMemory, reporting: PageReportingState): void {
  let requested = false;
  for (const zone of memory.zones) {
    if (!zone.reportingRequested) continue;
    zone.reportingRequested = false;
    requested = true;
  }
  if (!requested || reporting.state !== PAGE_REPORTING_IDLE) return;
  reporting.state = PAGE_REPORTING_REQUESTED;
  reporting.runAtMs = memory.clockMs + PAGE_REPORTING_DELAY_MS;
}

/**
 * Models page_reporting_process (the delayed work): every zone, then the leftover report; the
 * worker requeues itself when it ran out of budget or was asked again meanwhile.
 */
export function pageReportingProcess(
  memory: GuestMemory,
  reporting: PageReportingState,
  report: PageReportCallback,
): void {
  assert(reporting.state === PAGE_REPORTING_REQUESTED, "reporting worker ran while not requested");
  reporting.state = PAGE_REPORTING_ACTIVE;
  let rerun = false;
  for (const zone of memory.zones) {
    if (zone.managedPages === 0) continue;
    if (processZone(memory, reporting, zone, report)) rerun = true;
  }
  for (const zone of memory.zones) {
    if (zone.reportingRequested) rerun = true;
    zone.reportingRequested = false;
  }
  reporting.state = rerun ? PAGE_REPORTING_REQUESTED : PAGE_REPORTING_IDLE;
  reporting.runAtMs = rerun ? memory.clockMs + PAGE_REPORTING_DELAY_MS : Number.POSITIVE_INFINITY;
}

/** Models page_reporting_process_zone; returns true when a cycle ran out of budget. */
function processZone(
  memory: GuestMemory,
  reporting: PageReportingState,
  zone: Zone,
  report: PageReportCallback,
): boolean {
  // "Generate minimum watermark to be able to guarantee progress".
  const watermark = zone.watermark[WMARK_LOW]! + (PAGE_REPORTING_CAPACITY << reporting.order);
  if (!zoneWatermarkOk(zone, 0, watermark, 0, zone.freePages)) return false;
  let outOfBudget = false;
  for (let order = reporting.order; order <= MAX_PAGE_ORDER; order++) {
    for (let mt = 0; mt < MIGRATE_TYPES; mt++) {
      if (mt === MIGRATE_ISOLATE) continue;
      const result = reportingCycle(memory, reporting, zone, order, mt, report);
      if (result === CYCLE_OUT_OF_BUDGET) outOfBudget = true;
      if (result === CYCLE_ERROR) return outOfBudget;
    }
  }
  if (reporting.sglCount > 0) sendReport(memory, reporting, zone, report);
  return outOfBudget;
}

const CYCLE_DONE = 0;
const CYCLE_OUT_OF_BUDGET = 1;
const CYCLE_ERROR = 2;

/**
 * Models page_reporting_cycle: walk one free list from the head, isolating unreported blocks
 * into the scatterlist; a full scatterlist is reported (budget permitting) and drained.
 */
function reportingCycle(
  memory: GuestMemory,
  reporting: PageReportingState,
  zone: Zone,
  order: number,
  mt: number,
  report: PageReportCallback,
): number {
  const table = memory.table;
  const area = zone.freeArea;
  const index = freeListIndex(order, mt);
  // "Limit how many calls we will be making to the page reporting device": ~1/16 per pass.
  let budget = Math.ceil(area.nrFree[order]! / (PAGE_REPORTING_CAPACITY * 16));
  let pfn = area.head[index]!;
  let stopAt = NO_PFN;
  let result = CYCLE_DONE;
  for (let guard = 0; pfn !== NO_PFN; guard++) {
    assert(guard <= zone.endPfn - zone.startPfn, "free list walk did not end");
    const next = table.link0[pfn]!;
    if ((table.state[pfn]! & FRAME_REPORTED) !== 0) {
      pfn = next;
      continue;
    }
    if (budget < 0) {
      result = CYCLE_OUT_OF_BUDGET;
      stopAt = pfn;
      break;
    }
    if (reporting.sglCount < PAGE_REPORTING_CAPACITY) {
      if (isolateFreePage(memory, zone, pfn, order) === 0) {
        stopAt = pfn;
        break;
      }
      reporting.sglPfn[reporting.sglCount] = pfn;
      reporting.sglOrder[reporting.sglCount] = order;
      reporting.sglCount++;
      // From v6.10 isolation may move the pageblock's other free blocks to another list.
      if (next !== NO_PFN && table.order[next]! >>> ORDER_MT_SHIFT !== mt) break;
      pfn = next;
      continue;
    }
    // The scatterlist is full: rotate so this page leads the list, then report and drain.
    rotateToFront(table, zone, index, pfn);
    const error = sendReport(memory, reporting, zone, report);
    budget--;
    pfn = area.head[index]!;
    if (error !== 0) return CYCLE_ERROR;
  }
  // "Rotate any leftover pages to the head of the freelist".
  if (stopAt !== NO_PFN && area.head[index] !== stopAt) rotateToFront(table, zone, index, stopAt);
  return result;
}

/** Reports the scatterlist, then page_reporting_drain puts every block back. */
function sendReport(
  memory: GuestMemory,
  reporting: PageReportingState,
  zone: Zone,
  report: PageReportCallback,
): number {
  const count = reporting.sglCount;
  const error = report(reporting.sglPfn, reporting.sglOrder, count);
  reporting.reportCount++;
  const table = memory.table;
  for (let entry = 0; entry < count; entry++) {
    const pfn = reporting.sglPfn[entry]!;
    const order = reporting.sglOrder[entry]!;
    putbackIsolatedPage(memory, zone, pfn, order);
    if (error !== 0) continue;
    // "If the pages were not merged we can mark them as reported".
    const state = table.state[pfn]!;
    if ((state & FRAME_BUDDY) !== 0 && (table.order[pfn]! & ORDER_MASK) === order) {
      table.state[pfn] = state | FRAME_REPORTED;
      reporting.reportedPages += 1 << order;
    }
  }
  reporting.sglCount = 0;
  return error;
}

/** Models list_rotate_to_front: the list now starts at `pfn`, the part before it goes last. */
function rotateToFront(table: FrameTable, zone: Zone, index: number, pfn: number): void {
  const area = zone.freeArea;
  const head = area.head[index]!;
  if (head === pfn) return;
  const tail = area.tail[index]!;
  const previous = table.link1[pfn]!;
  table.link0[tail] = head;
  table.link1[head] = tail;
  table.link0[previous] = NO_PFN;
  table.link1[pfn] = NO_PFN;
  area.head[index] = pfn;
  area.tail[index] = previous;
}
