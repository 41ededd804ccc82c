// Scenario files (issue #4): a YAML file read into the resolved Scenario (src/sim/scenario.ts),
// with `--set path=value` overrides (scenario_set.ts) applied first. The format is the zod schema
// in scenario_schema.ts (docs/scenarios.md, docs/scenario.schema.json); this file adds what a
// schema cannot say: sizes and durations become bytes and milliseconds, defaults that depend on
// the file (name, memhog ids), and the cross-field checks (a balloon target larger than the
// guest, a `free` of an id no memhog created, features the chosen kernel lacks, ...).
//
// A bad file throws a ScenarioFileError (an InputError) before anything runs: every problem
// found, each with the file, line and column of the offending YAML node (for a missing key, its
// parent mapping; for an unknown key, the key), the field path (`steps[3].memhog.size`) and what
// was expected. Problems caused by an override name `--set <path>` instead of a line.

import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, extname, resolve } from "node:path";
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from "yaml";
import type { z } from "zod";
import { InputError } from "../core/input_error.ts";
import { kernelRules } from "../guest/kernel_version.ts";
import type {
  Scenario,
  ScenarioBalloon,
  ScenarioGuest,
  ScenarioHost,
  ScenarioStep,
} from "../sim/scenario.ts";
import {
  describeValue,
  isStepKind,
  objectKeys,
  parseDuration,
  parseSize,
  type ScenarioSettings,
  STEP_KINDS,
  type STEP_SCHEMAS,
  type StepKind,
  scenarioErrorMap,
  scenarioSettingsSchema,
  schemaAt,
  stepValueSchema,
} from "./scenario_schema.ts";
import {
  applyScenarioSets,
  errorAtSet,
  parseScenarioSets,
  type ScenarioSet,
  setAt,
} from "./scenario_set.ts";

type Key = string | number;

/** One thing wrong with the file: where (a key path into the file) and what was expected. */
interface Problem {
  readonly path: readonly Key[];
  readonly message: string;
  /** Point at the key itself (an unknown key) rather than at its value. */
  readonly atKey?: boolean;
}

/**
 * A bad scenario: the first problem as an InputError, with every problem in `problems`; the
 * message has one line per problem, the later ones indented.
 */
export class ScenarioFileError extends InputError {
  readonly problems: readonly InputError[];

  constructor(problems: readonly InputError[]) {
    const first = problems[0]!;
    const { file, line, column, field, reason } = first;
    super({ file, line, column, field, message: reason });
    this.problems = problems;
    if (problems.length > 1) {
      const rest = problems.slice(1).map((problem) => `  ${problem.message}`);
      this.message = [first.message, ...rest].join("\n");
    }
  }
}

/** A step as validated, before its sizes become numbers. */
type ParsedStep = {
  [K in StepKind]: {
    readonly kind: K;
    readonly index: number;
    readonly value: z.output<(typeof STEP_SCHEMAS)[K]>;
  };
}[StepKind];

interface Source {
  readonly file: string;
  readonly doc: ReturnType<typeof parseDocument>;
  readonly lines: LineCounter;
  readonly sets: readonly ScenarioSet[];
}

/** Reads, overrides, validates and resolves a scenario file; throws InputError when bad. */
export function loadScenarioFile(path: string, overrides: readonly string[] = []): Scenario {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code ?? "error";
    throw new InputError({ file: path, message: `cannot read the file (${code})` });
  }
  return parseScenarioText(text, path, overrides);
}

