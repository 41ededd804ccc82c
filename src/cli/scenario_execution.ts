// Running one resolved scenario from the command line: the model run (src/sim), the kernel
// views recorded at each snapshot, and the files a run leaves in its output directory:
// result.json (the contract), timeline.csv (one row per step and per second of waits; also
// timeline.parquet for long runs) and report.html.

import { join } from "node:path";
import { stringify } from "csv-stringify/sync";
import { parquetWriteBuffer } from "hyparquet-writer";
import { formatBuddyinfo, meminfoKb, vmstatRecord } from "../metrics/proc_views.ts";
import { guestBlockKinds } from "../metrics/vm_snapshot.ts";
import { type ResultJson, resultJson } from "../sim/result_json.ts";
import type { Scenario } from "../sim/scenario.ts";
import { runScenario, type ScenarioRun, type SnapshotViews } from "../sim/scenario_runner.ts";
import type { VmSim } from "../sim/vm_sim.ts";
import { loadInitialState } from "./initial_state.ts";
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
  const run = runScenario(scenario, { views: snapshotViews, onStep }, loadInitialState(scenario));
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

/** Runs with more timeline rows than this also get timeline.parquet (columnar, compressed). */
export const PARQUET_ROWS_MIN = 1000;

/** The timeline as a Parquet file: one column per field, numbers as DOUBLE, kind as STRING. */
export function timelineParquet(executed: ExecutedScenario): Uint8Array {
  const timeline = executed.run.timeline;
  const columnData = TIMELINE_COLUMNS.map((key) =>
    key === "kind"
      ? { name: key, data: timeline.map((sample) => sample.kind), type: "STRING" as const }
      : { name: key, data: timeline.map((sample) => Number(sample[key])), type: "DOUBLE" as const },
  );
  return new Uint8Array(parquetWriteBuffer({ columnData }));
}

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
  if (executed.run.timeline.length > PARQUET_ROWS_MIN) {
    writeFileAtomic(join(dir, "timeline.parquet"), timelineParquet(executed));
  }
  const lastVm = executed.run.vm;
  writeFileAtomic(join(dir, "buddyinfo.txt"), formatBuddyinfo(lastVm.guest.memory));
  writeRunReport(dir, executed.run, executed.result, report);
}
