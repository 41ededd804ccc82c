// The cost model: simulated time of the work a balloon operation does, from counts of that work.
//
// Theory of operation. The model counts what happens (guest allocation attempts and pages, pages
// zeroed, reclaimed, scanned, moved, freed by deflation and onlined by hotplug, virtqueue
// requests and entries, host syscalls and hints, PTEs and THPs the host zaps and frees, TLB
// flushes, host faults); time is a weighted sum of those counts
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
// 3. HyperAlloc, "return": the VM grows back from 2 to 20 GiB. Its speeds are 20 GiB over the
//    time to return 18 GiB (hyperalloc-bench inflate/plot.py), so a page costs that time over
//    18 GiB. QEMU 7.2-8.2's deflate queue (hw/virtio/virtio-balloon.c,
//    virtio_balloon_handle_output on the dvq) pops each PFN, finds its region
//    (memory_region_find), and balloon_deflate_page only madvise(MADV_WILLNEED)s the host page:
//    no pbp, no discard, nothing faulted. The guest's leak_balloon dequeues up to 256 pages,
//    tells the host, then release_pages_balloon frees each. 2 MiB balloon: grow 0.061 s =
//    6.62 us per 2 MiB, one entry each; the entry path (1.34 + 0.137 + 50/256 = 1.67 us) plus
//    freeing the order-9 block at what allocating it costs (0.146 + 511 * 0.009 = 4.75 us)
//    leaves 0.2 us for the WILLNEED hint, about half the 0.427 us madvise of 1. (no MMU
//    notifier, no TLB gather, nothing to zap). 4 KiB balloon: grow 8.54 s = 1.81 us per page;
//    the same constants give 2.02 us (1.67 + 0.146 + 0.2), 2.10 GiB/s against 2.31: the 2017
//    entry cost is about 10 % high for this machine, and stays as inflation's calibration
//    needs it. virtio-mem: grow 0.197 s over 144 memory blocks of 128 MiB = 1.37 ms each: one
//    PLUG request (50 + 1.34 us), the block's memmap (an order-9 allocation, 4.75 us) and
//    32768 pages brought online at 40 ns each (memmap_init_range, __free_pages_core).
// 4. HyperAlloc, "return + install": after the return a guest module allocates 19 GiB in
//    4 KiB pages (alloc_pages_node, GFP_HIGHUSER_MOVABLE; init_on_alloc zeroes each page), timed
//    on its own; the column is 1 / (1 / return + 1 / install), so the install alone runs at
//    1.00 GiB/s after the 4 KiB balloon, 4.31 after the 2 MiB one and 4.21 after virtio-mem:
//    3.80, 0.885 and 0.906 us per page. Its second run, on memory already resident (touch2),
//    takes 0.22-0.5 us per page, about the allocation of 1. and the zeroing (0.146 + 0.25 us);
//    the rest is the host's fault. The 4 KiB balloon leaves the returned memory in PTE tables
//    (MADV_DONTNEED split the PMDs and does not free page tables), so every page is a 4 KiB
//    fault: 3.4 us; the 2 MiB balloon and virtio-mem freed whole THPs, so a THP fault per 512
//    pages: 250 and 261 us (2 MiB zeroed at about 8.5 GB/s).
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
//
// Changes (2026-11, deflation and faults): a deflate was charged the inflate path's 0.427 us
// madvise per PFN and nothing in the guest; the hint is now its own count and constant
// (hostHintSyscalls, 0.2 us), the guest's frees are counted (guestFreeCalls/Pages, priced as
// the allocation they undo) and virtio-mem plugs charge the pages they bring online
// (guestOnlinePages), all from derivation 3. The host fault constants were estimates (1.5 us
// per 4 KiB, 100 us per 2 MiB at ~20 GB/s); they are now 3.4 and 250 us from derivation 4.

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
/**
 * Guest: one block deflation gives back (balloon_page_dequeue, adjust_managed_page_count,
 * put_page to the allocator): the mirror of an allocation and its enqueue (HyperAlloc Return,
 * derivation 3 above).
 */
export const GUEST_FREE_CALL_NS = GUEST_ALLOC_CALL_NS;
/** Guest: per extra 4 KiB page of a high-order block freed (free_pages_prepare; derivation 3). */
export const GUEST_FREE_PAGE_NS = GUEST_ALLOC_PAGE_NS;
/**
 * Guest: one page hot-plugged memory brings online (memmap_init_range's struct page, then
 * __free_pages_core's per-page loop; HyperAlloc virtio-mem Return, derivation 3).
 */
