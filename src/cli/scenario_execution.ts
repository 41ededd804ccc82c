// Running one resolved scenario from the command line: the model run (src/sim), the kernel
// views recorded at each snapshot, and the files a run leaves in its output directory:
// result.json (the contract), timeline.csv (one row per step) and report.html.

import { join } from "node:path";
import { stringify } from "csv-stringify/sync";
import { formatBuddyinfo, meminfoKb, vmstatRecord } from "../metrics/proc_views.ts";
import { guestBlockKinds } from "../metrics/vm_snapshot.ts";
import { type ResultJson, resultJson } from "../sim/result_json.ts";
import type { Scenario } from "../sim/scenario.ts";
import { runScenario, type ScenarioRun, type SnapshotViews } from "../sim/scenario_runner.ts";
import type { VmSim } from "../sim/vm_sim.ts";
import { writeFileAtomic, writeJsonAtomic } from "./output_files.ts";
import { type RunReportOptions, writeRunReport } from "./report_html.ts";

export const BALLOONLAB_VERSION = "0.2.0";

/** The /proc views a snapshot records, from the guest model at that moment. */
export function snapshotViews(vm: VmSim): SnapshotViews {
  const memory = vm.guest.memory;
  const buddyinfo: Record<string, number[]> = {};
  for (const zone of memory.zones) buddyinfo[zone.name] = Array.from(zone.freeArea.nrFree);
  const maps = {
    guestBlockKind: guestBlockKinds({ memory, thp: vm.guest.thp, ram: vm.ram, map: vm.map }),
    hostBlockState: vm.ram.blockState.slice(),
    hostResidentPages: vm.ram.residentCount.slice(),
  };
  return { buddyinfo, vmstat: vmstatRecord(memory), meminfoKb: meminfoKb(memory), maps };
}

export interface ExecutedScenario {
  readonly run: ScenarioRun;
  readonly result: ResultJson;
}

export function executeScenario(
  scenario: Scenario,
  onStep?: (done: number, total: number) => void,
): ExecutedScenario {
  const run = runScenario(scenario, { views: snapshotViews, onStep });
  return { run, result: resultJson(run, BALLOONLAB_VERSION) };
}

const TIMELINE_COLUMNS = [
  "step",
  "kind",
  "simTimeMs",
  "hostResidentBytes",
  "hostAllocatedBytes",
  "hostThpBytes",
  "deferredSplitBytes",
  "guestFreeBytes",
  "balloonBytes",
] as const;

/**
 * Writes result.json, timeline.csv, buddyinfo.txt and report.html into `dir`, and the report's
 * charts and memory maps as dir/charts/*.png unless `report.pngs` is false (each file
 * atomically).
 */
export function writeRunFiles(
  dir: string,
  executed: ExecutedScenario,
  report: RunReportOptions = { pngs: true },
): void {
  writeJsonAtomic(join(dir, "result.json"), executed.result);
  const rows = executed.run.timeline.map((sample) => TIMELINE_COLUMNS.map((key) => sample[key]));
  writeFileAtomic(
    join(dir, "timeline.csv"),
    stringify(rows, { header: true, columns: [...TIMELINE_COLUMNS] }),
  );
  const lastVm = executed.run.vm;
  writeFileAtomic(join(dir, "buddyinfo.txt"), formatBuddyinfo(lastVm.guest.memory));
  writeRunReport(dir, executed.run, executed.result, report);
}
