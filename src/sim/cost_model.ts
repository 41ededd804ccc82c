// The cost model: simulated time of the work a balloon operation does, from counts of that work.
//
// Theory of operation. The model counts what happens (guest allocations and pages, pages zeroed,
// virtqueue requests and entries, host syscalls, host pages freed and faulted, compaction
// moves); time is a weighted sum of those counts with the named constants below, added to the
// simulated clock by the runner. Nothing here reads the wall clock. Each constant says what it
// stands for and where its value comes from; the calibration scenarios that check them are in
// test/sim/cost_model.test.ts and in the README:
//
// 1. Liang Li / Wei Wang, 2017 (benchmarks.md): inflating 7 GB of an idle 8 GB guest with 4 KiB
//    PFNs took about 4126 ms: allocation 6.5 %, sending PFNs 68.3 %, address translation 6.1 %,
//    madvise 19 %, over 1.835 M pages in 7168 requests of 256 PFNs. Per page: allocation
//    0.146 us, address translation 0.137 us, madvise of a page the guest never touched
//    0.427 us; sending: 50 us per request (a kick, the exit, the host's notification) plus
//    1.34 us per PFN entry the host pops and looks up (2818 ms - 7168 * 50 us, over 1.835 M).
//    Sending ranges instead (the same 4 KiB allocations, contiguous runs merged) took about
//    500 ms: allocation plus one request per 256 pages and few entries.
// 2. HyperAlloc (EuroSys'25, benchmarks.md): reclaiming touched memory of a 20 GiB VM at
//    0.92 GiB/s with the 4 KiB balloon (4.2 us per page: the PFN path above plus the host
//    zapping and freeing a resident page, about 2 us with its TLB flush), 136.5 GiB/s with
//    2 MiB pages (14.3 us per 2 MiB: one allocation, one entry, one zap of a PMD-mapped THP),
//    34.7 GiB/s with virtio-mem (56 us per 2 MiB block: isolating and offlining the block's
//    pages in the guest, about 0.08 us per page, plus one request and one discard).

import type { WorkCounts } from "../virtio/work_counts.ts";

/** Guest: one call into the page allocator (fast path, including the pcp/buddy work). */
export const GUEST_ALLOC_CALL_NS = 146;
/** Guest: per extra 4 KiB page of a high-order block (struct page preparation, split_page). */
export const GUEST_ALLOC_PAGE_NS = 5;
/** Guest: zeroing 4 KiB (init_on_alloc, clear_page with rep stosb, ~16 GB/s). */
export const GUEST_ZERO_PAGE_NS = 250;
/** Guest: one page moved by compaction (isolate, allocate the target, copy 4 KiB, remap). */
export const GUEST_MIGRATE_PAGE_NS = 1000;
/** Guest: one page isolated for virtio-mem unplug or free page reporting. */
export const GUEST_ISOLATE_PAGE_NS = 80;
/** Virtqueue: one request's round trip (kick, VM exit, host notification, used-ring wait). */
export const VIRTQUEUE_REQUEST_NS = 50_000;
/** Host (QEMU): popping and looking up one entry of a request (PFN or range). */
export const VIRTQUEUE_ENTRY_NS = 1340;
/** Host (QEMU): one guest-physical to RAMBlock translation (memory_region_find), per entry. */
export const HOST_TRANSLATE_NS = 137;
/** Host: one madvise or fallocate call on memory that is not resident. */
export const HOST_SYSCALL_NS = 427;
/** Host: zapping and freeing one resident 4 KiB page (PTE clear, TLB flush, page free). */
export const HOST_FREE_PAGE_4K_NS = 2000;
/** Host: zapping and freeing one PMD-mapped THP or hugetlb page (one PMD, one TLB flush). */
export const HOST_FREE_PAGE_2M_NS = 12_000;
/** Host: a 4 KiB page fault (EPT violation, allocation, zeroing 4 KiB). */
export const HOST_FAULT_4K_NS = 1500;
/** Host: a 2 MiB THP fault (allocation and zeroing 2 MiB at ~20 GB/s). */
export const HOST_FAULT_2M_NS = 100_000;
/** Host: a khugepaged collapse (allocate 2 MiB, copy 512 pages, install the PMD). */
export const HOST_COLLAPSE_NS = 200_000;

/** Simulated time of the work, in nanoseconds (a weighted sum; no wall clock). */
export function workTimeNs(work: WorkCounts): number {
  const extraPages = Math.max(0, work.guestAllocPages - work.guestAllocCalls);
  return (
    work.guestAllocCalls * GUEST_ALLOC_CALL_NS +
    extraPages * GUEST_ALLOC_PAGE_NS +
    work.guestZeroPages * GUEST_ZERO_PAGE_NS +
    work.guestMigratePages * GUEST_MIGRATE_PAGE_NS +
    work.guestIsolatePages * GUEST_ISOLATE_PAGE_NS +
    work.virtqueueRequests * VIRTQUEUE_REQUEST_NS +
    work.virtqueueEntries * VIRTQUEUE_ENTRY_NS +
    work.hostTranslations * HOST_TRANSLATE_NS +
    work.hostSyscalls * HOST_SYSCALL_NS +
    work.hostFreedPages4k * HOST_FREE_PAGE_4K_NS +
    work.hostFreedPages2m * HOST_FREE_PAGE_2M_NS +
    work.hostFaults4k * HOST_FAULT_4K_NS +
    work.hostFaults2m * HOST_FAULT_2M_NS +
    work.hostCollapses * HOST_COLLAPSE_NS
  );
}
