// `balloonlab compare`: the same scenario over the product of axes, and the comparison table.
//
// An axis is a dotted scenario path and its values (`balloon.policy=linux-4k,thp-order`); a cell
// is one value per axis, named from those values (`linux-4k_anon`). Every column of the table is
// a formula over two snapshots of a cell, `before` (the first snapshot) and `after` (the last),
// so that a column means the same thing in every cell; README.md defines each one.

import { InputError } from "../core/input_error.ts";
import type { ResultJson, ResultSnapshotJson } from "../sim/result_json.ts";

export interface Axis {
  readonly path: string;
  readonly values: readonly string[];
}

export interface Cell {
  /** Directory-safe name made of the axis values. */
  readonly name: string;
  /** The `--set` overrides that make this cell, path=value. */
  readonly sets: readonly string[];
  /** Axis path → value. */
  readonly settings: Record<string, string>;
}

/** Parses `path=v1,v2,...` (an --axis argument). */
export function parseAxis(text: string): Axis {
  const equals = text.indexOf("=");
  const path = text.slice(0, equals);
  const values = text
    .slice(equals + 1)
    .split(",")
    .map((value) => value.trim());
  if (equals <= 0 || !/^[A-Za-z][\w.]*$/.test(path) || values.some((value) => value === "")) {
    throw new InputError({
      file: "<argv>",
      field: "--axis",
      message: `expected path=value1,value2,... (e.g. balloon.policy=linux-4k,thp-order), got "${text}"`,
    });
  }
  return { path, values };
}

function safeName(value: string): string {
  return value.replace(/[^A-Za-z0-9.-]+/g, "-");
}

/** Every combination of the axes' values, first axis slowest. */
export function axisCells(axes: readonly Axis[]): Cell[] {
  let cells: Cell[] = [{ name: "", sets: [], settings: {} }];
  for (const axis of axes) {
    const next: Cell[] = [];
    for (const cell of cells) {
      for (const value of axis.values) {
        next.push({
          name: cell.name === "" ? safeName(value) : `${cell.name}_${safeName(value)}`,
          sets: [...cell.sets, `${axis.path}=${value}`],
          settings: { ...cell.settings, [axis.path]: value },
        });
      }
    }
    cells = next;
  }
  if (cells.length === 1 && cells[0]!.name === "")
    return [{ name: "base", sets: [], settings: {} }];
  return cells;
}

/** One row of comparison.json: the cell's settings and the table's columns. */
export interface ComparisonRow {
  cell: string;
  settings: Record<string, string>;
  before: string;
  after: string;
  /** ΔramAllocated: host memory really returned (MiB). */
  hostFreedMiB: number;
  /** ΔramResident: host memory unmapped from the guest (MiB). */
  hostUnmappedMiB: number;
  /** after.deferredSplit: memory unmapped but still held, waiting for a split (MiB). */
  deferredSplitMiB: number;
  /** ΔramThp: host memory no longer mapped by huge pages (MiB). */
  hostThpLostMiB: number;
  /** after AnonHugePages / before AnonHugePages in the guest (percent; 100 with none before). */
  guestThpKeptPercent: number;
  /** The ladder after: 2 MiB blocks huge in guest and host, one, neither. */
  hugeBoth: number;
  guestOnly: number;
  hostOnly: number;
  neither: number;
  /** after.pagesInflated in MiB: what the balloon holds. */
  balloonMiB: number;
  /** Δrequests (inflate, deflate, report) and Δ(madvise + fallocate). */
  requests: number;
  syscalls: number;
  /** ΔsimTimeMs, and the part of it spent in balloon/reporting work. */
  simTimeMs: number;
  balloonTimeMs: number;
}

const KIB_PER_MIB = 1024;

function mib(kB: number): number {
  return Math.round((kB / KIB_PER_MIB) * 10) / 10;
}

export function comparisonRow(cell: Cell, result: ResultJson): ComparisonRow {
  const snapshots = result.snapshots;
  if (snapshots.length < 2) {
    throw new InputError({
      file: "<scenario>",
      field: "steps",
      message: "compare needs at least two snapshot steps (before and after)",
    });
  }
  const before = snapshots[0]!;
  const after = snapshots[snapshots.length - 1]!;
  const thpBefore = before.guest.meminfo_kB.AnonHugePages ?? 0;
  const thpAfter = after.guest.meminfo_kB.AnonHugePages ?? 0;
  return {
    cell: cell.name,
    settings: cell.settings,
    before: before.name,
    after: after.name,
    hostFreedMiB: mib(before.host.ramAllocated_kB - after.host.ramAllocated_kB),
    hostUnmappedMiB: mib(before.host.ramResident_kB - after.host.ramResident_kB),
    deferredSplitMiB: mib(after.host.deferredSplit_kB),
    hostThpLostMiB: mib(before.host.ramThp_kB - after.host.ramThp_kB),
    guestThpKeptPercent: thpBefore === 0 ? 100 : Math.round((thpAfter / thpBefore) * 100),
    hugeBoth: after.ladder.hugeBoth,
    guestOnly: after.ladder.guestOnly,
    hostOnly: after.ladder.hostOnly,
    neither: after.ladder.neither,
    balloonMiB: mib((after.balloon.pagesInflated * 4096) / 1024),
    requests: after.balloon.requests - before.balloon.requests,
    syscalls: syscalls(after) - syscalls(before),
    simTimeMs: Math.round(after.simTimeMs - before.simTimeMs),
    balloonTimeMs: Math.round(after.balloon.balloonTimeMs - before.balloon.balloonTimeMs),
  };
}

function syscalls(snapshot: ResultSnapshotJson): number {
  return snapshot.host.syscalls.madvise + snapshot.host.syscalls.fallocate;
}

/** The comparison as a fixed-width text table for the terminal. */
export function formatComparison(rows: readonly ComparisonRow[]): string {
  const header = [
    "cell",
    "freed MiB",
    "unmapped",
    "deferred",
    "THP lost",
    "guest THP %",
    "both/g/h/none",
    "requests",
    "syscalls",
    "balloon ms",
  ];
  const lines = rows.map((row) => [
    row.cell,
    row.hostFreedMiB.toFixed(1),
    row.hostUnmappedMiB.toFixed(1),
    row.deferredSplitMiB.toFixed(1),
    row.hostThpLostMiB.toFixed(1),
    String(row.guestThpKeptPercent),
    `${row.hugeBoth}/${row.guestOnly}/${row.hostOnly}/${row.neither}`,
    String(row.requests),
    String(row.syscalls),
    String(row.balloonTimeMs),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => line[column]!.length)),
  );
  const format = (cells: string[]): string =>
    cells
      .map((text, column) =>
        column === 0 ? text.padEnd(widths[column]!) : text.padStart(widths[column]!),
      )
      .join("  ");
  return `${[format(header), ...lines.map(format)].join("\n")}\n`;
}
