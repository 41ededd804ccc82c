// The host's view of QEMU's guest RAM: one RAMBlock of `pageCount` 4 KiB pages at RAMBlock
// offsets 0..pageCount-1, and what the host kernel holds behind each of them.
//
// Theory of operation. QEMU maps anonymous guest RAM 2 MiB-aligned (QEMU_VMALLOC_ALIGN in
// qemu_anon_ram_alloc, util/oslib-posix.c), so RAMBlock block b (offsets 512b..512b+511) is
// exactly one host PMD. For fd-backed RAM, file_ram_alloc (system/physmem.c) only asks for the
// fd's page size; the model assumes the same 2 MiB alignment there (a misaligned shmem mapping
// would map its THPs with PTEs, never a PMD: not modelled). The state is struct-of-arrays sized
// at creation and never grown:
// - three page bitmaps (bitmap.ts), 3 bits per 4 KiB page (0.375 byte; 96 MiB for 1 TiB):
//   `resident`: the page is mapped in QEMU's page tables (what smaps Rss counts);
//   `touched`: the guest wrote it since it was last discarded (its content is not zero);
//   `own`: the offset holds a 4 KiB page of its own (an anon page, or a 4 KiB shmem page-cache
//   page), as opposed to a subpage of the block's compound page;
// - per 2 MiB block (15 bytes): BlockState, the FillCause of its last compound page, the
//   deferred split flags and queue links, and the counts of resident and own pages.
// A block's allocated memory is exact: HPAGE_PMD_NR pages if it holds a compound page (an anon
// or shmem THP, or a hugetlb page), plus its own pages. Anon: own ⇒ resident. Shmem: resident
// pages are own pages or subpages of the THP; own pages may be unmapped (still in the page
// cache). The global residentPages and allocatedPages are kept in step by the mutators below,
// which are the only code that changes the bitmaps' counts; host_checker.ts recomputes them.
//
// Left out: swap, the huge zero page (the guest writes, so read faults do not happen), NUMA,
// memcg, KSM, and the rest of QEMU's address space (only the RAMBlock is modelled).

import { assert } from "../core/assert.ts";
import { HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE } from "../core/limits.ts";
import { createPrng, type Prng } from "../core/prng.ts";
import {
  clearRange,
  createBitmap,
  popcount32,
  setRange,
  WORDS_PER_BLOCK,
  wordMask,
} from "./bitmap.ts";
import { type HostConfig, ramBlockPageBytes } from "./host_config.ts";
import { type HostKernelRules, hostKernelRules } from "./host_kernel.ts";
import { type HostWatermarks, hostWatermarks } from "./host_memory.ts";

/** What maps and backs one 2 MiB block (one host PMD). */
export enum BlockState {
  /** pmd_none: no page table. Shmem may still cache (unmapped) 4 KiB pages here. */
  None = 0,
  /** A PTE table of 4 KiB pages; no compound page (anon pages or shmem page-cache pages). */
  Pte = 1,
  /** A PMD maps a whole compound THP (anon: AnonHugePages; shmem: ShmemPmdMapped). */
  ThpPmd = 2,
  /**
   * The compound THP is still whole and held but mapped by PTEs: anon after __split_huge_pmd
   * (then it is on the deferred split queue); shmem when its range already had a PTE table.
   */
  ThpPte = 3,
  /** Shmem only: the THP is in the page cache but not mapped (its PMD was zapped). */
  ThpUnmapped = 4,
  /** Hugetlbfs only: the block lies in a hugetlb page taken from the pool. */
  Hugetlb = 5,
}
export const BLOCK_STATE_NAMES: readonly string[] = [
  "None",
  "Pte",
  "ThpPmd",
  "ThpPte",
  "ThpUnmapped",
  "Hugetlb",
];

/** What filled the block's compound page: resident pages the guest never wrote come from it. */
export enum FillCause {
  None = 0,
  ThpFault = 1,
  Collapse = 2,
  HugetlbFault = 3,
}

/** The block's THP is on the deferred split queue (!list_empty(&folio->_deferred_list)). */
export const THP_QUEUED = 0x01;
/** PG_partially_mapped (v6.12); before 6.12 every queued THP is partially mapped. */
export const THP_PARTIALLY_MAPPED = 0x02;
/** The end of a queue link. */
export const NO_BLOCK = -1;

