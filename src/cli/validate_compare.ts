// `balloonlab validate` (issue #5): the model side and the comparison. The model runs the same
// scenario with the real guest's kernel version, the host kernel mapped from `uname -r` to the
// nearest version the model has, and the host's real THP settings; each snapshot then gets one
// verdict per compared quantity against a stated tolerance (docs/validation.md).

import { readFileSync } from "node:fs";
import type { ResultSnapshotJson } from "../sim/result_json.ts";
import type { Scenario, ScenarioHost } from "../sim/scenario.ts";
import type { AllocatedSource } from "./validate_cgroup.ts";
import { COUNTER_EVENTS, COUNTER_VERDICTS } from "./validate_host_counters.ts";

export const MODEL_KERNELS = ["5.6", "6.1", "6.18"] as const;
export type ModelKernel = (typeof MODEL_KERNELS)[number];

function versionNumber(text: string): number | undefined {
  const match = /^(\d+)\.(\d+)/.exec(text);
  return match ? Number(match[1]) * 1000 + Number(match[2]) : undefined;
}

/** The model's version nearest to a kernel release ("6.18.44-fc" -> "6.18"). */
export function nearestModelKernel(release: string): ModelKernel {
  const wanted = versionNumber(release);
  if (wanted === undefined) return "6.18";
  let best: ModelKernel = MODEL_KERNELS[0];
  for (const kernel of MODEL_KERNELS) {
    const distance = Math.abs(versionNumber(kernel)! - wanted);
    if (distance < Math.abs(versionNumber(best)! - wanted)) best = kernel;
  }
  return best;
}

