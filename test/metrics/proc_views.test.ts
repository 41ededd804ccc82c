// Goal: every /proc view prints the kernel's bytes: header lines, column widths, trailing spaces,
// the pagetypeinfo cap, the extfrag width change of v5.13, the vmstat list of each version and
// meminfo's label padding.
// Method: views of fresh guests (2 GiB, pc, 2 CPUs) compared with literals from the kernel's
// seq_printf formats (/work/research/procfs.md) and with lines rebuilt here by a small printf;
// a few free counts are set by hand on throwaway guests where a format needs an unusual value.
import { describe, expect, test } from "vitest";
import { FrameKind } from "../../src/guest/frame_table.ts";
import { GFP_HIGHUSER_MOVABLE } from "../../src/guest/gfp.ts";
import { createGuestMemory, type GuestMemory } from "../../src/guest/guest_memory.ts";
import { createOwner } from "../../src/guest/owners.ts";
import { allocPages, assignFrames } from "../../src/guest/page_alloc.ts";
import { freeListIndex } from "../../src/guest/zone.ts";
import {
  formatBuddyinfo,
  formatExtfragIndex,
  formatMeminfo,
  formatPagetypeinfo,
  formatUnusableIndex,
  formatVmstat,
  formatZoneinfo,
  meminfoKb,
  pagetypeinfoCell,
  vmstatRecord,
} from "../../src/metrics/proc_views.ts";
import { vmstatNames } from "../../src/metrics/vmstat_names.ts";

const GiB = 1024 * 1024 * 1024;