/** Event counters, named after /proc/vmstat where the kernel has one. */
export interface HostCounters {
  /** madvise(MADV_DONTNEED) calls made by ram_block_discard_range. */
  madvise: number;
  /** fallocate(PUNCH_HOLE) calls made by ram_block_discard_range. */
  fallocate: number;
  /** Discard requests refused for alignment or bounds (ram_block_discard_range returns -1). */
  discardErrors: number;
  /** Discard requests acknowledged and ignored because discards are inhibited. */
  discardsIgnored: number;
  /** 4 KiB pages allocated by faults. */
  faults4k: number;
  /** THPs allocated by faults (thp_fault_alloc, thp_file_alloc). */
  faults2m: number;
  /** Hugetlb pages taken from the pool by faults. */
  faultsHugetlb: number;
  /** Faults that only mapped a page already in the page cache (shmem minor faults). */
  faultsMapped: number;
  /** thp_fault_fallback: an anon THP fault whose allocation failed. */
  thpFaultFallback: number;
  /** thp_file_fallback: a shmem THP allocation that failed at fault. */
  thpFileFallback: number;
  /** thp_collapse_alloc: khugepaged collapses (anon and file). */
  collapses: number;
  /** thp_collapse_alloc_failed. */
  collapseAllocFailed: number;
  /** thp_split_pmd: PMD mappings split (anon) or zapped as part of a split (file). */
  splitPmd: number;
  /** thp_split_page by the deferred split shrinker (anon THPs). */
  splitDeferred: number;
  /** thp_split_page by a partial hole punch (shmem THPs, v5.7+). */
  splitShmem: number;
  /** thp_split_page_failed: shmem splits that failed (extra references). */
  splitShmemFailed: number;
  /** thp_deferred_split_page: THPs that became partially mapped and were queued. */
  deferredSplitPage: number;
  /** Bytes the deferred split shrinker returned to the host. */
  freedByShrinkerBytes: number;
  /** Zero-filled subpages mapped to the shared zero page at split (v6.12+). */
  zeroPagesRemapped: number;
  /** Empty PTE tables freed by MADV_DONTNEED (CONFIG_PT_RECLAIM, v6.14+). */
  ptTablesReclaimed: number;
  /** Runs of the deferred split shrinker (host reclaim and direct reclaim). */
  shrinkerRuns: number;
}

export interface GuestRam {
  readonly config: HostConfig;
  readonly rules: HostKernelRules;
  /** 4 KiB pages in the RAMBlock. */
  readonly pageCount: number;
  /** 2 MiB blocks, the last one possibly partial. */
  readonly blockCount: number;
  /** Blocks that hold all 512 pages: only these can be a THP (transhuge_vma_suitable). */
  readonly fullBlockCount: number;
  /** 4 KiB pages per hugetlb page (512 or 262144); 0 unless the backing is hugetlbfs. */
  readonly hugetlbPagePages: number;
  /** Page bitmaps (see the file comment). */
  readonly resident: Uint32Array;
  readonly touched: Uint32Array;
  readonly own: Uint32Array;
  /** Per block: BlockState. */
  readonly blockState: Uint8Array;
  /** Per block: FillCause of the last compound page that filled it. */
  readonly blockCause: Uint8Array;
  /** Per block: THP_QUEUED | THP_PARTIALLY_MAPPED. */
  readonly thpFlags: Uint8Array;
  /** Per block: resident pages. */
  readonly residentCount: Uint16Array;
  /** Per block: own pages. */
  readonly ownCount: Uint16Array;
  /** Per block: next (younger) block on the deferred split queue, or NO_BLOCK. */
  readonly queueNext: Int32Array;
  /** Per block: previous (older) block on the queue, or NO_BLOCK. */
  readonly queuePrev: Int32Array;
  /** Oldest queued block: deferred_split_scan starts here. */
  splitQueueHead: number;
  /** Youngest queued block: deferred_split_folio appends here (list_add_tail). */
  splitQueueTail: number;
  /** ds_queue->split_queue_len. */
  splitQueueLen: number;
  /** Resident pages in total (the guest's Rss). */
  residentPages: number;
  /** Host pages the guest RAM holds (anon, page cache, or hugetlb pages in use). */
  allocatedPages: number;
  /** Hugetlb pool pages, and those not in use (HugePages_Total / HugePages_Free). */
  readonly hugetlbPagesTotal: number;
  hugetlbPagesFree: number;
  /** Host memory used by everything but guest RAM (set by hostSetPressure). */
  otherUsedBytes: number;
  /** khugepaged's scan cursor: the next block it looks at. */
  khugepagedCursor: number;
  /** Host zone watermarks, fixed at creation. */
  readonly watermarks: HostWatermarks;
  /** Draws failing shmem splits. */
  readonly prng: Prng;
  readonly counters: HostCounters;
}

