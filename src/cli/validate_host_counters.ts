// `balloonlab validate`: the real side's `host.counters` from the host's /proc/vmstat THP events.
// The events are read right before QEMU starts (after an idle window that estimates what the
// rest of the host does to them) and at each snapshot; the real counter is the delta, less the
// idle window's rate over the time since, less QEMU's own THPs outside guest RAM (smaps
// AnonHugePages of its other mappings: the TCG buffer and other RAMBlocks, which QEMU also
// madvises MADV_HUGEPAGE). Only the model counters whose meaning is one vmstat event (or a sum of
// them) one to one are filled (COUNTER_EVENTS); the others are listed as not measured.
//
// What increments each event on the host (6.18, mm/huge_memory.c, mm/shmem.c, mm/khugepaged.c):
// thp_fault_alloc: an anonymous PMD fault that got its THP (vma_alloc_anon_folio_pmd);
// thp_fault_fallback: one that did not (allocation or charge failed); thp_file_alloc /
// thp_file_fallback: a PMD-order shmem folio allocated / not (shmem_alloc_and_add_folio);
// thp_collapse_alloc / _failed: khugepaged's or MADV_COLLAPSE's THP allocation (alloc_charge_folio;
// counted when the allocation succeeds, before the collapse itself can still fail);
// thp_split_pmd: every PMD split (__split_huge_pmd_locked: a partial zap, unmap_folio before a
// split; anon and file VMAs); thp_split_page / _failed: a PMD-order folio split, by any path
// (the deferred split shrinker, a shmem hole punch); thp_deferred_split_page: an anon THP first
// marked partially mapped (deferred_split_folio).

import { readFileSync } from "node:fs";
import type { HostBacking } from "../host/host_config.ts";

/** The host /proc/vmstat THP events read (all thp_* of 6.18 that the mapping uses). */
export const THP_EVENTS = [
  "thp_fault_alloc",
  "thp_fault_fallback",
  "thp_file_alloc",
  "thp_file_fallback",
  "thp_collapse_alloc",
  "thp_collapse_alloc_failed",
  "thp_split_pmd",
  "thp_split_page",
  "thp_split_page_failed",
  "thp_deferred_split_page",
] as const;
export type ThpEvent = (typeof THP_EVENTS)[number];
export type ThpEvents = Record<ThpEvent, number>;

/**
 * The model's HostCounters fields the real side fills, with the events each stands for
 * (src/host/guest_ram.ts). `splitDeferred` and `splitShmem` are both thp_split_page: the verdict
 * is on their sum (SPLIT_SUM); the real side gives the event to the one the backing can have
 * (anon: the deferred split shrinker; memfd, tmpfs: a shmem hole punch).
 */
export const COUNTER_EVENTS = {
  faults2m: ["thp_fault_alloc", "thp_file_alloc"],
  thpFaultFallback: ["thp_fault_fallback"],
  thpFileFallback: ["thp_file_fallback"],
  collapses: ["thp_collapse_alloc"],
  collapseAllocFailed: ["thp_collapse_alloc_failed"],
  splitPmd: ["thp_split_pmd"],
  splitDeferred: ["thp_split_page"],
  splitShmem: ["thp_split_page"],
  deferredSplitPage: ["thp_deferred_split_page"],
} as const satisfies Record<string, readonly ThpEvent[]>;
export type MappedCounter = keyof typeof COUNTER_EVENTS;

/** The verdicts: one per mapped counter, splitDeferred and splitShmem as one sum. */
export const COUNTER_VERDICTS: readonly (readonly MappedCounter[])[] = [
  ["faults2m"],
  ["thpFaultFallback"],
  ["thpFileFallback"],
  ["collapses"],
  ["collapseAllocFailed"],
  ["splitPmd"],
  ["splitDeferred", "splitShmem"],
  ["deferredSplitPage"],
];

/**
 * The model's HostCounters fields with no vmstat event one to one (named in `notMeasured`):
 * madvise/fallocate are QEMU's syscalls (compared as host.syscalls from QEMU's trace);
 * faults4k, faultsMapped (pgfault counts every fault of every process; thp_file_mapped only the
 * PMD maps); faultsHugetlb (hugetlb faults have no event); splitShmemFailed (thp_split_page_failed
 * also counts anon split failures); the rest have no event at all.
 */
export const UNMAPPED_COUNTERS = [
  "madvise",
  "fallocate",
  "discardErrors",
  "discardsIgnored",
  "faults4k",
  "faultsHugetlb",
  "faultsMapped",
  "splitShmemFailed",
  "freedByShrinkerBytes",
  "zeroPagesRemapped",
  "ptTablesReclaimed",
  "shrinkerRuns",
] as const;

/** The thp_* events of /proc/vmstat text; undefined when the kernel has none (no THP). */
export function parseThpEvents(text: string): ThpEvents | undefined {
  const found: Partial<ThpEvents> = {};
  for (const line of text.split("\n")) {
    const match = /^(thp_\w+)\s+(\d+)$/.exec(line.trim());
    if (match && (THP_EVENTS as readonly string[]).includes(match[1]!)) {
      found[match[1] as ThpEvent] = Number(match[2]);
    }
  }
  if (found.thp_fault_alloc === undefined) return undefined;
  return Object.fromEntries(THP_EVENTS.map((event) => [event, found[event] ?? 0])) as ThpEvents;
}

