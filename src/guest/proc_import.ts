// Building a guest from a real machine's /proc/buddyinfo, /proc/pagetypeinfo and (optionally)
// /proc/zoneinfo, so that the model starts from a state someone captured.
//
// Theory of operation. The files say how many free blocks each zone has per order and free list
// and how many pageblocks of each migratetype, not where they are; the importer chooses an
// address for everything with one deterministic rule (docs/proc_import.md):
// 1. Zones. From zoneinfo when given (start_pfn, spanned, present, managed; watermarks and
//    protection are adopted too). Otherwise from pagetypeinfo's block counts: each zone spans its
//    pageblocks and starts at the x86-64 boundary of its type (DMA pfn 0, DMA32 16 MiB, Normal
//    4 GiB) or where the zone below ends, whichever is higher; present = managed = spanned.
// 2. Pageblocks. pagetypeinfo counts the pageblock of every pageblock_nr_pages-th pfn from
//    zone_start_pfn that has a memory map; the first Σ(block counts) of these are online, the
//    rest (the top of the zone: the PCI hole below 4 GiB in DMA32) are RAM-less. Online
//    pageblocks get their types in address order: Unmovable, Reclaimable, HighAtomic, Isolate,
//    then Movable last, so that Movable's order-10 pairs line up with the end of the zone.
// 3. Free blocks. Order 10 first, down to order 0; for each order and list type, the blocks go
//    lowest address first into pageblocks of that type, at the first naturally aligned place that
//    is unused and whose buddy is not a free block of the same order (so nothing would merge and
//    every placed block is a valid buddy state). Blocks that do not fit in their type's
//    pageblocks go, lowest address first, into any pageblock (counted in the summary).
// 4. The rest of each zone. Holes the zoneinfo asks for (spanned - present, less the RAM-less
//    pageblocks) take the lowest unused frames, leaving every online pageblock one RAM frame;
//    reserved frames (present - managed) take the next lowest; every other frame is allocated
//    and owned by its pageblock's type: Movable → anonymous memory of one process "imported";
//    Unmovable, HighAtomic and Isolate → Kernel ("imported kernel"); Reclaimable →
//    KernelReclaimable ("imported kernel reclaimable").
// Columns the model lacks (CMA, any unknown migratetype) become Movable pageblocks and Movable
// free lists in the model (CMA pageblocks serve movable allocations in the kernel too); their
// counts are kept in the import record, and so are the ">100000" cells' spellings, so that the
// views print the files back byte for byte. A ">100000" cell's real count is what buddyinfo's
// nr_free leaves over for that order. The files must describe one moment: per zone and order,
// the free-list counts must add up to buddyinfo's nr_free.

import { assert } from "../core/assert.ts";
import { InputError } from "../core/input_error.ts";
import {
  MAX_PAGE_ORDER,
  MIGRATE_HIGHATOMIC,
  MIGRATE_ISOLATE,
  MIGRATE_MOVABLE,
  MIGRATE_RECLAIMABLE,
  MIGRATE_TYPES,
  MIGRATE_UNMOVABLE,
  migratetype_names,
  NR_PAGE_ORDERS,
  PAGE_SIZE,
  pageblock_nr_pages,
  pageblock_order,
} from "../core/limits.ts";
import { addToFreeList } from "./buddy.ts";
import { FrameKind } from "./frame_table.ts";
import {
  createGuestMemory,
  type GuestMemory,
  type ThpDefrag,
  type ThpEnabled,
} from "./guest_memory.ts";
import { type KernelVersion, kernelRules } from "./kernel_version.ts";
import type { GuestLayout, MachineType, ReservedRange } from "./memory_layout.ts";
import { createOwner } from "./owners.ts";
import { assignFrames } from "./page_alloc.ts";
import { setupPcpHighAndBatch } from "./pcp.ts";
import {
  freeListIndex,
  WMARK_HIGH,
  WMARK_LOW,
  WMARK_MIN,
  WMARK_PROMO,
  type ZoneSpec,
  ZoneType,
} from "./zone.ts";

// --- Parsed input (produced by src/metrics/proc_parse.ts) ---------------------------------------

/** One /proc/buddyinfo line. */
export interface BuddyinfoRow {
  readonly zone: string;
  /** 1-based line in the file. */
  readonly line: number;
  /** free_area[order].nr_free, orders 0..10. */
  readonly nrFree: readonly number[];
}

export interface BuddyinfoData {
  readonly file: string;
  readonly rows: readonly BuddyinfoRow[];
}

