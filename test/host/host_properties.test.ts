// Goal: no sequence of guest writes, 4 KiB and 2 MiB-aligned discards, host pressure with
// reclaim, and khugepaged scans can break the host model's invariants, on any backing, kernel
// or THP knob setting; and a discard of everything always returns every page to the host.
// Method: fast-check draws a host configuration and a sequence of operations on a small guest
// (17 MiB for the 4 KiB backings, so the last 2 MiB block is partial; 16 MiB for hugetlbfs) on a
// 1 GiB host whose watermarks the pressure values straddle; the independent checker runs after
// every step, and the snapshot's block counts must partition the blocks.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import {
  createGuestRam,
  createHostConfig,
  type GuestRam,
  hostGuestWrite,
  hostKhugepagedScan,
  hostReclaim,
  hostSetPressure,
  hostSnapshot,
  ramBlockDiscardRange,
} from "../../src/host/host_api.ts";
import { BLOCK, GiB, MiB } from "./helpers.ts";

const HOST_BYTES = GiB;

const operation = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("write" as const),
      page: fc.nat(),
      count: fc.integer({ min: 1, max: 1200 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("discard4k" as const),
      page: fc.nat(),
      count: fc.integer({ min: 1, max: 600 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("discard2m" as const),
      block: fc.nat(),
      blocks: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("pressure" as const),
      freeMiB: fc.integer({ min: 0, max: 160 }),
      neededMiB: fc.integer({ min: 0, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("khugepaged" as const),
      budget: fc.constantFrom(1, 512, 4096, 1 << 16),
    }),
  },
);
type Operation = typeof operation extends fc.Arbitrary<infer T> ? T : never;

const knobs = fc.record({
  kernel: fc.constantFrom("5.6", "6.1", "6.18"),
  enabled: fc.constantFrom("always" as const, "madvise" as const, "never" as const),
  defrag: fc.constantFrom("madvise", "never"),
  shmemEnabled: fc.constantFrom("always" as const, "never" as const, "advise" as const),
  maxPtesNone: fc.constantFrom(0, 255, 511),
  shmemSplitFailPerMille: fc.constantFrom(0, 300),
  seed: fc.integer({ min: 0, max: 1000 }),
});
type Knobs = typeof knobs extends fc.Arbitrary<infer T> ? T : never;

function makeRam(backing: string, k: Knobs): GuestRam {
  const config = createHostConfig({
    kernel: k.kernel,
    memoryBytes: HOST_BYTES,
    backing,
    thp: { enabled: k.enabled, defrag: k.defrag, shmemEnabled: k.shmemEnabled },
    khugepaged: { maxPtesNone: k.maxPtesNone },
    shmemSplitFailPerMille: k.shmemSplitFailPerMille,
    seed: k.seed,
  });
  const ramBytes = backing === "hugetlbfs" ? 16 * MiB : 17 * MiB;
  return createGuestRam(config, ramBytes / PAGE_SIZE);
}

function apply(ram: GuestRam, op: Operation): void {
  const pages = ram.pageCount;
  switch (op.kind) {
    case "write": {
      const page = op.page % pages;
      hostGuestWrite(ram, page, Math.min(op.count, pages - page));
      return;
    }
    case "discard4k": {
      const page = op.page % pages;
      const count = Math.min(op.count, pages - page);
      ramBlockDiscardRange(ram, page * PAGE_SIZE, count * PAGE_SIZE);
      return;
    }
    case "discard2m": {
      const blocks = Math.floor(pages / 512);
      const block = op.block % blocks;
      const count = Math.min(op.blocks, blocks - block);
      ramBlockDiscardRange(ram, block * BLOCK, count * BLOCK);
      return;
    }
    case "pressure": {
      const otherBytes = HOST_BYTES - pages * PAGE_SIZE - op.freeMiB * MiB;
      hostSetPressure(ram, Math.max(0, otherBytes));
      hostReclaim(ram, op.neededMiB * MiB);
      return;
    }
    case "khugepaged":
      hostKhugepagedScan(ram, op.budget);
      return;
  }
}

describe.each(["anon", "memfd", "tmpfs-huge", "hugetlbfs"])(
  "host model properties: %s",
  (backing) => {
    test.prop([knobs, fc.array(operation, { minLength: 1, maxLength: 40 })], { numRuns: 60 })(
      "the checker stays clean after every step; discarding all frees all",
      (k, operations) => {
        const ram = makeRam(backing, k);
        for (const op of operations) {
          apply(ram, op);
          expect(checkHostRam(ram)).toEqual([]);
          const { blocks } = hostSnapshot(ram);
          expect(blocks.full + blocks.partial + blocks.empty).toBe(ram.blockCount);
        }
        ramBlockDiscardRange(ram, 0, ram.pageCount * PAGE_SIZE);
        expect(checkHostRam(ram)).toEqual([]);
        const snapshot = hostSnapshot(ram);
        expect([snapshot.residentBytes, snapshot.allocatedBytes]).toEqual([0, 0]);
        expect(snapshot.deferredSplitBytes).toBe(0);
      },
    );
  },
);