export function readThpEvents(): ThpEvents | undefined {
  try {
    return parseThpEvents(readFileSync("/proc/vmstat", "utf8"));
  } catch {
    return undefined;
  }
}

/** The events before QEMU starts, and what the rest of the host did to them while idle. */
export interface ThpBaseline {
  /** The events right before QEMU starts (the end of the idle window). */
  readonly events: ThpEvents;
  /** Date.now() when `events` was read. */
  readonly takenMs: number;
  /** The idle window's length, ms, and the events' deltas over it (the host's background). */
  readonly idleMs: number;
  readonly idleDelta: ThpEvents;
}

/** Idle window before QEMU starts (BALLOONLAB_VALIDATE_IDLE_MS, default 1000 ms). */
export function idleWindowMs(): number {
  const value = Number(process.env.BALLOONLAB_VALIDATE_IDLE_MS ?? "1000");
  return Number.isFinite(value) && value >= 0 ? value : 1000;
}

function deltas(before: ThpEvents, after: ThpEvents): ThpEvents {
  return Object.fromEntries(
    THP_EVENTS.map((event) => [event, after[event] - before[event]]),
  ) as ThpEvents;
}

/** Reads the events, waits `idleMs` with nothing of this run going on, reads them again. */
export async function thpBaseline(idleMs = idleWindowMs()): Promise<ThpBaseline | undefined> {
  const first = readThpEvents();
  if (first === undefined) return undefined;
  const started = Date.now();
  await new Promise((resolve) => setTimeout(resolve, idleMs));
  const events = readThpEvents() ?? first;
  const takenMs = Date.now();
  return { events, takenMs, idleMs: takenMs - started, idleDelta: deltas(first, events) };
}

/** How `host.counters` was found at one snapshot (validation.json `real.hostCounters`). */
export interface HostCountersDetail {
  /** The model's field names: the real counters (deltas less background and QEMU's own). */
  readonly counters: Record<MappedCounter, number>;
  /** The raw deltas of the events since QEMU started. */
  readonly delta: ThpEvents;
  /** The idle window's rate times the time since QEMU started, rounded (subtracted). */
  readonly background: ThpEvents;
  /**
   * That background per mapped counter (the sum over its events): subtracted from the counter
   * and added to its verdict's tolerance, since a burst in the idle window need not go on.
   */
  readonly counterBackground: Record<MappedCounter, number>;
  /** THPs in QEMU's mappings outside guest RAM (smaps AnonHugePages / 2 MiB; subtracted). */
  readonly qemuOwnThps: number;
  readonly elapsedMs: number;
}

/**
 * The real counters: each event's delta since `baseline`, less the background (the idle
 * window's rate over `nowMs - baseline.takenMs`), never below 0; `faults2m` also less QEMU's own
 * THPs. thp_split_page goes to `splitShmem` on a shmem backing (memfd, tmpfs-huge), else to
 * `splitDeferred`.
 */
export function hostCountersDetail(
  baseline: ThpBaseline,
  now: ThpEvents,
  nowMs: number,
  qemuOwnThp_kB: number,
  backing: HostBacking,
): HostCountersDetail {
  const elapsedMs = Math.max(0, nowMs - baseline.takenMs);
  const delta = deltas(baseline.events, now);
  const scale = baseline.idleMs > 0 ? elapsedMs / baseline.idleMs : 0;
  const background = Object.fromEntries(
    THP_EVENTS.map((event) => [event, Math.round(Math.max(0, baseline.idleDelta[event]) * scale)]),
  ) as ThpEvents;
  const net = (event: ThpEvent): number => Math.max(0, delta[event] - background[event]);
  const qemuOwnThps = Math.floor(qemuOwnThp_kB / 2048);
  const shmem = backing === "memfd" || backing === "tmpfs-huge";
  const splitPages = net("thp_split_page");
  const counters: Record<MappedCounter, number> = {
    faults2m: Math.max(0, net("thp_fault_alloc") + net("thp_file_alloc") - qemuOwnThps),
    thpFaultFallback: net("thp_fault_fallback"),
    thpFileFallback: net("thp_file_fallback"),
    collapses: net("thp_collapse_alloc"),
    collapseAllocFailed: net("thp_collapse_alloc_failed"),
    splitPmd: net("thp_split_pmd"),
    splitDeferred: shmem ? 0 : splitPages,
    splitShmem: shmem ? splitPages : 0,
    deferredSplitPage: net("thp_deferred_split_page"),
  };
  const counterBackground = Object.fromEntries(
    Object.entries(COUNTER_EVENTS).map(([field, list]) => [
      field,
      list.reduce((sum, event) => sum + background[event], 0),
    ]),
  ) as Record<MappedCounter, number>;
  if (shmem) counterBackground.splitDeferred = 0;
  else counterBackground.splitShmem = 0;
  return { counters, delta, background, counterBackground, qemuOwnThps, elapsedMs };
}
