// Goal: scenario files (issue #4) are read exactly as docs/scenarios.md says: good files resolve
// to the expected Scenario with every default filled in and sizes and durations converted; every
// malformed file is refused with an InputError naming the file, the line and column of the
// offending YAML node, the field and the problem; `--set path=value` overrides work and their
// errors name `--set <path>`; docs/scenario.schema.json is the JSON Schema the code generates.
// Method: load the fixtures under test/fixtures/scenarios (good/ and bad/) with loadScenarioFile;
// for the bad corpus, a table gives each file's expected line, column, field and a message
// fragment, and each file must yield exactly one problem. The schema test compares the committed
// file with scenarioJsonSchema(); run with UPDATE_SCENARIO_SCHEMA=1 to rewrite it.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import {
  loadScenarioFile,
  parseScenarioText,
  ScenarioFileError,
} from "../../src/cli/scenario_file.ts";
import { parseDuration, parseSize, scenarioJsonSchema } from "../../src/cli/scenario_schema.ts";
import { InputError } from "../../src/core/input_error.ts";
import type { Scenario } from "../../src/sim/scenario.ts";

const root = join(import.meta.dirname, "..", "..");
const fixtures = join(root, "test", "fixtures", "scenarios");
const good = (name: string): string => join(fixtures, "good", `${name}.yaml`);
const bad = (name: string): string => join(fixtures, "bad", `${name}.yaml`);
const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** What loadScenarioFile throws for `load`, as a ScenarioFileError. */
function refusal(load: () => unknown): ScenarioFileError {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    if (!(error instanceof ScenarioFileError)) throw error;
    return error;
  }
  throw new Error("expected the scenario to be refused");
}

/** The resolved form of the issue's example: also every default. */
const ISSUE_EXAMPLE: Scenario = {
  name: "fragmented-guest",
  seed: 1,
  guest: {
    memoryBytes: 2 * GiB,
    cpus: 1,
    machine: "pc",
    kernel: "6.1",
    initOnAlloc: true,
    thp: { enabled: "always", defrag: "madvise" },
  },
  host: {
    kernel: "6.18",
    memoryBytes: 24 * GiB,
    backing: "anon",
    hugetlbPageBytes: 2 * MiB,
    thp: { enabled: "madvise", defrag: "madvise", shmemEnabled: "never" },
    khugepaged: { scanSleepMs: 10000, pagesToScan: 4096, maxPtesNone: 511 },
    discardInhibited: false,
  },
  balloon: {
    device: "virtio-balloon",
    policy: "linux-4k",
    freePageReporting: { enabled: false, order: 9, delayMs: 2000, capacity: 32 },
    deflateOnOom: false,
    thpSizeKnown: false,
    hostDiscardsWholeHugeOnly: false,
    virtioMem: { regionBytes: 4 * GiB, blockBytes: 2 * MiB },
  },
  steps: [
    { kind: "memhog", sizeBytes: 1400 * MiB, thp: false, keepEvery: 2, id: "memhog-0" },
    { kind: "snapshot", name: "pre-inflate" },
    { kind: "balloon", targetBytes: GiB },
    { kind: "wait", durationMs: 30_000 },
    { kind: "snapshot", name: "inflated" },
  ],
};

