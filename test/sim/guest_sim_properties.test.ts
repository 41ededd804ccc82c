// Goal: the whole guest model keeps every invariant under any mix of the workload operations
// scenarios drive, with compaction (manual, direct, kcompactd, proactive), THP faults, splits
// and khugepaged collapses all in play; and when every process, file and cache is gone the
// only frames left allocated are the kernel's own (slab and boot reservations).
// Method: fast-check draws sequences of memhog (THP or not, punched or not), process exit,
// tmpfs write/delete, page cache fill/drop, slab, compact_memory and waits on a 640 MiB guest
// with THP always and defrag always (so faults compact directly), for each kernel version; the
// independent checker runs after every step; at the end everything user-owned is released and
// the free pages plus kernel pages must account for every managed page.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { FRAME_KIND_MASK, FrameKind } from "../../src/guest/frame_table.ts";
import { drainAllPages } from "../../src/guest/page_alloc.ts";
import { releaseFile } from "../../src/guest/page_cache.ts";
import {
  advanceTime,
  compactStep,
  createGuestSim,
  freeProcess,
  memhog,
  pageCacheStep,
  slabStep,
  touchTmpfs,
} from "../../src/sim/guest_sim.ts";

const MiB = 1024 * 1024;

const operation = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("memhog" as const),
      sizeMiB: fc.integer({ min: 1, max: 160 }),
      thp: fc.boolean(),
      keepEvery: fc.constantFrom(0, 2, 8, 512),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("free" as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("tmpfs" as const),
      sizeMiB: fc.integer({ min: 1, max: 64 }),
      keep: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("cache" as const),
      sizeMiB: fc.integer({ min: 0, max: 96 }),
      drop: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("slab" as const),
      sizeKiB: fc.integer({ min: 4, max: 2048 }),
      spread: fc.integer({ min: 1, max: 8 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("compact" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("wait" as const),
      ms: fc.integer({ min: 1, max: 25_000 }),
    }),
  },
);

type Operation = typeof operation extends fc.Arbitrary<infer T> ? T : never;

describe.each(["5.6", "6.1", "6.18"])("guest model properties on %s", (kernel) => {
  test.prop([fc.array(operation, { minLength: 1, maxLength: 10 })], { numRuns: 4 })(
    "invariants hold after every step; releasing all leaves only kernel memory",
    (operations) => {
      const sim = createGuestSim({
        memoryBytes: 640 * MiB,
        machine: "pc",
        kernel,
        cpus: 2,
        thpEnabled: "always",
        thpDefrag: "always",
        initOnAlloc: false,
      });
      const files: ReturnType<typeof touchTmpfs>[] = [];
      operations.forEach((op, step) => {
        applyOperation(sim, op, step, files);
        expect(checkGuestMemory(sim.memory)).toEqual([]);
      });
      freeProcess(sim, "all");
      for (const file of files) releaseFile(sim.memory, file);
      pageCacheStep(sim, "none", 0, true);
      drainAllPages(sim.memory);
      expect(checkGuestMemory(sim.memory)).toEqual([]);
      const { state } = sim.memory.table;
      for (let pfn = 0; pfn < state.length; pfn++) {
        const kind = state[pfn]! & FRAME_KIND_MASK;
        expect([FrameKind.Free, FrameKind.Reserved, FrameKind.Kernel]).toContain(kind);
      }
    },
  );
});

function applyOperation(
  sim: ReturnType<typeof createGuestSim>,
  op: Operation,
  step: number,
  files: ReturnType<typeof touchTmpfs>[],
): void {
  const memory = sim.memory;
  // Each process stays below what is free, as a workload sized by its author would (no OOM).
  let freeBytes = 0;
  for (const zone of memory.zones) freeBytes += zone.freePages * 4096;
  switch (op.kind) {
    case "memhog": {
      const sizeBytes = Math.min(op.sizeMiB * MiB, Math.floor(freeBytes / 2 / MiB) * MiB);
      if (sizeBytes > 0) memhog(sim, `p${step}`, sizeBytes, op.thp, op.keepEvery);
      return;
    }
    case "free": {
      const ids = [...sim.processes.keys()];
      if (ids.length > 0) freeProcess(sim, ids[op.pick % ids.length]!);
      return;
    }
    case "tmpfs": {
      const sizeBytes = Math.min(op.sizeMiB * MiB, Math.floor(freeBytes / 2 / MiB) * MiB);
      if (sizeBytes === 0) return;
      const file = touchTmpfs(sim, `t${step}`, sizeBytes, !op.keep);
      if (op.keep) files.push(file);
      return;
    }
    case "cache":
      pageCacheStep(sim, `f${step}`, op.sizeMiB * MiB, op.drop);
      return;
    case "slab":
      slabStep(sim, `s${step}`, op.sizeKiB * 1024, op.spread);
      return;
    case "compact":
      compactStep(sim);
      return;
    case "wait":
      advanceTime(sim, op.ms);
      return;
  }
}
