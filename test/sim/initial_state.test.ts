// Goal: a scenario with guest.initialState ("start from a real machine") runs end to end on the
// captured guest: the guest is importProc's (not a fresh boot), the host RAMBlock map comes from
// the imported layout's RAM, the host already backs what the capture shows allocated, and the
// balloon and both checkers work on it as on a booted guest. A guest.memory that disagrees with
// the capture is refused, naming guest.memory and both sizes.
// Method: parse a scenario (the 2 GiB 6.1 capture in test/fixtures/proc, host THP off so host
// residency is page-exact) whose first step is a snapshot, then a balloon to 1.5 GiB and a
// second snapshot; the files are read by loadInitialState as the CLI does. The first snapshot's
// buddyinfo must be the capture's nr_free per zone and order, the host's resident memory at
// start the imported allocated frames plus the imported reserved ones (the boot reservations
// the VM touches), and the checkers clean at the end. The RAMBlock map from RAM ranges is also
// checked against QEMU's split for booted layouts, and for a low RAM end off a 2 MiB boundary.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { loadInitialState } from "../../src/cli/initial_state.ts";
import { snapshotViews } from "../../src/cli/scenario_execution.ts";
import { parseScenarioText } from "../../src/cli/scenario_file.ts";
import { InputError } from "../../src/core/input_error.ts";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import { kernelRules } from "../../src/guest/kernel_version.ts";
import { guestLayout, type MachineType } from "../../src/guest/memory_layout.ts";
import { importProc } from "../../src/guest/proc_import.ts";
import type { Scenario } from "../../src/sim/scenario.ts";
import { runScenario } from "../../src/sim/scenario_runner.ts";
import { createGuestRamMap, guestRamMapOfRanges } from "../../src/virtio/guest_ram_map.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** A scenario file that does not exist: initialState paths resolve from its directory. */
const SCENARIO_FILE = "test/fixtures/scenarios/initial_state_2g.yaml";

function scenarioText(memory: string): string {
  return `name: from-capture
guest:
  memory: ${memory}
  kernel: "6.1"
  cpus: 2
  thp: { enabled: madvise, defrag: madvise }
  initialState:
    buddyinfo: ../proc/guest_2g_6.1.buddyinfo
    pagetypeinfo: ../proc/guest_2g_6.1.pagetypeinfo
    zoneinfo: ../proc/guest_2g_6.1.zoneinfo
host:
  memory: 8GiB
  thp: { enabled: never }
steps:
  - snapshot: start
  - balloon: { target: 1536MiB }
  - snapshot: ballooned
`;
}

function capture(memory: string): Scenario {
  return parseScenarioText(scenarioText(memory), SCENARIO_FILE);
}

describe("a scenario starting from a captured guest", () => {
  const scenario = capture("2GiB");
  const input = loadInitialState(scenario)!;
  const run = runScenario(scenario, { views: snapshotViews }, input);

  test("runs on the imported guest with both checkers clean", () => {
    expect(run.snapshots.map((each) => each.name)).toEqual(["start", "ballooned"]);
    expect(run.vm.guest.memory.config.cpus).toBe(2);
    expect(run.vm.guest.memory.config.thpEnabled).toBe("madvise");
    expect(run.vm.map.pageCount * PAGE_SIZE).toBe(2 * GiB);
    expect(run.timeline.at(-1)!.balloonBytes).toBe(512 * MiB);
    expect(checkGuestMemory(run.vm.guest.memory)).toEqual([]);
    expect(checkHostRam(run.vm.ram)).toEqual([]);
  });

  test("the first snapshot's buddyinfo is the capture's nr_free per zone and order", () => {
    const expected = Object.fromEntries(input.buddyinfo.rows.map((row) => [row.zone, row.nrFree]));
    expect(run.snapshots[0]!.views.buddyinfo).toEqual(expected);
  });

  test("the host backs the imported allocated memory (and the reservations) at start", () => {
    const { summary } = importProc(input);
    let allocated = 0;
    let reserved = 0;
    for (const zone of summary.zones) {
      allocated += zone.allocatedPages;
      reserved += zone.reservedPages;
    }
    expect(allocated).toBeGreaterThan(0);
    const start = run.timeline[0]!;
    expect(start.kind).toBe("start");
    expect(start.hostResidentBytes).toBe((allocated + reserved) * PAGE_SIZE);
  });

  test("a guest.memory that is not the capture's size is refused", () => {
    const wrong = capture("4GiB");
    const refuse = () => runScenario(wrong, { views: snapshotViews }, loadInitialState(wrong));
    expect(refuse).toThrow(InputError);
    expect(refuse).toThrow(/guest_2g_6\.1\.zoneinfo: guest\.memory: .*4096 MiB.*2048 MiB/);
    // Within a few MiB is the same machine.
    const close = capture("2050MiB");
    expect(() =>
      runScenario(close, { views: snapshotViews }, loadInitialState(close)),
    ).not.toThrow();
  });
});

test("a bad capture file is an InputError naming the file and line", () => {
  const text = scenarioText("2GiB").replace(
    "../proc/guest_2g_6.1.buddyinfo",
    "../proc/bad/not_a_number.buddyinfo",
  );
  const scenario = parseScenarioText(text, SCENARIO_FILE);
  expect(() => loadInitialState(scenario)).toThrow(InputError);
  expect(() => loadInitialState(scenario)).toThrow(/not_a_number\.buddyinfo:\d+: /);
});

describe("the RAMBlock map from the layout's RAM ranges", () => {
  const sizes: [MachineType, number][] = [
    ["pc", 1 * GiB],
    ["pc", 3 * GiB + 512 * MiB],
    ["pc", 8 * GiB],
    ["q35", 2 * GiB + 768 * MiB],
    ["q35", 6 * GiB + 2 * MiB],
  ];
  test.each(sizes)("is QEMU's split for a booted %s guest of %d bytes", (machine, bytes) => {
    const layout = guestLayout(machine, bytes, kernelRules("6.1"));
    expect(guestRamMapOfRanges(layout.ramRanges)).toEqual(createGuestRamMap(machine, bytes));
  });

  test("rounds a low RAM end off a 2 MiB boundary up to one", () => {
    const frames4g = (4 * GiB) / PAGE_SIZE;
    const map = guestRamMapOfRanges([
      { startPfn: 1, endPfn: 0x9f, what: "low" },
      { startPfn: 256, endPfn: 786432 - 37, what: "low" },
      { startPfn: frames4g, endPfn: frames4g + 262144, what: "high" },
    ]);
    expect(map).toEqual({ belowPages: 786432, pageCount: 786432 + 262144 });
  });
});