describe("good scenario files", () => {
  test("the issue's example resolves to the contract's values", () => {
    expect(loadScenarioFile(good("issue_example"))).toEqual(ISSUE_EXAMPLE);
  });

  test("a file with only steps gets every default and the file's base name", () => {
    const scenario = loadScenarioFile(good("minimal"));
    const { name, steps, ...rest } = scenario;
    const { name: _, steps: __, ...defaults } = ISSUE_EXAMPLE;
    expect(name).toBe("minimal");
    expect(rest).toEqual(defaults);
    expect(steps).toEqual([{ kind: "compact" }]);
  });

  test("every step kind, decimal sizes, duration units, ids and extension keys", () => {
    const scenario = loadScenarioFile(good("every_step"));
    expect(scenario.guest.initialState).toEqual({
      buddyinfo: join(root, "test", "fixtures", "proc", "guest_2g_6.1.buddyinfo"),
      pagetypeinfo: join(root, "test", "fixtures", "proc", "guest_2g_6.1.pagetypeinfo"),
    });
    expect(scenario.host).toMatchObject({ backing: "hugetlbfs", hugetlbPageBytes: GiB });
    expect(scenario.host.khugepaged).toEqual({
      scanSleepMs: 500,
      pagesToScan: 4096,
      maxPtesNone: 511,
    });
    expect(scenario.balloon).toMatchObject({
      device: "virtio-balloon",
      thpSizeKnown: true,
      hostDiscardsWholeHugeOnly: true,
      freePageReporting: { enabled: true, order: 5, delayMs: 100, capacity: 32 },
      virtioMem: { regionBytes: 8 * GiB, blockBytes: 4 * MiB },
    });
    expect(scenario.steps).toEqual([
      { kind: "touch", sizeBytes: 1.5 * GiB, free: true },
      { kind: "memhog", sizeBytes: 1400 * MiB, thp: true, keepEvery: 4, id: "memhog-1" },
      { kind: "memhog", sizeBytes: 512 * MiB, thp: false, keepEvery: 1, id: "small" },
      { kind: "pagecache", sizeBytes: 256 * MiB, drop: true },
      { kind: "slab", sizeBytes: 8 * MiB, spread: 16 },
      { kind: "free", id: "small" },
      { kind: "hostPressure", sizeBytes: 2 * GiB },
      { kind: "compact" },
      { kind: "compact" },
      { kind: "snapshot", name: "before" },
      { kind: "balloon", targetBytes: 1.5 * GiB },
      { kind: "wait", durationMs: 500 },
      { kind: "wait", durationMs: 1500 },
      { kind: "wait", durationMs: 120_000 },
      { kind: "free", id: "all" },
      { kind: "memhog", sizeBytes: 4096, thp: false, keepEvery: 1, id: "small" },
      { kind: "snapshot", name: "after" },
    ]);
  });

  test("a 5.6 guest on a 5.6 host with huge tmpfs", () => {
    const scenario = loadScenarioFile(good("old_kernels"));
    expect(scenario.guest).toMatchObject({ kernel: "5.6", memoryBytes: GiB });
    expect(scenario.host).toMatchObject({ kernel: "5.6", memoryBytes: 2 ** 40 });
    expect(scenario.host.thp).toEqual({
      enabled: "always",
      defrag: "always",
      shmemEnabled: "within_size",
    });
  });
});

describe("units", () => {
  test("sizes: binary units, decimals only to whole bytes", () => {
    expect(parseSize("4KiB")).toBe(4096);
    expect(parseSize("1400MiB")).toBe(1400 * MiB);
    expect(parseSize("1.5GiB")).toBe(1.5 * GiB);
    expect(parseSize("1TiB")).toBe(2 ** 40);
    expect(parseSize("0.1KiB")).toBeUndefined();
    for (const text of ["2GB", "2 GiB", "2gib", "2048", "GiB", "-1GiB", "1e3MiB"]) {
      expect(parseSize(text), text).toBeUndefined();
    }
  });

  test("durations: ms, s, min", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("2min")).toBe(120_000);
    expect(parseDuration("0.5ms")).toBeUndefined();
    for (const text of ["30", "30 s", "1h", "30sec"]) {
      expect(parseDuration(text), text).toBeUndefined();
    }
  });
});

/**
 * Every file under bad/: where the error must point ("line:column field", no field when the
 * problem is the whole file) and a fragment of what it must say.
 */
