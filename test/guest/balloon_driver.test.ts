// Goal: the guest's balloon driver allocates, formats and frees exactly as virtio_balloon.c and
// each proposal from the thread do: order-0 movable pages in requests of 256 PFNs and LIFO
// deflate for Linux; order-9 unmovable blocks for thp-order; split blocks for cont-pages;
// highest order first and smallest first on deflate for Duyck's policy; 2 MiB then 4 KiB for
// huge-2m-fallback; merged ranges for addr-len. Balloon pages leave managed memory, move under
// compaction (telling the host inflate-new, deflate-old), and deflate on OOM when negotiated.
// Method: small guests driven through the driver's rounds with a recording tellHost; the
// independent checker runs after every round; frame kinds, pageblock types, counters and the
// recorded requests are compared with what the kernel code implies.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import {
  MIGRATE_MOVABLE,
  MIGRATE_UNMOVABLE,
  pageblock_nr_pages,
  pageblock_order,
} from "../../src/core/limits.ts";
import {
  type BalloonRequest,
  createBalloonDriver,
  fillBalloon,
  leakBalloon,
  VIRTIO_BALLOON_ARRAY_PFNS_MAX,
  VIRTIO_BALLOON_OOM_NR_PAGES,
} from "../../src/guest/balloon_driver.ts";
import { compactMemory } from "../../src/guest/compaction.ts";
import { FRAME_KIND_MASK, FrameKind } from "../../src/guest/frame_table.ts";
import { GFP_HIGHUSER_MOVABLE } from "../../src/guest/gfp.ts";
import type { GuestMemory } from "../../src/guest/guest_memory.ts";
import { createOwner } from "../../src/guest/owners.ts";
import { allocPages, assignFrames, drainAllPages, freePages } from "../../src/guest/page_alloc.ts";
import { VmEvent } from "../../src/guest/vm_event.ts";
import { balloonPolicy } from "../../src/policies/balloon_policies.ts";
import { MiB, smallGuest } from "./helpers.ts";

interface Recorded {
  inflate: boolean;
  entries: [number, number][];
}

function recorder(): { requests: Recorded[]; tellHost: (request: BalloonRequest) => void } {
  const requests: Recorded[] = [];
  return {
    requests,
    tellHost: (request) => {
      const entries: [number, number][] = [];
      for (let entry = 0; entry < request.entryCount; entry++) {
        entries.push([request.entryPfn[entry]!, request.entryPages[entry]!]);
      }
      requests.push({ inflate: request.inflate, entries });
    },
  };
}

function managedPages(memory: GuestMemory): number {
  return memory.zones.reduce((sum, zone) => sum + zone.managedPages, 0);
}

function kindCount(memory: GuestMemory, kind: FrameKind): number {
  let count = 0;
  for (const state of memory.table.state) if ((state & FRAME_KIND_MASK) === kind) count++;
  return count;
}

