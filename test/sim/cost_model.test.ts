// Goal: the cost model (src/sim/cost_model.ts) gives each published speed of a reclaim mechanism
// within a factor of 2, through the whole stack (guest driver, QEMU's device, the host model and
// the round timing of vm_sim.ts), and the accounting behind it charges the work that happened:
// a THP freed whole costs one PMD zap, a range of 4 KiB pages one TLB flush, failed allocations
// and free page reports their share.
// Method: build the source's VM, inflate the balloon with setBalloonTarget, and compare the
// simulated time (vm.balloonTimeMs) or the speed derived from it with the source's figure:
// - Liang Li / Wei Wang 2017 (benchmarks.md): an idle 8 GiB guest, 7 GB inflated (the target is
//   8 GiB - 7e9 bytes, as the figure is quoted; the constants were derived over 7 GiB, 1.835 M
//   pages, so the model runs about 7 % below 4126 ms here). Host: anonymous memory with THP
//   "always", the default of the 2017 enterprise distributions (QEMU madvises guest RAM
//   MADV_HUGEPAGE, so "madvise" would behave the same); an idle guest never wrote its free pages,
//   so almost nothing the balloon takes is resident and the choice barely matters.
// - HyperAlloc (EuroSys'25, benchmarks.md): a 20 GiB VM with 19 GiB touched (a process writes
//   19 GiB and exits), shrunk to 2 GiB; speed = host memory reclaimed (allocated bytes before
//   minus after) over simulated seconds. The "untouched" column (nothing written, speed = balloon
//   size over time) is checked too: the constants are derived from both columns. The VMs are
//   scaled down 8x (2.5 GiB, 2.375 GiB touched, shrunk to 256 MiB: the same fractions), because
//   the full-size scenarios take about 40 s of wall time under vitest; the model's speed in
//   GiB/s does not depend on the size (every cost is per page, per 2 MiB or per 256-entry
//   request): full size gives 0.92, 1.70, 135.7 and 285.4 GiB/s, an eighth 0.91, 1.70, 135.5
//   and 284.5.
// - HyperAlloc's "return" and "return + install" columns (deflation, virtio-mem plugging, then
//   a guest module allocating 19 GiB): the same VMs grow back and the install is priced by the
//   cost model from the work it counts; see the describe block below for how the speeds are
//   computed (as HyperAlloc computes them: the VM's size over the time).

import { describe, expect, test } from "vitest";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import { workTimeNs } from "../../src/sim/cost_model.ts";
import { memhog } from "../../src/sim/guest_sim.ts";
import { passTime, setBalloonTarget, type VmSim } from "../../src/sim/vm_sim.ts";
import { createWorkCounts } from "../../src/virtio/work_counts.ts";
import { checkAll, GiB, MiB, type TestVmOptions, testVm, touchAndFree } from "./vm_helpers.ts";

/** The tolerance the calibration promises: within a factor of 2 of each source figure. */
const CALIBRATION_FACTOR = 2;

/** The calibration VMs: a Linux 6.1 host with twice the guest's memory unless told. */
function makeVm(options: TestVmOptions & { guestBytes: number; policy: string }): VmSim {
  return testVm({ hostKernel: "6.1", hostBytes: 2 * options.guestBytes, ...options });
}

function expectWithinFactor(model: number, source: number): void {
  const ratio = model / source;
  expect(ratio, `model ${model} vs source ${source}`).toBeGreaterThan(1 / CALIBRATION_FACTOR);
  expect(ratio, `model ${model} vs source ${source}`).toBeLessThan(CALIBRATION_FACTOR);
}

describe("Liang Li / Wei Wang 2017: 7 GB out of an idle 8 GiB guest", () => {
  const targetBytes = Math.floor((8 * GiB - 7e9) / PAGE_SIZE) * PAGE_SIZE;

  test("4 KiB PFNs (linux-4k) take about 4126 ms", () => {
    const vm = makeVm({ guestBytes: 8 * GiB, policy: "linux-4k" });
    setBalloonTarget(vm, targetBytes);
    expect(vm.driver.list.pageCount * PAGE_SIZE).toBe(8 * GiB - targetBytes);
    expectWithinFactor(vm.balloonTimeMs, 4126);
    checkAll(vm);
  });

  test("4 KiB allocations sent as merged ranges (addr-len, orders 0..0) take about 500 ms", () => {
    const vm = makeVm({
      guestBytes: 8 * GiB,
      policy: "addr-len",
      policyOptions: { addrLenOrderMin: 0, addrLenOrderMax: 0 },
    });
    setBalloonTarget(vm, targetBytes);
    expect(vm.driver.list.pageCount * PAGE_SIZE).toBe(8 * GiB - targetBytes);
    // Ranges: far fewer entries than pages.
    expect(vm.device.counters.entries).toBeLessThan(vm.driver.list.pageCount / 100);
    expectWithinFactor(vm.balloonTimeMs, 500);
    checkAll(vm);
  });
});

