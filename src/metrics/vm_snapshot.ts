// What a snapshot records about one VM: the host's three memory quantities and its THP use, the
// guest's free memory and fragmentation, the balloon, and Hildenbrand's ladder of 2 MiB blocks.
//
// Hildenbrand's ladder (LKML 2020-02-24): performance is best with a huge page in guest and
// host, then in one of them, then neither. Every 2 MiB block of guest RAM (a RAMBlock PMD) is
// counted once: "ballooned" (all 512 frames in the balloon), "free" (all 512 free in the guest),
// or by where it is huge: in the guest (a PMD-mapped anonymous THP), on the host (a PMD-mapped
// THP or a hugetlb page behind it), both or neither.

import { HPAGE_PMD_NR, NR_PAGE_ORDERS, PAGE_SIZE, pageblock_order } from "../core/limits.ts";
import type { BalloonList } from "../guest/balloon_list.ts";
import { unusableFreeIndex } from "../guest/fragmentation_index.ts";
import {
  FRAME_KIND_MASK,
  FRAME_PCP,
  FRAME_TAIL,
  FrameKind,
  ORDER_MASK,
} from "../guest/frame_table.ts";
import type { GuestMemory } from "../guest/guest_memory.ts";
import { type ThpState, thpPmdMapped } from "../guest/thp.ts";
import { VM_EVENT_NAMES, VmEvent } from "../guest/vm_event.ts";
import { type GuestRam, type HostSnapshot, hostBlockHuge, hostSnapshot } from "../host/host_api.ts";
import { type GuestRamMap, pfnOfRamPage } from "../virtio/guest_ram_map.ts";
import type { BalloonDeviceCounters } from "../virtio/qemu_balloon_device.ts";

export interface ThpLadder {
  hugeGuestAndHost: number;
  hugeGuestOnly: number;
  hugeHostOnly: number;
  hugeNeither: number;
  free: number;
  ballooned: number;
}

export interface GuestSnapshot {
  memTotalBytes: number;
  freeBytes: number;
  /** Free blocks per order, all zones (buddyinfo summed). */
  freeBlocksByOrder: number[];
  /** AnonHugePages in bytes. */
  anonHugePagesBytes: number;
  /** unusable_index at pageblock_order of the largest zone, in thousandths. */
  unusableIndexPageblockOrder: number;
  /** The vmstat events that matter to ballooning, by the kernel's names. */
  events: Record<string, number>;
}

export interface BalloonSnapshot {
  /** The balloon's size (vb->num_pages) and QEMU's target, in bytes. */
  sizeBytes: number;
  targetBytes: number;
  device: BalloonDeviceCounters;
  /** With a virtio-mem device: its sizes (the balloon is then unused). */
  virtioMem?: {
    regionBytes: number;
    requestedBytes: number;
    pluggedBytes: number;
    /** PLUG, UNPLUG, UNPLUG_ALL and STATE requests. */
    requests: number;
  };
}

export interface VmSnapshot {
  timeMs: number;
  host: HostSnapshot;
  guest: GuestSnapshot;
  balloon: BalloonSnapshot;
  ladder: ThpLadder;
}

const GUEST_EVENTS = [
  VmEvent.balloon_inflate,
  VmEvent.balloon_deflate,
  VmEvent.balloon_migrate,
  VmEvent.compact_stall,
  VmEvent.compact_success,
  VmEvent.compact_fail,
  VmEvent.pgmigrate_success,
  VmEvent.thp_fault_alloc,
  VmEvent.thp_fault_fallback,
  VmEvent.thp_split_pmd,
  VmEvent.thp_collapse_alloc,
];

export interface VmSnapshotInput {
  readonly memory: GuestMemory;
  readonly thp: ThpState;
  readonly ram: GuestRam;
  readonly map: GuestRamMap;
  readonly balloonList: BalloonList;
  readonly balloonTargetPages: number;
  readonly device: BalloonDeviceCounters;
  /** A virtio-mem device's memdev RAMBlock and sizes, counted with guest RAM on the host. */
  readonly virtioMem?: {
    readonly ram: GuestRam;
    /** The guest pfn of the region's first page (its RAMBlock's offset 0). */
    readonly startPfn: number;
    readonly regionBytes: number;
    readonly requestedBytes: number;
    readonly pluggedBytes: number;
    readonly requests: number;
  };
}