/** As loadScenarioFile, for text already read; `file` names it in errors and sets the defaults. */
export function parseScenarioText(
  text: string,
  file: string,
  overrides: readonly string[] = [],
): Scenario {
  const sets = parseScenarioSets(overrides);
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const source: Source = { file, doc, lines, sets };
  if (doc.errors.length > 0) {
    throw new ScenarioFileError(
      doc.errors.map((error) => {
        const { line, col } = lines.linePos(error.pos[0]);
        return new InputError({ file, line, column: col, message: `YAML: ${error.message}` });
      }),
    );
  }
  applyScenarioSets(doc, sets);
  const data = documentData(source);
  if (typeof data !== "object" || !data) {
    const message = `expected a mapping with at least \`steps\`, got ${describeValue(data)}`;
    fail(source, [{ path: [], message }]);
  }
  const settings = scenarioSettingsSchema.safeParse(data, { error: scenarioErrorMap });
  const problems = settings.success ? [] : issueProblems(settings.error.issues, [], data);
  const steps = parseSteps(settings.success ? settings.data.steps : stepsOf(data), problems);
  fail(source, problems);
  const scenario = resolveScenario(settings.data!, steps, source);
  fail(source, checkScenario(scenario, steps));
  return scenario;
}

/** The document as plain data (aliases resolved, at most yaml's maxAliasCount of them). */
function documentData(source: Source): unknown {
  try {
    return source.doc.toJS();
  } catch (error) {
    const message = `YAML: ${error instanceof Error ? error.message : String(error)}`;
    throw new InputError({ file: source.file, message });
  }
}

function stepsOf(data: unknown): unknown[] {
  const steps = (data as { steps?: unknown } | undefined)?.steps;
  return Array.isArray(steps) ? steps : [];
}

function fail(source: Source, problems: readonly Problem[]): void {
  if (problems.length === 0) return;
  const errors = problems.map((problem) => locate(source, problem));
  const order = (error: InputError): number =>
    error.line === undefined ? -1 : error.line * 1e6 + (error.column ?? 0);
  errors.sort((a, b) => order(a) - order(b));
  throw new ScenarioFileError(errors);
}

// ---- where a problem is: YAML node positions ----

/** `steps[3].memhog.size` */
export function fieldPath(path: readonly Key[]): string {
  return path
    .map((key, index) => (typeof key === "number" ? `[${key}]` : index === 0 ? key : `.${key}`))
    .join("");
}

function locate(source: Source, problem: Problem): InputError {
  const field = problem.path.length === 0 ? undefined : fieldPath(problem.path);
  const set = setAt(source.sets, problem.path);
  if (set !== undefined) return errorAtSet(set, problem.message);
  const node = nodeAt(source, problem.path, problem.atKey === true);
  const offset = node?.range?.[0] ?? 0;
  const { line, col } = source.lines.linePos(offset);
  return new InputError({ file: source.file, line, column: col, field, message: problem.message });
}

/** The deepest YAML node on `path` that has a position (the key's node when `atKey`). */
function nodeAt(source: Source, path: readonly Key[], atKey: boolean): Node | undefined {
  let node = source.doc.contents as Node | undefined;
  let found = node;
  for (const [index, key] of path.entries()) {
    if (isAlias(node)) node = node.resolve(source.doc) as Node | undefined;
    let next: Node | undefined;
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === key);
      const last = index === path.length - 1;
      next = (last && atKey ? pair?.key : (pair?.value ?? pair?.key)) as Node | undefined;
    } else if (isSeq(node) && typeof key === "number") {
      next = node.items[key] as Node | undefined;
    }
    if (next === undefined) break;
    node = next;
    if (node.range) found = node;
  }
  return found;
}

// ---- zod issues to problems ----

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let value = data;
  for (const key of path) {
    if (typeof value !== "object" || !value) return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next.push(Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + cost));
    }
    row = next;
  }
  return row[b.length]!;
}

function unknownMessage(what: string, key: string, known: readonly string[]): string {
  const near = known.find((each) => distance(each.toLowerCase(), key.toLowerCase()) <= 2);
  const hint = near === undefined ? "" : `; did you mean "${near}"?`;
  return `unknown ${what} "${key}": expected one of ${known.join(", ")}${hint}`;
}

