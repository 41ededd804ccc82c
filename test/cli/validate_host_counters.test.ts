// Goal: the real side's `host.counters` are the host /proc/vmstat THP events since QEMU started,
// less the idle window's background and QEMU's own THPs, under the model's field names; only the
// fields one event stands for are filled (every other HostCounters field is named not measured);
// the verdicts are 5 % of the model's count plus a slack, and only given when measured.
// Method: hand-made /proc/vmstat text and a model snapshot of a small scenario.
import { describe, expect, test } from "vitest";
import { executeScenario } from "../../src/cli/scenario_execution.ts";
import { parseScenarioText } from "../../src/cli/scenario_file.ts";
import { compareSnapshot, TOLERANCES } from "../../src/cli/validate_compare.ts";
import {
  COUNTER_EVENTS,
  COUNTER_VERDICTS,
  hostCountersDetail,
  parseThpEvents,
  THP_EVENTS,
  type ThpBaseline,
  type ThpEvents,
  UNMAPPED_COUNTERS,
} from "../../src/cli/validate_host_counters.ts";
import type { HostMeasurement } from "../../src/cli/validate_host_measure.ts";
import { NOT_MEASURED, realSnapshotJson } from "../../src/cli/validate_snapshot.ts";

const VMSTAT = `nr_free_pages 123
thp_migration_success 0
thp_fault_alloc 61129
thp_fault_fallback 2
thp_fault_fallback_charge 0
thp_collapse_alloc 18
thp_collapse_alloc_failed 0
thp_file_alloc 4004
thp_file_fallback 0
thp_file_mapped 3972
thp_split_page 5937
thp_split_page_failed 0
thp_deferred_split_page 17595
thp_underused_split_page 0
thp_split_pmd 19662
`;

const events = (values: Partial<ThpEvents>): ThpEvents =>
  Object.fromEntries(THP_EVENTS.map((event) => [event, values[event] ?? 0])) as ThpEvents;

describe("host vmstat THP events", () => {
  test("parsed by name; none on a kernel without THP", () => {
    const parsed = parseThpEvents(VMSTAT)!;
    expect(parsed).toMatchObject({
      thp_fault_alloc: 61129,
      thp_fault_fallback: 2,
      thp_file_alloc: 4004,
      thp_split_pmd: 19662,
      thp_deferred_split_page: 17595,
    });
    expect(Object.keys(parsed).sort()).toEqual([...THP_EVENTS].sort());
    expect(parseThpEvents("nr_free_pages 1\npgfault 2\n")).toBeUndefined();
  });
  test("deltas less the idle background and QEMU's own THPs, with the model's names", () => {
    const baseline: ThpBaseline = {
      events: events({ thp_fault_alloc: 1000, thp_split_pmd: 50, thp_split_page: 7 }),
      takenMs: 10_000,
      idleMs: 1000,
      idleDelta: events({ thp_fault_alloc: 1, thp_split_pmd: 0 }),
    };
    const now = events({
      thp_fault_alloc: 1300,
      thp_file_alloc: 3,
      thp_split_pmd: 180,
      thp_split_page: 17,
      thp_deferred_split_page: 129,
    });
    // 4 s later: 4 background faults; 24 THPs in QEMU's other mappings (48 MiB).
    const anon = hostCountersDetail(baseline, now, 14_000, 24 * 2048 + 100, "anon");
    expect(anon.background.thp_fault_alloc).toBe(4);
    expect(anon.qemuOwnThps).toBe(24);
    expect(anon.counters).toEqual({
      faults2m: 300 + 3 - 4 - 24,
      thpFaultFallback: 0,
      thpFileFallback: 0,
      collapses: 0,
      collapseAllocFailed: 0,
      splitPmd: 130,
      splitDeferred: 10,
      splitShmem: 0,
      deferredSplitPage: 129,
    });
    const tmpfs = hostCountersDetail(baseline, now, 14_000, 0, "tmpfs-huge");
    expect(tmpfs.counters).toMatchObject({ splitDeferred: 0, splitShmem: 10 });
    expect(anon.counterBackground).toMatchObject({ faults2m: 4, splitPmd: 0 });
  });
  test("every HostCounters field is either mapped to an event or named not measured", () => {
    const scenario = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - snapshot: s\n",
      "inline.yaml",
    );
    const snapshot = executeScenario(scenario).result.snapshots[0]!;
    const mapped = Object.keys(COUNTER_EVENTS);
    expect([...mapped, ...UNMAPPED_COUNTERS].sort()).toEqual(
      Object.keys(snapshot.host.counters).sort(),
    );
    expect(NOT_MEASURED).not.toContain("host.counters");
    for (const field of UNMAPPED_COUNTERS) expect(NOT_MEASURED).toContain(`host.counters.${field}`);
    for (const field of mapped) expect(NOT_MEASURED).not.toContain(`host.counters.${field}`);
  });
  test("the real snapshot carries the counters it is given", () => {
    const host = {
      mapping: { start: 0, end: 0, name: "", fields: {} },
      meminfo: {},
      blocks: {
        blocks2M: 0,
        fullBlocks: 0,
        partialBlocks: 0,
        emptyBlocks: 0,
        presentPages: 0,
        hostHuge: new Uint8Array(0),
      },
    } as unknown as HostMeasurement;
    const input = {
      name: "s",
      elapsedMs: 0,
      guestFiles: new Map<string, string>(),
      host,
      allocated_kB: 0,
      ramBytes: 2 ** 29,
      balloonActualBytes: 2 ** 29,
      balloonTargetBytes: 2 ** 29,
      balloonTimeMs: 0,
    };
    expect(realSnapshotJson({ ...input, counters: { faults2m: 5 } }).host.counters).toEqual({
      faults2m: 5,
    });
    expect(realSnapshotJson(input).host.counters).toEqual({});
  });
});