function zeroCounters(): HostCounters {
  return {
    madvise: 0,
    fallocate: 0,
    discardErrors: 0,
    discardsIgnored: 0,
    faults4k: 0,
    faults2m: 0,
    faultsHugetlb: 0,
    faultsMapped: 0,
    thpFaultFallback: 0,
    thpFileFallback: 0,
    collapses: 0,
    collapseAllocFailed: 0,
    splitPmd: 0,
    splitDeferred: 0,
    splitShmem: 0,
    splitShmemFailed: 0,
    deferredSplitPage: 0,
    freedByShrinkerBytes: 0,
    zeroPagesRemapped: 0,
    ptTablesReclaimed: 0,
    shrinkerRuns: 0,
  };
}

/** Guest RAM of `pageCount` 4 KiB pages, all unpopulated, on a host configured by `config`. */
export function createGuestRam(config: HostConfig, pageCount: number): GuestRam {
  assert(Number.isInteger(pageCount) && pageCount > 0, "pageCount must be a positive integer");
  assert(pageCount < 2 ** 31, "pageCount must fit a signed 32-bit page index");
  const rules = hostKernelRules(config.kernel);
  const blockCount = Math.ceil(pageCount / HPAGE_PMD_NR);
  const pageBytes = ramBlockPageBytes(config);
  const hugetlb = config.backing === "hugetlbfs";
  const hugetlbPagePages = hugetlb ? pageBytes / PAGE_SIZE : 0;
  let hugetlbPagesTotal = 0;
  if (hugetlb) {
    // QEMU refuses a hugetlbfs backend whose size is not a multiple of its page size.
    if (pageCount % hugetlbPagePages !== 0) {
      throw new RangeError(`guest RAM of ${pageCount} pages is not a multiple of ${pageBytes}`);
    }
    hugetlbPagesTotal = pageCount / hugetlbPagePages;
    if (hugetlbPagesTotal * pageBytes > config.memoryBytes) {
      throw new RangeError("the hugetlb pool that covers guest RAM does not fit in host RAM");
    }
  }
  return {
    config,
    rules,
    pageCount,
    blockCount,
    fullBlockCount: Math.floor(pageCount / HPAGE_PMD_NR),
    hugetlbPagePages,
    resident: createBitmap(pageCount),
    touched: createBitmap(pageCount),
    own: createBitmap(pageCount),
    blockState: new Uint8Array(blockCount),
    blockCause: new Uint8Array(blockCount),
    thpFlags: new Uint8Array(blockCount),
    residentCount: new Uint16Array(blockCount),
    ownCount: new Uint16Array(blockCount),
    queueNext: new Int32Array(blockCount).fill(NO_BLOCK),
    queuePrev: new Int32Array(blockCount).fill(NO_BLOCK),
    splitQueueHead: NO_BLOCK,
    splitQueueTail: NO_BLOCK,
    splitQueueLen: 0,
    residentPages: 0,
    allocatedPages: 0,
    hugetlbPagesTotal,
    hugetlbPagesFree: hugetlbPagesTotal,
    otherUsedBytes: 0,
    khugepagedCursor: 0,
    watermarks: hostWatermarks(config, rules),
    prng: createPrng(config.seed),
    counters: zeroCounters(),
  };
}

export function blockFirstPage(block: number): number {
  return block * HPAGE_PMD_NR;
}

export function blockOfPage(page: number): number {
  return page >>> HPAGE_PMD_ORDER;
}

/** Pages of `block` inside the RAMBlock: 512, or fewer for a partial last block. */
export function blockPages(ram: GuestRam, block: number): number {
  return Math.min(HPAGE_PMD_NR, ram.pageCount - blockFirstPage(block));
}