export function vmSnapshot(input: VmSnapshotInput): VmSnapshot {
  return {
    timeMs: input.memory.clockMs,
    host: hostSnapshotAll(input),
    guest: guestSnapshot(input.memory, input.thp),
    balloon: {
      sizeBytes: input.balloonList.pageCount * PAGE_SIZE,
      targetBytes: input.balloonTargetPages * PAGE_SIZE,
      device: { ...input.device },
      ...(input.virtioMem === undefined
        ? {}
        : {
            virtioMem: {
              regionBytes: input.virtioMem.regionBytes,
              requestedBytes: input.virtioMem.requestedBytes,
              pluggedBytes: input.virtioMem.pluggedBytes,
              requests: input.virtioMem.requests,
            },
          }),
    },
    ladder: thpLadder(input),
  };
}

/** Guest RAM on the host: boot RAM, plus the virtio-mem memdev when there is one. */
function hostSnapshotAll(input: VmSnapshotInput): HostSnapshot {
  const boot = hostSnapshot(input.ram);
  if (input.virtioMem === undefined) return boot;
  const region = hostSnapshot(input.virtioMem.ram);
  const counters = { ...boot.counters };
  for (const key of Object.keys(counters) as (keyof typeof counters)[]) {
    counters[key] += region.counters[key];
  }
  const byCause = { ...boot.residentBytesByCause };
  for (const key of Object.keys(byCause) as (keyof typeof byCause)[]) {
    byCause[key] += region.residentBytesByCause[key];
  }
  return {
    ...boot,
    residentBytes: boot.residentBytes + region.residentBytes,
    allocatedBytes: boot.allocatedBytes + region.allocatedBytes,
    deferredSplitBytes: boot.deferredSplitBytes + region.deferredSplitBytes,
    deferredSplitPartialBytes: boot.deferredSplitPartialBytes + region.deferredSplitPartialBytes,
    blocks: {
      full: boot.blocks.full + region.blocks.full,
      partial: boot.blocks.partial + region.blocks.partial,
      empty: boot.blocks.empty + region.blocks.empty,
      huge: boot.blocks.huge + region.blocks.huge,
    },
    anonHugePagesBytes: boot.anonHugePagesBytes + region.anonHugePagesBytes,
    shmemHugePagesBytes: boot.shmemHugePagesBytes + region.shmemHugePagesBytes,
    shmemPmdMappedBytes: boot.shmemPmdMappedBytes + region.shmemPmdMappedBytes,
    hugetlbPagesTotal: boot.hugetlbPagesTotal + region.hugetlbPagesTotal,
    hugetlbPagesFree: boot.hugetlbPagesFree + region.hugetlbPagesFree,
    // The two RAMBlocks do not share host free memory in the model: MemFree is boot RAM's less
    // what the memdev holds.
    hostMemFreeBytes: boot.hostMemFreeBytes - region.allocatedBytes,
    counters,
    residentBytesByCause: byCause,
  };
}

function guestSnapshot(memory: GuestMemory, thp: ThpState): GuestSnapshot {
  const freeBlocksByOrder = new Array<number>(NR_PAGE_ORDERS).fill(0);
  let freePages = 0;
  let managedPages = 0;
  let largest = memory.zones[0]!;
  for (const zone of memory.zones) {
    managedPages += zone.managedPages;
    freePages += zone.freePages;
    if (zone.managedPages > largest.managedPages) largest = zone;
    for (let order = 0; order < NR_PAGE_ORDERS; order++) {
      freeBlocksByOrder[order]! += zone.freeArea.nrFree[order]!;
    }
  }
  const events: Record<string, number> = {};
  for (const event of GUEST_EVENTS) events[VM_EVENT_NAMES[event]!] = memory.events[event]!;
  return {
    memTotalBytes: managedPages * PAGE_SIZE,
    freeBytes: freePages * PAGE_SIZE,
    freeBlocksByOrder,
    anonHugePagesBytes: countGuestHugeBlocks(memory, thp) * HPAGE_PMD_NR * PAGE_SIZE,
    unusableIndexPageblockOrder: unusableFreeIndex(largest, pageblock_order),
    events,
  };
}

/** A PMD-mapped anonymous THP starts at this pfn. */
function guestHugeAt(memory: GuestMemory, thp: ThpState, pfn: number): boolean {
  const state = memory.table.state[pfn]!;
  if ((state & FRAME_KIND_MASK) !== FrameKind.Anon || (state & FRAME_TAIL) !== 0) return false;
  if ((memory.table.order[pfn]! & ORDER_MASK) !== pageblock_order) return false;
  return thpPmdMapped(thp, pfn);
}

function countGuestHugeBlocks(memory: GuestMemory, thp: ThpState): number {
  let blocks = 0;
  for (let pfn = 0; pfn < memory.table.frameCount; pfn += HPAGE_PMD_NR) {
    if (guestHugeAt(memory, thp, pfn)) blocks++;
  }
  return blocks;
}