function issueProblems(
  issues: readonly z.core.$ZodIssue[],
  base: readonly Key[],
  data: unknown,
  schema: z.ZodType = scenarioSettingsSchema,
): Problem[] {
  return issues.flatMap((issue): Problem[] => {
    const relative = issue.path.map((key) => (typeof key === "symbol" ? String(key) : key));
    const path = [...base, ...relative];
    if (issue.code === "unrecognized_keys") {
      const known = objectKeys(schemaAt(schema, relative.map(String))) ?? [];
      return issue.keys.map((key) => ({
        path: [...path, key],
        atKey: true,
        message: unknownMessage("key", key, known),
      }));
    }
    if (issue.code === "invalid_type" && valueAt(data, issue.path) === undefined) {
      return [{ path, message: `missing required key "${String(path.at(-1))}"` }];
    }
    return [{ path, message: issue.message }];
  });
}

// ---- steps ----

function bareStepHint(kind: StepKind): string {
  return kind === "compact"
    ? " (write `- compact:`)"
    : ` (write \`- ${kind}: ...\` with its value)`;
}

function stepShapeProblem(value: unknown): string | undefined {
  const kinds = STEP_KINDS.join(", ");
  if (typeof value !== "object" || !value || Array.isArray(value)) {
    const hint = typeof value === "string" && isStepKind(value) ? bareStepHint(value) : "";
    const got = describeValue(value);
    return `expected a step: a mapping with one key, one of ${kinds}; got ${got}${hint}`;
  }
  if (Object.keys(value).length === 0) return `empty step: expected one of ${kinds}`;
  return undefined;
}

/** One step checked on its own; its problems go to `problems`. */
function parseStep(value: unknown, index: number, problems: Problem[]): ParsedStep | undefined {
  const path = ["steps", index];
  const shape = stepShapeProblem(value);
  const keys = shape === undefined ? Object.keys(value as object) : [];
  const kind = keys[0] ?? "";
  if (shape !== undefined) {
    problems.push({ path, message: shape });
  } else if (keys.length > 1) {
    const found = keys.join(" and ");
    const message = `a step has exactly one key, found ${found}: start each step with its own "-"`;
    problems.push({ path: [...path, keys[1]!], atKey: true, message });
  } else if (!isStepKind(kind)) {
    const message = unknownMessage("step", kind, STEP_KINDS);
    problems.push({ path: [...path, kind], atKey: true, message });
  } else {
    const input = (value as Record<string, unknown>)[kind];
    const schema = stepValueSchema(kind, input);
    const result = schema.safeParse(input, { error: scenarioErrorMap });
    if (result.success) return { kind, index, value: result.data } as ParsedStep;
    problems.push(...issueProblems(result.error.issues, [...path, kind], input, schema));
  }
  return undefined;
}

/** Checks each step on its own; problems go to `problems`, good steps are returned. */
function parseSteps(raw: readonly unknown[], problems: Problem[]): ParsedStep[] {
  return raw.flatMap((value, index) => parseStep(value, index, problems) ?? []);
}

// ---- resolution: units and defaults ----

function bytes(text: string): number {
  const value = parseSize(text);
  if (value === undefined) throw new Error(`size ${text} passed validation but does not parse`);
  return value;
}

function resolveStep(step: ParsedStep): ScenarioStep {
  switch (step.kind) {
    case "touch":
      return { kind: "touch", sizeBytes: bytes(step.value.size), free: step.value.free };
    case "memhog": {
      const { size, thp, keepEvery, id } = step.value;
      const name = id ?? `memhog-${step.index}`;
      return { kind: "memhog", sizeBytes: bytes(size), thp, keepEvery, id: name };
    }
    case "free":
      return { kind: "free", id: typeof step.value === "string" ? "all" : step.value.id };
    case "pagecache":
      return { kind: "pagecache", sizeBytes: bytes(step.value.size), drop: step.value.drop };
    case "slab":
      return { kind: "slab", sizeBytes: bytes(step.value.size), spread: step.value.spread };
    case "hostPressure":
      return { kind: "hostPressure", sizeBytes: bytes(step.value.size) };
    case "compact":
      return { kind: "compact" };
    case "balloon":
      return { kind: "balloon", targetBytes: bytes(step.value.target) };
    case "wait":
      return { kind: "wait", durationMs: parseDuration(step.value)! };
    case "snapshot":
      return { kind: "snapshot", name: step.value };
  }
}

