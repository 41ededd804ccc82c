// `balloonlab compare [SCENARIO]`: the same scenario and seed over the product of axes. Writes
// DIR/<cell>/result.json and report.html per cell (the cell's charts as PNG too with
// --cell-pngs), DIR/manifest.json, DIR/comparison.json, DIR/report.html with DIR/charts/*.png,
// and prints the comparison table. Without a file it runs the embedded default experiment.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "@commander-js/extra-typings";
import { InputError } from "../core/input_error.ts";
import type { Scenario } from "../sim/scenario.ts";
import { type CompareCell, writeCompareReport } from "./compare_report.ts";
import {
  type Axis,
  axisCells,
  type ComparisonRow,
  comparisonRow,
  formatComparison,
  parseAxis,
} from "./comparison.ts";
import { DEFAULT_AXES, DEFAULT_SCENARIO_NAME, DEFAULT_SCENARIO_YAML } from "./default_scenario.ts";
import { writeJsonAtomic } from "./output_files.ts";
import { createProgress } from "./progress.ts";
import { collect, seedOverrides } from "./run_command.ts";
import { executeScenario, writeRunFiles } from "./scenario_execution.ts";
import { parseScenarioText } from "./scenario_file.ts";

export interface CompareOptions {
  readonly file: string | undefined;
  readonly axes: readonly string[];
  readonly policies: string | undefined;
  readonly out: string | undefined;
  readonly seed: string | undefined;
  readonly sets: readonly string[];
  /** Also write each cell's charts and maps as PNG (off by default: it doubles the run time). */
  readonly cellPngs?: boolean;
}

export interface CompareOutcome {
  readonly dir: string;
  readonly rows: ComparisonRow[];
}

function readScenarioText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code ?? "error";
    throw new InputError({ file, message: `cannot read the file (${code})` });
  }
}

export function runComparison(options: CompareOptions): CompareOutcome {
  const text = options.file === undefined ? DEFAULT_SCENARIO_YAML : readScenarioText(options.file);
  const file = options.file ?? `${DEFAULT_SCENARIO_NAME}.yaml`;
  const axisTexts =
    options.file === undefined && options.axes.length === 0 ? DEFAULT_AXES : options.axes;
  const axes: Axis[] = axisTexts.map(parseAxis);
  if (options.policies !== undefined) axes.unshift(parseAxis(`balloon.policy=${options.policies}`));
  const cells = axisCells(axes);
  const base = [...options.sets, ...seedOverrides(options.seed)];
  // Every cell is validated before anything runs: a bad axis value fails the whole command.
  const scenarios: Scenario[] = cells.map((cell) =>
    parseScenarioText(text, file, [...base, ...cell.sets]),
  );
  const dir = options.out ?? join("balloonlab-out", `compare-${scenarios[0]!.name}`);
  const progress = createProgress("compare");
  const rows: ComparisonRow[] = [];
  const reportCells: CompareCell[] = [];
  cells.forEach((cell, index) => {
    progress.update(index, cells.length, cell.name);
    const executed = executeScenario(scenarios[index]!);
    writeRunFiles(join(dir, cell.name), executed, { pngs: options.cellPngs === true });
    const row = comparisonRow(cell, executed.result);
    rows.push(row);
    const snapshots = executed.result.snapshots;
    reportCells.push({
      row,
      timeline: executed.run.timeline,
      lastLadder: snapshots[snapshots.length - 1]!.ladder,
    });
  });
  progress.stop();
  writeJsonAtomic(join(dir, "manifest.json"), {
    scenario: scenarios[0]!.name,
    axes,
    cells: cells.map((cell, index) => ({ ...cell, scenario: scenarios[index] })),
  });
  writeJsonAtomic(join(dir, "comparison.json"), {
    before: rows[0]?.before,
    after: rows[0]?.after,
    rows,
  });
  writeCompareReport(dir, { scenarioName: scenarios[0]!.name, axes, cells: reportCells });
  return { dir, rows };
}

export function registerCompareCommand(program: Command): void {
  program
    .command("compare")
    .description("run a scenario over the product of axes and compare the cells")
    .argument("[scenario]", "scenario file (default: the embedded thread-question experiment)")
    .option("--axis <path=values>", "an axis to vary (repeatable)", collect, [] as string[])
    .option("--policies <list>", "shorthand for --axis balloon.policy=a,b,...")
    .option("--out <dir>", "output directory (default: balloonlab-out/compare-<name>)")
    .option("--seed <n>", "override the scenario's seed")
    .option("--set <path=value>", "override a scenario value (repeatable)", collect, [] as string[])
    .option("--json", "print comparison.json on stdout instead of the table")
    .option("--cell-pngs", "also write each cell's charts as PNG files (slower)")
    .action((file, options) => {
      const outcome = runComparison({
        file,
        axes: options.axis,
        policies: options.policies,
        out: options.out,
        seed: options.seed,
        sets: options.set,
        cellPngs: options.cellPngs === true,
      });
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify({ rows: outcome.rows }, undefined, 2)}\n`);
        return;
      }
      process.stdout.write(formatComparison(outcome.rows));
      process.stdout.write(`wrote ${join(outcome.dir, "comparison.json")}\n`);
      process.stdout.write(`report: ${join(outcome.dir, "report.html")}\n`);
    });
}
