// `balloonlab validate DIR` (issue #5): every *.yaml scenario in a directory, one after the
// other, each into OUT/<file name>/ (validation.json and validation.html), then a summary: one
// row per scenario with its verdict counts and largest disagreement, printed as a table and
// written as OUT/summary.json.

import { readdirSync, statSync } from "node:fs";
import { basename, extname, join } from "node:path";
import type { Verdict } from "./validate_compare.ts";

/** The scenario files of a directory, sorted by name. */
export function scenarioFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

export function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** A scenario file's sub-directory name: its file name without the extension. */
export function suiteEntryName(file: string): string {
  return basename(file, extname(file));
}

/** A failed verdict, with the snapshot it belongs to. */
export interface Disagreement extends Omit<Verdict, "verdict"> {
  readonly snapshot: string;
  /** |real - model| as a percentage of guest RAM, for memory quantities in kB. */
  readonly percentOfGuest?: number;
}

export interface SuiteRow {
  readonly scenario: string;
  readonly backing: string;
  readonly freePageReporting: boolean;
  readonly guestMiB: number;
  readonly pass: number;
  readonly fail: number;
  readonly info: number;
  readonly wallMs: number;
  readonly disagreements: readonly Disagreement[];
}

/** The summary row of one validation.json's snapshots. */
export function suiteRow(
  scenario: string,
  settings: { backing: string; freePageReporting: boolean; guestBytes: number; wallMs: number },
  snapshots: Readonly<Record<string, { readonly verdicts: readonly Verdict[] }>>,
): SuiteRow {
  const counts = { pass: 0, fail: 0, info: 0 };
  const disagreements: Disagreement[] = [];
  const guest_kB = settings.guestBytes / 1024;
  for (const [snapshot, { verdicts }] of Object.entries(snapshots)) {
    for (const v of verdicts) {
      counts[v.verdict] += 1;
      if (v.verdict !== "fail") continue;
      const percent = v.unit === "kB" ? (Math.abs(v.difference) / guest_kB) * 100 : undefined;
      disagreements.push({
        snapshot,
        quantity: v.quantity,
        unit: v.unit,
        model: v.model,
        real: v.real,
        difference: v.difference,
        tolerance: v.tolerance,
        ...(percent === undefined ? {} : { percentOfGuest: Math.round(percent * 10) / 10 }),
      });
    }
  }
  return {
    scenario,
    backing: settings.backing,
    freePageReporting: settings.freePageReporting,
    guestMiB: settings.guestBytes / (1024 * 1024),
    ...counts,
    wallMs: settings.wallMs,
    disagreements,
  };
}

/** The disagreement furthest outside its tolerance. */
export function largestDisagreement(row: SuiteRow): Disagreement | undefined {
  let worst: Disagreement | undefined;
  for (const d of row.disagreements) {
    if (worst === undefined || Math.abs(d.difference) / d.tolerance > ratio(worst)) worst = d;
  }
  return worst;
}

function ratio(d: Disagreement): number {
  return Math.abs(d.difference) / d.tolerance;
}

function describe(d: Disagreement | undefined): string {
  if (d === undefined) return "-";
  const sign = d.difference > 0 ? "+" : "";
  const share = d.percentOfGuest === undefined ? "" : ` (${d.percentOfGuest}% of RAM)`;
  return `${d.snapshot} ${d.quantity} ${sign}${d.difference} ${d.unit}${share}`;
}

/** The summary as a fixed-width text table. */
export function suiteTable(rows: readonly SuiteRow[]): string {
  const header = ["scenario", "backing", "FPR", "MiB", "pass", "fail", "info", "largest"];
  const cells = rows.map((row) => [
    row.scenario,
    row.backing,
    row.freePageReporting ? "on" : "off",
    String(row.guestMiB),
    String(row.pass),
    String(row.fail),
    String(row.info),
    describe(largestDisagreement(row)),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...cells.map((row) => row[column]!.length)),
  );
  const format = (row: readonly string[]) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join("  ")
      .trimEnd();
  return [format(header), ...cells.map(format)].join("\n");
}
