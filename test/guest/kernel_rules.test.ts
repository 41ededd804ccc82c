// Goal: each kernel rule the guest model encodes gives the kernel's numbers.
// Method: one test per rule, each naming the kernel function it checks, on guests built as QEMU
// and Linux would lay them out; expected values come from the kernel's formulas worked by hand.
import { describe, expect, test } from "vitest";
import { MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, pageblock_nr_pages } from "../../src/core/limits.ts";
import {
  delFromFreeList,
  expand,
  FPI_NONE,
  freeOnePage,
  rmqueueSmallest,
} from "../../src/guest/buddy.ts";
import { FRAME_BUDDY, FrameKind, NO_PFN } from "../../src/guest/frame_table.ts";
import { GFP_KERNEL } from "../../src/guest/gfp.ts";
import { createGuestMemory } from "../../src/guest/guest_memory.ts";
import { kernelRules } from "../../src/guest/kernel_version.ts";
import {
  DEFAULT_BOOT_RESERVATION,
  lateFreedPages,
  qemuRamSplit,
} from "../../src/guest/memory_layout.ts";
import { createOwner } from "../../src/guest/owners.ts";
import { allocPages, assignFrames } from "../../src/guest/page_alloc.ts";
import { GiB, MiB, smallGuest } from "./helpers.ts";

