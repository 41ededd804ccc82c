// The scenario file format (issue #4, a contract: never rename a key) as zod schemas: what a YAML
// scenario file may hold, with every default, before sizes and durations become numbers. The
// loader (scenario_file.ts) validates with these, and docs/scenario.schema.json is generated
// from `scenarioFileSchema` by `scenarioJsonSchema()` (test/cli/scenario_file.test.ts keeps the
// committed copy in step). Sizes are strings such as "2GiB", durations strings such as "30s";
// keys ending in `Ms` are integers of milliseconds.

import { z } from "zod";
import { PAGE_SIZE } from "../core/limits.ts";
import { KERNEL_VERSIONS } from "../guest/kernel_version.ts";
import {
  HOST_BACKINGS,
  SHMEM_ENABLED_VALUES,
  THP_DEFRAG_VALUES,
  THP_ENABLED_VALUES,
} from "../host/host_config.ts";
import { BALLOON_POLICY_NAMES } from "../policies/balloon_policy.ts";

export const SIZE_UNITS = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 } as const;
export const DURATION_UNITS = { ms: 1, s: 1000, min: 60_000 } as const;
export const MACHINES = ["pc", "q35"] as const;
export const BALLOON_DEVICES = ["virtio-balloon", "virtio-mem"] as const;
/** PAGE_REPORTING_CAPACITY (mm/page_reporting.h): a kernel constant, not a setting. */
export const PAGE_REPORTING_CAPACITY = 32;
/** Orders a reported block may have: 0..MAX_PAGE_ORDER (10 on x86-64). */
export const MAX_REPORTING_ORDER = 10;

const SIZE_PATTERN = /^([0-9]+)(?:\.([0-9]+))?(KiB|MiB|GiB|TiB)$/;
const DURATION_PATTERN = /^([0-9]+)(?:\.([0-9]+))?(ms|s|min)$/;
const UNIT_LIST = "KiB, MiB, GiB, TiB";

/** Exact `whole.fraction * unit`, or undefined when it is not a whole number of bytes. */
function scaled(whole: string, fraction: string, unit: number): number | undefined {
  const scale = 10n ** BigInt(fraction.length);
  const numerator = (BigInt(whole) * scale + BigInt(fraction || "0")) * BigInt(unit);
  if (numerator % scale !== 0n) return undefined;
  const value = numerator / scale;
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : Number.POSITIVE_INFINITY;
}

/** Bytes of a size string ("1.5GiB"); undefined if it does not match the pattern. */
export function parseSize(text: string): number | undefined {
  const match = SIZE_PATTERN.exec(text);
  if (!match) return undefined;
  const unit = SIZE_UNITS[match[3] as keyof typeof SIZE_UNITS];
  return scaled(match[1]!, match[2] ?? "", unit);
}

/** Milliseconds of a duration string ("2min"); undefined if it does not match the pattern. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION_PATTERN.exec(text);
  if (!match) return undefined;
  const unit = DURATION_UNITS[match[3] as keyof typeof DURATION_UNITS];
  return scaled(match[1]!, match[2] ?? "", unit);
}

/** How a value read from YAML reads in a message. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "object" && !value) return "an empty value";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean") return `${typeof value} ${value}`;
  if (Array.isArray(value)) return "a list";
  return "a mapping";
}

/** "; did you mean "2GiB"?" for "2GB", "2 gib", "2g": units are binary and case-sensitive. */
function sizeHint(text: string): string {
  const match = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt])(?:i?b)?\s*$/i.exec(text);
  if (!match) return "";
  const unit = `${match[2]!.toUpperCase()}iB`;
  return `; did you mean "${match[1]}${unit}"?`;
}

const sizeString = z
  .string({
    error: (issue) =>
      typeof issue.input === "number"
        ? `a size needs a unit: write e.g. ${issue.input}MiB (units ${UNIT_LIST}), ` +
          `got number ${issue.input}`
        : `expected a size string such as 2GiB, got ${describeValue(issue.input)}`,
  })
  .regex(SIZE_PATTERN, {
    abort: true,
    error: (issue) =>
      `expected a size: a number then one of ${UNIT_LIST} with no space (2GiB, 1400MiB, ` +
      `1.5GiB), got ${describeValue(issue.input)}${sizeHint(String(issue.input))}`,
  })
  .refine((text) => (parseSize(text) ?? 0) > 0, {
    abort: true,
    error: (issue) =>
      parseSize(String(issue.input)) === 0
        ? `expected a size greater than zero, got ${describeValue(issue.input)}`
        : `${issue.input} is not a whole number of bytes`,
  })
  .refine((text) => (parseSize(text) ?? 0) % PAGE_SIZE === 0, {
    abort: true,
    error: (issue) => `${issue.input} is not a whole number of 4 KiB pages`,
  })
  .refine((text) => Number.isSafeInteger(parseSize(text)), { error: "size too large" });

