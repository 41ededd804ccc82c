// The cost model: simulated time of the work a balloon operation does, from counts of that work.
//
// Theory of operation. The model counts what happens (guest allocation attempts and pages, pages
// zeroed, reclaimed, scanned and moved, virtqueue requests and entries, host syscalls, PTEs and
// THPs the host zaps and frees, TLB flushes, host faults); time is a weighted sum of those counts
// with the named constants below, added to the simulated clock by the runner. Nothing here reads
// the wall clock. Each constant says what it stands for and where its value comes from; the
// calibration scenarios that check them are in test/sim/cost_model.test.ts.
//
// Derivation (benchmarks.md, "Published speeds of reclaim mechanisms"):
// 1. Liang Li / Wei Wang, 2017: inflating 7 GB of an idle 8 GB guest with 4 KiB PFNs took about
//    4126 ms: allocation 6.5 %, sending PFNs 68.3 %, address translation 6.1 %, madvise 19 %,
//    over 1.835 M pages (7 GiB) in 7168 requests of 256 PFNs. Per page: allocation 0.146 us,
//    address translation 0.137 us, madvise of a page the guest never touched 0.427 us; sending:
//    50 us per request (a kick, the exit, the host's notification) plus 1.34 us per PFN entry
//    the host pops and looks up (2818 ms - 7168 * 50 us, over 1.835 M). Sending ranges instead
//    (the same 4 KiB allocations, contiguous runs merged) took about 500 ms: allocation plus one
//    request per 256 pages and few entries.
// 2. HyperAlloc (EuroSys'25), a 20 GiB VM shrunk to 2 GiB, "reclaim untouched" and "reclaim"
//    (touched) columns. 4 KiB balloon: untouched 1.68 GiB/s = 2.27 us per page, which is the
//    PFN path of 1. (0.146 + 1.34 + 0.137 + 0.427 + 50/256 = 2.245 us) with nothing to zap;
//    touched 0.92 GiB/s = 4.15 us per page, so zapping and freeing one resident page with its
//    own madvise costs about 1.9 us: a TLB flush (1.65 us, most of it) and the PTE and page
//    itself (0.25 us). 2 MiB balloon: untouched 289.3 GiB/s = 6.75 us per 2 MiB, of which
//    2.1 us are the path above without its allocation, so the guest's order-9 allocation
//    costs about 4.65 us (0.146 us plus 511 pages at 8.8 ns); touched 136.5 GiB/s = 14.3 us, so
//    zapping and freeing a PMD-mapped THP costs 7.55 us: one TLB flush and 5.9 us for the PMD
//    and the compound page. virtio-mem (34.7 GiB/s, 56 us per 2 MiB block) is modelled elsewhere.
//
// Changes (2026-11, calibration against both sources): the resident-page zap was one constant
// of 2 us per 4 KiB; it is now a TLB flush per discard call that unmapped something plus
// 0.25 us per PTE, so a range discard of 512 PTE-mapped pages costs one flush, not 512. The
// THP free went from 12 us to 5.9 us plus its flush and the per-page cost of an order-9
// allocation from 5 to 9 ns, both from HyperAlloc's untouched column (before, the constants
// summed to 16.8 us per 2 MiB against the 14.3 us the derivation asked for). Reclaim,
// compaction scanning, PMD splits and page reporting's isolation are new counts with estimated
// constants: no source publishes them, they do not enter the calibration scenarios, and they
// are marked "estimate" below.

import type { WorkCounts } from "../virtio/work_counts.ts";

/** Guest: one call into the page allocator, failed or not (2017: 6.5 % of 4126 ms / 1.835 M). */
export const GUEST_ALLOC_CALL_NS = 146;
/** Guest: per extra 4 KiB page of a high-order block (HyperAlloc 2 MiB untouched: 8.8 ns). */
export const GUEST_ALLOC_PAGE_NS = 9;
/** Guest: zeroing 4 KiB (init_on_alloc, clear_page with rep stosb, ~16 GB/s). */
export const GUEST_ZERO_PAGE_NS = 250;
/** Guest: one page moved by compaction (isolate, allocate the target, copy 4 KiB, remap). */
export const GUEST_MIGRATE_PAGE_NS = 1000;
/** Guest: one page isolated for virtio-mem unplug (offlining checks every page). */
export const GUEST_ISOLATE_PAGE_NS = 80;
/**
 * Guest: one free block page reporting isolates and puts back (two free-list operations under
 * the zone lock, about two allocator calls; estimate).
 */