const BAD_TABLE: readonly (readonly [string, string, RegExp])[] = [
  ["backing_unknown", "3:12 host.backing", /expected one of anon, memfd, .*got "shm"/],
  ["balloon_target_too_large", "5:24 steps[0].balloon.target", /target 4 GiB is larger than/],
  ["bool_as_yes", "3:32 steps[0].memhog.thp", /expected true or false, got "yes"/],
  ["bool_for_size", "3:24 steps[0].pagecache.size", /expected a size string .*boolean true/],
  ["compact_with_value", "3:14 steps[0].compact", /compact takes no value/],
  ["cpus_word", "3:9 guest.cpus", /expected an integer, got "two"/],
  ["device_unknown", "3:11 balloon.device", /one of virtio-balloon, virtio-mem, got "virtio-pmem"/],
  ["duration_bad_unit", "3:11 steps[0].wait", /expected a duration: .*ms, s, min.*got "30 sec"/],
  ["duration_number", "3:11 steps[0].wait", /a duration needs a unit/],
  ["empty_file", "1:1", /expected a mapping with at least `steps`, got an empty value/],
  ["free_bad_scalar", "3:11 steps[0].free", /expected `free: all` or .*got "everything"/],
  ["free_twice", "5:17 steps[2].free.id", /no earlier memhog with id "memhog-0" is running/],
  ["free_unknown_id", "4:17 steps[1].free.id", /no earlier memhog with id "hgo" .*running: hog/],
  ["guest_memory_not_2m", "3:11 guest.memory", /1025 MiB is not a multiple of 2 MiB/],
  ["guest_memory_too_large", "3:11 guest.memory", /2 TiB is above 1 TiB/],
  ["guest_memory_too_small", "3:11 guest.memory", /64 MiB is below 128 MiB/],
  ["host_memory_not_pages", "3:11 host.memory", /4097KiB is not a whole number of 4 KiB pages/],
  ["hugetlb_page_size", "3:20 host.hugetlbPageSize", /4 MiB: expected 2MiB or 1GiB/],
  ["hugetlbfs_1g_unaligned", "3:11 guest.memory", /a multiple of the hugetlb page size 1 GiB/],
  ["hugetlbfs_host_too_small", "5:11 host.memory", /hugetlbfs pool cannot be reserved/],
  ["initial_state_missing_key", "4:5 guest.initialState.pagetypeinfo", /missing required key/],
  ["initial_state_no_file", "4:16 guest.initialState.buddyinfo", /no such file: .*no_such_buddy/],
  ["keep_every_fraction", "5:18 steps[0].memhog.keepEvery", /expected an integer, got number 1.5/],
  ["keep_every_zero", "3:38 steps[0].memhog.keepEvery", /expected at least 1, got number 0/],
  ["kernel_unknown", "3:11 guest.kernel", /expected one of 5.6, 6.1, 6.18, got "5.10"/],
  ["kernel_unquoted", "3:11 guest.kernel", /quote it, e.g. kernel: "6.1"/],
  ["kernel_unquoted_610", "3:11 host.kernel", /quote it.*6\.10 unquoted as the number 6\.1/],
  ["machine_unknown", "3:12 guest.machine", /expected one of pc, q35, got "virt"/],
  ["max_ptes_none_range", "3:30 host.khugepaged.maxPtesNone", /expected at most 511, got number/],
  ["memhog_id_all", "3:33 steps[0].memhog.id", /"all" is reserved for `free: all`/],
  ["memhog_id_alive_twice", "4:33 steps[1].memhog.id", /"hog" is already running since steps\[0\]/],
  ["memhog_missing_size", "3:13 steps[0].memhog.size", /missing required key "size"/],
  ["memhog_too_large", "5:21 steps[0].memhog.size", /memhog size 1025 MiB is larger than guest/],
  ["memhog_unknown_key", "3:27 steps[0].memhog.keep", /unknown key "keep": expected one of size/],
  ["name_empty", "2:7 name", /expected a non-empty string/],
  ["policy_unknown", "3:11 balloon.policy", /expected one of linux-4k, .*addr-len, got "thp"/],
  ["reporting_capacity", "3:34 balloon.freePageReporting.capacity", /a kernel constant/],
  ["reporting_on_5_6", "6:14 balloon.freePageReporting.enabled", /reporting arrived in Linux 5\.7/],
  ["reporting_order_5_6", "5:31 balloon.freePageReporting.order", /only pageblock order 9/],
  ["reporting_order_range", "3:31 balloon.freePageReporting.order", /expected at most 10, got/],
  ["section_empty", "2:9 guest", /expected a mapping, got an empty value/],
  ["seed_negative", "2:7 seed", /expected at least 0, got number -1/],
  ["shmem_enabled_unknown", "4:19 host.thp.shmemEnabled", /one of always, within_size, .*"huge"/],
  ["size_decimal_units", "3:11 guest.memory", /KiB, MiB, GiB, TiB.*"2GB"; did you mean "2GiB"\?/],
  ["size_not_pages", "3:21 steps[0].memhog.size", /4\.5KiB is not a whole number of 4 KiB pages/],
  ["size_number", "3:11 host.memory", /a size needs a unit: write e\.g\. 24576MiB/],
  ["size_with_space", "3:11 guest.memory", /with no space.*"2 gib"; did you mean "2GiB"\?/],
  ["size_zero", "3:20 steps[0].touch.size", /expected a size greater than zero, got "0MiB"/],
  ["snapshot_duplicate", "5:15 steps[2].snapshot", /"before" is already used by steps\[0\]/],
  ["step_bare_word", "3:5 steps[0]", /expected a step: .*got "compact" \(write `- compact:`\)/],
  ["step_empty", "3:5 steps[0]", /empty step: expected one of touch, memhog/],
  ["step_two_keys", "4:5 steps[0].snapshot", /exactly one key, found wait and snapshot/],
  ["step_unknown", "4:5 steps[1].sleep", /unknown step "sleep": expected one of touch, memhog/],
  ["steps_empty", "2:8 steps", /expected at least one step/],
  ["steps_missing", "2:1 steps", /missing required key "steps"/],
  ["thp_mode_unknown", "3:19 guest.thp.enabled", /one of always, madvise, never, got "sometimes"/],
  ["top_level_list", "2:1", /expected a mapping, got a list/],
  ["touch_too_large", "3:20 steps[0].touch.size", /touch size 3 GiB is larger than guest memory/],
  ["unknown_guest_key", "3:3 guest.memroy", /unknown key "memroy": .*did you mean "memory"\?/],
  ["unknown_nested_key", "3:17 host.khugepaged.scanSleep", /did you mean "scanSleepMs"\?/],
  ["unknown_top_key", "2:1 nmae", /unknown key "nmae": expected one of name, seed, guest/],
  ["virtio_mem_block_size", "3:27 balloon.virtioMem.blockSize", /3 MiB: expected a power of two/],
  ["virtio_mem_on_5_6", "5:11 balloon.device", /virtio-mem arrived in Linux 5\.8/],
  ["virtio_mem_region_too_large", "6:28 balloon.virtioMem.regionSize", /leaves 0 MiB of boot/],
  ["yaml_duplicate_key", "3:1", /YAML: Map keys must be unique/],
  ["yaml_syntax", "3:1", /YAML: Flow map .* end with a \}/],
];