/** A size string: "2GiB", "1400MiB", "1.5GiB"; a positive whole number of 4 KiB pages. */
export function size(description: string) {
  return sizeString.meta({ description, examples: ["2GiB", "1400MiB"] });
}

const durationString = z
  .string({
    error: (issue) =>
      typeof issue.input === "number"
        ? `a duration needs a unit: write e.g. ${issue.input}s (units ms, s, min), ` +
          `got number ${issue.input}`
        : `expected a duration string such as 30s, got ${describeValue(issue.input)}`,
  })
  .regex(DURATION_PATTERN, {
    abort: true,
    error: (issue) =>
      `expected a duration: a number then one of ms, s, min with no space (500ms, 30s, ` +
      `2min), got ${describeValue(issue.input)}`,
  })
  .refine((text) => parseDuration(text) !== undefined, {
    abort: true,
    error: (issue) => `${issue.input} is not a whole number of milliseconds`,
  })
  .refine((text) => (parseDuration(text) ?? 0) > 0, {
    error: (issue) => `expected a duration greater than zero, got ${issue.input}`,
  })
  .meta({ description: "a duration: 500ms, 30s, 2min", examples: ["30s", "500ms", "2min"] });

function integer(min: number, max: number, description: string) {
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
  return z
    .int({
      error: (issue) =>
        issue.code === "invalid_type"
          ? `expected an integer, got ${describeValue(issue.input)}`
          : undefined,
    })
    .min(min)
    .max(max)
    .meta({ description: `${description} (integer ${range})` });
}

function kernel(description: string) {
  return z
    .enum(KERNEL_VERSIONS, {
      error: (issue) =>
        typeof issue.input === "number"
          ? `kernel versions are strings: quote it, e.g. kernel: "${issue.input}" (YAML reads ` +
            `6.10 unquoted as the number 6.1); expected one of ${KERNEL_VERSIONS.join(", ")}`
          : `expected one of ${KERNEL_VERSIONS.join(", ")}, got ${describeValue(issue.input)}`,
    })
    .meta({ description });
}

const thpEnabled = z.enum(THP_ENABLED_VALUES).meta({
  description: "transparent_hugepage/enabled",
});
const thpDefrag = z.enum(THP_DEFRAG_VALUES).meta({ description: "transparent_hugepage/defrag" });

/** `schema.default(...)` with the value the schema gives an empty mapping: nested defaults. */
function defaulted<T extends z.ZodObject>(schema: T) {
  return schema.default(schema.parse({}) as z.core.util.NoUndefined<z.output<T>>);
}

const filePath = z.string().min(1).meta({
  description: "a file path, relative to the scenario file's directory",
});

const guestSchema = z
  .strictObject({
    memory: size("guest RAM (QEMU -m): a multiple of 2 MiB, 128MiB..1TiB").default("2GiB"),
    cpus: integer(1, 1024, "vCPUs (QEMU -smp)").default(1),
    machine: z
      .enum(MACHINES)
      .default("pc")
      .meta({ description: "QEMU machine type: where RAM is placed, hence the zones" }),
    kernel: kernel("guest kernel behaviour").default("6.1"),
    initOnAlloc: z
      .boolean()
      .default(true)
      .meta({ description: "init_on_alloc: the kernel zeroes the pages it allocates" }),
    thp: defaulted(
      z.strictObject({
        enabled: thpEnabled.default("always"),
        defrag: thpDefrag.default("madvise"),
      }),
    ).meta({ description: "the guest's transparent_hugepage settings" }),
    initialState: z
      .strictObject({ buddyinfo: filePath, pagetypeinfo: filePath, zoneinfo: filePath.optional() })
      .optional()
      .meta({ description: "start from a real machine's /proc files (balloonlab proc import)" }),
  })
  .meta({ description: "the guest (virtual machine)" });