/** The state holds a whole compound page (THP or hugetlb page) of HPAGE_PMD_NR pages. */
export function stateHoldsCompound(state: BlockState): boolean {
  return state >= BlockState.ThpPmd;
}

/** Host pages the block holds: its compound page, if any, plus its own 4 KiB pages. */
export function blockAllocatedPages(ram: GuestRam, block: number): number {
  const compound = stateHoldsCompound(ram.blockState[block]!) ? HPAGE_PMD_NR : 0;
  return compound + ram.ownCount[block]!;
}

/** Resident subpages of the block's compound page (_mapcount sum of a PTE-mapped THP). */
export function blockSubpagesMapped(ram: GuestRam, block: number): number {
  return ram.residentCount[block]! - countResidentOwn(ram, block);
}

function countResidentOwn(ram: GuestRam, block: number): number {
  let count = 0;
  const base = block * WORDS_PER_BLOCK;
  for (let w = base; w < base + WORDS_PER_BLOCK; w++) {
    count += popcount32(ram.resident[w]! & ram.own[w]!);
  }
  return count;
}

function addResident(ram: GuestRam, block: number, delta: number): void {
  ram.residentCount[block]! += delta;
  ram.residentPages += delta;
}

function addOwn(ram: GuestRam, block: number, delta: number): void {
  ram.ownCount[block]! += delta;
  ram.allocatedPages += delta;
}

/**
 * 4 KiB faults on the non-resident pages of [first, end) in one block: a page with no page of
 * its own gets a new one (do_anonymous_page, or shmem_get_folio allocating a page-cache page);
 * one already in the page cache is only mapped (finish_fault). Counts faults4k / faultsMapped.
 */
export function faultSmallPages(ram: GuestRam, block: number, first: number, end: number): void {
  const { resident, own } = ram;
  let allocated = 0;
  let mapped = 0;
  for (let w = first >>> 5; w <= (end - 1) >>> 5; w++) {
    const missing = wordMask(w, first, end) & ~resident[w]!;
    if (missing === 0) continue;
    const cached = missing & own[w]!;
    resident[w] = resident[w]! | missing;
    own[w] = own[w]! | missing;
    mapped += popcount32(cached);
    allocated += popcount32(missing & ~cached);
  }
  addResident(ram, block, allocated + mapped);
  addOwn(ram, block, allocated);
  ram.counters.faults4k += allocated;
  ram.counters.faultsMapped += mapped;
}

/** Maps the non-resident subpages of the block's compound page in [first, end). */
export function mapSubpages(ram: GuestRam, block: number, first: number, end: number): number {
  const mapped = setRange(ram.resident, first, end);
  addResident(ram, block, mapped);
  return mapped;
}

/** Every page of the block becomes resident (a PMD maps its compound page). */
export function fillBlockResident(ram: GuestRam, block: number): void {
  const first = blockFirstPage(block);
  addResident(ram, block, setRange(ram.resident, first, first + blockPages(ram, block)));
}

/** Clears the resident bits of [first, end) (a file mapping is zapped; pages stay cached). */
export function unmapPages(ram: GuestRam, block: number, first: number, end: number): number {
  const unmapped = clearRange(ram.resident, first, end);
  addResident(ram, block, -unmapped);
  return unmapped;
}

/**
 * Models zap_pte_range on private anon memory for [first, end) of one block: own pages are
 * unmapped and freed; subpages of the compound page are only unmapped. Returns the subpages
 * unmapped (the caller decides between freeing the THP and deferred_split_folio).
 */
export function zapAnonPages(ram: GuestRam, block: number, first: number, end: number): number {
  const { resident, own } = ram;
  let freed = 0;
  let subpages = 0;
  for (let w = first >>> 5; w <= (end - 1) >>> 5; w++) {
    const mapped = wordMask(w, first, end) & resident[w]!;
    if (mapped === 0) continue;
    const owned = mapped & own[w]!;
    resident[w] = resident[w]! & ~mapped;
    own[w] = own[w]! & ~owned;
    freed += popcount32(owned);
    subpages += popcount32(mapped & ~owned);
  }
  addResident(ram, block, -(freed + subpages));
  addOwn(ram, block, -freed);
  return subpages;
}

