// One guest's physical memory: the frame table, its zones, per-cpu lists, counters, owners and
// clock. This is the state every guest-side operation (page_alloc, compaction, reclaim, THP)
// works on; the operations live in their own files and take this struct first.
//
// With a virtio-mem device (config.virtioMem) the frame table and one zone also cover the
// device's region (memory_layout.ts addDeviceMemory); its frames stay reserved until the
// virtio-mem driver onlines them, and memory hotplug recomputes the zones' limits
// (recalculateZoneLimits) whenever managed pages change that way.

import { assert } from "../core/assert.ts";
import { MIGRATE_MOVABLE } from "../core/limits.ts";
import type { BalloonList } from "./balloon_list.ts";
import { FPI_NONE, FPI_TO_TAIL, freeOnePage } from "./buddy.ts";
import { createFrameTable, FrameKind, type FrameTable } from "./frame_table.ts";
import { type KernelRules, kernelRules } from "./kernel_version.ts";
import {
  addDeviceMemory,
  type BootReservation,
  DEFAULT_BOOT_RESERVATION,
  type GuestLayout,
  guestLayout,
  lateFreedPages,
  type MachineType,
  type VirtioMemConfig,
} from "./memory_layout.ts";
import { createOwnerRegistry, type OwnerRegistry } from "./owners.ts";
import { createPcpSet, type PcpSet, setupPcpHighAndBatch } from "./pcp.ts";
import { createVmEvents } from "./vm_event.ts";
import {
  minFreeKbytes,
  setupPerZoneLowmemReserve,
  setupPerZoneWmarks,
  WATERMARK_BOOST_FACTOR_DEFAULT,
  WATERMARK_SCALE_FACTOR_DEFAULT,
} from "./watermarks.ts";
import { createZone, type Zone } from "./zone.ts";

export type ThpEnabled = "always" | "madvise" | "never";
export type ThpDefrag = "always" | "defer" | "defer+madvise" | "madvise" | "never";

export interface GuestConfig {
  readonly memoryBytes: number;
  readonly machine: MachineType;
  readonly kernel: string;
  readonly cpus: number;
  readonly thpEnabled: ThpEnabled;
  readonly thpDefrag: ThpDefrag;
  /** init_on_alloc: the kernel zeroes every page it allocates. */
  readonly initOnAlloc: boolean;
  readonly boot?: BootReservation;
  /** An explicit layout (proc import), used instead of guestLayout(...) when present. */
  readonly layout?: GuestLayout;
  /** A virtio-mem device: its region is added above boot RAM (memory_layout.ts). */
  readonly virtioMem?: VirtioMemConfig;
  /**
   * The kernel's allocations made after memblock hands RAM to the buddy allocator and before
   * userspace starts (post_boot.ts); default DEFAULT_POST_BOOT_KERNEL_BYTES, 0 for none. Made
   * when a VM boots the guest (vm_sim.ts createVmSim), not for an imported guest.
   */
  readonly postBootKernelBytes?: number;
}

/** Work the model owes to background threads, run by the scheduler in sim time. */
export interface BackgroundWork {
  /** kswapd was woken (wakeup_kswapd) and has not run since. */
  kswapdWoken: boolean;
  /** Highest order kswapd was woken for (pgdat->kswapd_order). */
  kswapdOrder: number;
  /** kcompactd was woken (wakeup_kcompactd): order or -1. */
  kcompactdOrder: number;
}

/** Reclaim and compaction, installed by the guest's composition root to keep imports one-way. */
export interface GuestHooks {
  /** Reclaim up to `targetPages` clean page cache pages; returns pages freed. */
  reclaim(memory: GuestMemory, targetPages: number, direct: boolean): number;
  /**
   * Direct compaction for an allocation of `order` (try_to_compact_pages); returns the
   * enum compact_result (CompactResult in compaction_defer.ts) the slow path acts on.
   */
  compact(memory: GuestMemory, order: number, migratetype: number, priority: number): number;
}

