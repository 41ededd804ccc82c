// Goal: a guest imported from /proc files holds exactly the free lists and pageblock types the
// files describe, prints them back byte for byte, and refuses malformed files with an InputError
// that names the file, the line and what was expected.
// Method: the three fixtures under test/fixtures/proc (a 2 GiB 6.1 guest with zoneinfo, a 24 GiB
// host with ">100000" cells and isolated pageblocks, a CMA-enabled kernel's files) imported for
// every supported version, checked against the files and the independent buddy checker; then
// one edited copy of a fixture per kind of damage.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { InputError } from "../../src/core/input_error.ts";
import { MIGRATE_MOVABLE, MIGRATE_UNMOVABLE } from "../../src/core/limits.ts";
import { FrameKind } from "../../src/guest/frame_table.ts";
import type { KernelVersion } from "../../src/guest/kernel_version.ts";
import { importProc, type ProcImport } from "../../src/guest/proc_import.ts";
import { freeListIndex } from "../../src/guest/zone.ts";
import { parseBuddyinfo, parsePagetypeinfo, parseZoneinfo } from "../../src/metrics/proc_parse.ts";
import { exportProc, pageblockCounts } from "../../src/metrics/proc_views.ts";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "proc");

function fixture(name: string): string {
  return readFileSync(join(FIXTURES, name), "utf8");
}

interface Texts {
  buddyinfo: string;
  pagetypeinfo: string;
  zoneinfo?: string;
}

function texts(name: string, withZoneinfo = false): Texts {
  return {
    buddyinfo: fixture(`${name}.buddyinfo`),
    pagetypeinfo: fixture(`${name}.pagetypeinfo`),
    zoneinfo: withZoneinfo ? fixture(`${name}.zoneinfo`) : undefined,
  };
}

function importTexts(input: Texts, kernel: KernelVersion = "6.1"): ProcImport {
  return importProc({
    buddyinfo: parseBuddyinfo(input.buddyinfo, "buddyinfo"),
    pagetypeinfo: parsePagetypeinfo(input.pagetypeinfo, "pagetypeinfo"),
    zoneinfo: input.zoneinfo === undefined ? undefined : parseZoneinfo(input.zoneinfo, "zoneinfo"),
    kernel,
  });
}

const CASES: readonly [string, boolean][] = [
  ["guest_2g_6.1", true],
  ["host_24g", false],
  ["cma_4g", false],
];

describe("round trip", () => {
  for (const [name, withZoneinfo] of CASES) {
    for (const kernel of ["5.6", "6.1", "6.18"] as const) {
      test(`${name} on ${kernel}: buddyinfo and pagetypeinfo come back byte for byte`, () => {
        const input = texts(name, withZoneinfo);
        const { memory, record } = importTexts(input, kernel);
        const views = exportProc(memory, record);
        expect(views.buddyinfo).toBe(input.buddyinfo);
        expect(views.pagetypeinfo).toBe(input.pagetypeinfo);
        expect(checkGuestMemory(memory)).toEqual([]);
      });
    }
  }

  test("a file without Isolate (MEMORY_ISOLATION off) and with a PAGE_OWNER section", () => {
    const input = texts("guest_2g_6.1");
    const mixed =
      "\nNumber of mixed blocks    Unmovable      Movable  Reclaimable   HighAtomic \n" +
      "Node 0, zone      DMA            0            0            0            0 \n";
    const pagetypeinfo =
      input.pagetypeinfo
        .split("\n")
        .filter((line) => !line.includes("type      Isolate"))
        .join("\n")
        .replace("  HighAtomic      Isolate \n", "  HighAtomic \n")
        .replace(/^(Node 0, .*?) +0 $/gm, "$1 ") + mixed;
    const { memory, record } = importTexts({ ...input, pagetypeinfo }, "6.18");
    expect(record.columns).toHaveLength(4);
    expect(exportProc(memory, record).pagetypeinfo).toBe(pagetypeinfo);
  });

  test("the exported zoneinfo re-imports to the same guest", () => {
    const input = texts("guest_2g_6.1", true);
    const first = importTexts(input);
    const views = exportProc(first.memory, first.record);
    const second = importTexts({ ...input, zoneinfo: views.zoneinfo });
    expect(exportProc(second.memory, second.record)).toEqual(views);
  });
});

