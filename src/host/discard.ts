// QEMU's ram_block_discard_range (system/physmem.c; exec.c in 2020, softmmu/physmem.c later):
// the one call through which the balloon, free page reporting and virtio-mem give guest RAM
// back to the host (semantics 6.3).
//
// Theory of operation. The request must start on a RAMBlock page boundary (qemu_ram_pagesize:
// 4 KiB except hugetlbfs), stay inside the block and have a length that is a multiple of the
// page size; otherwise QEMU prints an error and returns -1 with nothing done. Then:
//   need_fallocate = rb->fd != -1            memfd, tmpfs-huge, hugetlbfs
//   need_madvise   = page size == host page   anon, memfd, tmpfs-huge
// so memfd and tmpfs get both calls, anon only MADV_DONTNEED and hugetlbfs only the punch.
// fallocate(PUNCH_HOLE | KEEP_SIZE) runs first (shmem_punch.ts, hugetlbfs.ts); MADV_DONTNEED
// second (zap.ts). A length of 0 makes fallocate fail with EINVAL; madvise accepts it.
// Discarded pages read as zero afterwards, so their touched bits are cleared.
// With discards inhibited (ram_block_discard_disable(), vfio: semantics 6.5) the device
// acknowledges the request and ignores it before it reaches this function; the model counts it
// here, as discardsIgnored, so that callers need not know.
//
// Left out: MADV_REMOVE for shared anonymous RAM, MAP_PRIVATE file mappings, fd_offset,
// guest_memfd, read-only files, and postcopy's userfaultfd.

import { PAGE_SIZE } from "../core/limits.ts";
import { clearTouched, type GuestRam } from "./guest_ram.ts";
import { backingHasFd, ramBlockPageBytes } from "./host_config.ts";
import { hugetlbfsPunchHole } from "./hugetlbfs.ts";
import { shmemPunchHole } from "./shmem_punch.ts";
import { zapPageRange } from "./zap.ts";

export type DiscardResult =
  | {
      readonly kind: "discarded";
      /** Host memory returned by this call (allocated bytes before minus after). */
      readonly freedBytes: number;
      /** Drop in QEMU's resident set (smaps Rss). */
      readonly unmappedBytes: number;
    }
  | { readonly kind: "ignored" }
  | { readonly kind: "error"; readonly message: string };

function refuse(ram: GuestRam, message: string): DiscardResult {
  ram.counters.discardErrors++;
  return { kind: "error", message: `ram_block_discard_range: ${message}` };
}

/** QEMU's argument checks, in its order: true when the range is acceptable (the hot path). */
function rangeAcceptable(ram: GuestRam, offsetBytes: number, lengthBytes: number): boolean {
  const pageBytes = ramBlockPageBytes(ram.config);
  return (
    Number.isSafeInteger(offsetBytes) &&
    offsetBytes >= 0 &&
    offsetBytes % pageBytes === 0 &&
    Number.isSafeInteger(lengthBytes) &&
    lengthBytes >= 0 &&
    offsetBytes + lengthBytes <= ram.pageCount * PAGE_SIZE &&
    lengthBytes % pageBytes === 0
  );
}

/** The error text of a refused range, in QEMU's order (kept off the hot path). */
function rangeProblem(ram: GuestRam, offsetBytes: number, lengthBytes: number): string {
  const pageBytes = ramBlockPageBytes(ram.config);
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes % pageBytes !== 0) {
    return `Unaligned start address: ${offsetBytes}`;
  }
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
    return `Bad length: ${lengthBytes}`;
  }
  if (offsetBytes + lengthBytes > ram.pageCount * PAGE_SIZE) {
    return `Overrun block (${offsetBytes}/${lengthBytes}/${ram.pageCount * PAGE_SIZE})`;
  }
  return `Unaligned length: ${lengthBytes}`;
}

/**
 * Models ram_block_discard_range(rb, offsetBytes, lengthBytes) on the guest RAM block, with the
 * device's inhibition check in front. Never throws for a bad request: it returns an error.
 */
export function ramBlockDiscardRange(
  ram: GuestRam,
  offsetBytes: number,
  lengthBytes: number,
): DiscardResult {
  if (ram.config.discardInhibited) {
    ram.counters.discardsIgnored++;
    return { kind: "ignored" };
  }
  if (!rangeAcceptable(ram, offsetBytes, lengthBytes)) {
    return refuse(ram, rangeProblem(ram, offsetBytes, lengthBytes));
  }
  const allocatedBefore = ram.allocatedPages;
  const residentBefore = ram.residentPages;
  const first = offsetBytes / PAGE_SIZE;
  const end = first + lengthBytes / PAGE_SIZE;
  if (backingHasFd(ram.config)) {
    ram.counters.fallocate++;
    if (lengthBytes === 0) return refuse(ram, "Failed to fallocate (EINVAL: len 0)");
    if (ram.config.backing === "hugetlbfs") hugetlbfsPunchHole(ram, first, end);
    else shmemPunchHole(ram, first, end);
  }
  if (ramBlockPageBytes(ram.config) === PAGE_SIZE) {
    ram.counters.madvise++;
    zapPageRange(ram, first, end, true);
  }
  clearTouched(ram, first, end);
  return {
    kind: "discarded",
    freedBytes: (allocatedBefore - ram.allocatedPages) * PAGE_SIZE,
    unmappedBytes: (residentBefore - ram.residentPages) * PAGE_SIZE,
  };
}