export const GUEST_ONLINE_PAGE_NS = 40;
/** Virtqueue: one request's round trip (kick, VM exit, host notification, used-ring wait). */
export const VIRTQUEUE_REQUEST_NS = 50_000;
/** Host (QEMU): popping and looking up one entry of a request (PFN or range). */
export const VIRTQUEUE_ENTRY_NS = 1340;
/** Host (QEMU): one guest-physical to RAMBlock translation (memory_region_find), per entry. */
export const HOST_TRANSLATE_NS = 137;
/** Host: one madvise or fallocate call, before any page it zaps (2017: 19 % / 1.835 M). */
export const HOST_SYSCALL_NS = 427;
/**
 * Host: one madvise(MADV_WILLNEED) of deflate on anonymous memory (a one-PTE swap-in walk and
 * lru_add_drain; no MMU notifier, no TLB gather, nothing zapped; HyperAlloc 2 MiB Return).
 */
export const HOST_HINT_SYSCALL_NS = 200;
/** Host: the TLB flush of a discard call that unmapped something (HyperAlloc 4 KiB, above). */
export const HOST_TLB_FLUSH_NS = 1650;
/** Host: zapping one resident 4 KiB PTE and freeing its page, within a call (HyperAlloc). */
export const HOST_FREE_PAGE_4K_NS = 250;
/** Host: freeing one 2 MiB THP or hugetlb page, its PMD included, flush apart (HyperAlloc). */
export const HOST_FREE_PAGE_2M_NS = 5900;
/** Host: splitting a PMD into 512 PTEs (__split_huge_pmd: 512 PTEs and rmap counts; estimate). */
export const HOST_SPLIT_PMD_NS = 4000;
/**
 * Host: a 4 KiB page fault (EPT violation and exit, allocation, zeroing 4 KiB, the PTE and
 * the EPT entry; HyperAlloc 4 KiB "Return + install", derivation 4).
 */
export const HOST_FAULT_4K_NS = 3400;
/**
 * Host: a 2 MiB THP fault (allocation, zeroing 2 MiB at ~8.5 GB/s, the PMD; HyperAlloc 2 MiB
 * balloon and virtio-mem "Return + install", derivation 4).
 */
export const HOST_FAULT_2M_NS = 250_000;
/** Host: a khugepaged collapse (allocate 2 MiB, copy 512 pages, install the PMD). */
export const HOST_COLLAPSE_NS = 200_000;

/** Guest-side time of the work, in nanoseconds. */
function guestTimeNs(work: WorkCounts): number {
  const extraPages = Math.max(0, work.guestAllocPages - work.guestAllocCalls);
  const extraFreed = Math.max(0, work.guestFreePages - work.guestFreeCalls);
  return (
    (work.guestAllocCalls + work.guestAllocFailures) * GUEST_ALLOC_CALL_NS +
    extraPages * GUEST_ALLOC_PAGE_NS +
    work.guestZeroPages * GUEST_ZERO_PAGE_NS +
    work.guestMigratePages * GUEST_MIGRATE_PAGE_NS +
    work.guestIsolatePages * GUEST_ISOLATE_PAGE_NS +
    work.guestReportBlocks * GUEST_REPORT_BLOCK_NS +
    work.guestReclaimPages * GUEST_RECLAIM_PAGE_NS +
    work.guestCompactScanPages * GUEST_COMPACT_SCAN_PAGE_NS +
    work.guestFreeCalls * GUEST_FREE_CALL_NS +
    extraFreed * GUEST_FREE_PAGE_NS +
    work.guestOnlinePages * GUEST_ONLINE_PAGE_NS
  );
}

/** Virtqueue and host-side time of the work, in nanoseconds. */
function hostTimeNs(work: WorkCounts): number {
  return (
    work.virtqueueRequests * VIRTQUEUE_REQUEST_NS +
    work.virtqueueEntries * VIRTQUEUE_ENTRY_NS +
    work.hostTranslations * HOST_TRANSLATE_NS +
    work.hostSyscalls * HOST_SYSCALL_NS +
    work.hostHintSyscalls * HOST_HINT_SYSCALL_NS +
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