describe("imported state", () => {
  test("zone free counts and nr_free match buddyinfo", () => {
    for (const [name, withZoneinfo] of CASES) {
      const input = texts(name, withZoneinfo);
      const rows = parseBuddyinfo(input.buddyinfo, "buddyinfo").rows;
      const { memory } = importTexts(input);
      expect(memory.zones.map((zone) => zone.name)).toEqual(rows.map((row) => row.zone));
      memory.zones.forEach((zone, index) => {
        const nrFree = rows[index]!.nrFree;
        expect(Array.from(zone.freeArea.nrFree)).toEqual(nrFree);
        const pages = nrFree.reduce((sum, count, order) => sum + count * 2 ** order, 0);
        expect(zone.freePages).toBe(pages);
      });
    }
  });

  test("zoneinfo gives the spans, watermarks and protection", () => {
    const { memory } = importTexts(texts("guest_2g_6.1", true));
    const [dma, dma32] = memory.zones;
    expect([dma!.startPfn, dma!.endPfn, dma!.presentPages, dma!.managedPages]).toEqual([
      1, 4096, 3998, 3840,
    ]);
    expect([dma32!.startPfn, dma32!.endPfn, dma32!.presentPages, dma32!.managedPages]).toEqual([
      4096, 524288, 520156, 491483,
    ]);
    expect(Array.from(dma!.watermark.slice(0, 3))).toEqual([32, 40, 48]);
    const zoneinfo = exportProc(memory).zoneinfo;
    expect(zoneinfo).toContain("        protection: (0, 1919, 1919, 1919, 1919)\n");
    expect(zoneinfo).toContain("  start_pfn:           4096\n");
  });

  test("pageblock types are laid out in address order, Unmovable first and Movable last", () => {
    const { memory } = importTexts(texts("guest_2g_6.1", true));
    const dma32 = memory.zones[1]!;
    const first = dma32.startPfn >>> 9;
    expect(memory.table.pageblockMt[first]).toBe(MIGRATE_UNMOVABLE);
    expect(memory.table.pageblockMt[(dma32.endPfn >>> 9) - 1]).toBe(MIGRATE_MOVABLE);
    expect(pageblockCounts(memory, dma32)).toEqual([60, 930, 26, 0, 0]);
  });

  test("a '>100000' cell holds what buddyinfo's nr_free leaves over", () => {
    const { memory } = importTexts(texts("host_24g"));
    const normal = memory.zones[2]!;
    expect(normal.freeArea.count[freeListIndex(0, MIGRATE_MOVABLE)]).toBe(131072);
    expect(normal.freeArea.count[freeListIndex(1, MIGRATE_MOVABLE)]).toBe(100000);
  });

  test("a CMA column is Movable in the model and kept in the record", () => {
    const { memory, record, summary } = importTexts(texts("cma_4g"));
    const normal = memory.zones[2]!;
    expect(record.columns).toEqual([
      "Unmovable",
      "Movable",
      "Reclaimable",
      "HighAtomic",
      "CMA",
      "Isolate",
    ]);
    expect(normal.freeArea.count[freeListIndex(10, MIGRATE_MOVABLE)]).toBe(140 + 30);
    expect(pageblockCounts(memory, normal)[MIGRATE_MOVABLE]).toBe(423 + 48);
    expect(summary.zones[2]!.freeBlocksOutsideType).toBe(0);
  });

  test("allocated frames are owned by pageblock type", () => {
    const { memory, summary } = importTexts(texts("guest_2g_6.1", true));
    const names = memory.owners.owners.map((owner) => [owner.name, owner.kind]);
    expect(names).toEqual([
      ["imported", FrameKind.Anon],
      ["imported kernel", FrameKind.Kernel],
      ["imported kernel reclaimable", FrameKind.KernelReclaimable],
    ]);
    let allocated = 0;
    for (const zone of summary.zones) allocated += zone.allocatedPages;
    let owned = 0;
    for (const owner of memory.owners.owners) owned += owner.residentPages;
    expect(owned).toBe(allocated);
    expect(summary.zones[1]!.allocatedPages).toBe(491483 - 339624);
  });
});

/** Runs `action` and returns the InputError it throws. */
function inputError(action: () => unknown): InputError {
  try {
    action();
  } catch (error) {
    if (error instanceof InputError) return error;
    throw error;
  }
  throw new Error("expected an InputError");
}