const hostSchema = z
  .strictObject({
    kernel: kernel("host kernel behaviour").default("6.18"),
    memory: size("host RAM: a whole number of 4 KiB pages").default("24GiB"),
    backing: z
      .enum(HOST_BACKINGS)
      .default("anon")
      .meta({ description: "how QEMU backs guest RAM" }),
    hugetlbPageSize: size("extension: hugetlbfs page size, 2MiB or 1GiB").default("2MiB"),
    thp: defaulted(
      z.strictObject({
        enabled: thpEnabled.default("madvise"),
        defrag: thpDefrag.default("madvise"),
        shmemEnabled: z
          .enum(SHMEM_ENABLED_VALUES)
          .default("never")
          .meta({ description: "transparent_hugepage/shmem_enabled (memfd backing)" }),
      }),
    ).meta({ description: "the host's transparent_hugepage settings" }),
    khugepaged: defaulted(
      z.strictObject({
        scanSleepMs: integer(0, 2 ** 32 - 1, "khugepaged/scan_sleep_millisecs").default(10000),
        pagesToScan: integer(1, 2 ** 32 - 1, "khugepaged/pages_to_scan").default(4096),
        maxPtesNone: integer(0, 511, "khugepaged/max_ptes_none").default(511),
      }),
    ).meta({ description: "the host's khugepaged settings" }),
    discardInhibited: z
      .boolean()
      .default(false)
      .meta({ description: "device assignment (vfio): discards are ignored" }),
  })
  .meta({ description: "the host (hypervisor)" });

const reportingSchema = z.strictObject({
  enabled: z.boolean().default(false).meta({ description: "free page reporting (5.7+ guests)" }),
  order: integer(0, MAX_REPORTING_ORDER, "page_reporting_order; 9 on kernels before 5.14").default(
    9,
  ),
  delayMs: integer(0, 2 ** 32 - 1, "delay before a reporting pass").default(2000),
  capacity: z
    .literal(PAGE_REPORTING_CAPACITY, {
      error: (issue) =>
        `capacity is PAGE_REPORTING_CAPACITY, a kernel constant (32, mm/page_reporting.h): ` +
        `it cannot be changed; got ${describeValue(issue.input)}`,
    })
    .default(PAGE_REPORTING_CAPACITY)
    .meta({ description: "PAGE_REPORTING_CAPACITY, always 32" }),
});

const balloonSchema = z
  .strictObject({
    device: z.enum(BALLOON_DEVICES).default("virtio-balloon").meta({ description: "the device" }),
    policy: z
      .enum(BALLOON_POLICY_NAMES)
      .default("linux-4k")
      .meta({ description: "how the guest allocates balloon pages and QEMU discards them" }),
    freePageReporting: defaulted(reportingSchema).meta({ description: "free page reporting" }),
    deflateOnOom: z
      .boolean()
      .default(false)
      .meta({ description: "VIRTIO_BALLOON_F_DEFLATE_ON_OOM" }),
    thpSizeKnown: z
      .boolean()
      .default(false)
      .meta({ description: "extension: QEMU knows the host THP size (Duyck's variant)" }),
    hostDiscardsWholeHugeOnly: z.boolean().default(false).meta({
      description: "extension (highest-order-first): the host discards only whole 2 MiB ranges",
    }),
    virtioMem: defaulted(
      z.strictObject({
        regionSize: size("virtio-mem region size").default("4GiB"),
        blockSize: size("virtio-mem block size: a power of two, at least 2MiB").default("2MiB"),
      }),
    ).meta({ description: "used when device is virtio-mem" }),
  })
  .meta({ description: "the balloon device and its policy" });

const memhogId = z
  .string()
  .min(1)
  .refine((id) => id !== "all", { error: '"all" is reserved for `free: all`' })
  .meta({ description: "process id for `free`; default memhog-N, N the step's index from 0" });

/** Each step's value, by step name (a step is a mapping with exactly one of these keys). */
export const STEP_SCHEMAS = {
  touch: z.strictObject({
    size: size("tmpfs file size"),
    free: z.boolean().default(false).meta({ description: "delete the file afterwards" }),
  }),
  memhog: z.strictObject({
    size: size("anonymous memory size"),
    thp: z.boolean().default(false).meta({ description: "THP allowed (MADV_HUGEPAGE)" }),
    keepEvery: integer(1, Number.MAX_SAFE_INTEGER, "keep every k-th 4 KiB page").default(1),
    id: memhogId.optional(),
  }),
  free: z.union([
    z.literal("all").meta({ description: "end every memhog process" }),
    z.strictObject({ id: z.string().min(1).meta({ description: "a memhog id" }) }),
  ]),
  pagecache: z.strictObject({
    size: size("file size read into the page cache"),
    drop: z.boolean().default(false).meta({ description: "drop clean page cache afterwards" }),
  }),
  slab: z.strictObject({
    size: size("unmovable kernel allocations"),
    spread: integer(1, Number.MAX_SAFE_INTEGER, "pageblocks to spread over").default(1),
  }),
  hostPressure: z.strictObject({ size: size("memory the host needs") }),
  compact: z.union([z.null(), z.strictObject({})]).meta({
    description: "echo 1 > /proc/sys/vm/compact_memory; no value (`- compact:`) or {}",
  }),
  balloon: z.strictObject({ target: size("the guest's logical size (QMP balloon)") }),
  wait: durationString,
  snapshot: z.string().min(1).meta({ description: "a snapshot name, unique in the file" }),
} as const;

