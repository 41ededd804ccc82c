// result.json: the contract other tools read (issue #4). One object per run: the resolved
// scenario, the seed, balloonlab's version and one record per snapshot step, with units in the
// field names. Fields named after the kernel are the kernel's (vmstat, meminfo). Extensions
// beyond the contract's minimum are added as new fields, never by renaming.

import { HPAGE_PMD_NR, PAGE_SIZE } from "../core/limits.ts";
import type { NamedSnapshot, ScenarioRun } from "./scenario_runner.ts";

const KiB = 1024;
const MiB = 1024 * 1024;

export interface ResultSnapshotJson {
  name: string;
  simTimeMs: number;
  guest: {
    buddyinfo: Record<string, number[]>;
    vmstat: Record<string, number>;
    meminfo_kB: Record<string, number>;
    /** Extension: unusable_index at order 9 of the largest zone, thousandths. */
    unusableIndexOrder9: number;
  };
  host: {
    ramResident_kB: number;
    ramAllocated_kB: number;
    deferredSplit_kB: number;
    ramThp_kB: number;
    residency: {
      blocks2M: number;
      fullBlocks: number;
      partialBlocks: number;
      emptyBlocks: number;
      thpBlocks: number;
    };
    meminfo_kB: { AnonHugePages: number; ShmemHugePages: number; ShmemPmdMapped: number };
    hugetlbPages: { total: number; free: number };
    syscalls: { madvise: number; fallocate: number };
    /** Extension: host MemFree and the resident memory by what filled it. */
    memFree_kB: number;
    residentByCause_kB: Record<string, number>;
    /** Extension: the host model's event counters (faults, splits, collapses, ...). */
    counters: Record<string, number>;
  };
  balloon: {
    pagesInflated: number;
    logicalSizeMiB: number;
    requests: number;
    /** Extension: QEMU's target as a logical size, and the device's counters. */
    targetMiB: number;
    /** Extension: a virtio-mem device's region, requested and plugged sizes. */
    virtioMem?: { regionMiB: number; requestedMiB: number; pluggedMiB: number };
    device: Record<string, number>;
    /** Extension: simulated time spent in balloon and reporting work so far. */
    balloonTimeMs: number;
  };
  ladder: {
    hugeBoth: number;
    guestOnly: number;
    hostOnly: number;
    neither: number;
    free: number;
    ballooned: number;
  };
}

export interface ResultJson {
  scenario: unknown;
  seed: number;
  version: string;
  snapshots: ResultSnapshotJson[];
}

function kB(bytes: number): number {
  return Math.round(bytes / KiB);
}

export function resultSnapshotJson(
  named: NamedSnapshot,
  ramBytes: number,
  balloonTimeMs: number,
): ResultSnapshotJson {
  const { snapshot, views } = named;
  const virtioMem = snapshot.balloon.virtioMem;
  const host = snapshot.host;
  const device = snapshot.balloon.device;
  const residentByCause: Record<string, number> = {};
  for (const [cause, bytes] of Object.entries(host.residentBytesByCause)) {
    residentByCause[cause] = kB(bytes);
  }
  return {
    name: named.name,
    simTimeMs: snapshot.timeMs,
    guest: {
      buddyinfo: views.buddyinfo,
      vmstat: views.vmstat,
      meminfo_kB: views.meminfoKb,
      unusableIndexOrder9: snapshot.guest.unusableIndexPageblockOrder,
    },
    host: {
      ramResident_kB: kB(host.residentBytes),
      ramAllocated_kB: kB(host.allocatedBytes),
      deferredSplit_kB: kB(host.deferredSplitBytes),
      ramThp_kB: kB(host.blocks.huge * HPAGE_PMD_NR * PAGE_SIZE),
      residency: {
        blocks2M: host.blocks.full + host.blocks.partial + host.blocks.empty,
        fullBlocks: host.blocks.full,
        partialBlocks: host.blocks.partial,
        emptyBlocks: host.blocks.empty,
        thpBlocks: host.blocks.huge,
      },
      meminfo_kB: {
        AnonHugePages: kB(host.anonHugePagesBytes),
        ShmemHugePages: kB(host.shmemHugePagesBytes),
        ShmemPmdMapped: kB(host.shmemPmdMappedBytes),
      },
      hugetlbPages: { total: host.hugetlbPagesTotal, free: host.hugetlbPagesFree },
      syscalls: { madvise: host.counters.madvise, fallocate: host.counters.fallocate },
      memFree_kB: kB(host.hostMemFreeBytes),
      residentByCause_kB: residentByCause,
      counters: { ...host.counters },
    },
    balloon: {
      pagesInflated: snapshot.balloon.sizeBytes / PAGE_SIZE,
      logicalSizeMiB: logicalSizeBytes(snapshot, ramBytes) / MiB,
      requests:
        device.inflateRequests +
        device.deflateRequests +
        device.reportRequests +
        (virtioMem?.requests ?? 0),
      targetMiB:
        (virtioMem === undefined
          ? ramBytes - snapshot.balloon.targetBytes
          : ramBytes + virtioMem.requestedBytes) / MiB,
      ...(virtioMem === undefined
        ? {}
        : {
            virtioMem: {
              regionMiB: virtioMem.regionBytes / MiB,
              requestedMiB: virtioMem.requestedBytes / MiB,
              pluggedMiB: virtioMem.pluggedBytes / MiB,
            },
          }),
      device: { ...device },
      balloonTimeMs,
    },
    ladder: {
      hugeBoth: snapshot.ladder.hugeGuestAndHost,
      guestOnly: snapshot.ladder.hugeGuestOnly,
      hostOnly: snapshot.ladder.hugeHostOnly,
      neither: snapshot.ladder.hugeNeither,
      free: snapshot.ladder.free,
      ballooned: snapshot.ladder.ballooned,
    },
  };
}

/** QMP's logical size: RAM less the balloon, or boot RAM plus what virtio-mem has plugged. */
function logicalSizeBytes(snapshot: NamedSnapshot["snapshot"], ramBytes: number): number {
  const virtioMem = snapshot.balloon.virtioMem;
  if (virtioMem !== undefined) return ramBytes + virtioMem.pluggedBytes;
  return ramBytes - snapshot.balloon.sizeBytes;
}

export function resultJson(run: ScenarioRun, version: string): ResultJson {
  const ramBytes = run.vm.map.pageCount * PAGE_SIZE;
  return {
    scenario: run.scenario,
    seed: run.scenario.seed,
    version,
    snapshots: run.snapshots.map((named) =>
      resultSnapshotJson(named, ramBytes, named.balloonTimeMs),
    ),
  };
}
