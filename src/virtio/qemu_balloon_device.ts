// QEMU's virtio-balloon device (hw/virtio/virtio-balloon.c): what the host does with each
// request the guest driver sends, down to the ram_block_discard_range calls.
//
// Theory of operation. virtio_balloon_handle_output pops one element (one guest tell_host) at a
// time. For the inflate queue, every 4 KiB PFN goes through balloon_inflate_page: with a
// RAMBlock page of 4 KiB (anonymous memory and memfd/tmpfs, even when THP backs them:
// qemu_ram_pagesize) it discards that 4 KiB at once; with larger pages (hugetlbfs) it marks the
// 4 KiB in a PartiallyBalloonedPage bitmap that lives for this one element and discards the
// host page only when all its 4 KiB pieces arrived, consecutively, in the same element. The
// deflate queue only hints (madvise WILLNEED) the host page. Free page reports
// (virtio_balloon_handle_report, QEMU 5.1+) discard each (address, length) that is aligned to
// the RAMBlock page size and ignore the others. While discards are inhibited (vfio), every
// request is acknowledged and nothing happens.
//
// The thread's proposals add queues whose entries are ranges: the model discards each entry's
// whole host pages in one call ("range" handling), or, in Duyck's variant, only its whole
// 2 MiB pieces. Duyck's other idea, QEMU told the THP size, makes the pbp tracker work in 2 MiB
// units on THP-backed RAM; Tsirkin's objection (the THP may already be split, so the size is a
// guess) is why the model only ever discards whole 2 MiB ranges there, never more.

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import type { BalloonRequest } from "../guest/balloon_driver.ts";
import { type GuestRam, ramBlockDiscardRange, ramBlockPageBytes } from "../host/host_api.ts";
import { type GuestRamMap, ramPageOfPfn } from "./guest_ram_map.ts";
import { createWorkCounts, type WorkCounts } from "./work_counts.ts";

/**
 * What QEMU does with an inflate entry: "pageByPage" runs balloon_inflate_page for every 4 KiB
 * (Linux's queue, and Zhu's THP_ORDER handler); "range" discards the entry's whole host pages
 * in one call (the proposals' range queues).
 */
export type BalloonHostHandling = "pageByPage" | "range";

export interface QemuBalloonDeviceOptions {
  readonly hostHandling: BalloonHostHandling;
  /** Duyck's variant: the host discards only the whole 2 MiB pieces of a range. */
  readonly hostDiscardsWholeHugeOnly: boolean;
  /** Duyck's variant: qemu_ram_pagesize reports the host THP size for THP-backed RAM. */
  readonly thpSizeKnown: boolean;
}

export interface BalloonDeviceCounters {
  inflateRequests: number;
  deflateRequests: number;
  reportRequests: number;
  /** PFNs or ranges popped. */
  entries: number;
  /** 4 KiB pages the guest asked the host to take, and to give back. */
  inflatedPages: number;
  deflatedPages: number;
  /** Pages reported free, and reported pages the host ignored (not aligned to its page). */
  reportedPages: number;
  reportedPagesIgnored: number;
  /** Partially ballooned host pages whose progress was dropped (another page, or the end). */
  pbpDropped: number;
  /** Host pages the pbp tracker completed and discarded. */
  pbpCompleted: number;
  /** Inflated pages the host kept: pbp never completed, or not whole 2 MiB (Duyck's host). */
  inflatedPagesKept: number;
  /** Requests acknowledged and ignored because discards are inhibited. */
  inhibitedRequests: number;
  /** Discards QEMU's ram_block_discard_range refused (alignment): a model bug if nonzero. */
  discardErrors: number;
}