/** A path of initialState: relative to the scenario file, or to the cwd when set by --set. */
function statePath(source: Source, key: string, value: string): string {
  const set = setAt(source.sets, ["guest", "initialState", key]);
  return set === undefined ? resolve(dirname(source.file), value) : resolve(value);
}

function resolveGuest(guest: ScenarioSettings["guest"], source: Source): ScenarioGuest {
  const { initialState, memory, ...rest } = guest;
  const resolved: ScenarioGuest = { ...rest, memoryBytes: bytes(memory) };
  if (initialState === undefined) return resolved;
  const { buddyinfo, pagetypeinfo, zoneinfo } = initialState;
  const state = {
    buddyinfo: statePath(source, "buddyinfo", buddyinfo),
    pagetypeinfo: statePath(source, "pagetypeinfo", pagetypeinfo),
    ...(zoneinfo === undefined ? {} : { zoneinfo: statePath(source, "zoneinfo", zoneinfo) }),
  };
  return { ...resolved, initialState: state };
}

function resolveHost(host: ScenarioSettings["host"]): ScenarioHost {
  const { memory, hugetlbPageSize, ...rest } = host;
  return { ...rest, memoryBytes: bytes(memory), hugetlbPageBytes: bytes(hugetlbPageSize) };
}

function resolveBalloon(balloon: ScenarioSettings["balloon"]): ScenarioBalloon {
  const { regionSize, blockSize } = balloon.virtioMem;
  return {
    ...balloon,
    virtioMem: { regionBytes: bytes(regionSize), blockBytes: bytes(blockSize) },
  };
}

function resolveScenario(
  settings: ScenarioSettings,
  steps: readonly ParsedStep[],
  source: Source,
): Scenario {
  const fileName = basename(source.file, extname(source.file));
  return {
    name: settings.name ?? fileName,
    seed: settings.seed,
    guest: resolveGuest(settings.guest, source),
    host: resolveHost(settings.host),
    balloon: resolveBalloon(settings.balloon),
    steps: steps.map(resolveStep),
  };
}

// ---- cross-field checks ----

const KiB = 2 ** 10;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const TiB = 2 ** 40;

/** "2 GiB", "1400 MiB": exact, in the largest unit that divides the size. */
function formatBytes(value: number): string {
  for (const [unit, size] of [
    ["TiB", TiB],
    ["GiB", GiB],
    ["MiB", MiB],
    ["KiB", KiB],
  ] as const) {
    if (value % size === 0) return `${value / size} ${unit}`;
  }
  return `${value} bytes`;
}

function checkGuest(scenario: Scenario): Problem[] {
  const path = ["guest", "memory"];
  const memory = scenario.guest.memoryBytes;
  const problems: Problem[] = [];
  if (memory % (2 * MiB) !== 0) {
    problems.push({
      path,
      message: `guest memory ${formatBytes(memory)} is not a multiple of 2 MiB`,
    });
  }
  if (memory < 128 * MiB) {
    problems.push({ path, message: `guest memory ${formatBytes(memory)} is below 128 MiB` });
  }
  if (memory > TiB) {
    problems.push({ path, message: `guest memory ${formatBytes(memory)} is above 1 TiB` });
  }
  return problems;
}