function replaceLine(text: string, line: number, content: string): string {
  const lines = text.split("\n");
  lines[line - 1] = content;
  return lines.join("\n");
}

describe("malformed files", () => {
  const buddyinfo = fixture("host_24g.buddyinfo");
  const pagetypeinfo = fixture("host_24g.pagetypeinfo");
  const zoneinfo = fixture("guest_2g_6.1.zoneinfo");
  const buddyLine2 = buddyinfo.split("\n")[1]!;

  test.each([
    [
      "wrong header",
      () => parsePagetypeinfo(replaceLine(pagetypeinfo, 1, "Page block order: 10"), "pt"),
      ["pt", 1, "page block order 10"],
    ],
    [
      "wrong header text",
      () => parsePagetypeinfo(replaceLine(pagetypeinfo, 1, "Pageblock order: 9"), "pt"),
      ["pt", 1, 'expected "Page block order: 9"'],
    ],
    [
      "non-numeric count",
      () => parseBuddyinfo(replaceLine(buddyinfo, 2, buddyLine2.replace(" 752 ", " 75x ")), "bi"),
      ["bi", 2, 'order 10: expected a non-negative count, got "75x"'],
    ],
    [
      "wrong column count",
      () => parseBuddyinfo(replaceLine(buddyinfo, 2, buddyLine2.replace(/ +752 $/, " ")), "bi"),
      ["bi", 2, "expected 11 free counts (orders 0..10), got 10"],
    ],
    [
      "unknown zone",
      () => parseBuddyinfo(replaceLine(buddyinfo, 2, buddyLine2.replace("DMA32", "HighMem")), "bi"),
      ["bi", 2, 'unknown zone "HighMem"'],
    ],
    [
      "missing order in the header",
      () =>
        parsePagetypeinfo(
          replaceLine(pagetypeinfo, 4, pagetypeinfo.split("\n")[3]!.replace(/ +10 $/, " ")),
          "pt",
        ),
      ["pt", 4, "expected the orders 0..10"],
    ],
    [
      "negative count",
      () =>
        parseBuddyinfo(
          replaceLine(buddyinfo, 1, buddyinfo.split("\n")[0]!.replace("  1 ", " -1 ")),
          "bi",
        ),
      ["bi", 1, 'expected a non-negative count, got "-1"'],
    ],
    [
      "truncated mid-line",
      () => parseBuddyinfo(buddyinfo.slice(0, buddyinfo.length - 20), "bi"),
      ["bi", 3, "truncated"],
    ],
    [
      "truncated before the block counts",
      () => parsePagetypeinfo(`${pagetypeinfo.split("\n").slice(0, 19).join("\n")}\n`, "pt"),
      ["pt", 20, "truncated: expected an empty line"],
    ],
    ["empty", () => parseBuddyinfo("", "bi"), ["bi", 1, "the file is empty"]],
    [
      "a capped cell that is not >100000",
      () => parsePagetypeinfo(pagetypeinfo.replace(">100000  43110", ">99999  43110"), "pt"),
      ["pt", 16, 'expected ">100000", got ">99999"'],
    ],
    [
      "block counts missing a column",
      () => parsePagetypeinfo(pagetypeinfo.replace(/ +2 \n$/, "\n"), "pt"),
      ["pt", 24, "expected 5 pageblock counts, got 4"],
    ],
    [
      "zoneinfo without managed",
      () => parseZoneinfo(zoneinfo.replace(/\n {8}managed +3840/, ""), "zi"),
      ["zi", 1, 'zone DMA: missing "managed"'],
    ],
    [
      "files from different moments",
      () =>
        importTexts({
          buddyinfo: replaceLine(buddyinfo, 2, buddyLine2.replace(" 752 ", " 751 ")),
          pagetypeinfo,
        }),
      ["buddyinfo", 2, "zone DMA32 order 10: nr_free 751 but pagetypeinfo lists 752"],
    ],
  ] as const)("%s", (_, action, [file, line, message]) => {
    const error = inputError(action);
    expect(error.file).toBe(file);
    expect(error.line).toBe(line);
    expect(error.message).toContain(message);
    expect(error.message.startsWith(`${file}:${line}: `)).toBe(true);
  });
});