/** The bracketed value of a sysfs choice file: "always [madvise] never" -> "madvise". */
export function sysfsChoice(path: string): string | undefined {
  try {
    return /\[(\S+)\]/.exec(readFileSync(path, "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

export interface HostThp {
  readonly enabled: string | undefined;
  readonly defrag: string | undefined;
  readonly shmemEnabled: string | undefined;
}

export function readHostThp(): HostThp {
  const dir = "/sys/kernel/mm/transparent_hugepage";
  return {
    enabled: sysfsChoice(`${dir}/enabled`),
    defrag: sysfsChoice(`${dir}/defrag`),
    shmemEnabled: sysfsChoice(`${dir}/shmem_enabled`),
  };
}

/** The scenario as the model runs it beside the real guest. */
export function modelScenario(
  scenario: Scenario,
  guestKernel: ModelKernel,
  hostKernel: ModelKernel,
  thp: HostThp,
): Scenario {
  const hostThp = { ...scenario.host.thp };
  if (thp.enabled !== undefined) hostThp.enabled = thp.enabled as ScenarioHost["thp"]["enabled"];
  if (thp.defrag !== undefined) hostThp.defrag = thp.defrag as ScenarioHost["thp"]["defrag"];
  if (thp.shmemEnabled !== undefined) {
    hostThp.shmemEnabled = thp.shmemEnabled as ScenarioHost["thp"]["shmemEnabled"];
  }
  return {
    ...scenario,
    guest: { ...scenario.guest, kernel: guestKernel },
    host: { ...scenario.host, kernel: hostKernel, thp: hostThp },
  };
}

export interface Verdict {
  readonly quantity: string;
  readonly unit: string;
  readonly model: number;
  readonly real: number;
  readonly difference: number;
  readonly tolerance: number;
  /** "pass" | "fail", or "info" when no verdict is given (a noisy or unmeasured figure). */
  readonly verdict: "pass" | "fail" | "info";
  readonly note?: string;
}

function verdict(
  quantity: string,
  unit: string,
  model: number,
  real: number,
  tolerance: number,
  note?: string,
): Verdict {
  const difference = real - model;
  const pass = Math.abs(difference) <= tolerance ? "pass" : "fail";
  const result = note?.startsWith("info") ? "info" : pass;
  return { quantity, unit, model, real, difference, tolerance, verdict: result, note };
}

/** Free memory per order, kB, over all zones. */
function freeByOrder(buddyinfo: Record<string, number[]>): number[] {
  const orders = Array.from({ length: 11 }, () => 0);
  for (const counts of Object.values(buddyinfo)) {
    counts.forEach((count, order) => {
      if (order < orders.length) orders[order]! += count * 4 * 2 ** order;
    });
  }
  return orders;
}

/** Default tolerances, as fractions of guest RAM (documented in docs/validation.md). */
export const TOLERANCES = {
  resident: 0.05,
  /** host.ramAllocated_kB from QEMU's memory cgroup; the MemFree estimate gets 10 %, info. */
  allocated: 0.05,
  /** Ladder counts, of the 2 MiB blocks. */
  ladder: 0.05,
  thp: 0.05,
  /** host.deferredSplit_kB (THPs on the deferred split queue, counted whole). */
  deferredSplit: 0.05,
  blocks: 0.05,
  guestFree: 0.05,
  order: 0.05,
  balloon: 0.01,
  /** Discard syscalls and balloon requests (QEMU's trace): 5 % of the model's count, plus... */
  counts: 0.05,
  /** ...one inflate request's worth of discards (VIRTIO_BALLOON_ARRAY_PFNS_MAX 4 KiB pages)... */
  syscallSlack: 256,
  /** ...and of requests. */
  requestSlack: 2,
  /** host.counters (host /proc/vmstat THP events): 5 % of the model's count, plus... */
  hostCounters: 0.05,
  /** ...a slack in events (THPs, splits), see docs/validation.md. */
  hostCounterSlack: 4,
};

const LADDER_KEYS = ["hugeBoth", "guestOnly", "hostOnly", "neither", "free", "ballooned"] as const;

export function compareSnapshot(
  model: ResultSnapshotJson,
  real: ResultSnapshotJson,
  ramBytes: number,
  allocatedSource: AllocatedSource = "memfree",
  deferredSplit?: { readonly known: boolean; readonly note?: string },
  /** The real side counted discards and requests from QEMU's trace (validate_trace.ts). */
  traced = false,
  /**
   * The real side read host.counters from host /proc/vmstat (validate_host_counters.ts), with
   * the idle window's background per counter (added to the tolerance); undefined: not read.
   */
  counters?: { readonly counterBackground: Readonly<Record<string, number>> },
): Verdict[] {
  const ram_kB = ramBytes / 1024;
  const blocks = ramBytes / (2 * 2 ** 20);
  const m = model.host;
  const r = real.host;
  const fromMemFree = allocatedSource === "memfree";
  const verdicts = [
    verdict(
      "host.ramResident_kB",
      "kB",
      m.ramResident_kB,
      r.ramResident_kB,
      TOLERANCES.resident * ram_kB,
    ),
    verdict(
      "host.ramAllocated_kB",
      "kB",
      m.ramAllocated_kB,
      r.ramAllocated_kB,
      (fromMemFree ? 0.1 : TOLERANCES.allocated) * ram_kB,
      fromMemFree
        ? "info: real value is estimated from host MemFree (noisy)"
        : `real value from QEMU's memory cgroup (${allocatedSource})`,
    ),
    verdict("host.ramThp_kB", "kB", m.ramThp_kB, r.ramThp_kB, TOLERANCES.thp * ram_kB),
  ];
  if (deferredSplit !== undefined) {
    verdicts.push(
      verdict(
        "host.deferredSplit_kB",
        "kB",
        m.deferredSplit_kB,
        r.deferredSplit_kB,
        TOLERANCES.deferredSplit * ram_kB,
        deferredSplit.known
          ? "real: partly unmapped anon THPs behind guest RAM (pagemap, host kpageflags) and whole ones queued at fault, counted whole"
          : `info: ${deferredSplit.note ?? "the host's queue is not known"}`,
      ),
    );
  }
  verdicts.push(
    ...(["fullBlocks", "partialBlocks", "emptyBlocks"] as const).map((key) =>
      verdict(
        `host.residency.${key}`,
        "blocks",
        m.residency[key],
        r.residency[key],
        TOLERANCES.blocks * blocks,
      ),
    ),
  );
  verdicts.push(
    ...LADDER_KEYS.map((key) =>
      verdict(
        `ladder.${key}`,
        "blocks",
        model.ladder[key],
        real.ladder[key],
        TOLERANCES.ladder * blocks,
      ),
    ),
  );
  const memFree = (s: ResultSnapshotJson): number => s.guest.meminfo_kB.MemFree ?? 0;
  verdicts.push(
    verdict(
      "guest.meminfo_kB.MemFree",
      "kB",
      memFree(model),
      memFree(real),
      TOLERANCES.guestFree * ram_kB,
    ),
  );
  const modelOrders = freeByOrder(model.guest.buddyinfo);
  const realOrders = freeByOrder(real.guest.buddyinfo);
  modelOrders.forEach((value, order) => {
    verdicts.push(
      verdict(
        `guest.freeKbAtOrder${order}`,
        "kB",
        value,
        realOrders[order] ?? 0,
        TOLERANCES.order * ram_kB,
      ),
    );
  });
  const mb = model.balloon;
  const rb = real.balloon;
  verdicts.push(
    verdict(
      "balloon.logicalSizeMiB",
      "MiB",
      mb.logicalSizeMiB,
      rb.logicalSizeMiB,
      (TOLERANCES.balloon * ramBytes) / 2 ** 20,
    ),
    verdict(
      "balloon.pagesInflated",
      "pages",
      mb.pagesInflated,
      rb.pagesInflated,
      (TOLERANCES.balloon * ramBytes) / 4096,
    ),
  );
  if (traced) {
    const countTolerance = (model: number, slack: number): number =>
      TOLERANCES.counts * model + slack;
    const note = "real: QEMU trace events (ram_block_discard_range, virtqueue_pop)";
    verdicts.push(
      verdict(
        "host.syscalls.madvise",
        "calls",
        m.syscalls.madvise,
        r.syscalls.madvise,
        countTolerance(m.syscalls.madvise, TOLERANCES.syscallSlack),
        note,
      ),
      verdict(
        "host.syscalls.fallocate",
        "calls",
        m.syscalls.fallocate,
        r.syscalls.fallocate,
        countTolerance(m.syscalls.fallocate, TOLERANCES.syscallSlack),
        note,
      ),
      verdict(
        "balloon.requests",
        "requests",
        mb.requests,
        rb.requests,
        countTolerance(mb.requests, TOLERANCES.requestSlack),
        note,
      ),
    );
  }
  if (counters !== undefined) {
    verdicts.push(...counterVerdicts(m.counters, r.counters, counters.counterBackground));
  }
  verdicts.push(
    verdict(
      "time.simTimeMs",
      "ms",
      model.simTimeMs,
      real.simTimeMs,
      0,
      "info: time under TCG has no verdict",
    ),
  );
  return verdicts;
}

/**
 * One verdict per model counter one host /proc/vmstat event stands for (validate_host_counters.ts),
 * splitDeferred + splitShmem as one sum (both are thp_split_page): 5 % of the model's count plus
 * a slack of a few events plus the host background subtracted from the real count.
 */
function counterVerdicts(
  model: Readonly<Record<string, number>>,
  real: Readonly<Record<string, number>>,
  background: Readonly<Record<string, number>>,
): Verdict[] {
  return COUNTER_VERDICTS.map((fields) => {
    const sum = (counters: Readonly<Record<string, number>>): number =>
      fields.reduce((total, field) => total + (counters[field] ?? 0), 0);
    const events = [...new Set(fields.flatMap((field) => COUNTER_EVENTS[field]))];
    const modelCount = sum(model);
    const idle = sum(background);
    return verdict(
      `host.counters.${fields.join("+")}`,
      "events",
      modelCount,
      sum(real),
      TOLERANCES.hostCounters * modelCount + TOLERANCES.hostCounterSlack + idle,
      `real: host /proc/vmstat ${events.join(" + ")} since QEMU started (host-wide${
        fields.includes("faults2m") ? ", less QEMU's own THPs" : ""
      }${idle > 0 ? `, less ${idle} of idle-window background, also in the tolerance` : ""})`,
    );
  });
}