export const GUEST_REPORT_BLOCK_NS = 2 * GUEST_ALLOC_CALL_NS;
/**
 * Guest: one clean page-cache page reclaimed (LRU isolation, unmapping from the file's xarray,
 * freeing: a few allocator calls' worth of work; estimate).
 */
export const GUEST_RECLAIM_PAGE_NS = 500;
/** Guest: one pfn compaction's migrate or free scanner looks at (a struct page read; estimate). */
export const GUEST_COMPACT_SCAN_PAGE_NS = 20;
/** Virtqueue: one request's round trip (kick, VM exit, host notification, used-ring wait). */
export const VIRTQUEUE_REQUEST_NS = 50_000;
/** Host (QEMU): popping and looking up one entry of a request (PFN or range). */
export const VIRTQUEUE_ENTRY_NS = 1340;
/** Host (QEMU): one guest-physical to RAMBlock translation (memory_region_find), per entry. */
export const HOST_TRANSLATE_NS = 137;
/** Host: one madvise or fallocate call, before any page it zaps (2017: 19 % / 1.835 M). */
export const HOST_SYSCALL_NS = 427;
/** Host: the TLB flush of a discard call that unmapped something (HyperAlloc 4 KiB, above). */
export const HOST_TLB_FLUSH_NS = 1650;
/** Host: zapping one resident 4 KiB PTE and freeing its page, within a call (HyperAlloc). */
export const HOST_FREE_PAGE_4K_NS = 250;
/** Host: freeing one 2 MiB THP or hugetlb page, its PMD included, flush apart (HyperAlloc). */
export const HOST_FREE_PAGE_2M_NS = 5900;
/** Host: splitting a PMD into 512 PTEs (__split_huge_pmd: 512 PTEs and rmap counts; estimate). */
export const HOST_SPLIT_PMD_NS = 4000;
/** Host: a 4 KiB page fault (EPT violation, allocation, zeroing 4 KiB). */
export const HOST_FAULT_4K_NS = 1500;
/** Host: a 2 MiB THP fault (allocation and zeroing 2 MiB at ~20 GB/s). */
export const HOST_FAULT_2M_NS = 100_000;
/** Host: a khugepaged collapse (allocate 2 MiB, copy 512 pages, install the PMD). */
export const HOST_COLLAPSE_NS = 200_000;

/** Guest-side time of the work, in nanoseconds. */
function guestTimeNs(work: WorkCounts): number {
  const extraPages = Math.max(0, work.guestAllocPages - work.guestAllocCalls);
  return (
    (work.guestAllocCalls + work.guestAllocFailures) * GUEST_ALLOC_CALL_NS +
    extraPages * GUEST_ALLOC_PAGE_NS +
    work.guestZeroPages * GUEST_ZERO_PAGE_NS +
    work.guestMigratePages * GUEST_MIGRATE_PAGE_NS +
    work.guestIsolatePages * GUEST_ISOLATE_PAGE_NS +
    work.guestReportBlocks * GUEST_REPORT_BLOCK_NS +
    work.guestReclaimPages * GUEST_RECLAIM_PAGE_NS +
    work.guestCompactScanPages * GUEST_COMPACT_SCAN_PAGE_NS
  );
}

/** Virtqueue and host-side time of the work, in nanoseconds. */
function hostTimeNs(work: WorkCounts): number {
  return (
    work.virtqueueRequests * VIRTQUEUE_REQUEST_NS +
    work.virtqueueEntries * VIRTQUEUE_ENTRY_NS +
    work.hostTranslations * HOST_TRANSLATE_NS +
    work.hostSyscalls * HOST_SYSCALL_NS +
    work.hostTlbFlushes * HOST_TLB_FLUSH_NS +
    work.hostFreedPages4k * HOST_FREE_PAGE_4K_NS +
    work.hostFreedPages2m * HOST_FREE_PAGE_2M_NS +
    work.hostSplitPmds * HOST_SPLIT_PMD_NS +
    work.hostFaults4k * HOST_FAULT_4K_NS +
    work.hostFaults2m * HOST_FAULT_2M_NS +
    work.hostCollapses * HOST_COLLAPSE_NS
  );
}

/** Simulated time of the work, in nanoseconds (a weighted sum; no wall clock). */
export function workTimeNs(work: WorkCounts): number {
  return guestTimeNs(work) + hostTimeNs(work);
}
