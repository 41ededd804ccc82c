// `balloonlab run SCENARIO`: one experiment. Writes DIR/result.json (the contract),
// DIR/timeline.csv and DIR/report.html; with --json, result.json also goes to stdout.

import { basename, join } from "node:path";
import type { Command } from "@commander-js/extra-typings";
import { InputError } from "../core/input_error.ts";
import { createProgress } from "./progress.ts";
import { executeScenario, writeRunFiles } from "./scenario_execution.ts";
import { loadScenarioFile } from "./scenario_file.ts";

/** Repeatable option: collects every value. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** --seed N as a scenario override. */
export function seedOverrides(seed: string | undefined): string[] {
  if (seed === undefined) return [];
  if (!/^\d+$/.test(seed)) {
    throw new InputError({
      file: "<argv>",
      field: "--seed",
      message: `expected an integer, got "${seed}"`,
    });
  }
  return [`seed=${seed}`];
}

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("run one scenario file and write result.json, timeline.csv and report.html")
    .argument("<scenario>", "scenario file (YAML, see docs/scenarios.md)")
    .option("--out <dir>", "output directory (default: balloonlab-out/<scenario name>)")
    .option("--seed <n>", "override the scenario's seed")
    .option("--set <path=value>", "override a scenario value (repeatable)", collect, [] as string[])
    .option("--json", "also print result.json on stdout")
    .action((file, options) => {
      const overrides = [...options.set, ...seedOverrides(options.seed)];
      const scenario = loadScenarioFile(file, overrides);
      const dir = options.out ?? join("balloonlab-out", scenario.name || basename(file));
      const progress = createProgress(scenario.name);
      const executed = executeScenario(scenario, (done, total) =>
        progress.update(done, total, `step ${done}/${total}`),
      );
      progress.stop();
      writeRunFiles(dir, executed);
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(executed.result, undefined, 2)}\n`);
      } else {
        process.stdout.write(`${scenario.name}: ${executed.result.snapshots.length} snapshots\n`);
        process.stdout.write(`wrote ${join(dir, "result.json")}\n`);
        process.stdout.write(`report: ${join(dir, "report.html")}\n`);
      }
    });
}
