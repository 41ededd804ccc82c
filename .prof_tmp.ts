import { join } from "node:path";
import { axisCells, parseAxis } from "./src/cli/comparison.ts";
import { DEFAULT_AXES, DEFAULT_SCENARIO_YAML } from "./src/cli/default_scenario.ts";
import { executeScenario } from "./src/cli/scenario_execution.ts";
import { writeRunReport } from "./src/cli/report_html.ts";
import { parseScenarioText } from "./src/cli/scenario_file.ts";
const cells = axisCells(DEFAULT_AXES.map(parseAxis)).slice(0, Number(process.argv[2] ?? 12));
let sim = 0, rep = 0;
for (const cell of cells) {
  const sc = parseScenarioText(DEFAULT_SCENARIO_YAML, "x.yaml", cell.sets);
  let c = process.cpuUsage();
  const ex = executeScenario(sc);
  let d = process.cpuUsage(c); sim += d.user + d.system;
  c = process.cpuUsage();
  writeRunReport(join("/tmp/prof_out", cell.name), ex.run, ex.result);
  d = process.cpuUsage(c); rep += d.user + d.system;
}
console.log(cells.length, "cells: sim cpu ms", (sim/1000).toFixed(0), "report cpu ms", (rep/1000).toFixed(0));