export interface QemuBalloonDevice {
  readonly ram: GuestRam;
  readonly map: GuestRamMap;
  readonly options: QemuBalloonDeviceOptions;
  /** qemu_ram_pagesize in 4 KiB pages, as the balloon handler sees it. */
  readonly balloonPagePages: number;
  /** The RAMBlock's real page size in 4 KiB pages (hugetlbfs, else 1): reports align to it. */
  readonly ramPagePages: number;
  readonly counters: BalloonDeviceCounters;
  readonly work: WorkCounts;
  /** The pbp of the element being handled: its host page (first RAMBlock page) or -1. */
  pbpBasePage: number;
  /** 4 KiB pieces of the pbp's host page seen so far (the bitmap's weight). */
  pbpCount: number;
  readonly pbpBitmap: Uint8Array;
}

export function createQemuBalloonDevice(
  ram: GuestRam,
  map: GuestRamMap,
  options: QemuBalloonDeviceOptions,
): QemuBalloonDevice {
  assert(map.pageCount === ram.pageCount, "the RAMBlock map and the host model disagree on size");
  const ramPagePages = ramBlockPageBytes(ram.config) / PAGE_SIZE;
  const thpBacked = ram.config.backing !== "hugetlbfs";
  const balloonPagePages = options.thpSizeKnown && thpBacked ? HPAGE_PMD_NR : ramPagePages;
  return {
    ram,
    map,
    options,
    balloonPagePages,
    ramPagePages,
    counters: {
      inflateRequests: 0,
      deflateRequests: 0,
      reportRequests: 0,
      entries: 0,
      inflatedPages: 0,
      deflatedPages: 0,
      reportedPages: 0,
      reportedPagesIgnored: 0,
      pbpDropped: 0,
      pbpCompleted: 0,
      inflatedPagesKept: 0,
      inhibitedRequests: 0,
      discardErrors: 0,
    },
    work: createWorkCounts(),
    pbpBasePage: -1,
    pbpCount: 0,
    pbpBitmap: new Uint8Array(balloonPagePages),
  };
}

/** Calls ram_block_discard_range on RAMBlock pages [page, page + pages). */
function discardPages(device: QemuBalloonDevice, page: number, pages: number): void {
  const result = ramBlockDiscardRange(device.ram, page * PAGE_SIZE, pages * PAGE_SIZE);
  if (result.kind === "error") device.counters.discardErrors++;
}

/** virtio_balloon_inhibited(): discards disabled (vfio); the request is acknowledged only. */
function inhibited(device: QemuBalloonDevice): boolean {
  return device.ram.config.discardInhibited;
}

/** The virtqueue work every request costs: one round trip and one pop per entry. */
function countRequest(device: QemuBalloonDevice, entries: number): void {
  device.work.virtqueueRequests++;
  device.work.virtqueueEntries += entries;
  device.work.hostTranslations += entries;
  device.counters.entries += entries;
}

/**
 * Models virtio_balloon_handle_output for the inflate queue: one element, its pbp freed at the
 * end ("free pbp more aggressively", QEMU 4.1).
 */
export function handleInflate(device: QemuBalloonDevice, request: BalloonRequest): void {
  assert(request.inflate, "an inflate handler got a deflate request");
  device.counters.inflateRequests++;
  const pfnEntries = device.options.hostHandling === "pageByPage";
  let entries = 0;
  for (let entry = 0; entry < request.entryCount; entry++) {
    entries += pfnEntries ? request.entryPages[entry]! : 1;
  }
  countRequest(device, entries);
  if (inhibited(device)) {
    device.counters.inhibitedRequests++;
    return;
  }
  for (let entry = 0; entry < request.entryCount; entry++) {
    const page = ramPageOfPfn(device.map, request.entryPfn[entry]!);
    const pages = request.entryPages[entry]!;
    device.counters.inflatedPages += pages;
    if (pfnEntries) {
      for (let piece = 0; piece < pages; piece++) balloonInflatePage(device, page + piece);
    } else {
      discardWholePages(device, page, pages);
    }
  }
  dropPbp(device);
}

/**
 * Models balloon_inflate_page: a 4 KiB host page is discarded at once; a larger one is tracked
 * in the element's pbp and discarded when all its 4 KiB pieces arrived.
 */
