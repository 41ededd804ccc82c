// Counts of the work balloon operations do, collected where the work happens (the devices,
// the guest driver's rounds, the host model's counters) and turned into simulated time by the
// cost model (src/sim/cost_model.ts). Every field is a count of events, never a time.

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_ORDER } from "../core/limits.ts";
import { BlockState, type GuestRam } from "../host/host_api.ts";

/** The counts a step produced; every field is a count of events, never a time. */
export interface WorkCounts {
  /** Guest allocations that returned a block (any order). */
  guestAllocCalls: number;
  /** Guest allocation attempts that failed (fill_balloon then tries a lower order or stops). */
  guestAllocFailures: number;
  /** 4 KiB pages of the blocks allocated. */
  guestAllocPages: number;
  /** Pages zeroed by init_on_alloc. */
  guestZeroPages: number;
  /** Pages moved by compaction (pgmigrate_success). */
  guestMigratePages: number;
  /** Pages isolated one by one (virtio-mem unplug). */
  guestIsolatePages: number;
  /** Free blocks page reporting isolated, reported and put back. */
  guestReportBlocks: number;
  /** Page-cache pages reclaimed (pgsteal, direct and kswapd) while a round ran. */
  guestReclaimPages: number;
  /** Pfns compaction's migrate and free scanners looked at while a round ran. */
  guestCompactScanPages: number;
  /** Blocks a deflation gave back to the guest's allocator (release_pages_balloon: any order). */
  guestFreeCalls: number;
  /** 4 KiB pages of the blocks freed. */
  guestFreePages: number;
  /** Pages hot-plugged memory brought online (memmap initialised, freed to the buddy). */
  guestOnlinePages: number;
  virtqueueRequests: number;
  virtqueueEntries: number;
  hostTranslations: number;
  /** madvise and fallocate calls that discard (MADV_DONTNEED/REMOVE, FALLOC_FL_PUNCH_HOLE). */
  hostSyscalls: number;
  /** Deflate's madvise(MADV_WILLNEED) hints (balloon_deflate_page): nothing zapped or faulted. */
  hostHintSyscalls: number;
  /** Discard calls that unmapped something, so flushed the TLB. */
  hostTlbFlushes: number;
  /** Resident 4 KiB PTEs zapped (the page freed, or a THP subpage only unmapped). */
  hostFreedPages4k: number;
  /** 2 MiB compound pages (THP or hugetlb) freed, by zap_huge_pmd or the last subpage's unmap. */
  hostFreedPages2m: number;
  /** PMDs split into PTEs by a partial discard (thp_split_pmd). */
  hostSplitPmds: number;
  hostFaults4k: number;
  hostFaults2m: number;
  hostCollapses: number;
}

export function createWorkCounts(): WorkCounts {
  return {
    guestAllocCalls: 0,
    guestAllocFailures: 0,
    guestAllocPages: 0,
    guestZeroPages: 0,
    guestMigratePages: 0,
    guestIsolatePages: 0,
    guestReportBlocks: 0,
    guestReclaimPages: 0,
    guestCompactScanPages: 0,
    guestFreeCalls: 0,
    guestFreePages: 0,
    guestOnlinePages: 0,
    virtqueueRequests: 0,
    virtqueueEntries: 0,
    hostTranslations: 0,
    hostSyscalls: 0,
    hostHintSyscalls: 0,
    hostTlbFlushes: 0,
    hostFreedPages4k: 0,
    hostFreedPages2m: 0,
    hostSplitPmds: 0,
    hostFaults4k: 0,
    hostFaults2m: 0,
    hostCollapses: 0,
  };
}

/** Adds `source` into `target`, field by field. */
export function addWorkCounts(target: WorkCounts, source: WorkCounts): void {
  for (const key of Object.keys(target) as (keyof WorkCounts)[]) target[key] += source[key];
}

/**
 * The host state of the 2 MiB blocks a request names, taken before QEMU handles it, so that the
 * host's work can be read off the difference afterwards: THPs freed whole, PTEs zapped, PMDs
 * split, and the TLB flushes of the discard calls. The host model keeps no per-call record of
 * this, and its global counters cannot tell a PMD zap from 512 PTE zaps.
 *
 * Per-block arrays are sized to the RAMBlock once (13 bytes per 2 MiB: 6.5 MiB for 1 TiB); a
 * request's blocks are listed once each (`seen` holds the request's epoch).
 */
