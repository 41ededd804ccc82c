// Goal: each claim of the February 2020 thread (../shared/reference/) holds in the model with the
// direction the thread gives, through the whole stack (guest driver, QEMU's device, the host):
// - Hildenbrand/Duyck: the pbp tracker frees nothing on a 2 MiB hugetlbfs backing with 256-PFN
//   requests ("we can only inflate half of a THP page at a time"), while free page reporting
//   at order 9 does free it.
// - Duyck: 4 KiB inflation on a fragmented guest splits many more host THPs than
//   highest-order-first; on anonymous THP it returns almost no allocated memory until the host
//   is under pressure (Yang Shi: anon THP memory returns only when all subpages are gone).
// - Yang Shi / Hugh Dickins: shmem THP punched 4 KiB at a time frees nothing on 5.6 and frees
//   memory from 5.7.
// - khugepaged (max_ptes_none 511) can undo the balloon's savings; with 0 it cannot.
// Method: 1-2 GiB guests on a 24 GiB host; the guest first touches memory (a process writes it
// and exits) so the host backs it, then the balloon inflates; host snapshots before and after
// are compared. The guest and host checkers run at the end of every scenario.

import { describe, expect, test } from "vitest";
import { memhog } from "../../src/sim/guest_sim.ts";
import {
  applyHostPressure,
  passTime,
  setBalloonTarget,
  snapshotVm,
  type VmSim,
} from "../../src/sim/vm_sim.ts";
import { handleInflate } from "../../src/virtio/qemu_balloon_device.ts";
import { checkAll, GiB, MiB, type TestVmOptions, testVm, touchAndFree } from "./vm_helpers.ts";

/** The file's cases: the shared test VM with Duyck's host variant spelled as a flag. */
function makeVm(options: TestVmOptions & { wholeHugeOnly?: boolean } = {}): VmSim {
  const { wholeHugeOnly, ...rest } = options;
  return testVm({ ...rest, policyOptions: { hostDiscardsWholeHugeOnly: wholeHugeOnly ?? false } });
}

describe("Hildenbrand/Duyck: the pbp tracker and 2 MiB hugetlbfs", () => {
  test("256-PFN requests never complete a 2 MiB host page: nothing is freed", () => {
    const vm = makeVm({ backing: "hugetlbfs" });
    touchAndFree(vm, 700 * MiB);
    const before = snapshotVm(vm);
    setBalloonTarget(vm, 512 * MiB);
    const after = snapshotVm(vm);
    expect(after.balloon.sizeBytes).toBe(512 * MiB);
    expect(after.balloon.device.pbpCompleted).toBe(0);
    expect(after.balloon.device.pbpDropped).toBeGreaterThan(0);
    expect(after.host.hugetlbPagesFree).toBe(before.host.hugetlbPagesFree);
    expect(after.host.allocatedBytes).toBe(before.host.allocatedBytes);
    checkAll(vm);
  });

  test("free page reporting at order 9 frees whole hugetlb pages", () => {
    const vm = makeVm({ backing: "hugetlbfs", reporting: true });
    touchAndFree(vm, 700 * MiB);
    const before = snapshotVm(vm);
    passTime(vm, 60_000);
    const after = snapshotVm(vm);
    expect(after.host.hugetlbPagesFree - before.host.hugetlbPagesFree).toBeGreaterThan(300);
    expect(after.balloon.device.reportedPagesIgnored).toBe(0);
    checkAll(vm);
  });
});

