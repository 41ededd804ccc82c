// Parsers for the /proc files `balloonlab proc import` reads: buddyinfo, pagetypeinfo and
// zoneinfo as the kernel prints them (formats: /work/research/procfs.md §1, §2, §6).
//
// Each parser checks the file line by line and throws an InputError naming the file, the line
// and what was expected there; nothing is guessed. Whitespace between fields may vary (the
// kernel's widths are not required), but a file whose spacing is not the kernel's will not be
// printed back byte for byte. Only node 0 is supported. Every file must end with a newline, as
// the kernel's do: a missing one means the capture was cut.

import { InputError } from "../core/input_error.ts";
import { NR_PAGE_ORDERS, pageblock_nr_pages, pageblock_order } from "../core/limits.ts";
import type {
  BuddyinfoData,
  BuddyinfoRow,
  PagetypeBlockRow,
  PagetypeFreeRow,
  PagetypeinfoData,
  ZoneinfoData,
  ZoneinfoZone,
} from "../guest/proc_import.ts";
import { KERNEL_ZONE_NAMES, PAGETYPEINFO_FREECOUNT_MAX } from "./proc_views.ts";

function fail(file: string, line: number, message: string): never {
  throw new InputError({ file, line, message });
}

/** The file's lines without the final newline; empty and cut files are refused. */
function splitLines(text: string, file: string): string[] {
  if (text.length === 0) fail(file, 1, "the file is empty");
  const lines = text.split("\n");
  if (lines[lines.length - 1] !== "") {
    fail(file, lines.length, "truncated: the last line does not end with a newline");
  }
  lines.pop();
  return lines;
}

function parseCount(file: string, line: number, what: string, token: string): number {
  if (!/^\d+$/.test(token))
    fail(file, line, `${what}: expected a non-negative count, got "${token}"`);
  const value = Number(token);
  if (!Number.isSafeInteger(value)) fail(file, line, `${what}: count "${token}" is too large`);
  return value;
}

function checkNodeAndZone(file: string, line: number, node: string, zone: string): void {
  if (node !== "0") fail(file, line, `node ${node}: only node 0 is supported`);
  if (!KERNEL_ZONE_NAMES.includes(zone)) {
    fail(file, line, `unknown zone "${zone}": expected one of ${KERNEL_ZONE_NAMES.join(", ")}`);
  }
}

function checkZoneOrder(file: string, line: number, zones: readonly string[], zone: string): void {
  const previous = zones[zones.length - 1];
  if (zones.includes(zone)) fail(file, line, `zone ${zone} appears twice`);
  if (
    previous !== undefined &&
    KERNEL_ZONE_NAMES.indexOf(zone) < KERNEL_ZONE_NAMES.indexOf(previous)
  ) {
    fail(file, line, `zone ${zone} after ${previous}: zones must be in zone order`);
  }
}

/** Splits the cells after a row's label; wrong counts name what was expected. */
function cells(file: string, line: number, rest: string, expected: number, what: string): string[] {
  const tokens = rest
    .trim()
    .split(/ +/)
    .filter((token) => token !== "");
  if (tokens.length !== expected) {
    fail(file, line, `expected ${expected} ${what}, got ${tokens.length}`);
  }
  return tokens;
}

/** /proc/buddyinfo: "Node 0, zone %8s " and 11 × "%6lu " per populated zone. */
export function parseBuddyinfo(text: string, file: string): BuddyinfoData {
  const rows: BuddyinfoRow[] = [];
  splitLines(text, file).forEach((content, index) => {
    const line = index + 1;
    const match = /^Node (\S+), zone +(\S+)(?: (.*))?$/.exec(content);
    if (match === null) {
      fail(file, line, 'expected "Node 0, zone <name>" followed by 11 free counts');
    }
    const [, node, zone, rest] = match;
    checkNodeAndZone(file, line, node!, zone!);
    checkZoneOrder(
      file,
      line,
      rows.map((row) => row.zone),
      zone!,
    );
    const tokens = cells(file, line, rest ?? "", NR_PAGE_ORDERS, "free counts (orders 0..10)");
    const nrFree = tokens.map((token, order) => parseCount(file, line, `order ${order}`, token));
    rows.push({ zone: zone!, line, nrFree });
  });
  return { file, rows };
}

/** A cursor over a file's lines with 1-based numbers. */
interface Lines {
  readonly file: string;
  readonly lines: readonly string[];
  next: number;
}

function expectLine(lines: Lines, pattern: RegExp, expected: string): RegExpExecArray {
  const line = lines.next + 1;
  const content = lines.lines[lines.next];
  if (content === undefined) fail(lines.file, line, `truncated: expected ${expected}`);
  const match = pattern.exec(content);
  if (match === null) fail(lines.file, line, `expected ${expected}, got "${content}"`);
  lines.next++;
  return match;
}