/** One free-count row of /proc/pagetypeinfo: a zone's list of one migratetype. */
export interface PagetypeFreeRow {
  readonly zone: string;
  readonly type: string;
  readonly line: number;
  /** Blocks per order; 100000 where the cell was ">100000". */
  readonly counts: readonly number[];
  /** The cell was printed ">100000" (the walk stopped at the cap). */
  readonly capped: readonly boolean[];
}

/** One "Number of blocks type" row: pageblocks per column. */
export interface PagetypeBlockRow {
  readonly zone: string;
  readonly line: number;
  readonly counts: readonly number[];
}

export interface PagetypeinfoData {
  readonly file: string;
  /** Migratetype names as the file's block-count header lists them. */
  readonly columns: readonly string[];
  readonly free: readonly PagetypeFreeRow[];
  readonly blocks: readonly PagetypeBlockRow[];
  /** Text after the block counts (the PAGE_OWNER "Number of mixed blocks" section), as read. */
  readonly trailer: string;
}

/** The fields of one /proc/zoneinfo zone the importer uses. */
export interface ZoneinfoZone {
  readonly zone: string;
  readonly line: number;
  /** Absent for an empty zone (no "start_pfn:" line). */
  readonly startPfn: number | undefined;
  readonly spanned: number;
  readonly present: number;
  readonly managed: number;
  readonly boost: number;
  readonly min: number;
  readonly low: number;
  readonly high: number;
  readonly promo: number | undefined;
  /** lowmem_reserve[], one entry per zone of the node. */
  readonly protection: readonly number[];
  /** "cpu:" entries under pagesets. */
  readonly cpus: number;
}

export interface ZoneinfoData {
  readonly file: string;
  readonly zones: readonly ZoneinfoZone[];
}

export interface ProcImportInput {
  readonly buddyinfo: BuddyinfoData;
  readonly pagetypeinfo: PagetypeinfoData;
  readonly zoneinfo?: ZoneinfoData;
  /** The kernel whose rules the guest runs and whose formats the views print. */
  readonly kernel: KernelVersion;
}

/**
 * The guest settings the files do not give (a scenario's guest section). Defaults: machine pc,
 * cpus from zoneinfo's pagesets (1 without zoneinfo), THP "always" with defrag "madvise",
 * init_on_alloc off.
 */
export interface ProcImportOptions {
  readonly machine?: MachineType;
  readonly cpus?: number;
  readonly thpEnabled?: ThpEnabled;
  readonly thpDefrag?: ThpDefrag;
  readonly initOnAlloc?: boolean;
}

// --- Output --------------------------------------------------------------------------------------

/** A column the model lacks, per order: the count it stands for and the cell as read. */
export interface ExtraColumnCells {
  readonly count: readonly number[];
  readonly text: readonly string[];
}

/** What the model cannot hold but the views need to print the imported files back. */
export interface ProcImportRecord {
  readonly kernel: KernelVersion;
  /** The file's migratetype columns, in its order. */
  readonly columns: readonly string[];
  /** Zone name → column → free cells, for columns the model lacks (folded into Movable). */
  readonly extraFree: ReadonlyMap<string, ReadonlyMap<string, ExtraColumnCells>>;
  /** Zone name → column → pageblocks, for columns the model lacks (folded into Movable). */
  readonly extraBlocks: ReadonlyMap<string, ReadonlyMap<string, number>>;
  readonly trailer: string;
}

export interface ImportedZoneSummary {
  readonly name: string;
  readonly startPfn: number;
  readonly spannedPages: number;
  readonly presentPages: number;
  readonly managedPages: number;
  readonly freePages: number;
  /** Pageblocks per model migratetype. */
  readonly pageblocks: Record<string, number>;
  /** Free blocks per model migratetype list, orders 0..10. */
  readonly freeBlocks: Record<string, number[]>;
  /** Free blocks that did not fit in their own type's pageblocks (rule 3). */
  readonly freeBlocksOutsideType: number;
  readonly reservedPages: number;
  readonly allocatedPages: number;
}

export interface ImportSummary {
  readonly kernel: KernelVersion;
  readonly zones: readonly ImportedZoneSummary[];
  readonly owners: readonly { name: string; kind: string; pages: number }[];
  readonly rules: readonly string[];
}

export interface ProcImport {
  readonly memory: GuestMemory;
  readonly record: ProcImportRecord;
  readonly summary: ImportSummary;
}