/** All 512 frames of the block have this kind. */
function blockAll(memory: GuestMemory, pfn: number, kind: FrameKind): boolean {
  const state = memory.table.state;
  for (let page = 0; page < HPAGE_PMD_NR; page++) {
    if ((state[pfn + page]! & FRAME_KIND_MASK) !== kind) return false;
  }
  return true;
}

/**
 * All 512 frames are in the buddy allocator: free, and none on a per-cpu list. This is what
 * /proc/kpageflags calls KPF_BUDDY (stable_page_flags, fs/proc/page.c v6.1: PageBuddy or a free
 * buddy tail), and what MemFree counts; pages on per-cpu lists are neither.
 */
function blockInBuddy(memory: GuestMemory, pfn: number): boolean {
  const state = memory.table.state;
  for (let page = 0; page < HPAGE_PMD_NR; page++) {
    const frame = state[pfn + page]!;
    if ((frame & FRAME_KIND_MASK) !== FrameKind.Free || (frame & FRAME_PCP) !== 0) return false;
  }
  return true;
}

export function thpLadder(input: VmSnapshotInput): ThpLadder {
  const ladder: ThpLadder = {
    hugeGuestAndHost: 0,
    hugeGuestOnly: 0,
    hugeHostOnly: 0,
    hugeNeither: 0,
    free: 0,
    ballooned: 0,
  };
  const { memory, ram, map } = input;
  for (let block = 0; block < ram.fullBlockCount; block++) {
    countLadderBlock(input, ladder, pfnOfRamPage(map, block * HPAGE_PMD_NR), ram, block);
  }
  // A virtio-mem device's region: its own RAMBlock, guest pfns from startPfn on. Unplugged
  // blocks (PG_offline, reserved frames) are given back to the host, as ballooned ones are.
  const region = input.virtioMem;
  if (region !== undefined) {
    for (let block = 0; block < region.ram.fullBlockCount; block++) {
      const pfn = region.startPfn + block * HPAGE_PMD_NR;
      if (blockAll(memory, pfn, FrameKind.Reserved)) ladder.ballooned++;
      else countLadderBlock(input, ladder, pfn, region.ram, block);
    }
  }
  return ladder;
}

/** Hildenbrand's ladder for one 2 MiB block: guest pfn `pfn`, host RAMBlock `ram` block `block`. */
function countLadderBlock(
  input: VmSnapshotInput,
  ladder: ThpLadder,
  pfn: number,
  ram: GuestRam,
  block: number,
): void {
  const memory = input.memory;
  if (blockAll(memory, pfn, FrameKind.Balloon)) ladder.ballooned++;
  else if (blockInBuddy(memory, pfn)) ladder.free++;
  else {
    const guestHuge = guestHugeAt(memory, input.thp, pfn);
    const hostHuge = hostBlockHuge(ram, block);
    if (guestHuge && hostHuge) ladder.hugeGuestAndHost++;
    else if (guestHuge) ladder.hugeGuestOnly++;
    else if (hostHuge) ladder.hugeHostOnly++;
    else ladder.hugeNeither++;
  }
}

/** The FrameKind value that marks a guest block mapped by a PMD-mapped THP in guestBlockKinds. */
export const GUEST_BLOCK_THP = 15;

/**
 * One byte per 2 MiB block of guest RAM, in RAMBlock order: GUEST_BLOCK_THP for a PMD-mapped
 * guest THP, else the FrameKind that holds most of the block's frames.
 */
export function guestBlockKinds(
  input: Pick<VmSnapshotInput, "memory" | "thp" | "ram" | "map">,
): Uint8Array {
  const { memory, ram, map } = input;
  const kinds = new Uint8Array(ram.blockCount);
  const counts = new Int32Array(16);
  for (let block = 0; block < ram.blockCount; block++) {
    const pfn = pfnOfRamPage(map, block * HPAGE_PMD_NR);
    if (block < ram.fullBlockCount && guestHugeAt(memory, input.thp, pfn)) {
      kinds[block] = GUEST_BLOCK_THP;
      continue;
    }
    counts.fill(0);
    const pages = Math.min(HPAGE_PMD_NR, ram.pageCount - block * HPAGE_PMD_NR);
    for (let page = 0; page < pages; page++) {
      counts[memory.table.state[pfn + page]! & FRAME_KIND_MASK]!++;
    }
    let best = 0;
    for (let kind = 1; kind < 16; kind++) if (counts[kind]! > counts[best]!) best = kind;
    kinds[block] = best;
  }
  return kinds;
}
