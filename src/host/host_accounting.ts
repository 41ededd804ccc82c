// What the host would report about guest RAM, as plain numbers: QEMU's Rss, the memory really
// allocated, /proc/meminfo's huge page lines and /proc/vmstat-like counters.
//
// Theory of operation. residentBytes is smaps Rss of the RAMBlock; allocatedBytes is what the
// host holds for it: whole compound pages (including THPs waiting for a split and, before v5.7,
// punched shmem THPs) plus 4 KiB pages, plus hugetlb pages in use. The meminfo lines follow the
// kernel's counters: AnonHugePages counts PMD-mapped anon THPs (NR_ANON_THPS), ShmemHugePages
// shmem THPs in the page cache (NR_SHMEM_THPS), ShmemPmdMapped those mapped by a PMD. Block
// counts are per 2 MiB: full/partial/empty partition the blocks by resident pages; huge counts
// blocks mapped by a PMD or lying in a hugetlb page (a subset of full). residentBytesByCause
// splits Rss into pages the guest wrote and pages it never wrote, by what filled them.
// hostSnapshot costs one pass over the bitmaps (8 M words for 1 TiB); hostBlockHuge is O(1).
//
// Left out: Pss and sharing (one mapping), swap, KernelPageSize, and pagemap's view of PTEs that
// map the shared zero page (present in pagemap, not counted in Rss: the model counts Rss).

import { assert } from "../core/assert.ts";
import { PAGE_SIZE } from "../core/limits.ts";
import { popcount32, WORDS_PER_BLOCK } from "./bitmap.ts";
import {
  BlockState,
  blockPages,
  FillCause,
  type GuestRam,
  type HostCounters,
  THP_PARTIALLY_MAPPED,
  THP_QUEUED,
} from "./guest_ram.ts";
import { HPAGE_PMD_SIZE } from "./host_config.ts";
import { hostFreePages } from "./host_memory.ts";

export interface HostBlockCounts {
  /** Blocks whose pages are all resident. */
  full: number;
  /** Blocks with some but not all pages resident. */
  partial: number;
  /** Blocks with no page resident. */
  empty: number;
  /** Blocks mapped by a PMD (anon or shmem THP) or in a hugetlb page. */
  huge: number;
}

export interface ResidentBytesByCause {
  /** Resident pages the guest wrote since they were last discarded. */
  guestTouched: number;
  /** Resident pages the guest never wrote, zero-filled by a THP fault. */
  thpFault: number;
  /** ... zero-filled by a khugepaged collapse. */
  collapse: number;
  /** ... in a hugetlb page taken at fault. */
  hugetlbFault: number;
}

export interface HostSnapshot {
  residentBytes: number;
  allocatedBytes: number;
  /** Bytes of compound pages on the deferred split queue (whole THPs). */
  deferredSplitBytes: number;
  /** Of those, the partially mapped ones (the only ones the shrinker frees memory from). */
  deferredSplitPartialBytes: number;
  blocks: HostBlockCounts;
  anonHugePagesBytes: number;
  shmemHugePagesBytes: number;
  shmemPmdMappedBytes: number;
  /** HugePages_Total and HugePages_Free, in pages of hugetlbPageBytes. */
  hugetlbPagesTotal: number;
  hugetlbPagesFree: number;
  hugetlbPageBytes: number;
  /** MemTotal, MemFree (negative if the host is overcommitted) and the scenario's other use. */
  hostMemTotalBytes: number;
  hostMemFreeBytes: number;
  otherUsedBytes: number;
  /** WMARK_MIN / LOW / HIGH of the host. */
  watermarkMinBytes: number;
  watermarkLowBytes: number;
  watermarkHighBytes: number;
  counters: HostCounters;
  residentBytesByCause: ResidentBytesByCause;
}

/** True if a PMD maps the block (anon or shmem THP) or it lies in a hugetlb page. */
export function hostBlockHuge(ram: GuestRam, blockIndex: number): boolean {
  const state = ram.blockState[blockIndex];
  return state === BlockState.ThpPmd || state === BlockState.Hugetlb;
}