interface BadCase {
  readonly file: string;
  readonly line: number;
  readonly column: number;
  readonly field: string | undefined;
  readonly message: RegExp;
}

const BAD_CASES: readonly BadCase[] = BAD_TABLE.map(([file, where, message]) => {
  const [position, field] = where.split(" ");
  const [line, column] = position!.split(":").map(Number);
  return { file, line: line!, column: column!, field, message };
});

describe("malformed scenario files", () => {
  test("the corpus holds at least 30 files, each with a row in the table", () => {
    const files = readdirSync(join(fixtures, "bad")).map((name) => name.replace(/\.yaml$/, ""));
    expect(files.length).toBeGreaterThanOrEqual(30);
    expect(files.sort()).toEqual(BAD_CASES.map((row) => row.file).sort());
  });

  test.each(BAD_CASES)("$file: line $line, $field", ({ file, line, column, field, message }) => {
    const error = refusal(() => loadScenarioFile(bad(file)));
    expect(error.problems.map((problem) => problem.message)).toHaveLength(1);
    expect(error.file).toBe(bad(file));
    expect({ line: error.line, column: error.column, field: error.field }).toEqual({
      line,
      column,
      field,
    });
    expect(error.reason).toMatch(message);
    const location = `${bad(file)}:${line}:${column}: ${field === undefined ? "" : `${field}: `}`;
    expect(error.message.startsWith(location), error.message).toBe(true);
    expect(error.message).not.toMatch(/\n\s+at /);
  });

  test("a file with several problems reports all of them, sorted by position", () => {
    const text = [
      "guest:",
      "  memroy: 2GiB",
      "  kernel: 6.1",
      "host:",
      "  memory: 2GB",
      "steps:",
      "  - sleep: 3s",
      "  - memhog: { size: 1GiB, keepEvery: 0 }",
    ].join("\n");
    const error = refusal(() => parseScenarioText(text, "several.yaml"));
    expect(error.problems.map((problem) => [problem.line, problem.field])).toEqual([
      [2, "guest.memroy"],
      [3, "guest.kernel"],
      [5, "host.memory"],
      [7, "steps[0].sleep"],
      [8, "steps[1].memhog.keepEvery"],
    ]);
    const lines = error.message.split("\n");
    expect(lines).toHaveLength(5);
    expect(lines[1]).toMatch(/^ {2}several\.yaml:3:11: guest\.kernel: /);
  });

  test("an unreadable file is an InputError naming it", () => {
    expect(() => loadScenarioFile(bad("no_such_file"))).toThrow(/no_such_file\.yaml: cannot read/);
  });
});