function parsePagetypeHeader(lines: Lines): void {
  const { file } = lines;
  const order = expectLine(lines, /^Page block order: (\d+)$/, '"Page block order: 9"');
  if (Number(order[1]) !== pageblock_order) {
    fail(file, 1, `page block order ${order[1]}: the model has ${pageblock_order} (x86-64)`);
  }
  const pages = expectLine(lines, /^Pages per block: +(\d+)$/, '"Pages per block:  512"');
  if (Number(pages[1]) !== pageblock_nr_pages) {
    fail(file, 2, `pages per block ${pages[1]}: the model has ${pageblock_nr_pages}`);
  }
  expectLine(lines, /^$/, "an empty line");
  const orders = expectLine(
    lines,
    /^Free pages count per migrate type at order((?: +\d+)+) *$/,
    '"Free pages count per migrate type at order" and the orders 0..10',
  );
  const listed = orders[1]!.trim().split(/ +/).map(Number);
  if (listed.length !== NR_PAGE_ORDERS || listed.some((value, index) => value !== index)) {
    fail(file, 4, `expected the orders 0..${NR_PAGE_ORDERS - 1} in the header`);
  }
}

function parseFreeRow(lines: Lines): PagetypeFreeRow {
  const { file } = lines;
  const line = lines.next + 1;
  const match = expectLine(
    lines,
    /^Node +(\S+), zone +(\S+), type +(\S+)(?: (.*))?$/,
    '"Node    0, zone <name>, type <migratetype>" and 11 counts',
  );
  const [, node, zone, type, rest] = match;
  checkNodeAndZone(file, line, node!, zone!);
  const tokens = cells(file, line, rest ?? "", NR_PAGE_ORDERS, "free counts (orders 0..10)");
  const capped = tokens.map((token) => token.startsWith(">"));
  const counts = tokens.map((token, order) => {
    const what = `order ${order}`;
    const value = parseCount(file, line, what, token.startsWith(">") ? token.slice(1) : token);
    if (token.startsWith(">") && value !== PAGETYPEINFO_FREECOUNT_MAX) {
      fail(file, line, `${what}: expected ">${PAGETYPEINFO_FREECOUNT_MAX}", got "${token}"`);
    }
    return value;
  });
  return { zone: zone!, type: type!, line, counts, capped };
}

function parseBlockRows(lines: Lines, columns: readonly string[]): PagetypeBlockRow[] {
  const { file } = lines;
  const rows: PagetypeBlockRow[] = [];
  while (lines.next < lines.lines.length && lines.lines[lines.next] !== "") {
    const line = lines.next + 1;
    const match = expectLine(
      lines,
      /^Node (\S+), zone +(\S+)(?: (.*))?$/,
      '"Node 0, zone <name>" and one pageblock count per migratetype',
    );
    const [, node, zone, rest] = match;
    checkNodeAndZone(file, line, node!, zone!);
    checkZoneOrder(
      file,
      line,
      rows.map((row) => row.zone),
      zone!,
    );
    const tokens = cells(file, line, rest ?? "", columns.length, "pageblock counts");
    const counts = tokens.map((token, index) => parseCount(file, line, columns[index]!, token));
    rows.push({ zone: zone!, line, counts });
  }
  if (rows.length === 0) fail(file, lines.next + 1, "truncated: expected pageblock count rows");
  return rows;
}

/** The free rows must give, zone by zone in block-row order, one row per column in order. */
function checkFreeRows(
  file: string,
  free: readonly PagetypeFreeRow[],
  blocks: readonly PagetypeBlockRow[],
  columns: readonly string[],
): void {
  let index = 0;
  for (const block of blocks) {
    for (const column of columns) {
      const row = free[index];
      if (row === undefined) {
        fail(file, block.line, `zone ${block.zone}: no free-count row for type ${column}`);
      }
      if (row.zone !== block.zone || row.type !== column) {
        fail(file, row.line, `expected zone ${block.zone}, type ${column}`);
      }
      index++;
    }
  }
  const extra = free[index];
  if (extra !== undefined) fail(file, extra.line, `zone ${extra.zone} has no pageblock count row`);
}

/**
 * /proc/pagetypeinfo: the header, free counts per zone and migratetype (">100000" at the cap),
 * a blank line, the block-count header and rows, and an optional trailing section (PAGE_OWNER's
 * "Number of mixed blocks"), kept as read.
 */