function balloonInflatePage(device: QemuBalloonDevice, page: number): void {
  const hostPages = device.balloonPagePages;
  if (hostPages === 1) {
    discardPages(device, page, 1);
    return;
  }
  const base = page - (page % hostPages);
  // "We've partially ballooned part of a host page, but now we're trying to balloon part of
  // a different one. Without a way to remember which we've partially ballooned, just drop it."
  if (device.pbpBasePage !== -1 && device.pbpBasePage !== base) dropPbp(device);
  if (device.pbpBasePage === -1) {
    device.pbpBasePage = base;
    device.pbpCount = 0;
    device.pbpBitmap.fill(0);
  }
  const index = page - base;
  if (device.pbpBitmap[index] === 0) {
    device.pbpBitmap[index] = 1;
    device.pbpCount++;
  }
  if (device.pbpCount === hostPages) {
    discardPages(device, base, hostPages);
    device.counters.pbpCompleted++;
    device.pbpBasePage = -1;
    device.pbpCount = 0;
  }
}

/** Drops an incomplete pbp: its 4 KiB pieces stay backed on the host. */
function dropPbp(device: QemuBalloonDevice): void {
  if (device.pbpBasePage === -1) return;
  device.counters.pbpDropped++;
  device.counters.inflatedPagesKept += device.pbpCount;
  device.pbpBasePage = -1;
  device.pbpCount = 0;
}

/**
 * A range entry: the whole host pages inside it in one call (2 MiB pieces only in Duyck's
 * variant); what is left over at either end stays backed.
 */
function discardWholePages(device: QemuBalloonDevice, page: number, pages: number): void {
  const unit = device.options.hostDiscardsWholeHugeOnly
    ? Math.max(HPAGE_PMD_NR, device.ramPagePages)
    : device.ramPagePages;
  const first = Math.ceil(page / unit) * unit;
  const end = Math.floor((page + pages) / unit) * unit;
  if (end <= first) {
    device.counters.inflatedPagesKept += pages;
    return;
  }
  device.counters.inflatedPagesKept += pages - (end - first);
  discardPages(device, first, end - first);
}

/**
 * Models the deflate queue (QEMU 7.2-8.2 virtio_balloon_handle_output on the dvq): per PFN,
 * memory_region_find, then balloon_deflate_page madvise(MADV_WILLNEED)s the host page the PFN
 * lives on (a hint: nothing is allocated until the guest touches the page; no pbp, no discard).
 * A range entry is hinted in one call.
 */
export function handleDeflate(device: QemuBalloonDevice, request: BalloonRequest): void {
  assert(!request.inflate, "a deflate handler got an inflate request");
  device.counters.deflateRequests++;
  const pfnEntries = device.options.hostHandling === "pageByPage";
  let entries = 0;
  for (let entry = 0; entry < request.entryCount; entry++) {
    entries += pfnEntries ? request.entryPages[entry]! : 1;
    device.counters.deflatedPages += request.entryPages[entry]!;
  }
  countRequest(device, entries);
  if (inhibited(device)) {
    device.counters.inhibitedRequests++;
    return;
  }
  device.work.hostHintSyscalls += entries;
}

/**
 * Models virtio_balloon_handle_report: each (address, length) aligned to the RAMBlock's page
 * size is discarded; others are ignored (a 1 GiB hugetlbfs backing ignores 2 MiB reports).
 */
export function handleReport(
  device: QemuBalloonDevice,
  pfns: Int32Array,
  orders: Uint8Array,
  count: number,
): number {
  device.counters.reportRequests++;
  countRequest(device, count);
  if (inhibited(device)) {
    device.counters.inhibitedRequests++;
    return 0;
  }
  const unit = device.ramPagePages;
  for (let entry = 0; entry < count; entry++) {
    const page = ramPageOfPfn(device.map, pfns[entry]!);
    const pages = 1 << orders[entry]!;
    device.counters.reportedPages += pages;
    if (page % unit !== 0 || pages % unit !== 0) {
      device.counters.reportedPagesIgnored += pages;
      continue;
    }
    discardPages(device, page, pages);
  }
  return 0;
}