describe("HyperAlloc (EuroSys'25): a 20 GiB VM with 19 GiB touched, shrunk to 2 GiB", () => {
  /** The VMs are an eighth of the source's (see the file comment). */
  const scale = 1 / 8;
  const guestBytes = 20 * GiB * scale;
  const touchedBytes = 19 * GiB * scale;
  const targetBytes = 2 * GiB * scale;
  const balloonBytes = guestBytes - targetBytes;
  /** GiB of host memory reclaimed per simulated second. */
  function reclaimSpeed(policy: string): number {
    const vm = makeVm({ guestBytes, policy });
    touchAndFree(vm, touchedBytes);
    const allocatedBefore = vm.ram.allocatedPages;
    setBalloonTarget(vm, targetBytes);
    const reclaimedBytes = (allocatedBefore - vm.ram.allocatedPages) * PAGE_SIZE;
    // Nearly all of what the balloon took was backed, and the host got it back.
    expect(reclaimedBytes).toBeGreaterThan(0.97 * balloonBytes);
    const reclaimedGiB = reclaimedBytes / GiB;
    checkAll(vm);
    return reclaimedGiB / (vm.balloonTimeMs / 1000);
  }

  /** GiB the balloon took per simulated second, nothing touched before. */
  function untouchedSpeed(policy: string): number {
    const vm = makeVm({ guestBytes, policy });
    setBalloonTarget(vm, targetBytes);
    expect(vm.driver.list.pageCount * PAGE_SIZE).toBe(balloonBytes);
    return (vm.driver.list.pageCount * PAGE_SIZE) / GiB / (vm.balloonTimeMs / 1000);
  }

  test("4 KiB balloon (linux-4k) reclaims about 0.92 GiB/s", () => {
    expectWithinFactor(reclaimSpeed("linux-4k"), 0.92);
  });

  test("2 MiB balloon (huge-2m-fallback, huge pages available) reclaims about 136.5 GiB/s", () => {
    expectWithinFactor(reclaimSpeed("huge-2m-fallback"), 136.5);
  });

  test("untouched: 4 KiB about 1.68 GiB/s, 2 MiB about 289.3 GiB/s", () => {
    expectWithinFactor(untouchedSpeed("linux-4k"), 1.68);
    expectWithinFactor(untouchedSpeed("huge-2m-fallback"), 289.3);
  });

  /**
   * virtio-mem: boot memory is the target, the rest is the device's region (ZONE_MOVABLE),
   * plugged at start; the workload touches the same share of the guest, then the requested size
   * drops to 0 and the driver migrates and unplugs. GiB reclaimed per simulated second.
   */
  function virtioMemSpeed(touched: boolean): number {
    const vm = testVm({
      guestBytes: targetBytes * 2,
      virtioMem: { regionBytes: guestBytes - targetBytes * 2, blockBytes: 2 * 1024 * 1024 },
    });
    const pair = vm.virtioMem!;
    if (touched) touchAndFree(vm, touchedBytes - targetBytes);
    const allocatedBefore = pair.device.ram.allocatedPages;
    setBalloonTarget(vm, targetBytes * 2);
    expect(pair.device.pluggedBytes).toBe(0);
    const reclaimedBytes = touched
      ? (allocatedBefore - pair.device.ram.allocatedPages) * PAGE_SIZE
      : guestBytes - targetBytes * 2;
    if (touched) expect(reclaimedBytes).toBeGreaterThan(0.9 * (touchedBytes - targetBytes * 2));
    return reclaimedBytes / GiB / (vm.balloonTimeMs / 1000);
  }

  test("virtio-mem (movable) reclaims about 34.7 GiB/s, 41.9 untouched", () => {
    const touched = virtioMemSpeed(true);
    const untouched = virtioMemSpeed(false);
    expectWithinFactor(touched, 34.7);
    expectWithinFactor(untouched, 41.9);
  });
});