function countBlocks(ram: GuestRam): HostBlockCounts {
  const counts: HostBlockCounts = { full: 0, partial: 0, empty: 0, huge: 0 };
  for (let block = 0; block < ram.blockCount; block++) {
    const resident = ram.residentCount[block]!;
    if (resident === 0) counts.empty++;
    else if (resident === blockPages(ram, block)) counts.full++;
    else counts.partial++;
    if (hostBlockHuge(ram, block)) counts.huge++;
  }
  return counts;
}

function residentByCause(ram: GuestRam): ResidentBytesByCause {
  const pages = [0, 0, 0, 0];
  let touched = 0;
  for (let block = 0; block < ram.blockCount; block++) {
    const resident = ram.residentCount[block]!;
    if (resident === 0) continue;
    let residentTouched = 0;
    const base = block * WORDS_PER_BLOCK;
    for (let w = base; w < base + WORDS_PER_BLOCK; w++) {
      residentTouched += popcount32(ram.resident[w]! & ram.touched[w]!);
    }
    touched += residentTouched;
    const cause = ram.blockCause[block]!;
    assert(
      cause !== FillCause.None || resident === residentTouched,
      () => `block ${block}: untouched resident pages without a fill cause`,
    );
    pages[cause]! += resident - residentTouched;
  }
  return {
    guestTouched: touched * PAGE_SIZE,
    thpFault: pages[FillCause.ThpFault]! * PAGE_SIZE,
    collapse: pages[FillCause.Collapse]! * PAGE_SIZE,
    hugetlbFault: pages[FillCause.HugetlbFault]! * PAGE_SIZE,
  };
}

interface HugeCounts {
  anonPmd: number;
  shmemThp: number;
  shmemPmd: number;
  queued: number;
  queuedPartial: number;
}

function countHuge(ram: GuestRam): HugeCounts {
  const counts: HugeCounts = { anonPmd: 0, shmemThp: 0, shmemPmd: 0, queued: 0, queuedPartial: 0 };
  const anon = ram.config.backing === "anon";
  const shmem = !anon && ram.config.backing !== "hugetlbfs";
  for (let block = 0; block < ram.blockCount; block++) {
    const state = ram.blockState[block]!;
    const flags = ram.thpFlags[block]!;
    if (anon && state === BlockState.ThpPmd) counts.anonPmd++;
    if (shmem && state >= BlockState.ThpPmd && state <= BlockState.ThpUnmapped) counts.shmemThp++;
    if (shmem && state === BlockState.ThpPmd) counts.shmemPmd++;
    if ((flags & THP_QUEUED) !== 0) counts.queued++;
    if ((flags & THP_QUEUED) !== 0 && (flags & THP_PARTIALLY_MAPPED) !== 0) counts.queuedPartial++;
  }
  return counts;
}

/** Everything the host would report about guest RAM now, as plain numbers. */
export function hostSnapshot(ram: GuestRam): HostSnapshot {
  const huge = countHuge(ram);
  const { watermarks } = ram;
  return {
    residentBytes: ram.residentPages * PAGE_SIZE,
    allocatedBytes: ram.allocatedPages * PAGE_SIZE,
    deferredSplitBytes: huge.queued * HPAGE_PMD_SIZE,
    deferredSplitPartialBytes: huge.queuedPartial * HPAGE_PMD_SIZE,
    blocks: countBlocks(ram),
    anonHugePagesBytes: huge.anonPmd * HPAGE_PMD_SIZE,
    shmemHugePagesBytes: huge.shmemThp * HPAGE_PMD_SIZE,
    shmemPmdMappedBytes: huge.shmemPmd * HPAGE_PMD_SIZE,
    hugetlbPagesTotal: ram.hugetlbPagesTotal,
    hugetlbPagesFree: ram.hugetlbPagesFree,
    hugetlbPageBytes: ram.hugetlbPagePages * PAGE_SIZE,
    hostMemTotalBytes: ram.config.memoryBytes,
    hostMemFreeBytes: hostFreePages(ram) * PAGE_SIZE,
    otherUsedBytes: ram.otherUsedBytes,
    watermarkMinBytes: watermarks.minPages * PAGE_SIZE,
    watermarkLowBytes: watermarks.lowPages * PAGE_SIZE,
    watermarkHighBytes: watermarks.highPages * PAGE_SIZE,
    counters: { ...ram.counters },
    residentBytesByCause: residentByCause(ram),
  };
}