describe("--set overrides", () => {
  const example = good("issue_example");

  test("sets settings of every kind, a later one winning", () => {
    const scenario = loadScenarioFile(example, [
      "balloon.policy=thp-order",
      "guest.memory=4GiB",
      "guest.kernel=6.18",
      "seed=7",
      "balloon.deflateOnOom=true",
      "host.khugepaged.maxPtesNone=0",
      "guest.initialState.buddyinfo=test/fixtures/proc/guest_2g_6.1.buddyinfo",
      "guest.initialState.pagetypeinfo=test/fixtures/proc/guest_2g_6.1.pagetypeinfo",
      "name=renamed",
      "seed=8",
    ]);
    expect(scenario.balloon.policy).toBe("thp-order");
    expect(scenario.guest.memoryBytes).toBe(4 * GiB);
    expect(scenario.guest.kernel).toBe("6.18");
    expect(scenario.seed).toBe(8);
    expect(scenario.balloon.deflateOnOom).toBe(true);
    expect(scenario.host.khugepaged.maxPtesNone).toBe(0);
    expect(scenario.guest.initialState?.buddyinfo).toBe(
      join(process.cwd(), "test/fixtures/proc/guest_2g_6.1.buddyinfo"),
    );
    expect(scenario.name).toBe("renamed");
  });

  test("kernel values stay strings: 6.1 is the kernel 6.1, 6.10 is refused as 6.10", () => {
    expect(loadScenarioFile(example, ["host.kernel=6.1"]).host.kernel).toBe("6.1");
    const error = refusal(() => loadScenarioFile(example, ["guest.kernel=6.10"]));
    expect(error.message).toBe(
      '<argv>: --set guest.kernel: expected one of 5.6, 6.1, 6.18, got "6.10"',
    );
  });

  test.each([
    [
      "guest.memroy=1GiB",
      /--set guest\.memroy: unknown path guest\.memroy: guest has the keys memory/,
    ],
    ["colour=red", /--set colour: unknown path colour: the top level has the keys name, seed/],
    ["steps.0.wait=1s", /--set steps\.0\.wait: steps cannot be set from the command line/],
    [
      "guest.thp=never",
      /--set guest\.thp: guest\.thp is a group of settings; set one of guest\.thp\.enabled/,
    ],
    ["balloon.policy", /--set: expected path=value/],
    ["=4GiB", /--set: expected path=value/],
    ["seed={a: 1}", /--set seed: expected a YAML scalar/],
  ])("%s is refused", (override, message) => {
    expect(() => loadScenarioFile(example, [override])).toThrow(message);
    try {
      loadScenarioFile(example, [override]);
    } catch (error) {
      expect(error).toBeInstanceOf(InputError);
      expect((error as InputError).file).toBe("<argv>");
    }
  });

  test("a bad value names --set, not a line of the file", () => {
    const error = refusal(() => loadScenarioFile(good("minimal"), ["guest.memory=100MiB"]));
    expect(error.message).toBe("<argv>: --set guest.memory: guest memory 100 MiB is below 128 MiB");
    const typed = refusal(() => loadScenarioFile(example, ["seed=abc"]));
    expect(typed.message).toBe('<argv>: --set seed: expected an integer, got "abc"');
  });

  test("a file value made wrong by an override is reported at its line", () => {
    const error = refusal(() => loadScenarioFile(example, ["guest.memory=1GiB"]));
    expect(error.line).toBe(25);
    expect(error.field).toBe("steps[0].memhog.size");
    expect(error.reason).toMatch(/memhog size 1400 MiB is larger than guest memory 1 GiB/);
  });

  test("settings absent from the file are created", () => {
    const scenario = parseScenarioText("steps: [compact: ]\n", "x.yaml", [
      "host.thp.enabled=never",
    ]);
    expect(scenario.host.thp.enabled).toBe("never");
    const error = refusal(() => parseScenarioText("", "empty.yaml", ["host.memory=8GiB"]));
    expect(error.message).toBe('empty.yaml:1:1: steps: missing required key "steps"');
  });
});

describe("published JSON Schema", () => {
  const file = join(root, "docs", "scenario.schema.json");
  const generated = `${JSON.stringify(scenarioJsonSchema(), undefined, 2)}\n`;

  test("docs/scenario.schema.json is what the code generates", () => {
    if (process.env.UPDATE_SCENARIO_SCHEMA === "1") writeFileSync(file, generated);
    const committed = readFileSync(file, "utf8");
    expect(
      committed === generated,
      "docs/scenario.schema.json is out of date: run " +
        "UPDATE_SCENARIO_SCHEMA=1 npx vitest run test/cli/scenario_file.test.ts",
    ).toBe(true);
  });

  test("docs/scenarios.md names every setting of the schema", () => {
    const docs = readFileSync(join(root, "docs", "scenarios.md"), "utf8");
    const missing: string[] = [];
    const walk = (schema: Record<string, unknown>, prefix: string): void => {
      const properties = (schema.properties ?? {}) as Record<string, Record<string, unknown>>;
      for (const [key, value] of Object.entries(properties)) {
        const path = prefix === "" ? key : `${prefix}.${key}`;
        const group = value.properties !== undefined && key !== "steps";
        if (group) walk(value, path);
        else if (!docs.includes(`\`${path}\``)) missing.push(path);
      }
    };
    walk(scenarioJsonSchema(), "");
    expect(missing).toEqual([]);
  });
});