export interface GuestMemory {
  readonly config: GuestConfig;
  readonly rules: KernelRules;
  readonly layout: GuestLayout;
  readonly table: FrameTable;
  /** Populated zones, lowest first. */
  readonly zones: readonly Zone[];
  /** Zone by ZoneType index, undefined when absent. */
  readonly zoneByType: readonly (Zone | undefined)[];
  /** Per-cpu lists, [zone index in `zones`][cpu]. */
  readonly pcp: readonly (readonly PcpSet[])[];
  readonly events: Float64Array;
  readonly owners: OwnerRegistry;
  /** THP as the kernel runs it: forced off below 512 MiB (hugepage_init). */
  readonly thpEnabled: ThpEnabled;
  minFreeKbytes: number;
  watermarkBoostFactor: number;
  /** Simulated time in milliseconds since boot. */
  clockMs: number;
  /** The CPU the current operation runs on. */
  cpu: number;
  readonly background: BackgroundWork;
  hooks: GuestHooks | undefined;
  /** Balloon compaction moved a balloon page (virtballoon_migratepage: inflate new, deflate old). */
  onBalloonMigrate?: (oldPfn: number, newPfn: number) => void;
  /** The balloon's page lists, once a balloon driver is loaded. */
  balloonList?: BalloonList;
  /**
   * The guest wrote these frames (an allocation's first use, zeroing, a migration's copy): the
   * host must back them. Installed by whoever models the host.
   */
  onTouch?: (pfn: number, count: number) => void;
  /**
   * The OOM notifier chain (out_of_memory → blocking_notifier_call_chain): returns pages freed;
   * virtio-balloon's deflate-on-OOM registers here.
   */
  oomNotify?: (memory: GuestMemory) => number;
}

/** hugepage_init (mm/huge_memory.c): THP is left off when RAM is below 512 MiB. */
function effectiveThp(config: GuestConfig): ThpEnabled {
  if (config.memoryBytes < 512 * 1024 * 1024) return "never";
  return config.thpEnabled;
}

export function createGuestMemory(config: GuestConfig): GuestMemory {
  assert(Number.isInteger(config.cpus) && config.cpus >= 1, "cpus must be a positive integer");
  const rules = kernelRules(config.kernel);
  const bootLayout =
    config.layout ??
    guestLayout(config.machine, config.memoryBytes, rules, config.boot ?? DEFAULT_BOOT_RESERVATION);
  const layout =
    config.virtioMem === undefined
      ? bootLayout
      : addDeviceMemory(bootLayout, config.virtioMem, rules);
  const table = createFrameTable(layout.frameCount);
  const zones = layout.zones.map((spec) => createZone(spec, rules));
  const zoneByType: (Zone | undefined)[] = [];
  for (const zone of zones) zoneByType[zone.type] = zone;
  const memory: GuestMemory = {
    config,
    rules,
    layout,
    table,
    zones,
    zoneByType,
    pcp: zones.map(() => Array.from({ length: config.cpus }, () => createPcpSet(rules))),
    events: createVmEvents(),
    owners: createOwnerRegistry(),
    thpEnabled: effectiveThp(config),
    minFreeKbytes: 0,
    watermarkBoostFactor: WATERMARK_BOOST_FACTOR_DEFAULT,
    clockMs: 0,
    cpu: 0,
    background: { kswapdWoken: false, kswapdOrder: 0, kcompactdOrder: -1 },
    hooks: undefined,
  };
  bootFreeMemory(memory);
  recalculateZoneLimits(memory, lateFreedPages(config.boot ?? DEFAULT_BOOT_RESERVATION));
  return memory;
}

