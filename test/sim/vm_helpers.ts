// Small builders shared by the VM-level tests: one guest on one host with a balloon, with the
// defaults most tests want (a 1 GiB Linux 6.1 guest without THP or init_on_alloc, a 24 GiB
// Linux 6.18 host with anonymous THP backing, linux-4k, no reporting), and the helpers they
// all use (a process that writes memory and exits; both checkers).
import { expect } from "vitest";
import { checkGuestMemory } from "../../src/check/buddy_checker.ts";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { pageblock_order } from "../../src/core/limits.ts";
import type { BalloonPolicyOptions } from "../../src/policies/balloon_policy.ts";
import { freeProcess, memhog } from "../../src/sim/guest_sim.ts";
import { createVmSim, type VmConfig, type VmSim } from "../../src/sim/vm_sim.ts";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export interface TestVmOptions {
  guestBytes?: number;
  guestKernel?: string;
  initOnAlloc?: boolean;
  hostKernel?: string;
  hostBytes?: number;
  backing?: string;
  hugetlbPageBytes?: number;
  hostThp?: "always" | "madvise" | "never";
  shmemEnabled?: string;
  maxPtesNone?: number;
  policy?: string;
  policyOptions?: BalloonPolicyOptions;
  reporting?: boolean;
  thpSizeKnown?: boolean;
  virtioMem?: VmConfig["virtioMem"];
}

export function testVmConfig(options: TestVmOptions = {}): VmConfig {
  return {
    guest: {
      memoryBytes: options.guestBytes ?? GiB,
      machine: "pc",
      kernel: options.guestKernel ?? "6.1",
      cpus: 1,
      thpEnabled: "never",
      thpDefrag: "madvise",
      initOnAlloc: options.initOnAlloc ?? false,
    },
    host: {
      kernel: options.hostKernel ?? "6.18",
      memoryBytes: options.hostBytes ?? 24 * GiB,
      backing: options.backing ?? "anon",
      hugetlbPageBytes: options.hugetlbPageBytes,
      thp: {
        enabled: options.hostThp ?? "always",
        shmemEnabled: (options.shmemEnabled ?? "never") as "never",
      },
      khugepaged:
        options.maxPtesNone === undefined ? undefined : { maxPtesNone: options.maxPtesNone },
    },
    balloon: {
      policy: options.policy ?? "linux-4k",
      policyOptions: options.policyOptions,
      deflateOnOom: false,
      freePageReporting: { enabled: options.reporting ?? false, order: pageblock_order },
      thpSizeKnown: options.thpSizeKnown ?? false,
    },
    virtioMem: options.virtioMem,
  };
}

export function testVm(options: TestVmOptions = {}): VmSim {
  return createVmSim(testVmConfig(options));
}

/** A process writes `bytes` and exits: the host backs it, the guest has it free again. */
export function touchAndFree(vm: VmSim, bytes: number): void {
  memhog(vm.guest, "toucher", bytes, false, 1);
  freeProcess(vm.guest, "toucher");
}

/** Both independent checkers find nothing. */
export function checkAll(vm: VmSim): void {
  expect(checkGuestMemory(vm.guest.memory)).toEqual([]);
  expect(checkHostRam(vm.ram)).toEqual([]);
}