/** The placement and owner rules, as import.json states them. */
export const PROC_IMPORT_RULES: readonly string[] = [
  "zones from zoneinfo (start_pfn, spanned, present, managed) when given, else from pagetypeinfo" +
    " block counts at the x86-64 zone boundaries",
  "pageblock types in address order: Unmovable, Reclaimable, HighAtomic, Isolate, Movable;" +
    " pageblocks pagetypeinfo leaves out are RAM-less at the top of the zone",
  "free blocks order 10 first, lowest address first, in pageblocks of their list's type, never" +
    " beside a free buddy of the same order",
  "holes, then reserved frames, take the lowest unused frames; the rest is allocated",
  "owners by pageblock type: Movable -> anon of process 'imported'; Unmovable, HighAtomic," +
    " Isolate -> Kernel; Reclaimable -> KernelReclaimable",
  "columns the model lacks (CMA, unknown) are Movable in the model and kept as read for export",
];

// --- Planning ------------------------------------------------------------------------------------

const ZONE_TYPE_BY_NAME: ReadonlyMap<string, ZoneType> = new Map([
  ["DMA", ZoneType.DMA],
  ["DMA32", ZoneType.DMA32],
  ["Normal", ZoneType.Normal],
  ["Movable", ZoneType.Movable],
]);
/** x86-64 zone starts: MAX_DMA_PFN (16 MiB) and MAX_DMA32_PFN (4 GiB). */
const ZONE_START_MIN_PFN: readonly number[] = [0, 4096, 1 << 20, 0];
/** Address order of pageblock types (rule 2). */
const PAGEBLOCK_TYPE_ORDER: readonly number[] = [
  MIGRATE_UNMOVABLE,
  MIGRATE_RECLAIMABLE,
  MIGRATE_HIGHATOMIC,
  MIGRATE_ISOLATE,
  MIGRATE_MOVABLE,
];
const CAP = 100000;

/** Frame use while planning. */
const USE_NONE = 0;
const USE_FREE = 1;
const USE_HOLE = 2;
const USE_RESERVED = 3;
const USE_ALLOCATED = 4;

interface ZonePlan {
  readonly name: string;
  readonly type: ZoneType;
  readonly startPfn: number;
  readonly endPfn: number;
  readonly presentPages: number;
  readonly managedPages: number;
  /** Free blocks per freeListIndex(order, model mt). */
  readonly free: Int32Array;
  /** Pagetypeinfo line per model mt, for placement errors. */
  readonly freeLines: number[];
  /** Pageblocks per model mt. */
  readonly blocks: number[];
  /** Pageblock indexes of online pageblocks, in address order. */
  readonly onlineBlocks: number[];
  readonly zoneinfo: ZoneinfoZone | undefined;
  /** Error location for geometry problems. */
  readonly geometryFile: string;
  readonly geometryLine: number;
}

function fail(file: string, line: number, message: string): never {
  throw new InputError({ file, line, message });
}

function modelMigratetype(column: string): number {
  const mt = migratetype_names.indexOf(column);
  return mt < 0 ? MIGRATE_MOVABLE : mt;
}

/** Pairs buddyinfo rows with pagetypeinfo rows, zone by zone; both must list the same zones. */
function checkZoneSets(input: ProcImportInput): void {
  const { buddyinfo, pagetypeinfo } = input;
  const buddyZones = buddyinfo.rows.map((row) => row.zone);
  const blockZones = pagetypeinfo.blocks.map((row) => row.zone);
  buddyinfo.rows.forEach((row) => {
    if (!ZONE_TYPE_BY_NAME.has(row.zone)) {
      fail(buddyinfo.file, row.line, `zone ${row.zone} cannot hold free pages in the model`);
    }
    if (!blockZones.includes(row.zone)) {
      fail(buddyinfo.file, row.line, `zone ${row.zone} is not in ${pagetypeinfo.file}`);
    }
  });
  for (const row of pagetypeinfo.blocks) {
    if (!buddyZones.includes(row.zone)) {
      fail(pagetypeinfo.file, row.line, `zone ${row.zone} is not in ${buddyinfo.file}`);
    }
  }
  for (const zone of input.zoneinfo?.zones ?? []) {
    if (zone.present > 0 && !buddyZones.includes(zone.zone)) {
      const file = input.zoneinfo!.file;
      fail(file, zone.line, `zone ${zone.zone} is populated but not in ${buddyinfo.file}`);
    }
  }
}

/**
 * The free blocks per (order, column) of one zone, ">100000" cells resolved from buddyinfo: a
 * capped cell holds what nr_free leaves over after the other lists of that order.
 */
