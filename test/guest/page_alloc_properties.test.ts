// Goal: the allocator keeps every invariant under any sequence of allocations and frees, and
// freeing everything restores the boot free lists exactly.
// Method: fast-check draws sequences of (allocate order/type | free a live block | drain pcp)
// on a 128 MiB guest for each kernel version; the independent checker runs after every step.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { FrameKind, NO_PFN } from "../../src/guest/frame_table.ts";
import { GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_KERNEL_RECLAIMABLE } from "../../src/guest/gfp.ts";
import { createOwner } from "../../src/guest/owners.ts";
import { allocPages, assignFrames, drainAllPages, freePages } from "../../src/guest/page_alloc.ts";
import { nrFreeByOrder, smallGuest } from "./helpers.ts";

const GFPS = [GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_KERNEL_RECLAIMABLE];
const KINDS = [FrameKind.Anon, FrameKind.Kernel, FrameKind.KernelReclaimable];

const operation = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("alloc" as const),
      order: fc.integer({ min: 0, max: 10 }),
      type: fc.integer({ min: 0, max: 2 }),
      count: fc.integer({ min: 1, max: 300 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("free" as const),
      pick: fc.nat(),
      count: fc.integer({ min: 1, max: 300 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("drain" as const) }) },
);

describe.each(["5.6", "6.1", "6.18"])("page allocator properties on %s", (kernel) => {
  test.prop([fc.array(operation, { minLength: 1, maxLength: 25 })], { numRuns: 15 })(
    "invariants hold after every step; freeing all restores boot lists",
    (operations) => {
      const memory = smallGuest(kernel);
      const boot = nrFreeByOrder(memory);
      const owner = createOwner(memory.owners, FrameKind.Anon, "test", 1 << 20);
      const live: { pfn: number; order: number }[] = [];
      let nextIndex = 0;
      for (const op of operations) {
        if (op.kind === "alloc") {
          for (let i = 0; i < op.count; i++) {
            const pfn = allocPages(memory, GFPS[op.type]!, op.order);
            if (pfn === NO_PFN) break;
            assignFrames(memory, pfn, op.order, KINDS[op.type]!, owner.id, nextIndex);
            for (let j = 0; j < 1 << op.order; j++) owner.pages[nextIndex + j] = pfn + j;
            nextIndex += 1 << op.order;
            live.push({ pfn, order: op.order });
          }
        } else if (op.kind === "free") {
          for (let i = 0; i < op.count && live.length > 0; i++) {
            const [block] = live.splice((op.pick + i * 7) % live.length, 1);
            freePages(memory, block!.pfn, block!.order);
          }
        } else {
          drainAllPages(memory);
        }
        expect(checkGuestMemory(memory)).toEqual([]);
      }
      for (const block of live) freePages(memory, block.pfn, block.order);
      drainAllPages(memory);
      expect(checkGuestMemory(memory)).toEqual([]);
      expect(nrFreeByOrder(memory)).toEqual(boot);
    },
  );
});
