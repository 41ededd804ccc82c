// Goal: every row of the table in section 6.3 of ../shared/docs/linux-qemu-semantics.md holds
// end to end: a guest touches its memory, the balloon (or free page reporting) gives 512 MiB
// back, and the host gets back what the row says, as resident memory (pagemap/Rss) and as
// allocated memory (what MemFree sees).
// Method: a 1 GiB guest on a 24 GiB host per backing; a process writes all but 64 MiB of the
// guest's free memory and exits (the host now backs nearly all guest RAM); then linux-4k
// inflates to a 512 MiB logical size, or free page reporting runs for a minute. Host snapshots
// before and after are compared; both checkers run at the end.

import { describe, expect, test } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { freeProcess, memhog } from "../../src/sim/guest_sim.ts";
import {
  applyHostPressure,
  passTime,
  setBalloonTarget,
  snapshotVm,
  type VmSim,
} from "../../src/sim/vm_sim.ts";
import { GiB, MiB, testVm } from "./vm_helpers.ts";

const INFLATED = 512 * MiB;

interface Row {
  name: string;
  backing: string;
  hostKernel?: string;
  hostThp?: "always" | "never";
  shmemEnabled?: string;
  hugetlbPageBytes?: number;
  reporting?: boolean;
  /** Fragment a 2 GiB guest first (a process keeps every other page), as the thread assumes. */
  fragmented?: boolean;
  /** Expected drops, as fractions of INFLATED (or of the reported bytes). */
  residentDrop: [number, number];
  allocatedDrop: [number, number];
}

function makeVm(row: Row): VmSim {
  return testVm({
    guestBytes: guestBytes(row),
    hostKernel: row.hostKernel,
    backing: row.backing,
    hugetlbPageBytes: row.hugetlbPageBytes,
    hostThp: row.hostThp,
    shmemEnabled: row.shmemEnabled,
    reporting: row.reporting,
  });
}

function guestBytes(row: Row): number {
  return row.hugetlbPageBytes === GiB || row.fragmented === true ? 2 * GiB : GiB;
}

/** Writes all but 64 MiB of free memory; the process exits, or keeps every other page. */
function touchMostOfTheGuest(vm: VmSim, fragmented = false): void {
  const free = vm.guest.memory.zones.reduce((sum, zone) => sum + zone.freePages, 0) * 4096;
  const size = Math.floor((free - 64 * MiB) / MiB) * MiB;
  memhog(vm.guest, "toucher", size, false, fragmented ? 2 : 1);
  if (!fragmented) freeProcess(vm.guest, "toucher");
}

const ROWS: Row[] = [
  {
    name: "private anon, THP off",
    backing: "anon",
    hostThp: "never",
    residentDrop: [0.95, 1.01],
    allocatedDrop: [0.95, 1.01],
  },
  // Balloon pages taken in address order empty whole 2 MiB blocks: those THPs go at once.
  {
    name: "private anon, THP on, whole blocks",
    backing: "anon",
    residentDrop: [0.95, 1.01],
    allocatedDrop: [0.9, 1.01],
  },
  // Scattered 4 KiB pages split every THP and free nothing until all 512 subpages are gone.
  {
    name: "private anon, THP on, fragmented guest",
    backing: "anon",
    fragmented: true,
    residentDrop: [0.95, 1.01],
    allocatedDrop: [0, 0.05],
  },
  {
    name: "memfd/shmem, no THP",
    backing: "memfd",
    residentDrop: [0.95, 1.01],
    allocatedDrop: [0.95, 1.01],
  },
  // A partial punch zaps the PMD of a PMD-mapped shmem THP: Rss loses whole blocks at once.
  {
    name: "memfd/shmem THP, Linux 5.6",
    backing: "memfd",
    hostKernel: "5.6",
    shmemEnabled: "always",
    residentDrop: [0.95, 2.2],
    allocatedDrop: [0, 0],
  },
  {
    name: "memfd/shmem THP, Linux 6.1",
    backing: "memfd",
    hostKernel: "6.1",
    shmemEnabled: "always",
    residentDrop: [0.95, 2.2],
    allocatedDrop: [0.95, 1.01],
  },
  { name: "hugetlbfs 2 MiB", backing: "hugetlbfs", residentDrop: [0, 0], allocatedDrop: [0, 0] },
];