describe("verdicts of the host counters", () => {
  const scenario = parseScenarioText(
    "guest: { memory: 512MiB }\nsteps:\n  - memhog: { size: 200MiB }\n  - balloon: { target: 384MiB }\n  - snapshot: s\n",
    "inline.yaml",
  );
  const snapshot = executeScenario(scenario).result.snapshots[0]!;
  const ram = scenario.guest.memoryBytes;
  const measured = { counterBackground: {} };
  test("none unless measured; then one per mapped counter, the splits as one sum", () => {
    const without = compareSnapshot(snapshot, snapshot, ram, "cgroup-v1", undefined, true);
    expect(without.some((v) => v.quantity.startsWith("host.counters"))).toBe(false);
    const same = compareSnapshot(snapshot, snapshot, ram, "cgroup-v1", undefined, true, measured);
    const counters = same.filter((v) => v.quantity.startsWith("host.counters"));
    expect(counters.map((v) => v.quantity)).toEqual(
      COUNTER_VERDICTS.map((fields) => `host.counters.${fields.join("+")}`),
    );
    expect(counters.every((v) => v.verdict === "pass" && v.unit === "events")).toBe(true);
    expect(
      counters.find((v) => v.quantity === "host.counters.splitDeferred+splitShmem")?.note,
    ).toContain("thp_split_page");
  });
  test("5 % of the model's count plus the slack", () => {
    const faults = snapshot.host.counters.faults2m!;
    expect(faults).toBeGreaterThan(0);
    const tolerance = TOLERANCES.hostCounters * faults + TOLERANCES.hostCounterSlack;
    const off = structuredClone(snapshot);
    off.host.counters.faults2m = faults + Math.floor(tolerance);
    off.host.counters.splitPmd = (snapshot.host.counters.splitPmd ?? 0) + 100;
    off.host.counters.splitShmem = TOLERANCES.hostCounterSlack;
    const verdicts = compareSnapshot(snapshot, off, ram, "cgroup-v1", undefined, true, measured);
    const find = (quantity: string) => verdicts.find((v) => v.quantity === quantity);
    expect(find("host.counters.faults2m")).toMatchObject({ verdict: "pass", tolerance });
    expect(find("host.counters.splitPmd")?.verdict).toBe("fail");
    expect(find("host.counters.splitDeferred+splitShmem")?.verdict).toBe("pass");
  });
  test("the background subtracted is also added to the tolerance", () => {
    const faults = snapshot.host.counters.faults2m!;
    const off = structuredClone(snapshot);
    off.host.counters.faults2m = faults - 30;
    const background = { counterBackground: { faults2m: 30 } };
    const verdicts = compareSnapshot(snapshot, off, ram, "cgroup-v1", undefined, true, background);
    const found = verdicts.find((v) => v.quantity === "host.counters.faults2m");
    expect(found).toMatchObject({
      verdict: "pass",
      tolerance: TOLERANCES.hostCounters * faults + TOLERANCES.hostCounterSlack + 30,
    });
    expect(found?.note).toContain("30 of idle-window background");
  });
});
