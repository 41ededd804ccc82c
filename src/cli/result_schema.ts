// The published schema of result.json (the contract in issue #4), written with zod so that the
// JSON Schema in docs/result.schema.json is generated from the same source the tests check
// (test/cli/run_cli.test.ts fails when the committed file is out of date).

import { z } from "zod";

const count = z.number().int().nonnegative();
const kB = z.number().int();
const numbers = z.record(z.string(), z.number());

const guestSchema = z.object({
  buddyinfo: z
    .record(z.string(), z.array(count).length(11))
    .describe("free blocks per order 0..10, per zone name, as /proc/buddyinfo"),
  vmstat: numbers.describe("every /proc/vmstat counter the model keeps, by the kernel's names"),
  meminfo_kB: numbers.describe("the /proc/meminfo fields that apply, in kB"),
  unusableIndexOrder9: z
    .number()
    .int()
    .describe("extension: unusable_index at order 9 of the largest zone, thousandths"),
});

const hostSchema = z.object({
  ramResident_kB: kB.describe("present pages of QEMU's guest-RAM mapping (pagemap, smaps Rss)"),
  ramAllocated_kB: kB.describe("what the host really holds for guest RAM (THPs waiting whole)"),
  deferredSplit_kB: kB.describe("THPs on the deferred split queue, counted whole"),
  ramThp_kB: kB.describe("guest RAM mapped by huge pages: PMD-mapped THP, hugetlb"),
  residency: z.object({
    blocks2M: count,
    fullBlocks: count,
    partialBlocks: count,
    emptyBlocks: count,
    thpBlocks: count,
  }),
  meminfo_kB: z.object({ AnonHugePages: kB, ShmemHugePages: kB, ShmemPmdMapped: kB }),
  hugetlbPages: z.object({ total: count, free: count }),
  syscalls: z.object({ madvise: count, fallocate: count }),
  memFree_kB: kB.describe("extension: host MemFree (negative when overcommitted)"),
  residentByCause_kB: numbers.describe("extension: resident memory by what filled it"),
  counters: numbers.describe("extension: the host model's event counters"),
});

const balloonSchema = z.object({
  pagesInflated: count.describe("virtio's actual, 4 KiB pages"),
  logicalSizeMiB: z.number().describe("QMP's actual: guest RAM minus the balloon, MiB"),
  requests: count.describe("virtqueue requests: inflate, deflate, report and virtio-mem's"),
  targetMiB: z.number().describe("extension: QEMU's target as a logical size, MiB"),
  device: numbers.describe("extension: the device model's counters"),
  balloonTimeMs: z.number().nonnegative().describe("extension: simulated balloon work time"),
  virtioMem: z
    .object({ regionMiB: z.number(), requestedMiB: z.number(), pluggedMiB: z.number() })
    .optional()
    .describe("extension: with device virtio-mem, its region, requested and plugged sizes"),
});

const ladderSchema = z
  .object({
    hugeBoth: count,
    guestOnly: count,
    hostOnly: count,
    neither: count,
    free: count,
    ballooned: count,
  })
  .describe("2 MiB blocks of guest memory: huge in guest and host, one, neither; free; ballooned");

export const resultSnapshotSchema = z.object({
  name: z.string(),
  simTimeMs: z.number().nonnegative(),
  guest: guestSchema,
  host: hostSchema,
  balloon: balloonSchema,
  ladder: ladderSchema,
});

export const resultSchema = z.object({
  scenario: z.record(z.string(), z.unknown()).describe("the resolved scenario, defaults filled"),
  seed: z.number().int(),
  version: z.string(),
  snapshots: z.array(resultSnapshotSchema),
});

/** The JSON Schema published as docs/result.schema.json. */
export function resultJsonSchema(): unknown {
  return {
    ...(z.toJSONSchema(resultSchema) as Record<string, unknown>),
    $id: "https://balloonlab.invalid/result.schema.json",
    title: "balloonlab result.json",
  };
}