/**
 * Models init_per_zone_wmark_min (mm/page_alloc.c), which boot and memory hotplug (online_pages,
 * offline_pages in mm/memory_hotplug.c) both run: min_free_kbytes from the lowmem managed pages,
 * raised for THP (khugepaged_min_free_kbytes_update, v5.10), then every zone's watermarks,
 * lowmem reserves and per-cpu high and batch. At boot `lateFreed` pages (memory_layout.ts
 * lateFreedPages) are not managed yet when min_free_kbytes is chosen; the watermarks are
 * spread over every managed page (set_recommended_min_free_kbytes ends in
 * setup_per_zone_wmarks, which runs again whenever THP is switched through sysfs).
 */
export function recalculateZoneLimits(memory: GuestMemory, lateFreed = 0): void {
  const zones = memory.zones;
  const thp = memory.thpEnabled !== "never";
  memory.minFreeKbytes = minFreeKbytes(zones, memory.rules, thp, lateFreed);
  setupPerZoneWmarks(zones, memory.minFreeKbytes, WATERMARK_SCALE_FACTOR_DEFAULT);
  setupPerZoneLowmemReserve(zones);
  // setup_per_zone_wmarks → zone_pcp_update (v5.14; 5.6 online_pages): high follows the marks.
  zones.forEach((zone, index) => {
    for (const set of memory.pcp[index]!) {
      setupPcpHighAndBatch(set, zone, memory.config.cpus, memory.rules);
    }
  });
}

/** The zone a pfn belongs to, or undefined for a hole. */
export function zoneOfPfn(memory: GuestMemory, pfn: number): Zone | undefined {
  for (const zone of memory.zones) {
    if (pfn >= zone.startPfn && pfn < zone.endPfn) return zone;
  }
  return undefined;
}

/** Index of a zone in `memory.zones` (and `memory.pcp`). */
export function zoneIndexOf(memory: GuestMemory, zone: Zone): number {
  return memory.zones.indexOf(zone);
}

/**
 * Models memblock_free_all → __free_pages_memory (mm/memblock.c): every RAM range not reserved is
 * freed in the largest naturally aligned blocks, lowest address first, through __free_pages_core
 * (FPI_TO_TAIL since v5.10, so the lowest blocks end up at the heads of the lists).
 */
function bootFreeMemory(memory: GuestMemory): void {
  const { layout } = memory;
  const fpi = memory.rules.placePagesToTail ? FPI_TO_TAIL : FPI_NONE;
  for (const range of layout.ramRanges) {
    for (const zone of memory.zones) {
      const start = Math.max(range.startPfn, zone.startPfn);
      const end = Math.min(range.endPfn, zone.endPfn);
      if (end > start) zone.presentPages += end - start;
    }
  }
  const reserved = new Uint8Array(layout.frameCount);
  for (const range of layout.reserved) reserved.fill(1, range.startPfn, range.endPfn);
  for (const range of layout.ramRanges) {
    let pfn = range.startPfn;
    while (pfn < range.endPfn) {
      if (reserved[pfn] === 1) {
        pfn++;
        continue;
      }
      let end = pfn;
      while (end < range.endPfn && reserved[end] === 0) end++;
      freeRangeToBuddy(memory, pfn, end, fpi);
      pfn = end;
    }
  }
}

function freeRangeToBuddy(
  memory: GuestMemory,
  startPfn: number,
  endPfn: number,
  fpi: number,
): void {
  const { table } = memory;
  let pfn = startPfn;
  while (pfn < endPfn) {
    const zone = zoneOfPfn(memory, pfn);
    assert(zone !== undefined, () => `pfn ${pfn} outside every zone`);
    let order = Math.min(10, pfn === 0 ? 10 : 31 - Math.clz32(pfn & -pfn));
    while (pfn + (1 << order) > Math.min(endPfn, zone.endPfn)) order--;
    table.state.fill(FrameKind.Free, pfn, pfn + (1 << order));
    zone.managedPages += 1 << order;
    freeOnePage(table, zone, pfn, order, MIGRATE_MOVABLE, fpi);
    pfn += 1 << order;
  }
}