function resolveFreeCounts(input: ProcImportInput, buddy: BuddyinfoRow): number[][] {
  const { pagetypeinfo } = input;
  const rows = pagetypeinfo.free.filter((row) => row.zone === buddy.zone);
  const counts = rows.map((row) => [...row.counts]);
  for (let order = 0; order < NR_PAGE_ORDERS; order++) {
    let known = 0;
    const capped: number[] = [];
    rows.forEach((row, index) => {
      if (row.capped[order]) capped.push(index);
      else known += row.counts[order]!;
    });
    const nrFree = buddy.nrFree[order]!;
    const left = nrFree - known;
    if (capped.length === 0 && left !== 0) {
      fail(
        input.buddyinfo.file,
        buddy.line,
        `zone ${buddy.zone} order ${order}: nr_free ${nrFree} but ${pagetypeinfo.file} lists` +
          ` ${known} (the files must be captured at the same moment)`,
      );
    }
    if (capped.length > 0 && left < CAP * capped.length) {
      fail(
        input.buddyinfo.file,
        buddy.line,
        `zone ${buddy.zone} order ${order}: nr_free ${nrFree} leaves ${left} for` +
          ` ${capped.length} list(s) shown as >${CAP} in ${pagetypeinfo.file}`,
      );
    }
    capped.forEach((rowIndex, position) => {
      const extra = position === 0 ? left - CAP * capped.length : 0;
      counts[rowIndex]![order] = CAP + extra;
    });
  }
  return counts;
}

interface ZoneGeometry {
  readonly startPfn: number;
  readonly spanned: number;
  readonly present: number;
  readonly managed: number;
  readonly file: string;
  readonly line: number;
  readonly zoneinfo: ZoneinfoZone | undefined;
}

function zoneGeometry(
  input: ProcImportInput,
  name: string,
  blockTotal: number,
  blockLine: number,
  previousEnd: number,
): ZoneGeometry {
  const fromZoneinfo = input.zoneinfo?.zones.find((zone) => zone.zone === name);
  if (input.zoneinfo !== undefined) {
    const file = input.zoneinfo.file;
    if (fromZoneinfo === undefined || fromZoneinfo.startPfn === undefined) {
      fail(input.pagetypeinfo.file, blockLine, `zone ${name} is not populated in ${file}`);
    }
    const zone = fromZoneinfo;
    if (zone.present > zone.spanned) fail(file, zone.line, "present exceeds spanned");
    if (zone.managed > zone.present) fail(file, zone.line, "managed exceeds present");
    if (zone.startPfn! < previousEnd) fail(file, zone.line, `zone ${name} overlaps the zone below`);
    return {
      startPfn: zone.startPfn!,
      spanned: zone.spanned,
      present: zone.present,
      managed: zone.managed,
      file,
      line: zone.line,
      zoneinfo: zone,
    };
  }
  const type = ZONE_TYPE_BY_NAME.get(name)!;
  const startPfn = Math.max(previousEnd, ZONE_START_MIN_PFN[type]!);
  const spanned = blockTotal * pageblock_nr_pages;
  const file = input.pagetypeinfo.file;
  return {
    startPfn,
    spanned,
    present: spanned,
    managed: spanned,
    file,
    line: blockLine,
    zoneinfo: undefined,
  };
}

function planZone(input: ProcImportInput, buddy: BuddyinfoRow, previousEnd: number): ZonePlan {
  const { pagetypeinfo } = input;
  const blockRow = pagetypeinfo.blocks.find((row) => row.zone === buddy.zone)!;
  const counts = resolveFreeCounts(input, buddy);
  const rows = pagetypeinfo.free.filter((row) => row.zone === buddy.zone);
  const free = new Int32Array(NR_PAGE_ORDERS * MIGRATE_TYPES);
  const freeLines = new Array<number>(MIGRATE_TYPES).fill(blockRow.line);
  rows.forEach((row, index) => {
    const mt = modelMigratetype(row.type);
    if (migratetype_names.includes(row.type)) freeLines[mt] = row.line;
    for (let order = 0; order < NR_PAGE_ORDERS; order++) {
      free[freeListIndex(order, mt)]! += counts[index]![order]!;
    }
  });
  const blocks = new Array<number>(MIGRATE_TYPES).fill(0);
  let blockTotal = 0;
  pagetypeinfo.columns.forEach((column, index) => {
    blocks[modelMigratetype(column)]! += blockRow.counts[index]!;
    blockTotal += blockRow.counts[index]!;
  });
  const geometry = zoneGeometry(input, buddy.zone, blockTotal, blockRow.line, previousEnd);
  const visited = Math.ceil(geometry.spanned / pageblock_nr_pages);
  if (blockTotal > visited) {
    fail(
      pagetypeinfo.file,
      blockRow.line,
      `zone ${buddy.zone}: ${blockTotal} pageblocks but the zone spans only ${visited}`,
    );
  }
  const onlineBlocks: number[] = [];
  for (let k = 0; k < blockTotal; k++) {
    onlineBlocks.push((geometry.startPfn + k * pageblock_nr_pages) >>> pageblock_order);
  }
  return {
    name: buddy.zone,
    type: ZONE_TYPE_BY_NAME.get(buddy.zone)!,
    startPfn: geometry.startPfn,
    endPfn: geometry.startPfn + geometry.spanned,
    presentPages: geometry.present,
    managedPages: geometry.managed,
    free,
    freeLines,
    blocks,
    onlineBlocks,
    zoneinfo: geometry.zoneinfo,
    geometryFile: geometry.file,
    geometryLine: geometry.line,
  };
}

