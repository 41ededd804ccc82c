// `balloonlab validate` (issue #5): a real snapshot in result.json's snapshot format
// (src/sim/result_json.ts). The guest side comes from the guest's own /proc files printed by the
// workload; the host side from validate_host_measure.ts; the balloon from QMP query-balloon.
// What the real side cannot measure (yet) is 0 and named in `notMeasured`, and the comparison
// gives it no verdict.

import type { ResultSnapshotJson } from "../sim/result_json.ts";
import { type HostMeasurement, parseMeminfo } from "./validate_host_measure.ts";

const MiB = 2 ** 20;

/** /proc/buddyinfo: free blocks per order, per zone name (zones of every node summed). */
export function parseBuddyinfo(text: string): Record<string, number[]> {
  const zones: Record<string, number[]> = {};
  for (const line of text.split("\n")) {
    const match = /^Node\s+\d+,\s+zone\s+(\S+)\s+([\d\s]+)$/.exec(line.trim());
    if (!match) continue;
    const counts = match[2]!.trim().split(/\s+/).map(Number);
    const sum = zones[match[1]!];
    zones[match[1]!] = sum === undefined ? counts : sum.map((value, i) => value + (counts[i] ?? 0));
  }
  return zones;
}

export function parseVmstat(text: string): Record<string, number> {
  const fields: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const match = /^(\w+)\s+(-?\d+)$/.exec(line.trim());
    if (match) fields[match[1]!] = Number(match[2]);
  }
  return fields;
}

/** unusable_index at `order` of the zone with the most free pages, in thousandths. */
export function unusableIndex(buddyinfo: Record<string, number[]>, order: number): number {
  let best = { free: 0, usable: 0 };
  for (const counts of Object.values(buddyinfo)) {
    const free = counts.reduce((sum, count, o) => sum + count * 2 ** o, 0);
    const usable = counts.reduce((sum, count, o) => sum + (o >= order ? count * 2 ** o : 0), 0);
    if (free > best.free) best = { free, usable };
  }
  if (best.free === 0) return 0;
  return Math.floor(((best.free - best.usable) * 1000) / best.free);
}

export interface RealSnapshotInput {
  readonly name: string;
  readonly elapsedMs: number;
  readonly guestFiles: Map<string, string>;
  readonly host: HostMeasurement;
  /** Estimated host memory allocated for guest RAM, kB (see validate_real_run.ts). */
  readonly allocated_kB: number;
  readonly ramBytes: number;
  readonly balloonActualBytes: number;
  readonly balloonTargetBytes: number;
  readonly balloonTimeMs: number;
}

/** Fields of the snapshot format the real side does not measure. */
export const NOT_MEASURED: readonly string[] = [
  "host.deferredSplit_kB",
  "host.syscalls",
  "host.residentByCause_kB",
  "host.counters",
  "balloon.requests",
  "balloon.device",
  "ladder",
];

export function realSnapshotJson(input: RealSnapshotInput): ResultSnapshotJson {
  const buddyinfo = parseBuddyinfo(input.guestFiles.get("buddyinfo") ?? "");
  const fields = input.host.mapping.fields;
  const hugetlb_kB = (fields.Shared_Hugetlb ?? 0) + (fields.Private_Hugetlb ?? 0);
  const pmd_kB =
    (fields.AnonHugePages ?? 0) + (fields.ShmemPmdMapped ?? 0) + (fields.FilePmdMapped ?? 0);
  const ramThp_kB = pmd_kB + hugetlb_kB;
  const { blocks } = input.host;
  return {
    name: input.name,
    simTimeMs: input.elapsedMs,
    guest: {
      buddyinfo,
      vmstat: parseVmstat(input.guestFiles.get("vmstat") ?? ""),
      meminfo_kB: parseMeminfo(input.guestFiles.get("meminfo") ?? ""),
      unusableIndexOrder9: unusableIndex(buddyinfo, 9),
    },
    host: {
      ramResident_kB: blocks.presentPages * 4,
      ramAllocated_kB: input.allocated_kB,
      deferredSplit_kB: 0,
      ramThp_kB,
      residency: {
        blocks2M: blocks.blocks2M,
        fullBlocks: blocks.fullBlocks,
        partialBlocks: blocks.partialBlocks,
        emptyBlocks: blocks.emptyBlocks,
        thpBlocks: Math.floor(ramThp_kB / 2048),
      },
      meminfo_kB: {
        AnonHugePages: fields.AnonHugePages ?? 0,
        ShmemHugePages: input.host.meminfo.ShmemHugePages ?? 0,
        ShmemPmdMapped: fields.ShmemPmdMapped ?? 0,
      },
      hugetlbPages: {
        total: input.host.meminfo.HugePages_Total ?? 0,
        free: input.host.meminfo.HugePages_Free ?? 0,
      },
      syscalls: { madvise: 0, fallocate: 0 },
      memFree_kB: input.host.meminfo.MemFree ?? 0,
      residentByCause_kB: {},
      counters: {},
    },
    balloon: {
      pagesInflated: Math.round((input.ramBytes - input.balloonActualBytes) / 4096),
      logicalSizeMiB: input.balloonActualBytes / MiB,
      requests: 0,
      targetMiB: input.balloonTargetBytes / MiB,
      device: {},
      balloonTimeMs: input.balloonTimeMs,
    },
    ladder: { hugeBoth: 0, guestOnly: 0, hostOnly: 0, neither: 0, free: 0, ballooned: 0 },
  };
}