export function parsePagetypeinfo(text: string, file: string): PagetypeinfoData {
  const lines: Lines = { file, lines: splitLines(text, file), next: 0 };
  parsePagetypeHeader(lines);
  const free: PagetypeFreeRow[] = [];
  while (lines.next < lines.lines.length && lines.lines[lines.next] !== "") {
    free.push(parseFreeRow(lines));
  }
  if (free.length === 0) fail(file, lines.next + 1, "expected free-count rows after the header");
  expectLine(lines, /^$/, "an empty line before the block counts");
  const header = expectLine(
    lines,
    /^Number of blocks type +(.*)$/,
    '"Number of blocks type" and the migratetype names',
  );
  const columns = header[1]!.trim().split(/ +/);
  for (const required of ["Unmovable", "Movable", "Reclaimable", "HighAtomic"]) {
    if (!columns.includes(required)) {
      fail(file, lines.next, `expected a ${required} column, got "${columns.join(" ")}"`);
    }
  }
  if (new Set(columns).size !== columns.length) fail(file, lines.next, "a column appears twice");
  const blocks = parseBlockRows(lines, columns);
  checkFreeRows(file, free, blocks, columns);
  let trailer = "";
  if (lines.next < lines.lines.length) {
    const next = lines.lines[lines.next + 1];
    if (next === undefined || !next.startsWith("Number of mixed blocks")) {
      fail(file, lines.next + 2, 'expected the end of the file or "Number of mixed blocks"');
    }
    trailer = `${lines.lines.slice(lines.next).join("\n")}\n`;
  }
  return { file, columns, free, blocks, trailer };
}

/** Zone fields as they are read, before the required ones are checked. */
interface ZoneFields {
  zone: string;
  line: number;
  values: Map<string, number>;
  protection: number[] | undefined;
  cpus: number;
}

const REQUIRED_KEYS = ["pages free", "min", "low", "high", "spanned", "present", "managed"];

/** One line inside a zone: a known field, or a statistic or pageset line that is skipped. */
function zoneinfoField(file: string, line: number, zone: ZoneFields, content: string): void {
  const trimmed = content.trim();
  const field = /^(pages free|boost|min|low|high|promo|spanned|present|managed|cma) +(\S+)$/.exec(
    trimmed,
  );
  if (field !== null) {
    const key = field[1]!;
    if (key !== "cma") zone.values.set(key, parseCount(file, line, key, field[2]!));
    return;
  }
  const protection = /^protection: \((.*)\)$/.exec(trimmed);
  if (protection !== null) {
    zone.protection = protection[1]!.split(",").map((token) => {
      const value = token.trim();
      if (!/^-?\d+$/.test(value)) fail(file, line, `protection: expected integers, got "${value}"`);
      return Number(value);
    });
    return;
  }
  const start = /^start_pfn: +(\S+)$/.exec(trimmed);
  if (start !== null) {
    zone.values.set("start_pfn", parseCount(file, line, "start_pfn", start[1]!));
    return;
  }
  if (/^cpu: +\d+$/.test(trimmed)) {
    zone.cpus++;
    return;
  }
  if (trimmed === "per-node stats" || trimmed === "pagesets") return;
  if (/^[a-z_][a-z0-9_]*(?: [a-z_]+)*:? +-?\d+$/.test(trimmed)) return;
  fail(file, line, `unexpected line "${content}"`);
}

function finishZone(file: string, fields: ZoneFields): ZoneinfoZone {
  for (const key of REQUIRED_KEYS) {
    if (!fields.values.has(key)) fail(file, fields.line, `zone ${fields.zone}: missing "${key}"`);
  }
  if (fields.protection === undefined) {
    fail(file, fields.line, `zone ${fields.zone}: missing "protection: (...)"`);
  }
  const value = (key: string): number => fields.values.get(key) ?? 0;
  return {
    zone: fields.zone,
    line: fields.line,
    startPfn: fields.values.get("start_pfn"),
    spanned: value("spanned"),
    present: value("present"),
    managed: value("managed"),
    boost: value("boost"),
    min: value("min"),
    low: value("low"),
    high: value("high"),
    promo: fields.values.get("promo"),
    protection: fields.protection,
    cpus: fields.cpus,
  };
}

/**
 * /proc/zoneinfo: per zone "Node 0, zone %8s", the free/watermark/span lines, protection and,
 * for populated zones, stats, pagesets and start_pfn. Only the fields the importer uses are kept
 * (watermarks, spans, protection, start_pfn, the CPU count); statistic lines are checked for shape.
 */
export function parseZoneinfo(text: string, file: string): ZoneinfoData {
  const zones: ZoneinfoZone[] = [];
  let current: ZoneFields | undefined;
  splitLines(text, file).forEach((content, index) => {
    const line = index + 1;
    const header = /^Node (\S+), zone +(\S+)$/.exec(content);
    if (header !== null) {
      if (current !== undefined) zones.push(finishZone(file, current));
      checkNodeAndZone(file, line, header[1]!, header[2]!);
      checkZoneOrder(
        file,
        line,
        zones.map((zone) => zone.zone),
        header[2]!,
      );
      current = { zone: header[2]!, line, values: new Map(), protection: undefined, cpus: 0 };
      return;
    }
    if (current === undefined) fail(file, line, 'expected "Node 0, zone <name>"');
    zoneinfoField(file, line, current, content);
  });
  if (current !== undefined) zones.push(finishZone(file, current));
  if (zones.length === 0) fail(file, 1, "no zones");
  return { file, zones };
}