describe("Duyck: 4 KiB inflation on a fragmented guest, anonymous THP host", () => {
  /** Half of 1400 MiB stays allocated, every other 4 KiB page: free memory is all order 0. */
  function fragmentedVm(policy: string): VmSim {
    const vm = makeVm({ guestBytes: 2 * GiB, policy });
    memhog(vm.guest, "frag", 1400 * MiB, false, 2);
    return vm;
  }

  test("linux-4k splits many more host THPs than highest-order-first", () => {
    const small = fragmentedVm("linux-4k");
    const large = fragmentedVm("highest-order-first");
    for (const vm of [small, large]) setBalloonTarget(vm, 1536 * MiB);
    const smallSplits = snapshotVm(small).host.counters.splitPmd;
    const largeSplits = snapshotVm(large).host.counters.splitPmd;
    expect(snapshotVm(small).balloon.sizeBytes).toBe(512 * MiB);
    expect(snapshotVm(large).balloon.sizeBytes).toBe(512 * MiB);
    expect(smallSplits).toBeGreaterThan(2 * largeSplits);
    checkAll(small);
    checkAll(large);
  });

  test("linux-4k returns almost no allocated memory until the host is under pressure", () => {
    const vm = fragmentedVm("linux-4k");
    const before = snapshotVm(vm);
    setBalloonTarget(vm, 1536 * MiB);
    const inflated = snapshotVm(vm);
    const residentDrop = before.host.residentBytes - inflated.host.residentBytes;
    const allocatedDrop = before.host.allocatedBytes - inflated.host.allocatedBytes;
    expect(residentDrop).toBeGreaterThan(400 * MiB);
    expect(allocatedDrop).toBeLessThan(0.1 * residentDrop);
    expect(inflated.host.deferredSplitBytes).toBeGreaterThan(400 * MiB);
    // Host memory pressure runs the deferred split shrinker: the memory finally returns.
    applyHostPressure(vm, 24 * GiB);
    const pressed = snapshotVm(vm);
    expect(before.host.allocatedBytes - pressed.host.allocatedBytes).toBeGreaterThan(
      0.9 * residentDrop,
    );
    checkAll(vm);
  });
});

describe("Yang Shi / Hugh Dickins: shmem THP punched 4 KiB at a time", () => {
  for (const [hostKernel, frees] of [
    ["5.6", false],
    ["6.1", true],
  ] as const) {
    test(`host ${hostKernel}: ${frees ? "frees memory" : "frees nothing"}`, () => {
      const vm = makeVm({ backing: "tmpfs-huge", hostKernel, shmemEnabled: "always" });
      touchAndFree(vm, 700 * MiB);
      const before = snapshotVm(vm);
      expect(before.host.shmemHugePagesBytes).toBeGreaterThan(500 * MiB);
      setBalloonTarget(vm, 512 * MiB);
      const after = snapshotVm(vm);
      const freed = before.host.allocatedBytes - after.host.allocatedBytes;
      if (frees) expect(freed).toBeGreaterThan(400 * MiB);
      else expect(freed).toBe(0);
      checkAll(vm);
    });
  }
});

describe("khugepaged can undo the balloon's savings", () => {
  for (const maxPtesNone of [511, 0]) {
    test(`max_ptes_none ${maxPtesNone}`, () => {
      const vm = makeVm({ guestBytes: 2 * GiB, maxPtesNone });
      memhog(vm.guest, "frag", 1400 * MiB, false, 2);
      setBalloonTarget(vm, 1536 * MiB);
      // Host pressure comes and goes: the shrinker returns the ballooned memory.
      applyHostPressure(vm, 24 * GiB);
      applyHostPressure(vm, 0);
      const inflated = snapshotVm(vm);
      passTime(vm, 10 * 60_000);
      const later = snapshotVm(vm);
      const regrown = later.host.allocatedBytes - inflated.host.allocatedBytes;
      if (maxPtesNone === 511) {
        expect(later.host.counters.collapses).toBeGreaterThan(inflated.host.counters.collapses);
        expect(regrown).toBeGreaterThan(100 * MiB);
      } else {
        expect(later.host.counters.collapses).toBe(inflated.host.counters.collapses);
        expect(regrown).toBeLessThanOrEqual(0);
      }
      checkAll(vm);
    });
  }
});