/**
 * HyperAlloc's "Return" and "Return + install" columns: after the shrink above, the VM grows
 * back to 20 GiB (deflation, or virtio-mem plugging), then a guest module allocates 19 GiB in
 * 4 KiB pages (alloc_pages_node, GFP_HIGHUSER_MOVABLE; the guest kernel zeroes each page,
 * init_on_alloc), which faults the returned memory back in on the host. HyperAlloc's speeds
 * divide the VM's size by the time (inflate/plot.py: 20 GiB over the time to return 18 GiB;
 * 19 GiB over the install time; "Return + install" = 1 / (1 / return + 1 / install)), so the
 * model's are computed the same way. The VMs are the same eighth as above. Model (2026-11):
 * return 2.10 / 326.9 / 101.6 GiB/s (4 KiB balloon / 2 MiB balloon / virtio-mem) against
 * 2.31 / 322.1 / 101.9; with the install 0.70 / 4.38 / 4.27 against 0.70 / 4.25 / 4.04.
 */
describe("HyperAlloc (EuroSys'25): growing back to 20 GiB, then installing 19 GiB", () => {
  const scale = 1 / 8;
  const guestBytes = 20 * GiB * scale;
  const touchedBytes = 19 * GiB * scale;
  const targetBytes = 2 * GiB * scale;

  interface ReturnSpeeds {
    /** GiB/s as HyperAlloc counts it: the VM's size over the time to grow back. */
    returnSpeed: number;
    /** GiB installed per second of the install's work. */
    installSpeed: number;
    returnInstallSpeed: number;
  }

  /**
   * The install: `bytes` of 4 KiB pages allocated and zeroed by the guest; the host faults what
   * is not resident. Its time is the cost model's for those counts (the simulator does not put
   * workloads on its clock). Returns GiB per second.
   */
  function installSpeed(vm: VmSim, bytes: number): number {
    // Boot RAM and, with virtio-mem, the memdev: the install faults in both.
    const rams = vm.virtioMem === undefined ? [vm.ram] : [vm.ram, vm.virtioMem.device.ram];
    const faults = () => ({
      small: rams.reduce((sum, ram) => sum + ram.counters.faults4k, 0),
      huge: rams.reduce((sum, ram) => sum + ram.counters.faults2m + ram.counters.faultsHugetlb, 0),
    });
    const before = faults();
    memhog(vm.guest, "install", bytes, false, 1);
    const after = faults();
    const pages = bytes / PAGE_SIZE;
    const work = createWorkCounts();
    work.guestAllocCalls = pages;
    work.guestAllocPages = pages;
    work.guestZeroPages = pages;
    work.hostFaults4k = after.small - before.small;
    work.hostFaults2m = after.huge - before.huge;
    return bytes / GiB / (workTimeNs(work) / 1e9);
  }

  function speeds(returnMs: number, install: number): ReturnSpeeds {
    const returnSpeed = guestBytes / GiB / (returnMs / 1000);
    return {
      returnSpeed,
      installSpeed: install,
      returnInstallSpeed: 1 / (1 / returnSpeed + 1 / install),
    };
  }

  /** The balloon: touch 19 GiB, shrink to 2 GiB, grow back to 20 GiB, install 19 GiB. */
  function balloonReturn(policy: string): ReturnSpeeds {
    const vm = makeVm({ guestBytes, policy });
    touchAndFree(vm, touchedBytes);
    setBalloonTarget(vm, targetBytes);
    expect(vm.driver.list.pageCount * PAGE_SIZE).toBe(guestBytes - targetBytes);
    const before = vm.balloonTimeMs;
    setBalloonTarget(vm, guestBytes);
    expect(vm.driver.list.pageCount).toBe(0);
    const returnMs = vm.balloonTimeMs - before;
    const install = installSpeed(vm, touchedBytes);
    checkAll(vm);
    return speeds(returnMs, install);
  }

  /** virtio-mem, as in the reclaim test above: unplug all, plug it back, install. */
  function virtioMemReturn(): ReturnSpeeds {
    const vm = testVm({
      guestBytes: targetBytes * 2,
      virtioMem: { regionBytes: guestBytes - targetBytes * 2, blockBytes: 2 * 1024 * 1024 },
    });
    const pair = vm.virtioMem!;
    touchAndFree(vm, touchedBytes - targetBytes);
    setBalloonTarget(vm, targetBytes * 2);
    expect(pair.device.pluggedBytes).toBe(0);
    const before = vm.balloonTimeMs;
    setBalloonTarget(vm, guestBytes);
    expect(pair.device.pluggedBytes).toBe(guestBytes - targetBytes * 2);
    // The region is 2 of the VM's 2.5 GiB (not 18 of 20): time it per byte plugged.
    const plugged = (guestBytes - targetBytes * 2) / (guestBytes - targetBytes);
    const returnMs = (vm.balloonTimeMs - before) / plugged;
    const install = installSpeed(vm, touchedBytes - targetBytes);
    return speeds(returnMs, install);
  }

  test("4 KiB balloon (linux-4k) returns about 2.31 GiB/s, 0.70 GiB/s with the install", () => {
    const model = balloonReturn("linux-4k");
    expectWithinFactor(model.returnSpeed, 2.31);
    expectWithinFactor(model.returnInstallSpeed, 0.7);
  });

  test("2 MiB balloon (huge-2m-fallback) returns about 322.1 GiB/s, 4.25 with the install", () => {
    const model = balloonReturn("huge-2m-fallback");
    expectWithinFactor(model.returnSpeed, 322.1);
    expectWithinFactor(model.returnInstallSpeed, 4.25);
  });

  test("virtio-mem (movable) returns about 101.9 GiB/s, 4.04 with the install", () => {
    const model = virtioMemReturn();
    expectWithinFactor(model.returnSpeed, 101.9);
    expectWithinFactor(model.returnInstallSpeed, 4.04);
  });
});