function planZones(input: ProcImportInput): ZonePlan[] {
  checkZoneSets(input);
  const rows = [...input.buddyinfo.rows].sort(
    (a, b) => ZONE_TYPE_BY_NAME.get(a.zone)! - ZONE_TYPE_BY_NAME.get(b.zone)!,
  );
  const plans: ZonePlan[] = [];
  let previousEnd = 0;
  for (const row of rows) {
    const plan = planZone(input, row, previousEnd);
    plans.push(plan);
    previousEnd = plan.endPfn;
  }
  return plans;
}

// --- Placement -----------------------------------------------------------------------------------

/** Frame use and placed free heads over the whole frame range. */
interface Placement {
  readonly use: Uint8Array;
  /** Order of a placed free head, -1 elsewhere. */
  readonly headOrder: Int8Array;
  /** Planned migratetype per pageblock. */
  readonly pageblockMt: Uint8Array;
  /** Placed free blocks: pfn, order, list type, in placement order. */
  readonly blocks: { pfn: number; order: number; mt: number }[];
}

function canPlace(placement: Placement, plan: ZonePlan, pfn: number, order: number): boolean {
  const size = 2 ** order;
  if (pfn < plan.startPfn || pfn + size > plan.endPfn) return false;
  if (order < MAX_PAGE_ORDER && placement.headOrder[pfn ^ size] === order) return false;
  const use = placement.use;
  for (let frame = pfn; frame < pfn + size; frame++) if (use[frame] !== USE_NONE) return false;
  return true;
}

/**
 * Places up to `need` free blocks of `order` on `mt`'s list in `blocks` (pageblock indexes, in
 * address order), lowest address first; with `sameType`, a block of order 10 needs both of its
 * pageblocks to be of type `mt`. Returns how many were placed.
 */
function placeBlocks(
  placement: Placement,
  plan: ZonePlan,
  order: number,
  mt: number,
  need: number,
  blocks: readonly number[],
  sameType: boolean,
): number {
  let placed = 0;
  const step = 2 ** order;
  for (const block of blocks) {
    if (placed === need) break;
    const blockStart = block * pageblock_nr_pages;
    if (order > pageblock_order) {
      if (block % 2 !== 0) continue;
      if (sameType && placement.pageblockMt[block + 1] !== mt) continue;
    }
    const blockEnd = blockStart + Math.max(step, pageblock_nr_pages);
    for (let pfn = blockStart; pfn < blockEnd && placed < need; pfn += step) {
      if (!canPlace(placement, plan, pfn, order)) continue;
      placement.use.fill(USE_FREE, pfn, pfn + step);
      placement.headOrder[pfn] = order;
      placement.blocks.push({ pfn, order, mt });
      placed++;
    }
  }
  return placed;
}

/** Rule 2: online pageblocks get their types in address order. */
function assignPageblockTypes(placement: Placement, plan: ZonePlan): number[][] {
  const byType: number[][] = Array.from({ length: MIGRATE_TYPES }, () => []);
  let next = 0;
  for (const mt of PAGEBLOCK_TYPE_ORDER) {
    for (let i = 0; i < plan.blocks[mt]!; i++) {
      const block = plan.onlineBlocks[next++]!;
      placement.pageblockMt[block] = mt;
      byType[mt]!.push(block);
    }
  }
  assert(next === plan.onlineBlocks.length, "every online pageblock gets a type");
  return byType;
}

/** Rule 3 for one zone; returns the blocks that had to leave their type's pageblocks. */
function placeZoneFreeBlocks(placement: Placement, plan: ZonePlan, file: string): number {
  const byType = assignPageblockTypes(placement, plan);
  let outside = 0;
  for (let order = MAX_PAGE_ORDER; order >= 0; order--) {
    const short = new Array<number>(MIGRATE_TYPES).fill(0);
    for (let mt = 0; mt < MIGRATE_TYPES; mt++) {
      const need = plan.free[freeListIndex(order, mt)]!;
      short[mt] = need - placeBlocks(placement, plan, order, mt, need, byType[mt]!, true);
    }
    for (let mt = 0; mt < MIGRATE_TYPES; mt++) {
      if (short[mt] === 0) continue;
      const placed = placeBlocks(placement, plan, order, mt, short[mt]!, plan.onlineBlocks, false);
      outside += placed;
      if (placed < short[mt]!) {
        fail(
          file,
          plan.freeLines[mt]!,
          `zone ${plan.name}: no room for ${short[mt]! - placed} more free block(s) of order` +
            ` ${order} on the ${migratetype_names[mt]} list`,
        );
      }
    }
  }
  return outside;
}

