// Goal: Hildenbrand's ladder counts a virtio-mem guest's whole memory: boot RAM and the device's
// region (its own RAMBlock on the host). Plugged, host-backed region blocks are classified like
// boot RAM; unplugged ones count as given back (`ballooned`), as a balloon's are.
// Method: a 1 GiB guest (512 MiB boot RAM + a 512 MiB region with 2 MiB blocks) on a 6.18 host
// with anonymous THP; memory touched and freed so the region is host-backed; then the requested
// size drops by 256 MiB; the ladder of snapshotVm is read before and after, both checkers run.

import { describe, expect, test } from "vitest";
import type { ThpLadder } from "../../src/metrics/vm_snapshot.ts";
import { setBalloonTarget, snapshotVm } from "../../src/sim/vm_sim.ts";
import { checkAll, MiB, testVm, touchAndFree } from "./vm_helpers.ts";

function ladderTotal(ladder: ThpLadder): number {
  return Object.values(ladder).reduce((sum: number, each: number) => sum + each, 0);
}

describe("the ladder over a virtio-mem region", () => {
  test("covers boot RAM and the region; unplugged blocks count as given back", () => {
    // testVm's guestBytes is boot RAM here; the logical size is boot RAM plus the region.
    const vm = testVm({
      guestBytes: 512 * MiB,
      virtioMem: { regionBytes: 512 * MiB, blockBytes: 2 * MiB },
    });
    const pair = vm.virtioMem!;
    touchAndFree(vm, 768 * MiB);
    const bootBlocks = vm.ram.fullBlockCount;
    const regionBlocks = pair.device.ram.fullBlockCount;
    expect(regionBlocks).toBe(256);
    const before = snapshotVm(vm).ladder;
    expect(ladderTotal(before)).toBe(bootBlocks + regionBlocks);
    expect(before.ballooned).toBe(0);
    setBalloonTarget(vm, 768 * MiB);
    expect(pair.device.pluggedBytes).toBe(256 * MiB);
    const after = snapshotVm(vm).ladder;
    expect(ladderTotal(after)).toBe(bootBlocks + regionBlocks);
    expect(after.ballooned).toBe(128);
    checkAll(vm);
  });
});
