// `balloonlab validate` (issue #5): a real snapshot in result.json's snapshot format
// (src/sim/result_json.ts). The guest side comes from the guest's own /proc files printed by the
// workload; the host side from validate_host_measure.ts; the balloon from QMP query-balloon.
// The ladder combines the guest's /proc/kpageflags per 2 MiB block (the workload's `kpageflags`)
// with the host's huge pages per block; the discard syscalls and balloon requests from QEMU's
// trace events (validate_trace.ts); `host.counters` from the host's /proc/vmstat THP events
// (validate_host_counters.ts: only the fields one event stands for). What the real side cannot
// measure (yet) is 0 (or left out of `counters`) and named in `notMeasured`, and the comparison
// gives it no verdict.

import type { ResultSnapshotJson } from "../sim/result_json.ts";
import { UNMAPPED_COUNTERS } from "./validate_host_counters.ts";
import { type HostMeasurement, parseMeminfo } from "./validate_host_measure.ts";
import type { TraceCounts } from "./validate_trace.ts";

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
  /** Host memory allocated for guest RAM, kB (cgroup or MemFree, see validate_real_run.ts). */
  readonly allocated_kB: number;
  /** THPs on the host's deferred split queue for guest RAM, counted whole, kB. */
  readonly deferredSplit_kB?: number;
  readonly ramBytes: number;
  readonly balloonActualBytes: number;
  readonly balloonTargetBytes: number;
  readonly balloonTimeMs: number;
  /** QEMU's trace events so far: discard syscalls and balloon requests (validate_trace.ts). */
  readonly trace?: Pick<TraceCounts, "madvise" | "fallocate" | "requests">;
  /** The model's HostCounters fields measured from host /proc/vmstat (validate_host_counters.ts). */
  readonly counters?: Readonly<Record<string, number>>;
}

/**
 * Fields of the snapshot format the real side does not measure: `host.counters` only has the
 * fields one host /proc/vmstat event stands for; the others are named here one by one.
 */
export const NOT_MEASURED: readonly string[] = [
  "host.residentByCause_kB",
  ...UNMAPPED_COUNTERS.map((field) => `host.counters.${field}`),
  "balloon.device",
];

/** The workload's `kpageflags` answer (one character per 2 MiB block) without line breaks. */
export function parseGuestBlocks(text: string): string {
  return text.replace(/\s+/g, "");
}

/** One character per block, 64 per line: H where `huge` is set, else "." (real-proc file). */
export function hostBlocksText(huge: Uint8Array): string {
  const chars = Array.from(huge, (value) => (value === 1 ? "H" : "."));
  const lines: string[] = [];
  for (let i = 0; i < chars.length; i += 64) lines.push(chars.slice(i, i + 64).join(""));
  return lines.join("\n");
}

/**
 * Hildenbrand's ladder as src/metrics/vm_snapshot.ts counts it, per 2 MiB block of guest RAM
 * (guest-physical = RAMBlock offset below 3 GiB): "ballooned" (guest B: all 512 pages
 * PageOffline), "free" (F: all 512 PageBuddy), else by where it is huge: the guest (H: a
 * whole mapped anonymous THP) and the host (`hostHuge`: one THP or hugetlb page backs it).
 */
export function realLadder(
  guestBlocks: string,
  hostHuge: Uint8Array,
): ResultSnapshotJson["ladder"] {
  const ladder = { hugeBoth: 0, guestOnly: 0, hostOnly: 0, neither: 0, free: 0, ballooned: 0 };
  for (let block = 0; block < hostHuge.length; block++) {
    const guest = guestBlocks[block] ?? ".";
    if (guest === "B") ladder.ballooned++;
    else if (guest === "F") ladder.free++;
    else {
      const guestHuge = guest === "H";
      const hostIsHuge = hostHuge[block] === 1;
      if (guestHuge && hostIsHuge) ladder.hugeBoth++;
      else if (guestHuge) ladder.guestOnly++;
      else if (hostIsHuge) ladder.hostOnly++;
      else ladder.neither++;
    }
  }
  return ladder;
}

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
      deferredSplit_kB: input.deferredSplit_kB ?? 0,
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
      syscalls: { madvise: input.trace?.madvise ?? 0, fallocate: input.trace?.fallocate ?? 0 },
      memFree_kB: input.host.meminfo.MemFree ?? 0,
      residentByCause_kB: {},
      counters: { ...input.counters },
    },
    balloon: {
      pagesInflated: Math.round((input.ramBytes - input.balloonActualBytes) / 4096),
      logicalSizeMiB: input.balloonActualBytes / MiB,
      requests: input.trace?.requests ?? 0,
      targetMiB: input.balloonTargetBytes / MiB,
      device: {},
      balloonTimeMs: input.balloonTimeMs,
    },
    ladder: realLadder(parseGuestBlocks(input.guestFiles.get("blocks") ?? ""), blocks.hostHuge),
  };
}