/** Marks what is not RAM: outside every zone, and the zone's RAM-less pageblocks (rule 2). */
function markOffline(placement: Placement, plan: ZonePlan): void {
  const online = new Set(plan.onlineBlocks);
  for (let pfn = plan.startPfn; pfn < plan.endPfn; pfn += pageblock_nr_pages) {
    const block = pfn >>> pageblock_order;
    if (online.has(block)) continue;
    const start = Math.max(block * pageblock_nr_pages, plan.startPfn);
    const end = Math.min((block + 1) * pageblock_nr_pages, plan.endPfn);
    placement.use.fill(USE_HOLE, start, end);
  }
}

/** Rule 4: holes, reserved frames and allocated frames out of the unused frames of a zone. */
function assignRest(placement: Placement, plan: ZonePlan): void {
  const { use } = placement;
  let holes = 0;
  for (let pfn = plan.startPfn; pfn < plan.endPfn; pfn++) if (use[pfn] === USE_HOLE) holes++;
  let holesLeft = plan.endPfn - plan.startPfn - plan.presentPages - holes;
  if (holesLeft < 0) {
    fail(
      plan.geometryFile,
      plan.geometryLine,
      `zone ${plan.name}: present ${plan.presentPages} leaves no room for the ${holes} frames of` +
        " the pageblocks pagetypeinfo does not count",
    );
  }
  const ramFrames = new Map<number, number>();
  for (let pfn = plan.startPfn; pfn < plan.endPfn; pfn++) {
    if (use[pfn] === USE_HOLE) continue;
    const block = pfn >>> pageblock_order;
    ramFrames.set(block, (ramFrames.get(block) ?? 0) + 1);
  }
  let freePages = 0;
  for (let index = 0; index < plan.free.length; index++) {
    freePages += plan.free[index]! * 2 ** Math.floor(index / MIGRATE_TYPES);
  }
  if (freePages > plan.managedPages) {
    fail(
      plan.geometryFile,
      plan.geometryLine,
      `zone ${plan.name}: managed ${plan.managedPages} is less than the ${freePages} free pages`,
    );
  }
  let reservedLeft = plan.presentPages - plan.managedPages;
  for (let pfn = plan.startPfn; pfn < plan.endPfn; pfn++) {
    if (use[pfn] !== USE_NONE) continue;
    const block = pfn >>> pageblock_order;
    if (holesLeft > 0 && ramFrames.get(block)! > 1) {
      use[pfn] = USE_HOLE;
      ramFrames.set(block, ramFrames.get(block)! - 1);
      holesLeft--;
    } else if (reservedLeft > 0) {
      use[pfn] = USE_RESERVED;
      reservedLeft--;
    } else {
      use[pfn] = USE_ALLOCATED;
    }
  }
  if (holesLeft > 0 || reservedLeft > 0) {
    fail(
      plan.geometryFile,
      plan.geometryLine,
      `zone ${plan.name}: no room for ${holesLeft} hole and ${reservedLeft} reserved frame(s)`,
    );
  }
}

/** Runs of frames whose use passes `test`, as ranges. */
function runsOf(use: Uint8Array, test: (value: number) => boolean, what: string): ReservedRange[] {
  const ranges: ReservedRange[] = [];
  let pfn = 0;
  while (pfn < use.length) {
    if (!test(use[pfn]!)) {
      pfn++;
      continue;
    }
    const start = pfn;
    while (pfn < use.length && test(use[pfn]!)) pfn++;
    ranges.push({ startPfn: start, endPfn: pfn, what });
  }
  return ranges;
}

function buildLayout(placement: Placement, plans: readonly ZonePlan[]): GuestLayout {
  const zones: ZoneSpec[] = plans.map((plan) => ({
    type: plan.type,
    startPfn: plan.startPfn,
    endPfn: plan.endPfn,
  }));
  return {
    frameCount: placement.use.length,
    zones,
    ramRanges: runsOf(placement.use, (use) => use !== USE_HOLE, "imported RAM"),
    reserved: runsOf(placement.use, (use) => use === USE_RESERVED, "imported reserved"),
  };
}