export type StepKind = keyof typeof STEP_SCHEMAS;
export const STEP_KINDS = Object.keys(STEP_SCHEMAS) as StepKind[];

export function isStepKind(key: string): key is StepKind {
  return Object.hasOwn(STEP_SCHEMAS, key);
}

const FREE_SCALAR = z.literal("all", {
  error: (issue) =>
    `expected \`free: all\` or \`free: { id: ... }\`, got ${describeValue(issue.input)}`,
});
const COMPACT_MAPPING = z.strictObject(
  {},
  {
    error: (issue) =>
      `compact takes no value: write \`- compact:\` or \`- compact: {}\`, got ` +
      describeValue(issue.input),
  },
);

/** The schema one step's value is checked with: the union member its shape selects. */
export function stepValueSchema(kind: StepKind, value: unknown): z.ZodType {
  const mapping = typeof value === "object" && value !== undefined && !Array.isArray(value);
  if (kind === "free") return mapping && value ? STEP_SCHEMAS.free.options[1] : FREE_SCALAR;
  if (kind === "compact") return value ? COMPACT_MAPPING : STEP_SCHEMAS.compact;
  return STEP_SCHEMAS[kind];
}

const stepSchema = z
  .union(STEP_KINDS.map((kind) => z.strictObject({ [kind]: STEP_SCHEMAS[kind] })))
  .meta({ description: "one step: a mapping with exactly one step key" });

/** The whole file: what docs/scenario.schema.json publishes. */
export const scenarioFileSchema = z
  .strictObject({
    name: z.string().min(1).optional().meta({
      description: "the experiment's name; default: the file's base name without extension",
    }),
    seed: integer(0, 2 ** 32 - 1, "the one random seed of the run").default(1),
    guest: defaulted(guestSchema),
    host: defaulted(hostSchema),
    balloon: defaulted(balloonSchema),
    steps: z.array(stepSchema).min(1).meta({ description: "the experiment, in order" }),
  })
  .meta({
    title: "balloonlab scenario",
    description:
      "One balloonlab experiment (issue #4). Sizes are strings with KiB, MiB, GiB, TiB; " +
      "durations strings with ms, s, min; keys ending in Ms are integers of milliseconds.",
  });

/** The settings, with the steps left for one-by-one checks (clearer messages than a union's). */
export const scenarioSettingsSchema = scenarioFileSchema.extend({
  steps: z
    .array(z.unknown(), {
      error: (issue) => `expected a list of steps, got ${describeValue(issue.input)}`,
    })
    .min(1, { error: "expected at least one step" }),
});

export type ScenarioSettings = z.output<typeof scenarioSettingsSchema>;

/** The JSON Schema of the file format (input side: defaults make keys optional). */
export function scenarioJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(scenarioFileSchema, { io: "input", target: "draft-2020-12" });
}

/** The schema at a path of object keys below `schema`, or undefined if there is none. */
export function schemaAt(schema: z.ZodType, path: readonly string[]): z.ZodType | undefined {
  let current: z.ZodType | undefined = unwrap(schema);
  for (const key of path) {
    if (!(current instanceof z.ZodObject) || !Object.hasOwn(current.shape, key)) return undefined;
    current = unwrap(current.shape[key] as z.ZodType);
  }
  return current;
}

/** The keys a mapping schema takes (after defaults and optionals), else undefined. */
export function objectKeys(schema: z.ZodType | undefined): string[] | undefined {
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : undefined;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let current = schema;
  while (current instanceof z.ZodDefault || current instanceof z.ZodOptional) {
    current = current.unwrap() as z.ZodType;
  }
  return current;
}

const EXPECTED: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
  null: "an empty value",
};

/** Messages for the issues no schema words itself (zod's per-parse error map). */
export const scenarioErrorMap: z.core.$ZodErrorMap = (issue) => {
  const got = describeValue(issue.input);
  switch (issue.code) {
    case "invalid_type":
      return `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${got}`;
    case "invalid_value":
      return `expected one of ${issue.values.map(String).join(", ")}, got ${got}`;
    case "too_small":
      if (issue.origin === "string") return "expected a non-empty string";
      return `expected at least ${issue.minimum}, got ${got}`;
    case "too_big":
      return `expected at most ${issue.maximum}, got ${got}`;
    default:
      return undefined;
  }
};
