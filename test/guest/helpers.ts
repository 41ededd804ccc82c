// Small builders shared by the guest tests.

import type { ThpEnabled } from "../../src/guest/guest_memory.ts";
import { createGuestMemory, type GuestMemory } from "../../src/guest/guest_memory.ts";

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export function smallGuest(
  kernel = "6.1",
  memoryBytes = 128 * MiB,
  thpEnabled: ThpEnabled = "never",
): GuestMemory {
  return createGuestMemory({
    memoryBytes,
    machine: "pc",
    kernel,
    cpus: 1,
    thpEnabled,
    thpDefrag: "madvise",
    initOnAlloc: false,
  });
}

export function nrFreeByOrder(memory: GuestMemory): number[] {
  const total = new Array<number>(11).fill(0);
  for (const zone of memory.zones) {
    zone.freeArea.nrFree.forEach((count, order) => {
      total[order]! += count;
    });
  }
  return total;
}