// --- Building the guest --------------------------------------------------------------------------

/** The kind of an allocated frame in a pageblock of type `mt` (the owners rule). */
function ownerKind(mt: number): FrameKind {
  if (mt === MIGRATE_MOVABLE) return FrameKind.Anon;
  if (mt === MIGRATE_RECLAIMABLE) return FrameKind.KernelReclaimable;
  return FrameKind.Kernel;
}

const OWNER_NAMES: ReadonlyMap<FrameKind, string> = new Map([
  [FrameKind.Anon, "imported"],
  [FrameKind.Kernel, "imported kernel"],
  [FrameKind.KernelReclaimable, "imported kernel reclaimable"],
]);

/** Replaces the boot free lists with the planned ones and gives allocated frames owners. */
function applyPlacement(memory: GuestMemory, placement: Placement, plans: readonly ZonePlan[]) {
  const { table } = memory;
  for (const zone of memory.zones) {
    const area = zone.freeArea;
    area.head.fill(-1);
    area.tail.fill(-1);
    area.count.fill(0);
    area.nrFree.fill(0);
    zone.freePages = 0;
  }
  for (const plan of plans) {
    for (let pfn = plan.startPfn; pfn < plan.endPfn; pfn++) {
      const use = placement.use[pfn];
      if (use !== USE_FREE && use !== USE_ALLOCATED) continue;
      table.state[pfn] = FrameKind.Free;
      table.order[pfn] = 0;
      table.link0[pfn] = 0;
      table.link1[pfn] = 0;
    }
    for (const block of plan.onlineBlocks) table.pageblockMt[block] = placement.pageblockMt[block]!;
  }
  const sorted = [...placement.blocks].sort((a, b) => a.pfn - b.pfn);
  for (const block of sorted) {
    const zone = memory.zones.find((z) => block.pfn >= z.startPfn && block.pfn < z.endPfn)!;
    addToFreeList(table, zone, block.pfn, block.order, block.mt, true);
  }
  assignOwners(memory, placement);
}