describe("accounting: the host's work is charged as it happened", () => {
  test("a THP discarded whole costs one 2 MiB free and one flush, no PTE zaps", () => {
    const vm = makeVm({ guestBytes: GiB, policy: "huge-2m-fallback" });
    touchAndFree(vm, 768 * MiB);
    setBalloonTarget(vm, 512 * MiB);
    const blocks = (512 * MiB) / PAGE_SIZE / 512;
    // A ballooned 2 MiB the toucher (768 of ~970 MiB free) and the boot never wrote is not
    // resident: nothing to free. Boot-written free memory (bzImage, initrd, ...) moves which.
    expect(vm.work.hostFreedPages2m).toBeGreaterThanOrEqual(blocks - 2);
    expect(vm.work.hostFreedPages2m).toBeLessThanOrEqual(blocks);
    expect(vm.work.hostTlbFlushes).toBe(vm.work.hostFreedPages2m);
    expect(vm.work.hostFreedPages4k).toBe(0);
    expect(vm.work.hostSplitPmds).toBe(0);
  });

  test("4 KiB PFNs on THP memory: a split and a flush per page, then the THP is freed", () => {
    const vm = makeVm({ guestBytes: GiB, policy: "linux-4k" });
    touchAndFree(vm, 768 * MiB);
    setBalloonTarget(vm, 512 * MiB);
    const pages = (512 * MiB) / PAGE_SIZE;
    // As above: a ballooned 2 MiB nobody wrote is not resident, so at most 2 MiB less.
    expect(vm.work.hostFreedPages4k).toBeGreaterThanOrEqual(pages - 2 * 512);
    expect(vm.work.hostFreedPages4k).toBeLessThanOrEqual(pages);
    expect(vm.work.hostTlbFlushes).toBeGreaterThanOrEqual(vm.work.hostFreedPages4k);
    expect(vm.work.hostTlbFlushes).toBeLessThanOrEqual(pages);
    // Blocks the balloon took only in part stay split and queued, not freed.
    expect(vm.work.hostFreedPages2m).toBeLessThanOrEqual(vm.work.hostSplitPmds);
    // 0.98: the boot rules' unaligned edges (image kept/freed, initrd/memmap) add partial blocks.
    expect(vm.work.hostFreedPages2m).toBeGreaterThan(0.98 * (pages >> 9));
  });

  test("a range of 4 KiB pages on a THP-less host costs one flush per call, not per page", () => {
    const ranges = makeVm({
      guestBytes: GiB,
      policy: "addr-len",
      policyOptions: { addrLenOrderMin: 0, addrLenOrderMax: 0 },
      hostThp: "never",
    });
    const pfns = makeVm({ guestBytes: GiB, policy: "linux-4k", hostThp: "never" });
    for (const vm of [ranges, pfns]) {
      touchAndFree(vm, 768 * MiB);
      setBalloonTarget(vm, 512 * MiB);
      expect(vm.work.hostFreedPages4k).toBeGreaterThan(0.99 * ((512 * MiB) / PAGE_SIZE));
    }
    expect(ranges.work.hostTlbFlushes).toBeLessThan(ranges.device.counters.entries + 1);
    expect(pfns.work.hostTlbFlushes).toBe(pfns.work.hostFreedPages4k);
    expect(ranges.balloonTimeMs).toBeLessThan(pfns.balloonTimeMs / 5);
  });

  test("a deflate costs a WILLNEED hint per entry and a free per block, no discard", () => {
    for (const policy of ["linux-4k", "huge-2m-fallback"]) {
      const vm = makeVm({ guestBytes: GiB, policy });
      touchAndFree(vm, 768 * MiB);
      setBalloonTarget(vm, 512 * MiB);
      const syscalls = vm.device.work.hostSyscalls;
      const discards = vm.ram.counters.madvise + vm.ram.counters.fallocate;
      const entries = vm.device.counters.entries;
      setBalloonTarget(vm, GiB);
      const pages = (512 * MiB) / PAGE_SIZE;
      const blocks = policy === "linux-4k" ? pages : pages / 512;
      expect(vm.device.counters.deflatedPages).toBe(pages);
      expect(vm.device.work.hostHintSyscalls).toBe(vm.device.counters.entries - entries);
      expect(vm.device.work.hostHintSyscalls).toBe(blocks);
      expect(vm.work.guestFreeCalls).toBe(blocks);
      expect(vm.work.guestFreePages).toBe(pages);
      expect(vm.device.work.hostSyscalls).toBe(syscalls);
      expect(vm.ram.counters.madvise + vm.ram.counters.fallocate).toBe(discards);
      checkAll(vm);
    }
  });

  test("failed allocation attempts are charged: 2 MiB first on a guest with none free", () => {
    const vm = makeVm({ guestBytes: 2 * GiB, policy: "huge-2m-fallback" });
    // Every other 4 KiB page of 1400 MiB stays allocated: no free 2 MiB block is left there.
    memhog(vm.guest, "frag", 1400 * MiB, false, 2);
    setBalloonTarget(vm, GiB);
    expect(vm.work.guestAllocFailures).toBeGreaterThan(0);
    expect(vm.work.guestAllocCalls).toBeGreaterThan(0);
    checkAll(vm);
  });

  test("an inflation that runs out of memory charges its failed attempt", () => {
    const vm = makeVm({ guestBytes: GiB, policy: "linux-4k" });
    memhog(vm.guest, "hog", 900 * MiB, false, 1);
    setBalloonTarget(vm, 0);
    expect(vm.driver.outOfPuffCount).toBeGreaterThan(0);
    expect(vm.work.guestAllocFailures).toBe(vm.driver.outOfPuffCount);
  });

  test("free page reporting of 2 MiB blocks costs PMD zaps, whatever the balloon policy", () => {
    const vm = makeVm({ guestBytes: 2 * GiB, policy: "linux-4k", reporting: true });
    touchAndFree(vm, 1536 * MiB);
    const allocatedBefore = vm.ram.allocatedPages;
    passTime(vm, 60_000);
    const freedBlocks = (allocatedBefore - vm.ram.allocatedPages) >> 9;
    expect(freedBlocks).toBeGreaterThan(300);
    expect(vm.work.guestReportBlocks).toBe(vm.device.work.virtqueueEntries);
    expect(vm.device.counters.reportedPages >> 9).toBeGreaterThanOrEqual(freedBlocks);
    expect(vm.work.hostFreedPages2m).toBe(freedBlocks);
    expect(vm.work.hostFreedPages4k).toBe(0);
    // Well under 50 us per 2 MiB reported (512 separate 4 KiB zaps would be about 1 ms).
    expect(vm.balloonTimeMs / freedBlocks).toBeLessThan(0.05);
    checkAll(vm);
  });
});