describe("semantics 6.3: linux-4k inflation of 512 MiB per backing", () => {
  for (const row of ROWS) {
    test(row.name, () => {
      const vm = makeVm(row);
      touchMostOfTheGuest(vm, row.fragmented);
      const before = snapshotVm(vm);
      setBalloonTarget(vm, guestBytes(row) - INFLATED);
      const after = snapshotVm(vm);
      expect(after.balloon.sizeBytes).toBe(INFLATED);
      const residentDrop = (before.host.residentBytes - after.host.residentBytes) / INFLATED;
      const allocatedDrop = (before.host.allocatedBytes - after.host.allocatedBytes) / INFLATED;
      expect(residentDrop).toBeGreaterThanOrEqual(row.residentDrop[0]);
      expect(residentDrop).toBeLessThanOrEqual(row.residentDrop[1]);
      expect(allocatedDrop).toBeGreaterThanOrEqual(row.allocatedDrop[0]);
      expect(allocatedDrop).toBeLessThanOrEqual(row.allocatedDrop[1]);
      expect(checkGuestMemory(vm.guest.memory)).toEqual([]);
      expect(checkHostRam(vm.ram)).toEqual([]);
    });
  }

  test("private anon, THP on: the memory returns under host pressure", () => {
    const row = ROWS[2]!;
    const vm = makeVm(row);
    touchMostOfTheGuest(vm, true);
    const before = snapshotVm(vm);
    setBalloonTarget(vm, guestBytes(row) - INFLATED);
    applyHostPressure(vm, 24 * GiB);
    const after = snapshotVm(vm);
    expect((before.host.allocatedBytes - after.host.allocatedBytes) / INFLATED).toBeGreaterThan(
      0.95,
    );
  });
});

describe("semantics 6.3: free page reporting at order 9 (2 MiB aligned)", () => {
  const reportingRows: Row[] = [
    {
      name: "anon THP: whole THPs freed at once",
      backing: "anon",
      reporting: true,
      residentDrop: [0.5, 1],
      allocatedDrop: [0.5, 1],
    },
    {
      name: "memfd THP 6.1: whole THPs freed",
      backing: "memfd",
      hostKernel: "6.1",
      shmemEnabled: "always",
      reporting: true,
      residentDrop: [0.5, 1],
      allocatedDrop: [0.5, 1],
    },
    {
      name: "hugetlbfs 2 MiB: whole pages freed",
      backing: "hugetlbfs",
      reporting: true,
      residentDrop: [0.5, 1],
      allocatedDrop: [0.5, 1],
    },
    {
      name: "hugetlbfs 1 GiB: 2 MiB reports ignored",
      backing: "hugetlbfs",
      hugetlbPageBytes: GiB,
      reporting: true,
      residentDrop: [0, 0],
      allocatedDrop: [0, 0],
    },
  ];
  for (const row of reportingRows) {
    test(row.name, () => {
      const vm = makeVm(row);
      touchMostOfTheGuest(vm);
      const before = snapshotVm(vm);
      passTime(vm, 60_000);
      const after = snapshotVm(vm);
      const reported = after.balloon.device.reportedPages * 4096;
      expect(reported).toBeGreaterThan(256 * MiB);
      const residentDrop = (before.host.residentBytes - after.host.residentBytes) / reported;
      const allocatedDrop = (before.host.allocatedBytes - after.host.allocatedBytes) / reported;
      expect(residentDrop).toBeGreaterThanOrEqual(row.residentDrop[0]);
      expect(residentDrop).toBeLessThanOrEqual(row.residentDrop[1]);
      expect(allocatedDrop).toBeGreaterThanOrEqual(row.allocatedDrop[0]);
      expect(allocatedDrop).toBeLessThanOrEqual(row.allocatedDrop[1]);
      if (row.hugetlbPageBytes === GiB) {
        expect(after.balloon.device.reportedPagesIgnored).toBe(after.balloon.device.reportedPages);
      }
      expect(checkGuestMemory(vm.guest.memory)).toEqual([]);
      expect(checkHostRam(vm.ram)).toEqual([]);
    });
  }
});