function assignOwners(memory: GuestMemory, placement: Placement): void {
  const counts = new Map<FrameKind, number>();
  const use = placement.use;
  for (let pfn = 0; pfn < use.length; pfn++) {
    if (use[pfn] !== USE_ALLOCATED) continue;
    const kind = ownerKind(placement.pageblockMt[pfn >>> pageblock_order]!);
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  const owners = new Map<FrameKind, ReturnType<typeof createOwner>>();
  for (const [kind, name] of OWNER_NAMES) {
    const pages = counts.get(kind) ?? 0;
    if (pages > 0) owners.set(kind, createOwner(memory.owners, kind, name, pages));
  }
  for (let pfn = 0; pfn < use.length; pfn++) {
    if (use[pfn] !== USE_ALLOCATED) continue;
    const owner = owners.get(ownerKind(placement.pageblockMt[pfn >>> pageblock_order]!))!;
    const index = owner.residentPages;
    assignFrames(memory, pfn, 0, owner.kind, owner.id, index);
    owner.pages[index] = pfn;
    owner.residentPages++;
  }
}

/** Adopts zoneinfo's watermarks, boost and protection, then re-derives the per-cpu limits. */
function adoptZoneinfo(memory: GuestMemory, plans: readonly ZonePlan[]): void {
  memory.zones.forEach((zone, index) => {
    const plan = plans[index]!;
    zone.nrReservedHighatomic = plan.blocks[MIGRATE_HIGHATOMIC]! * pageblock_nr_pages;
    const info = plan.zoneinfo;
    if (info === undefined) return;
    zone.watermark[WMARK_MIN] = info.min;
    zone.watermark[WMARK_LOW] = info.low;
    zone.watermark[WMARK_HIGH] = info.high;
    zone.watermark[WMARK_PROMO] = info.promo ?? info.high + (info.high - info.low);
    zone.watermarkBoost = info.boost;
    for (let upper = 0; upper < zone.lowmemReserve.length; upper++) {
      zone.lowmemReserve[upper] = info.protection[upper] ?? 0;
    }
    for (const set of memory.pcp[index]!) {
      setupPcpHighAndBatch(set, zone, memory.config.cpus, memory.rules);
    }
  });
}

function cpusOf(input: ProcImportInput): number {
  const counts = input.zoneinfo?.zones.map((zone) => zone.cpus) ?? [];
  return Math.max(1, ...counts);
}

/** Builds the guest the files describe (rules in the header and docs/proc_import.md). */
export function importProc(input: ProcImportInput, options: ProcImportOptions = {}): ProcImport {
  kernelRules(input.kernel);
  const plans = planZones(input);
  const frameCount = plans[plans.length - 1]!.endPfn;
  const placement: Placement = {
    use: new Uint8Array(frameCount).fill(USE_HOLE),
    headOrder: new Int8Array(frameCount).fill(-1),
    pageblockMt: new Uint8Array(Math.ceil(frameCount / pageblock_nr_pages)).fill(MIGRATE_MOVABLE),
    blocks: [],
  };
  for (const plan of plans) placement.use.fill(USE_NONE, plan.startPfn, plan.endPfn);
  const outside: number[] = [];
  for (const plan of plans) {
    markOffline(placement, plan);
    outside.push(placeZoneFreeBlocks(placement, plan, input.pagetypeinfo.file));
    assignRest(placement, plan);
  }
  let presentPages = 0;
  for (const plan of plans) presentPages += plan.presentPages;
  const memory = createGuestMemory({
    memoryBytes: presentPages * PAGE_SIZE,
    machine: options.machine ?? "pc",
    kernel: input.kernel,
    cpus: options.cpus ?? cpusOf(input),
    thpEnabled: options.thpEnabled ?? "always",
    thpDefrag: options.thpDefrag ?? "madvise",
    initOnAlloc: options.initOnAlloc ?? false,
    layout: buildLayout(placement, plans),
  });
  applyPlacement(memory, placement, plans);
  adoptZoneinfo(memory, plans);
  const record = importRecord(input);
  return { memory, record, summary: importSummary(memory, placement, plans, outside) };
}

function importRecord(input: ProcImportInput): ProcImportRecord {
  const { pagetypeinfo } = input;
  const extraFree = new Map<string, Map<string, ExtraColumnCells>>();
  const extraBlocks = new Map<string, Map<string, number>>();
  for (const buddy of input.buddyinfo.rows) {
    const counts = resolveFreeCounts(input, buddy);
    const rows = pagetypeinfo.free.filter((row) => row.zone === buddy.zone);
    const zoneFree = new Map<string, ExtraColumnCells>();
    rows.forEach((row, index) => {
      if (migratetype_names.includes(row.type)) return;
      const text = row.counts.map((count, order) =>
        row.capped[order] ? `>${CAP} ` : `${String(count).padStart(6)} `,
      );
      zoneFree.set(row.type, { count: counts[index]!, text });
    });
    extraFree.set(buddy.zone, zoneFree);
    const blockRow = pagetypeinfo.blocks.find((row) => row.zone === buddy.zone)!;
    const zoneBlocks = new Map<string, number>();
    pagetypeinfo.columns.forEach((column, index) => {
      if (!migratetype_names.includes(column)) zoneBlocks.set(column, blockRow.counts[index]!);
    });
    extraBlocks.set(buddy.zone, zoneBlocks);
  }
  return {
    kernel: input.kernel,
    columns: [...pagetypeinfo.columns],
    extraFree,
    extraBlocks,
    trailer: pagetypeinfo.trailer,
  };
}

function importSummary(
  memory: GuestMemory,
  placement: Placement,
  plans: readonly ZonePlan[],
  outside: readonly number[],
): ImportSummary {
  const zones = memory.zones.map((zone, index): ImportedZoneSummary => {
    const plan = plans[index]!;
    const pageblocks: Record<string, number> = {};
    const freeBlocks: Record<string, number[]> = {};
    migratetype_names.forEach((name, mt) => {
      pageblocks[name] = plan.blocks[mt]!;
      freeBlocks[name] = Array.from(
        { length: NR_PAGE_ORDERS },
        (_, order) => zone.freeArea.count[freeListIndex(order, mt)]!,
      );
    });
    let reservedPages = 0;
    let allocatedPages = 0;
    for (let pfn = zone.startPfn; pfn < zone.endPfn; pfn++) {
      if (placement.use[pfn] === USE_RESERVED) reservedPages++;
      else if (placement.use[pfn] === USE_ALLOCATED) allocatedPages++;
    }
    return {
      name: zone.name,
      startPfn: zone.startPfn,
      spannedPages: zone.endPfn - zone.startPfn,
      presentPages: zone.presentPages,
      managedPages: zone.managedPages,
      freePages: zone.freePages,
      pageblocks,
      freeBlocks,
      freeBlocksOutsideType: outside[index]!,
      reservedPages,
      allocatedPages,
    };
  });
  const owners = memory.owners.owners.map((owner) => ({
    name: owner.name,
    kind: FrameKind[owner.kind],
    pages: owner.residentPages,
  }));
  return { kernel: memory.rules.version, zones, owners, rules: PROC_IMPORT_RULES };
}
