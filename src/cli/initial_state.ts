// Reading a scenario's guest.initialState ("start from a real machine"): the CLI side of it.
// The files are read and parsed here (src/metrics/proc_parse.ts, as `balloonlab proc import`
// does); the runner (src/sim/scenario_runner.ts runScenario) takes the parsed input and builds
// the guest with importProc, since sim reads no files.

import type { ProcImportInput } from "../guest/proc_import.ts";
import type { Scenario } from "../sim/scenario.ts";
import { parseImportFiles } from "./proc_command.ts";

/**
 * The parsed capture of the scenario's guest.initialState, for the scenario's guest kernel, or
 * undefined when it has none. Bad files throw InputError naming the file and line.
 */
export function loadInitialState(scenario: Scenario): ProcImportInput | undefined {
  const state = scenario.guest.initialState;
  if (state === undefined) return undefined;
  const files = {
    buddyinfo: state.buddyinfo,
    pagetypeinfo: state.pagetypeinfo,
    zoneinfo: state.zoneinfo,
  };
  return parseImportFiles(files, scenario.guest.kernel);
}
