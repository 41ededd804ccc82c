// The kernel's own allocations that exist when userspace starts: slab caches filled while
// booting, vmalloc'ed module and stack pages, page tables, other alloc_pages users, and the
// rootfs the initramfs was unpacked into (tmpfs pages, Shmem). The boot reservations
// (memory_layout.ts) are memblock's; these come from the buddy allocator after
// memblock_free_all, so the model makes them through its own allocator where the kernel's land.
//
// Model rule: fixed figures, measured on Debian 12's 6.1.0-56-cloud-amd64 in a 640 MiB, 1-vCPU
// QEMU pc guest (validate/scenarios/small.yaml, the real side's /proc/meminfo at "booted"). The
// things that scale with guest memory at boot (memmap, per-cpu, hash tables) are memblock
// reservations already; what is left is driven by the modules, devices and rootfs, not by RAM.

import { PAGE_SIZE } from "../core/limits.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { allocKernelMemory } from "./kernel_alloc.ts";
import { writeTmpfsFile } from "./page_cache.ts";

const KiB = 1024;

export type PostBootKind = "unmovable" | "reclaimable" | "shmem";

export interface PostBootPart {
  readonly what: string;
  readonly kind: PostBootKind;
  /** Measured size in KiB. */
  readonly kB: number;
}

/** The measured parts; MemTotal 609552 - MemFree 571116 = 38436 kB in use after boot. */
export const POST_BOOT_PARTS: readonly PostBootPart[] = [
  // meminfo SUnreclaim 6036 kB (kmalloc and other unreclaimable caches).
  { what: "slab-unreclaimable", kind: "unmovable", kB: 6036 },
  // meminfo SReclaimable 9000 kB (dentry, inode caches of the rootfs and sysfs).
  { what: "slab-reclaimable", kind: "reclaimable", kB: 9000 },
  // meminfo VmallocUsed 7260 kB: module text and data, vmap'd stacks (KernelStack 744 kB).
  { what: "vmalloc", kind: "unmovable", kB: 7260 },
  // meminfo PageTables 48 kB.
  { what: "page-tables", kind: "unmovable", kB: 48 },
  // The rest of MemTotal - MemFree, with no meminfo counter (direct alloc_pages users such as
  // ftrace records and virtqueues, pages on per-cpu lists): 38436 - 6036 - 9000 - 7260 - 48
  // - 2952 = 13140 kB.
  { what: "other", kind: "unmovable", kB: 13140 },
  // meminfo Shmem 2952 kB: the initramfs unpacked into rootfs (init/initramfs.c); the initrd
  // itself is boot-written and freed (memory_layout.ts bootWritten), not counted here.
  { what: "rootfs", kind: "shmem", kB: 2952 },
];

/** The default GuestConfig.postBootKernelBytes: the parts' measured total. */
export const DEFAULT_POST_BOOT_KERNEL_BYTES = POST_BOOT_PARTS.reduce(
  (sum, part) => sum + part.kB * KiB,
  0,
);

/**
 * The parts scaled to `totalBytes` (the measured split), in whole pages; 0 gives none.
 */
export function postBootParts(totalBytes: number): { part: PostBootPart; pages: number }[] {
  if (totalBytes <= 0) return [];
  const scale = totalBytes / DEFAULT_POST_BOOT_KERNEL_BYTES;
  return POST_BOOT_PARTS.map((part) => ({
    part,
    pages: Math.round((part.kB * KiB * scale) / PAGE_SIZE),
  }));
}

/**
 * Makes the after-boot allocations in `memory` (a freshly booted guest). Boot allocations are
 * packed, not spread: on the real guest, free order-10 blocks went down by 40 MiB for 38 MiB in
 * use (buddyinfo, booted vs the model without this rule), so slab keeps every page (spread 1).
 */
export function allocPostBootKernel(memory: GuestMemory, totalBytes: number): void {
  for (const { part, pages } of postBootParts(totalBytes)) {
    if (pages === 0) continue;
    const name = `boot-${part.what}`;
    if (part.kind === "shmem") writeTmpfsFile(memory, name, pages * PAGE_SIZE);
    else allocKernelMemory(memory, name, pages * PAGE_SIZE, 1, part.kind === "reclaimable");
  }
}