function checkHost(scenario: Scenario): Problem[] {
  const { host, guest } = scenario;
  const problems: Problem[] = [];
  const page = host.hugetlbPageBytes;
  if (page !== 2 * MiB && page !== GiB) {
    const message = `hugetlb page size ${formatBytes(page)}: expected 2MiB or 1GiB (x86-64)`;
    problems.push({ path: ["host", "hugetlbPageSize"], message });
  }
  if (host.backing !== "hugetlbfs") return problems;
  if (host.memoryBytes < guest.memoryBytes) {
    const message =
      `the hugetlbfs pool cannot be reserved: host memory ${formatBytes(host.memoryBytes)} is ` +
      `smaller than guest memory ${formatBytes(guest.memoryBytes)}`;
    problems.push({ path: ["host", "memory"], message });
  }
  if (problems.length === 0 && guest.memoryBytes % page !== 0) {
    const message =
      `with backing hugetlbfs, guest memory ${formatBytes(guest.memoryBytes)} must be a ` +
      `multiple of the hugetlb page size ${formatBytes(page)} (QEMU refuses it)`;
    problems.push({ path: ["guest", "memory"], message });
  }
  return problems;
}

/** virtio-mem arrived in Linux 5.8 (drivers/virtio/virtio_mem.c); the guest model's versions. */
const VIRTIO_MEM_KERNELS: readonly string[] = ["6.1", "6.18"];

function checkBalloon(scenario: Scenario): Problem[] {
  const { balloon, guest } = scenario;
  const rules = kernelRules(guest.kernel);
  const reporting = ["balloon", "freePageReporting"];
  const problems: Problem[] = [];
  if (balloon.freePageReporting.enabled && !rules.freePageReporting) {
    const message =
      "free page reporting arrived in Linux 5.7 (mm/page_reporting.c); " +
      `guest kernel "${guest.kernel}" has none`;
    problems.push({ path: [...reporting, "enabled"], message });
  }
  if (balloon.freePageReporting.order !== 9 && !rules.pageReportingOrderParam) {
    const message =
      `guest kernel "${guest.kernel}" reports only pageblock order 9 ` +
      "(page_reporting_order is a parameter from 5.14)";
    problems.push({ path: [...reporting, "order"], message });
  }
  if (balloon.device === "virtio-mem" && !VIRTIO_MEM_KERNELS.includes(guest.kernel)) {
    const message =
      "virtio-mem arrived in Linux 5.8 (drivers/virtio/virtio_mem.c); " +
      `guest kernel "${guest.kernel}" has no driver`;
    problems.push({ path: ["balloon", "device"], message });
  } else if (balloon.device === "virtio-mem") {
    problems.push(...checkVirtioMem(scenario));
  }
  const { blockBytes, regionBytes } = balloon.virtioMem;
  if (blockBytes < 2 * MiB || !Number.isInteger(Math.log2(blockBytes))) {
    const message =
      `virtio-mem block size ${formatBytes(blockBytes)}: ` +
      "expected a power of two, at least 2MiB";
    problems.push({ path: ["balloon", "virtioMem", "blockSize"], message });
  } else if (regionBytes % blockBytes !== 0) {
    const message =
      `virtio-mem region size ${formatBytes(regionBytes)} is not a multiple of ` +
      `the block size ${formatBytes(blockBytes)}`;
    problems.push({ path: ["balloon", "virtioMem", "regionSize"], message });
  }
  return problems;
}

/**
 * With virtio-mem, guest.memory is the logical size at start: boot memory (QEMU -m) is
 * guest.memory - regionSize, and the region starts fully plugged. Boot memory must hold a
 * guest (at least 512 MiB); free page reporting is not combined with it in the model.
 */
function checkVirtioMem(scenario: Scenario): Problem[] {
  const { balloon, guest } = scenario;
  const bootBytes = guest.memoryBytes - balloon.virtioMem.regionBytes;
  const problems: Problem[] = [];
  if (bootBytes < 512 * MiB) {
    const message =
      `virtio-mem region size ${formatBytes(balloon.virtioMem.regionBytes)} leaves ` +
      `${Math.max(bootBytes, 0) / MiB} MiB of boot memory (guest.memory - regionSize); ` +
      "expected at least 512 MiB";
    problems.push({ path: ["balloon", "virtioMem", "regionSize"], message });
  }
  if (balloon.freePageReporting.enabled) {
    const message = "free page reporting with virtio-mem is not modelled: use one device";
    problems.push({ path: ["balloon", "freePageReporting", "enabled"], message });
  }
  scenario.steps.forEach((step, index) => {
    if (step.kind !== "balloon" || step.targetBytes >= bootBytes) return;
    const message =
      `balloon target ${formatBytes(step.targetBytes)} is below the boot memory ` +
      `${formatBytes(bootBytes)} that virtio-mem cannot unplug`;
    problems.push({ path: ["steps", index, "balloon", "target"], message });
  });
  return problems;
}

