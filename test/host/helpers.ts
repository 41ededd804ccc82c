// Small builders shared by the host tests: a host with guest RAM, and a step wrapper that runs
// the independent checker after every operation.

import { expect } from "vitest";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import {
  createGuestRam,
  createHostConfig,
  type DiscardResult,
  type GuestRam,
  type HostConfigInput,
  hostGuestWrite,
  hostSnapshot,
  ramBlockDiscardRange,
} from "../../src/host/host_api.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const BLOCK = 2 * MiB;
export const PAGES_PER_BLOCK = 512;

export type HostInput = Partial<HostConfigInput> & Pick<HostConfigInput, "backing">;

/** A host (16 GiB, 6.1, THP madvise unless given) with `ramBytes` of guest RAM. */
export function hostRam(input: HostInput, ramBytes = 64 * MiB): GuestRam {
  const config = createHostConfig({ kernel: "6.1", memoryBytes: 16 * GiB, ...input });
  const ram = createGuestRam(config, ramBytes / PAGE_SIZE);
  expectClean(ram);
  return ram;
}

export function expectClean(ram: GuestRam): void {
  expect(checkHostRam(ram)).toEqual([]);
}

/** The guest writes [offsetBytes, offsetBytes + lengthBytes); the checker runs after. */
export function write(ram: GuestRam, offsetBytes: number, lengthBytes: number): void {
  hostGuestWrite(ram, offsetBytes / PAGE_SIZE, lengthBytes / PAGE_SIZE);
  expectClean(ram);
}

/** ram_block_discard_range; the checker runs after. */
export function discard(ram: GuestRam, offsetBytes: number, lengthBytes: number): DiscardResult {
  const result = ramBlockDiscardRange(ram, offsetBytes, lengthBytes);
  expectClean(ram);
  return result;
}

/** Resident and allocated bytes, the two numbers most tests compare. */
export function usage(ram: GuestRam): { resident: number; allocated: number } {
  const snapshot = hostSnapshot(ram);
  return { resident: snapshot.residentBytes, allocated: snapshot.allocatedBytes };
}