function guest(kernel = "6.1"): GuestMemory {
  return createGuestMemory({
    memoryBytes: 2 * GiB,
    machine: "pc",
    kernel,
    cpus: 2,
    thpEnabled: "always",
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
}

/** printf("%*lu", width, value). */
function lu(value: number, width: number): string {
  return String(value).padStart(width);
}

describe("buddyinfo", () => {
  test("one line per populated zone: 'Node 0, zone %8s ' and 11 x '%6lu '", () => {
    const memory = guest();
    const expected = memory.zones
      .map((zone) => {
        const cells = Array.from(zone.freeArea.nrFree, (count) => `${lu(count, 6)} `).join("");
        return `Node 0, zone ${zone.name.padStart(8)} ${cells}\n`;
      })
      .join("");
    const text = formatBuddyinfo(memory);
    expect(text).toBe(expected);
    const lines = text.split("\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]!.startsWith("Node 0, zone      DMA ")).toBe(true);
    expect(lines[1]!.startsWith("Node 0, zone    DMA32 ")).toBe(true);
    expect(lines[0]!.length).toBe(22 + 11 * 7);
    expect(lines[0]!.endsWith(" ")).toBe(true);
  });

  test("a count wider than 6 digits widens its column, with no cap", () => {
    const memory = guest();
    memory.zones[1]!.freeArea.nrFree[0] = 1234567;
    expect(formatBuddyinfo(memory).split("\n")[1]).toMatch(/^Node 0, zone {4}DMA32 1234567 /);
  });
});

describe("pagetypeinfo", () => {
  test("header, free rows per zone and type, block counts, no trailing blank line", () => {
    const memory = guest();
    const lines = formatPagetypeinfo(memory).split("\n");
    expect(lines.slice(0, 4)).toEqual([
      "Page block order: 9",
      "Pages per block:  512",
      "",
      "Free pages count per migrate type at order       0      1      2      3      4      5" +
        "      6      7      8      9     10 ",
    ]);
    expect(lines[4]).toMatch(/^Node {4}0, zone {6}DMA, type {4}Unmovable( +\d+ ){11}$/);
    expect(lines[8]!.startsWith("Node    0, zone      DMA, type      Isolate ")).toBe(true);
    expect(lines[9]!.startsWith("Node    0, zone    DMA32, type    Unmovable ")).toBe(true);
    expect(lines[14]).toBe("");
    expect(lines[15]).toBe(
      "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate ",
    );
    // DMA spans pfn 1..4095: the walk visits 8 pageblocks; DMA32 spans 4096..524287: 1016.
    expect(lines[16]).toBe(
      `Node 0, zone      DMA ${lu(0, 12)} ${lu(8, 12)} ${lu(0, 12)} ${lu(0, 12)} ${lu(0, 12)} `,
    );
    expect(lines[17]).toBe(
      `Node 0, zone    DMA32 ${lu(0, 12)} ${lu(1016, 12)} ${lu(0, 12)} ${lu(0, 12)} ${lu(0, 12)} `,
    );
    expect(lines[18]).toBe("");
    expect(lines).toHaveLength(19);
  });

  test("free rows print each list's count in '%6lu ' cells", () => {
    const memory = guest();
    const zone = memory.zones[1]!;
    const cells = Array.from({ length: 11 }, (_, order) =>
      lu(zone.freeArea.count[freeListIndex(order, 1)]!, 6),
    );
    const row = formatPagetypeinfo(memory).split("\n")[10];
    expect(row).toBe(`Node    0, zone    DMA32, type      Movable ${cells.join(" ")} `);
  });

  test("the walk stops at 100000: '>100000 ' replaces the separator and the 6-wide cell", () => {
    expect(pagetypeinfoCell(99999)).toBe(" 99999 ");
    expect(pagetypeinfoCell(100000)).toBe(">100000 ");
    expect(pagetypeinfoCell(123456)).toBe(">100000 ");
    const memory = guest();
    memory.zones[1]!.freeArea.count[freeListIndex(0, 1)] = 123456;
    memory.zones[1]!.freeArea.count[freeListIndex(1, 1)] = 100000;
    const row = formatPagetypeinfo(memory).split("\n")[10]!;
    expect(row.startsWith("Node    0, zone    DMA32, type      Movable >100000 >100000 ")).toBe(
      true,
    );
  });
});

describe("extfrag", () => {
  /** DMA with ten free order-0 pages only: index = 1000 - (1000 + 10000 / 2^o) / 10. */
  function fragmented(kernel: string): GuestMemory {
    const memory = guest(kernel);
    const nrFree = memory.zones[0]!.freeArea.nrFree;
    nrFree.fill(0);
    nrFree[0] = 10;
    return memory;
  }
  const values = ["0.400", "0.650", "0.775", "0.838", "0.869", "0.885", "0.893", "0.897", "0.899"];

  test("5.6 prints '%d.%03d ': -1.000 and 0.400 side by side", () => {
    const line = formatExtfragIndex(fragmented("5.6")).split("\n")[0];
    expect(line).toBe(`Node 0, zone      DMA -1.000 ${values.join(" ")} 0.900 `);
  });

  test("6.1 and 6.18 print '%2d.%03d ': ' 0.400' lines up with '-1.000'", () => {
    for (const kernel of ["6.1", "6.18"]) {
      const line = formatExtfragIndex(fragmented(kernel)).split("\n")[0];
      expect(line).toBe(`Node 0, zone      DMA -1.000  ${values.join("  ")}  0.900 `);
    }
  });

  test("a fresh guest has a suitable block at every order: all -1.000", () => {
    const line = formatExtfragIndex(guest()).split("\n")[1];
    expect(line).toBe(`Node 0, zone    DMA32 ${"-1.000 ".repeat(11)}`);
  });

  test("unusable_index is '%d.%03d ' in every version", () => {
    for (const kernel of ["5.6", "6.1", "6.18"]) {
      const line = formatUnusableIndex(fragmented(kernel)).split("\n")[0];
      expect(line).toBe(`Node 0, zone      DMA 0.000 ${"1.000 ".repeat(10)}`);
    }
  });
});

describe("vmstat", () => {
  test.each([
    ["5.6", 138],
    ["6.1", 173],
    ["6.18", 193],
  ])("%s prints its %i names in the kernel's order, '%%s %%lu' each", (kernel, count) => {
    const memory = guest(kernel);
    const lines = formatVmstat(memory).split("\n");
    expect(lines.pop()).toBe("");
    expect(lines).toHaveLength(count);
    expect(lines.map((line) => line.split(" ")[0])).toEqual(vmstatNames(memory.rules.version).all);
    for (const line of lines) expect(line).toMatch(/^[a-z0-9_]+ \d+$/);
  });

  test("versions differ: the trailing nr_unstable 0, 5.6 zone items, 6.18 blocks", () => {
    const lines56 = formatVmstat(guest("5.6")).split("\n");
    const lines61 = formatVmstat(guest("6.1")).split("\n");
    const lines618 = formatVmstat(guest("6.18")).split("\n");
    expect(lines61[lines61.length - 2]).toBe("nr_unstable 0");
    expect(lines618[lines618.length - 2]).toBe("nr_unstable 0");
    expect(lines56[lines56.length - 2]).toMatch(/^swap_ra_hit \d+$/);
    expect(lines56[8]).toMatch(/^nr_page_table_pages /);
    expect(lines618[1]).toMatch(/^nr_free_pages_blocks /);
    expect(lines61.some((line) => line.startsWith("nr_bounce "))).toBe(true);
    expect(lines618.some((line) => line.startsWith("nr_bounce "))).toBe(false);
  });

  test("values come from the model: free pages, events, THPs", () => {
    const memory = guest();
    const owner = createOwner(memory.owners, FrameKind.Anon, "usemem", 512, 9);
    const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 9);
    assignFrames(memory, pfn, 9, FrameKind.Anon, owner.id, 0);
    const record = vmstatRecord(memory);
    let free = 0;
    for (const zone of memory.zones) free += zone.freePages;
    expect(record.nr_free_pages).toBe(free);
    expect(record.nr_anon_pages).toBe(512);
    expect(record.nr_inactive_anon).toBe(512);
    expect(record.nr_anon_transparent_hugepages).toBe(1);
    expect(record.pgalloc_dma32).toBe(512);
    expect(record.nr_dirty_threshold).toBeGreaterThan(record.nr_dirty_background_threshold!);
    expect(meminfoKb(memory).AnonHugePages).toBe(2048);
  });
});

describe("meminfo", () => {
  test("16-column labels and '%8lu kB', with the kernel's raw-printf exceptions", () => {
    const memory = guest();
    const lines = formatMeminfo(memory).split("\n");
    let managed = 0;
    for (const zone of memory.zones) managed += zone.managedPages;
    expect(lines[0]).toBe(`MemTotal:       ${lu(managed * 4, 8)} kB`);
    expect(lines).toContain("VmallocTotal:   34359738367 kB");
    expect(lines).toContain("HardwareCorrupted:     0 kB");
    expect(lines).toContain("HugePages_Total:       0");
    expect(lines).toContain("HugePages_Surp:        0");
    expect(lines).toContain("Hugepagesize:       2048 kB");
    for (const line of lines.filter((text) => text.endsWith(" kB"))) {
      expect(line.length).toBeGreaterThanOrEqual(27);
    }
  });

  test("field lists per version", () => {
    const labels = (kernel: string): string[] =>
      formatMeminfo(guest(kernel))
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => line.split(":")[0]!);
    const l56 = labels("5.6");
    const l61 = labels("6.1");
    const l618 = labels("6.18");
    expect(l56).not.toContain("Zswap");
    expect(l56).not.toContain("SecPageTables");
    expect(l61.slice(16, 18)).toEqual(["Zswap", "Zswapped"]);
    expect(l61).not.toContain("Balloon");
    expect(l618.slice(l618.indexOf("FilePmdMapped") + 1, l618.indexOf("HugePages_Total"))).toEqual([
      "Unaccepted",
      "Balloon",
    ]);
    expect(l56).toHaveLength(51);
    expect(l61).toHaveLength(54);
    expect(l618).toHaveLength(56);
  });
});

describe("zoneinfo", () => {
  test("every zone of the node; empty ones stop after protection", () => {
    const text = formatZoneinfo(guest());
    const headers = text.split("\n").filter((line) => line.startsWith("Node "));
    expect(headers).toEqual([
      "Node 0, zone      DMA",
      "Node 0, zone    DMA32",
      "Node 0, zone   Normal",
      "Node 0, zone  Movable",
      "Node 0, zone   Device",
    ]);
    expect(text).toContain(
      "Node 0, zone  Movable\n  pages free     0\n        boost    0\n        min      32\n" +
        "        low      32\n        high     32\n        spanned  0\n        present  0\n" +
        "        managed  0\n        cma      0\n        protection: (0, 0, 0, 0, 0)\nNode 0,",
    );
    expect(text.endsWith("        protection: (0, 0, 0, 0, 0)\n")).toBe(true);
    expect(text).toContain("\n  node_unreclaimable:  0\n  start_pfn:           1\n");
    expect(text).toContain("\n      nr_free_pages 3840\n");
    expect(text).toContain("\n      nr_mlock     0\n");
  });

  test("version lines: 5.6 no boost/cma, 6.18 promo and the wide pageset fields", () => {
    const z56 = formatZoneinfo(guest("5.6"));
    const z61 = formatZoneinfo(guest("6.1"));
    const z618 = formatZoneinfo(guest("6.18"));
    expect(z56).not.toContain("boost");
    expect(z56).not.toContain("        cma");
    expect(z56).toContain("\n              count: 0\n              high:  ");
    expect(z61).toContain("        boost    0\n        min ");
    expect(z61).not.toContain("        promo");
    expect(z618).toMatch(/ {8}high {5}\d+\n {8}promo {4}\d+\n/);
    expect(z618).toMatch(/\n {14}high_min: \d+\n {14}high_max: \d+\n {2}vm stats threshold: 4\n/);
  });
});