/** Frees the own (page-cache) pages of [first, end); they must not be mapped any more. */
export function freeOwnPages(ram: GuestRam, block: number, first: number, end: number): number {
  const { resident, own } = ram;
  let freed = 0;
  for (let w = first >>> 5; w <= (end - 1) >>> 5; w++) {
    const owned = wordMask(w, first, end) & own[w]!;
    assert((owned & resident[w]!) === 0, () => `block ${block}: freeing a mapped page`);
    own[w] = own[w]! & ~owned;
    freed += popcount32(owned);
  }
  addOwn(ram, block, -freed);
  return freed;
}

/**
 * The compound page is split into 4 KiB pages that stay allocated: every subpage of the block
 * becomes an own page (shmem: __split_huge_page leaves them in the page cache). The caller
 * drops the compound with dropCompound.
 */
export function subpagesBecomeOwn(ram: GuestRam, block: number): void {
  const first = blockFirstPage(block);
  addOwn(ram, block, setRange(ram.own, first, first + blockPages(ram, block)));
}

/**
 * Models __split_huge_page of a PTE-mapped anon THP for the block: mapped subpages become own
 * 4 KiB pages, except that with `remapZeroPages` (v6.12+) the zero-filled ones (never touched)
 * are mapped to the shared zero page instead, which smaps Rss does not count; they are freed
 * with the unmapped subpages. Returns the pages kept.
 */
export function splitAnonSubpages(ram: GuestRam, block: number, remapZeroPages: boolean): number {
  const { resident, own, touched } = ram;
  let kept = 0;
  let zeroed = 0;
  const base = block * WORDS_PER_BLOCK;
  for (let w = base; w < base + WORDS_PER_BLOCK; w++) {
    const subpages = resident[w]! & ~own[w]!;
    if (subpages === 0) continue;
    const keep = remapZeroPages ? subpages & touched[w]! : subpages;
    own[w] = own[w]! | keep;
    resident[w] = resident[w]! & ~(subpages & ~keep);
    kept += popcount32(keep);
    zeroed += popcount32(subpages & ~keep);
  }
  addOwn(ram, block, kept);
  addResident(ram, block, -zeroed);
  ram.counters.zeroPagesRemapped += zeroed;
  return kept;
}

/** Frees every own page of the block (they must be unmapped first, or mapped by the caller). */
export function dropAllOwn(ram: GuestRam, block: number): number {
  const first = blockFirstPage(block);
  const freed = clearRange(ram.own, first, first + blockPages(ram, block));
  addOwn(ram, block, -freed);
  return freed;
}

/** Clears every resident bit of the block. */
export function clearBlockResident(ram: GuestRam, block: number): number {
  const first = blockFirstPage(block);
  return unmapPages(ram, block, first, first + blockPages(ram, block));
}

/** A compound page of HPAGE_PMD_NR pages now backs the block, in `state`, filled by `cause`. */
export function installCompound(
  ram: GuestRam,
  block: number,
  state: BlockState,
  cause: FillCause,
): void {
  assert(!stateHoldsCompound(ram.blockState[block]!), () => `block ${block} already compound`);
  assert(stateHoldsCompound(state), () => `state ${BLOCK_STATE_NAMES[state]} holds no compound`);
  ram.blockState[block] = state;
  ram.blockCause[block] = cause;
  ram.allocatedPages += HPAGE_PMD_NR;
}

/** The block's compound page is gone (freed or split); the block is now in `state`. */
export function dropCompound(ram: GuestRam, block: number, state: BlockState): void {
  assert(stateHoldsCompound(ram.blockState[block]!), () => `block ${block} holds no compound`);
  assert(ram.thpFlags[block] === 0, () => `block ${block} is still on the split queue`);
  assert(!stateHoldsCompound(state), () => `state ${BLOCK_STATE_NAMES[state]} holds a compound`);
  ram.blockState[block] = state;
  ram.allocatedPages -= HPAGE_PMD_NR;
}

export function setTouched(ram: GuestRam, first: number, end: number): void {
  setRange(ram.touched, first, end);
}

export function clearTouched(ram: GuestRam, first: number, end: number): void {
  clearRange(ram.touched, first, end);
}