describe("linux-4k (drivers/virtio/virtio_balloon.c)", () => {
  test("fill_balloon: 256 order-0 PFNs per request; managed pages shrink; counters", () => {
    const memory = smallGuest("6.1", 256 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("linux-4k").alloc, false);
    const { requests, tellHost } = recorder();
    const managedBefore = managedPages(memory);
    const round = fillBalloon(driver, 1000, tellHost);
    expect(round).toEqual({ pages: VIRTIO_BALLOON_ARRAY_PFNS_MAX, outOfPuff: false });
    expect(requests).toHaveLength(1);
    expect(requests[0]!.entries).toHaveLength(VIRTIO_BALLOON_ARRAY_PFNS_MAX);
    expect(requests[0]!.entries.every(([, pages]) => pages === 1)).toBe(true);
    expect(kindCount(memory, FrameKind.Balloon)).toBe(256);
    expect(managedBefore - managedPages(memory)).toBe(256);
    expect(memory.events[VmEvent.balloon_inflate]).toBe(256);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("leak_balloon is LIFO: the last inflated PFNs go first, the host is told first", () => {
    const memory = smallGuest("6.1", 256 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("linux-4k").alloc, false);
    const { requests, tellHost } = recorder();
    fillBalloon(driver, 256, tellHost);
    fillBalloon(driver, 256, tellHost);
    const second = requests[1]!.entries.map(([pfn]) => pfn);
    let kindsWhenTold: number[] = [];
    leakBalloon(driver, 100, (request) => {
      kindsWhenTold = Array.from(request.entryPfn.subarray(0, request.entryCount), (pfn) => {
        return memory.table.state[pfn]! & FRAME_KIND_MASK;
      });
      tellHost(request);
    });
    const deflated = requests[2]!.entries.map(([pfn]) => pfn);
    expect(deflated).toEqual(second.slice(-100).reverse());
    // MUST_TELL_HOST: the pages are still the balloon's while the host is told.
    expect(kindsWhenTold.every((kind) => kind === FrameKind.Balloon)).toBe(true);
    expect(driver.list.pageCount).toBe(412);
    expect(memory.events[VmEvent.balloon_deflate]).toBe(100);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("an exhausted guest is out of puff and the round stops", () => {
    const memory = smallGuest("6.1", 128 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("linux-4k").alloc, false);
    const { tellHost } = recorder();
    let total = 0;
    let round = fillBalloon(driver, 1 << 20, tellHost);
    for (let guard = 0; !round.outOfPuff && guard < 200; guard++) {
      total += round.pages;
      round = fillBalloon(driver, 1 << 20, tellHost);
    }
    total += round.pages;
    expect(round.outOfPuff).toBe(true);
    expect(driver.outOfPuffCount).toBe(1);
    // Order-0 __GFP_NORETRY requests stop at the min watermark: what is left is about MIN.
    const minPages = memory.zones.reduce((sum, zone) => sum + zone.watermark[0]!, 0);
    const free = memory.zones.reduce((sum, zone) => sum + zone.freePages, 0);
    expect(free).toBeLessThanOrEqual(minPages + 2 * pageblock_nr_pages);
    expect(total).toBe(driver.list.pageCount);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("balloon compaction moves pages and tells the host inflate(new), deflate(old)", () => {
    const memory = smallGuest("6.1", 256 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("linux-4k").alloc, false);
    const { tellHost } = recorder();
    // Interleave balloon pages with anonymous pages, then free the anonymous ones.
    const owner = createOwner(memory.owners, FrameKind.Anon, "filler", 1 << 16);
    for (let round = 0; round < 40; round++) {
      fillBalloon(driver, 256, tellHost);
      for (let index = 0; index < 256; index++) {
        const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 0);
        assignFrames(memory, pfn, 0, FrameKind.Anon, owner.id, round * 256 + index);
        owner.pages[round * 256 + index] = pfn;
      }
    }
    for (let index = 0; index < 40 * 256; index++) freePages(memory, owner.pages[index]!, 0);
    drainAllPages(memory);
    const moves: [number, number][] = [];
    memory.onBalloonMigrate = (oldPfn, newPfn) => moves.push([oldPfn, newPfn]);
    compactMemory(memory);
    expect(moves.length).toBeGreaterThan(0);
    expect(memory.events[VmEvent.balloon_migrate]).toBe(moves.length);
    for (const [oldPfn, newPfn] of moves) {
      expect(memory.table.state[newPfn]! & FRAME_KIND_MASK).toBe(FrameKind.Balloon);
      expect(memory.table.state[oldPfn]! & FRAME_KIND_MASK).not.toBe(FrameKind.Balloon);
    }
    // balloon_page_insert puts the moved page at the head: it is deflated first.
    const lastMoved = moves[moves.length - 1]![1];
    expect(driver.list.head[0]).toBe(lastMoved);
    expect(driver.list.pageCount).toBe(40 * 256);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("deflate on OOM: the notifier leaks 256 pages and the allocation succeeds", () => {
    const memory = smallGuest("6.1", 128 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("linux-4k").alloc, true);
    const { requests, tellHost } = recorder();
    memory.oomNotify = () => leakBalloon(driver, VIRTIO_BALLOON_OOM_NR_PAGES, tellHost).pages;
    while (!fillBalloon(driver, 1 << 20, tellHost).outOfPuff) {
      // Fill until the guest runs out.
    }
    const inflated = driver.list.pageCount;
    const owner = createOwner(memory.owners, FrameKind.Anon, "hog", 1 << 16);
    for (let index = 0; index < 4096; index++) {
      const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 0);
      expect(pfn).toBeGreaterThanOrEqual(0);
      assignFrames(memory, pfn, 0, FrameKind.Anon, owner.id, index);
      owner.pages[index] = pfn;
    }
    expect(driver.list.pageCount).toBeLessThan(inflated);
    expect((inflated - driver.list.pageCount) % VIRTIO_BALLOON_OOM_NR_PAGES).toBe(0);
    expect(requests.some((request) => !request.inflate)).toBe(true);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("init_on_alloc: the guest writes each balloon page before sending its PFN", () => {
    for (const initOnAlloc of [false, true]) {
      const memory = smallGuest("6.1", 128 * MiB);
      (memory.config as { initOnAlloc: boolean }).initOnAlloc = initOnAlloc;
      const touched: number[] = [];
      memory.onTouch = (pfn, count) => {
        for (let page = 0; page < count; page++) touched.push(pfn + page);
      };
      const driver = createBalloonDriver(memory, balloonPolicy("linux-4k").alloc, false);
      const sent: number[] = [];
      fillBalloon(driver, 256, (request) => {
        for (let entry = 0; entry < request.entryCount; entry++) {
          sent.push(request.entryPfn[entry]!);
          expect(touched.includes(request.entryPfn[entry]!)).toBe(initOnAlloc);
        }
      });
      expect(sent).toHaveLength(256);
    }
  });
});

describe("the proposals' allocation sides", () => {
  test("thp-order: order-9 unmovable blocks claim whole pageblocks and never move", () => {
    const memory = smallGuest("6.1", 256 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("thp-order").alloc, false);
    const { requests, tellHost } = recorder();
    fillBalloon(driver, 20 * pageblock_nr_pages, tellHost);
    const entries = requests[0]!.entries;
    expect(entries).toHaveLength(20);
    for (const [pfn, pages] of entries) {
      expect(pages).toBe(pageblock_nr_pages);
      expect(pfn % pageblock_nr_pages).toBe(0);
      expect(memory.table.pageblockMt[pfn >>> pageblock_order]).toBe(MIGRATE_UNMOVABLE);
    }
    memory.onBalloonMigrate = () => {
      throw new Error("a thp-order balloon page moved");
    };
    compactMemory(memory);
    expect(memory.events[VmEvent.balloon_migrate]).toBe(0);
    // A target that is not a multiple of 2 MiB cannot be met: the round adds nothing more.
    expect(fillBalloon(driver, 100, tellHost)).toEqual({ pages: 0, outOfPuff: false });
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("cont-pages: blocks split into order-0 balloon pages, one (pfn, size) entry each", () => {
    const memory = smallGuest("6.1", 256 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("cont-pages").alloc, false);
    const { requests, tellHost } = recorder();
    fillBalloon(driver, 4 * pageblock_nr_pages + 3, tellHost);
    expect(requests[0]!.entries.map(([, pages]) => pages)).toEqual([512, 512, 512, 512]);
    // A round that got pages at order 9 stops there; the next one continues at that order.
    expect(driver.list.blockCount[0]).toBe(4 * 512);
    expect(driver.list.blockCount[pageblock_order]).toBe(0);
    for (const [pfn] of requests[0]!.entries) {
      expect(memory.table.pageblockMt[pfn >>> pageblock_order]).toBe(MIGRATE_MOVABLE);
    }
    expect(fillBalloon(driver, 3, tellHost).pages).toBe(2);
    expect(fillBalloon(driver, 1, tellHost).pages).toBe(1);
    expect(requests.slice(1).map((request) => request.entries[0]![1])).toEqual([2, 1]);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("highest-order-first: order 10 first; deflate takes the smallest blocks first", () => {
    const memory = smallGuest("6.1", 256 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("highest-order-first").alloc, false);
    const { requests, tellHost } = recorder();
    fillBalloon(driver, 2048 + 512 + 1, tellHost);
    expect(requests[0]!.entries.map(([, pages]) => pages)).toEqual([1024, 1024, 512, 1]);
    leakBalloon(driver, 513, tellHost);
    expect(requests[1]!.entries.map(([, pages]) => pages)).toEqual([1, 512]);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("huge-2m-fallback: 2 MiB while the guest has free 2 MiB blocks, then 4 KiB", () => {
    const memory = smallGuest("6.1", 128 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("huge-2m-fallback").alloc, false);
    const { requests, tellHost } = recorder();
    for (let round = 0; round < 200; round++) {
      if (fillBalloon(driver, 1 << 20, tellHost).outOfPuff) break;
    }
    const sizes = requests.flatMap((request) => request.entries.map(([, pages]) => pages));
    const firstSmall = sizes.indexOf(1);
    expect(firstSmall).toBeGreaterThan(0);
    expect(sizes.slice(0, firstSmall).every((pages) => pages === 512)).toBe(true);
    expect(sizes.slice(firstSmall).every((pages) => pages === 1)).toBe(true);
    expect(checkGuestMemory(memory)).toEqual([]);
  });

  test("addr-len: physically adjacent blocks of one request merge into one range", () => {
    const memory = smallGuest("6.1", 256 * MiB);
    const driver = createBalloonDriver(memory, balloonPolicy("addr-len").alloc, false);
    const { requests, tellHost } = recorder();
    fillBalloon(driver, 8 * 1024, tellHost);
    const entries = requests[0]!.entries;
    const pages = entries.reduce((sum, [, count]) => sum + count, 0);
    expect(pages).toBe(8 * 1024);
    expect(entries.length).toBeLessThan(8);
    for (let index = 1; index < entries.length; index++) {
      const [previousPfn, previousPages] = entries[index - 1]!;
      expect(entries[index]![0]).not.toBe(previousPfn + previousPages);
    }
    expect(checkGuestMemory(memory)).toEqual([]);
  });
});