/** What the steps must agree on: live memhog ids, snapshot names, sizes within the guest. */
interface StepState {
  readonly guestBytes: number;
  readonly live: Map<string, number>;
  readonly snapshots: Map<string, number>;
  readonly problems: Problem[];
}

function checkSize(state: StepState, path: readonly Key[], value: number, what: string): void {
  if (value <= state.guestBytes) return;
  const guest = formatBytes(state.guestBytes);
  const message = `${what} ${formatBytes(value)} is larger than guest memory ${guest}`;
  state.problems.push({ path, message });
}

function checkFree(state: StepState, path: readonly Key[], id: string): void {
  if (id === "all") {
    state.live.clear();
  } else if (!state.live.delete(id)) {
    const live = [...state.live.keys()];
    const alive = live.length === 0 ? "none is running" : `running: ${live.join(", ")}`;
    const message = `no earlier memhog with id "${id}" is running (${alive})`;
    state.problems.push({ path: [...path, "id"], message });
  }
}

function checkMemhog(state: StepState, path: readonly Key[], id: string, explicit: boolean): void {
  const since = state.live.get(id);
  const index = path[1];
  if (since !== undefined) {
    const how = explicit ? "" : ` (the default id of steps[${index}])`;
    const message =
      `memhog id "${id}"${how} is already running since steps[${since}]: ` +
      "free it first or choose another id";
    state.problems.push({ path: [...path, "id"], message });
  }
  state.live.set(id, Number(index));
}

function checkSnapshot(state: StepState, path: readonly Key[], name: string): void {
  const first = state.snapshots.get(name);
  if (first !== undefined) {
    const message = `snapshot name "${name}" is already used by steps[${first}]`;
    state.problems.push({ path, message });
  } else {
    state.snapshots.set(name, Number(path[1]));
  }
}

function checkStep(state: StepState, step: ScenarioStep, index: number, explicitId: boolean): void {
  const path = ["steps", index, step.kind];
  if (step.kind === "touch") checkSize(state, [...path, "size"], step.sizeBytes, "touch size");
  if (step.kind === "memhog") {
    checkSize(state, [...path, "size"], step.sizeBytes, "memhog size");
    checkMemhog(state, path, step.id, explicitId);
  }
  if (step.kind === "free") checkFree(state, path, step.id);
  if (step.kind === "balloon") {
    checkSize(state, [...path, "target"], step.targetBytes, "balloon target");
  }
  if (step.kind === "snapshot") checkSnapshot(state, path, step.name);
}

function checkInitialState(scenario: Scenario): Problem[] {
  const state = scenario.guest.initialState;
  if (state === undefined) return [];
  return Object.entries(state).flatMap(([key, file]): Problem[] =>
    typeof file === "string" && !existsSync(file)
      ? [{ path: ["guest", "initialState", key], message: `no such file: ${file}` }]
      : [],
  );
}

function checkScenario(scenario: Scenario, steps: readonly ParsedStep[]): Problem[] {
  const problems = [
    ...checkGuest(scenario),
    ...checkHost(scenario),
    ...checkBalloon(scenario),
    ...checkInitialState(scenario),
  ];
  const state: StepState = {
    guestBytes: scenario.guest.memoryBytes,
    live: new Map(),
    snapshots: new Map(),
    problems,
  };
  scenario.steps.forEach((step, index) => {
    const parsed = steps[index]!;
    const explicitId = parsed.kind === "memhog" && parsed.value.id !== undefined;
    checkStep(state, step, index, explicitId);
  });
  return problems;
}