describe("init_on_alloc: zeroing a balloon page is a write the host sees", () => {
  test("anon THP, idle guest: each 2 MiB is faulted in as a THP, then discarded: churn and time", () => {
    const plain = makeVm({});
    const zeroing = makeVm({ initOnAlloc: true });
    const booted = snapshotVm(plain).host;
    for (const vm of [plain, zeroing]) setBalloonTarget(vm, 512 * MiB);
    const plainHost = snapshotVm(plain).host;
    const zeroHost = snapshotVm(zeroing).host;
    // Without zeroing the balloon never touches its pages: the host faults nothing in, and only
    // frees what the boot wrote and freed (bzImage, decompressor copy, initrd: boot rules).
    expect(plainHost.counters.faults2m).toBe(booted.counters.faults2m);
    expect(plainHost.allocatedBytes).toBeLessThanOrEqual(booted.allocatedBytes);
    // With it, every 2 MiB the balloon takes is first faulted as a THP (then freed whole).
    expect(zeroHost.counters.faults2m - booted.counters.faults2m).toBeGreaterThan(200);
    expect(zeroing.balloonTimeMs).toBeGreaterThan(plain.balloonTimeMs);
    checkAll(zeroing);
  });

  test("hugetlbfs: zeroing faults huge pages in that the pbp tracker never gives back", () => {
    const plain = makeVm({ backing: "hugetlbfs" });
    const zeroing = makeVm({ backing: "hugetlbfs", initOnAlloc: true });
    for (const vm of [plain, zeroing]) setBalloonTarget(vm, 512 * MiB);
    const grown = snapshotVm(zeroing).host.allocatedBytes - snapshotVm(plain).host.allocatedBytes;
    expect(grown).toBeGreaterThan(400 * MiB);
    checkAll(zeroing);
  });
});

describe("Duyck's two host variants (2020-02-20 and 2020-02-21)", () => {
  test("QEMU told the THP size: 256 4 KiB PFNs never complete 2 MiB; whole 2 MiB entries do", () => {
    const linux = makeVm({ thpSizeKnown: true });
    touchAndFree(linux, 700 * MiB);
    const before = snapshotVm(linux).host;
    setBalloonTarget(linux, 512 * MiB);
    const after = snapshotVm(linux);
    // Linux's requests carry half a THP at most: the 2 MiB pbp never completes, nothing goes.
    expect(after.balloon.device.pbpCompleted).toBe(0);
    expect(after.host.allocatedBytes).toBe(before.allocatedBytes);
    // Zhu's order-9 entries carry whole THPs: each completes and goes in one call, no split.
    const thp = makeVm({ thpSizeKnown: true, policy: "thp-order" });
    touchAndFree(thp, 700 * MiB);
    const thpBefore = snapshotVm(thp).host;
    setBalloonTarget(thp, 512 * MiB);
    const thpAfter = snapshotVm(thp);
    const completed = thpAfter.balloon.device.pbpCompleted;
    expect(completed).toBe(thpAfter.balloon.sizeBytes / (2 * MiB));
    expect(thpAfter.host.counters.madvise - thpBefore.counters.madvise).toBe(completed);
    expect(thpAfter.host.counters.splitPmd).toBe(thpBefore.counters.splitPmd);
    checkAll(thp);
  });

  test("host discards only whole 2 MiB: no host THP is split; smaller entries stay backed", () => {
    const vm = makeVm({ guestBytes: 2 * GiB, policy: "highest-order-first", wholeHugeOnly: true });
    // Free memory is mostly 4 KiB holes: 2 MiB blocks must be made by compaction.
    memhog(vm.guest, "frag", 1800 * MiB, false, 2);
    const before = snapshotVm(vm);
    setBalloonTarget(vm, 1536 * MiB);
    const after = snapshotVm(vm);
    expect(after.balloon.sizeBytes).toBe(512 * MiB);
    // Highest order first pressures the guest to compact; the host splits nothing.
    expect(after.guest.events.compact_success!).toBeGreaterThan(0);
    expect(after.host.counters.splitPmd).toBe(before.host.counters.splitPmd);
    // An entry smaller than 2 MiB is acknowledged and its memory stays backed.
    const request = vm.driver.request;
    request.inflate = true;
    request.entryCount = 1;
    request.entryPfn[0] = 0x30000;
    request.entryPages[0] = 256;
    const kept = vm.device.counters.inflatedPagesKept;
    const madvise = vm.ram.counters.madvise;
    handleInflate(vm.device, request);
    expect(vm.device.counters.inflatedPagesKept - kept).toBe(256);
    expect(vm.ram.counters.madvise).toBe(madvise);
    checkAll(vm);
  });
});