export interface DiscardProbe {
  readonly ram: GuestRam;
  /** The blocks named by the current request, first-seen order. */
  readonly blocks: Int32Array;
  count: number;
  /** Per block: the epoch of the request that last listed it. */
  readonly seen: Int32Array;
  epoch: number;
  /** Per block, before the request: BlockState, resident pages, own pages. */
  readonly state: Uint8Array;
  readonly resident: Uint16Array;
  readonly own: Uint16Array;
  /** Host counters before the request. */
  madvise: number;
  fallocate: number;
  splitPmd: number;
}

export function createDiscardProbe(ram: GuestRam): DiscardProbe {
  const blocks = ram.blockCount;
  return {
    ram,
    blocks: new Int32Array(blocks),
    count: 0,
    seen: new Int32Array(blocks),
    epoch: 0,
    state: new Uint8Array(blocks),
    resident: new Uint16Array(blocks),
    own: new Uint16Array(blocks),
    madvise: 0,
    fallocate: 0,
    splitPmd: 0,
  };
}

/** Starts a request: no block listed yet; the host counters as they are. */
export function discardProbeBegin(probe: DiscardProbe): void {
  assert(probe.epoch < 2 ** 31 - 1, "discard probe epochs exhausted");
  probe.epoch++;
  probe.count = 0;
  const counters = probe.ram.counters;
  probe.madvise = counters.madvise;
  probe.fallocate = counters.fallocate;
  probe.splitPmd = counters.splitPmd;
}

/** Lists the blocks of RAMBlock pages [page, page + pages) with their state now. */
export function discardProbeRange(probe: DiscardProbe, page: number, pages: number): void {
  if (pages <= 0) return;
  const { ram, seen, epoch } = probe;
  assert(page >= 0 && page + pages <= ram.pageCount, () => `probe range ${page}+${pages}`);
  const last = (page + pages - 1) >>> HPAGE_PMD_ORDER;
  for (let block = page >>> HPAGE_PMD_ORDER; block <= last; block++) {
    if (seen[block] === epoch) continue;
    seen[block] = epoch;
    probe.state[block] = ram.blockState[block]!;
    probe.resident[block] = ram.residentCount[block]!;
    probe.own[block] = ram.ownCount[block]!;
    probe.blocks[probe.count++] = block;
  }
}

/** The block holds a whole compound page (THP or hugetlb page). */
function holdsCompound(state: number): boolean {
  return state >= BlockState.ThpPmd;
}

/** The compound page was mapped by one PMD (or PUD): a whole discard frees it without PTEs. */
function pmdMapped(state: number): boolean {
  return state === BlockState.ThpPmd || state === BlockState.Hugetlb;
}

/**
 * Ends a request: adds to `work` what the host did to the listed blocks. A compound page that
 * is gone was freed (hostFreedPages2m); unless it went whole with its PMD, every resident or
 * own page the block lost was a PTE zapped (hostFreedPages4k). A discard call flushes the TLB
 * once if it unmapped anything; the probe cannot tell which calls did, so it counts the smaller
 * of calls and pieces unmapped (exact for one call per page and for one call per range). A
 * 1 GiB hugetlb page counts as its 512 blocks.
 */
export function discardProbeEnd(probe: DiscardProbe, work: WorkCounts): void {
  const { ram, blocks } = probe;
  let ptes = 0;
  let compounds = 0;
  for (let index = 0; index < probe.count; index++) {
    const block = blocks[index]!;
    const before = probe.state[block]!;
    const freed = holdsCompound(before) && !holdsCompound(ram.blockState[block]!);
    if (freed) compounds++;
    if (freed && pmdMapped(before)) continue;
    const unmapped = probe.resident[block]! - ram.residentCount[block]!;
    const released = probe.own[block]! - ram.ownCount[block]!;
    ptes += Math.max(0, unmapped, released);
  }
  const counters = ram.counters;
  const calls = Math.max(counters.madvise - probe.madvise, counters.fallocate - probe.fallocate);
  work.hostFreedPages4k += ptes;
  work.hostFreedPages2m += compounds;
  work.hostSplitPmds += counters.splitPmd - probe.splitPmd;
  work.hostTlbFlushes += Math.min(calls, ptes + compounds);
}