function guest(
  kernel: string,
  memoryBytes: number,
  thp: "always" | "madvise" | "never",
  machine: "pc" | "q35" = "pc",
) {
  return createGuestMemory({
    memoryBytes,
    machine,
    kernel,
    cpus: 1,
    thpEnabled: thp,
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
}

describe("kernel versions", () => {
  test("only 5.6, 6.1 and 6.18 are accepted (kernel_version.ts table)", () => {
    expect(kernelRules("6.1").version).toBe("6.1");
    expect(() => kernelRules("5.10")).toThrow(/unsupported kernel version "5.10"/);
  });
});

describe("QEMU RAM layout", () => {
  test("pc moves RAM above 3 GiB to 4 GiB once the guest reaches 3.5 GiB (pc_init1)", () => {
    expect(qemuRamSplit("pc", 3 * GiB)).toEqual({ belowBytes: 3 * GiB, aboveBytes: 0 });
    expect(qemuRamSplit("pc", 4 * GiB)).toEqual({ belowBytes: 3 * GiB, aboveBytes: 1 * GiB });
  });
  test("q35 moves RAM above 2 GiB once the guest has 2.75 GiB (pc_q35_init)", () => {
    expect(qemuRamSplit("q35", 2.5 * GiB)).toEqual({ belowBytes: 2.5 * GiB, aboveBytes: 0 });
    expect(qemuRamSplit("q35", 3 * GiB)).toEqual({ belowBytes: 2 * GiB, aboveBytes: 1 * GiB });
  });
  test("zones: DMA is the first 16 MiB, DMA32 to the split, Normal from 4 GiB", () => {
    const memory = guest("6.1", 4 * GiB, "never");
    expect(memory.zones.map((z) => [z.name, z.startPfn, z.endPfn])).toEqual([
      ["DMA", 1, 4096],
      ["DMA32", 4096, 786432],
      ["Normal", 1048576, 1048576 + 262144],
    ]);
  });
  test("DMA has 3998 present pages; 3840 managed from 5.13 (first 1 MiB), 3977 on 5.6", () => {
    expect(guest("6.1", 2 * GiB, "never").zones[0]!.presentPages).toBe(3998);
    expect(guest("6.1", 2 * GiB, "never").zones[0]!.managedPages).toBe(3840);
    expect(guest("5.6", 2 * GiB, "never").zones[0]!.managedPages).toBe(3977);
  });
});

describe("watermarks", () => {
  test("set_recommended_min_free_kbytes: a 2 GiB guest with THP on has 45056 kB", () => {
    expect(guest("6.1", 2 * GiB, "always").minFreeKbytes).toBe(45056);
  });
  test("set_recommended_min_free_kbytes: DMA + DMA32 + Normal gives 67584 kB", () => {
    expect(guest("6.18", 8 * GiB, "always").minFreeKbytes).toBe(67584);
  });
  test("calculate_min_free_kbytes: THP off gives int_sqrt(lowmem_kbytes * 16) before init is freed", () => {
    const memory = guest("6.1", 2 * GiB, "never");
    const managed = memory.zones.reduce((sum, z) => sum + z.managedPages, 0);
    const early = managed - lateFreedPages(DEFAULT_BOOT_RESERVATION);
    expect(memory.minFreeKbytes).toBe(Math.floor(Math.sqrt(early * 4 * 16)));
    expect(memory.minFreeKbytes).toBeLessThan(45056);
  });
  test("set_recommended_min_free_kbytes: the real 640 and 768 MiB guests' min_free_kbytes", () => {
    // /proc/sys/vm min_free_kbytes as zoneinfo's min marks sum it on Debian's 6.1 guests
    // (validate/scenarios/small.yaml and anon-no-reporting.yaml): (187 + 7247) * 4 and
    // (188 + 8853) * 4. The cap is nr_free_buffer_pages() / 20 at hugepage_init, before the
    // image's init sections and the initrd are freed.
    expect(guest("6.1", 640 * MiB, "madvise").minFreeKbytes).toBe(29736);
    expect(guest("6.1", 768 * MiB, "madvise").minFreeKbytes).toBe(36164);
    expect(lateFreedPages(DEFAULT_BOOT_RESERVATION)).toBe(2534);
  });
  test("hugepage_init: below 512 MiB THP is off, so khugepaged does not raise min_free_kbytes", () => {
    const memory = guest("6.1", 256 * MiB, "always");
    expect(memory.thpEnabled).toBe("never");
    expect(memory.minFreeKbytes).toBeLessThan(11264);
  });
  test("__setup_per_zone_wmarks: LOW - MIN = HIGH - LOW = max(MIN/4, managed/1000)", () => {
    const memory = guest("6.1", 2 * GiB, "always");
    const dma32 = memory.zones[1]!;
    const [min, low, high] = [dma32.watermark[0]!, dma32.watermark[1]!, dma32.watermark[2]!];
    const delta = Math.max(Math.floor(min / 4), Math.floor((dma32.managedPages * 10) / 10000));
    expect(low - min).toBe(delta);
    expect(high - low).toBe(delta);
    const pagesMin = 45056 / 4;
    const lowmem = memory.zones.reduce((sum, z) => sum + z.managedPages, 0);
    expect(min).toBe(Math.floor((pagesMin * dma32.managedPages) / lowmem));
  });
  test("setup_per_zone_lowmem_reserve: DMA keeps DMA32's managed / 256 from DMA32 requests", () => {
    const memory = guest("6.1", 2 * GiB, "never");
    expect(memory.zones[0]!.lowmemReserve[1]).toBe(Math.floor(memory.zones[1]!.managedPages / 256));
  });
});

describe("per-cpu lists", () => {
  test("zone_batchsize: 63 for DMA32 in every version; 5.6 high = 6 * batch", () => {
    for (const kernel of ["5.6", "6.1", "6.18"])
      expect(guest(kernel, 2 * GiB, "never").pcp[1]![0]!.batch).toBe(63);
    expect(guest("5.6", 2 * GiB, "never").pcp[1]![0]!.high).toBe(378);
  });
  test("zone_highsize (5.14+): high follows the low watermark", () => {
    const memory = guest("6.1", 2 * GiB, "always");
    expect(memory.pcp[1]![0]!.high).toBe(memory.zones[1]!.watermark[1]);
  });
});

describe("buddy core", () => {
  test("__free_one_page merges a freed block with its free buddy", () => {
    const memory = smallGuest("6.1");
    const zone = memory.zones[1]!;
    const order10Before = zone.freeArea.nrFree[10]!;
    const pfn = rmqueueSmallest(memory.table, zone, 10, MIGRATE_MOVABLE);
    expect(zone.freeArea.nrFree[10]).toBe(order10Before - 1);
    freeOnePage(memory.table, zone, pfn, 9, MIGRATE_MOVABLE, FPI_NONE);
    expect(zone.freeArea.nrFree[10]).toBe(order10Before - 1);
    freeOnePage(memory.table, zone, pfn + 512, 9, MIGRATE_MOVABLE, FPI_NONE);
    expect(zone.freeArea.nrFree[10]).toBe(order10Before);
  });
  test("expand keeps the lowest piece and puts upper halves on the lists", () => {
    const memory = smallGuest("6.1");
    const zone = memory.zones[1]!;
    const head = zone.freeArea.head[10 * 5 + MIGRATE_MOVABLE]!;
    delFromFreeList(memory.table, zone, head);
    expand(memory.table, zone, head, 0, 10, MIGRATE_MOVABLE);
    expect(memory.table.state[head]! & FRAME_BUDDY).toBe(0);
    for (let order = 0; order < 10; order++) {
      expect(memory.table.state[head + (1 << order)]! & FRAME_BUDDY).toBe(FRAME_BUDDY);
      expect(zone.freeArea.head[order * 5 + MIGRATE_MOVABLE]).toBe(head + (1 << order));
    }
  });
  test("boot lists: lowest pfn at the head from 5.10 (FPI_TO_TAIL), highest on 5.6", () => {
    const modern = smallGuest("6.1").zones[1]!;
    const old = smallGuest("5.6").zones[1]!;
    const index = 10 * 5 + MIGRATE_MOVABLE;
    expect(modern.freeArea.head[index]!).toBeLessThan(modern.freeArea.tail[index]!);
    expect(old.freeArea.head[index]!).toBeGreaterThan(old.freeArea.tail[index]!);
  });
  test("steal_suitable_fallback: an unmovable request claims a whole movable pageblock", () => {
    const memory = smallGuest("6.1");
    const owner = createOwner(memory.owners, FrameKind.Kernel, "slab", 1);
    const pfn = allocPages(memory, GFP_KERNEL, 0);
    expect(pfn).not.toBe(NO_PFN);
    assignFrames(memory, pfn, 0, FrameKind.Kernel, owner.id, 0);
    expect(memory.table.pageblockMt[pfn >>> 9]).toBe(MIGRATE_UNMOVABLE);
    // The rest of the claimed block is now on the unmovable lists, not the movable ones.
    const zone = memory.zones.find((z) => pfn >= z.startPfn && pfn < z.endPfn)!;
    let unmovableFree = 0;
    for (let order = 0; order <= 10; order++)
      unmovableFree += zone.freeArea.count[order * 5]! << order;
    expect(
      unmovableFree + memory.pcp[memory.zones.indexOf(zone)]![0]!.count,
    ).toBeGreaterThanOrEqual(pageblock_nr_pages - 1);
  });
});
