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
import { allocKernelMemory, freeKernelMemory } from "./kernel_alloc.ts";
import { KernelUse, type Owner } from "./owners.ts";
import { writeTmpfsFile } from "./page_cache.ts";

const KiB = 1024;

export type PostBootKind =
  | "slab"
  | "reclaimable"
  | "vmalloc"
  | "page-tables"
  | "direct"
  | "shmem"
  | "pcp";

export interface PostBootPart {
  readonly what: string;
  readonly kind: PostBootKind;
  /** Measured size in KiB. */
  readonly kB: number;
}

/**
 * The measured parts; MemTotal 609552 - MemFree 571116 = 38436 kB not free in MemFree after boot,
 * of which 10508 kB are free pages on the per-cpu lists.
 */
export const POST_BOOT_PARTS: readonly PostBootPart[] = [
  // meminfo SUnreclaim 6036 kB (kmalloc and other unreclaimable caches).
  { what: "slab-unreclaimable", kind: "slab", kB: 6036 },
  // meminfo SReclaimable 9000 kB (dentry, inode caches of the rootfs and sysfs).
  { what: "slab-reclaimable", kind: "reclaimable", kB: 9000 },
  // meminfo VmallocUsed 7260 kB: module text and data, vmap'd stacks (KernelStack 744 kB).
  { what: "vmalloc", kind: "vmalloc", kB: 7260 },
  // meminfo PageTables 48 kB.
  { what: "page-tables", kind: "page-tables", kB: 48 },
  // Free pages on the per-cpu lists when userspace starts: zoneinfo's DMA32 pageset count was
  // 2627 pages here (2715 on a 768 MiB guest), the last of the init memory and initrd freed page
  // by page (free_initmem, free_initrd_mem → free_reserved_area → __free_page). Not in MemFree;
  // the first drain (6.1's free_high after a large free) returns them.
  { what: "pcp", kind: "pcp", kB: 10508 },
  // The rest of MemTotal - MemFree, with no meminfo counter (direct alloc_pages users such as
  // ftrace records and virtqueues): 38436 - 6036 - 9000 - 7260 - 48 - 2952 - 10508 = 2632 kB.
  { what: "other", kind: "direct", kB: 2632 },
  // meminfo Shmem 2952 kB: the initramfs unpacked into rootfs (init/initramfs.c); the initrd
  // itself is boot-written and freed (memory_layout.ts bootWritten), not counted here.
  { what: "rootfs", kind: "shmem", kB: 2952 },
];

/** The /proc counter each kind of part counts under. */
const KERNEL_USE: Record<Exclude<PostBootKind, "shmem">, KernelUse> = {
  slab: KernelUse.Slab,
  reclaimable: KernelUse.Slab,
  vmalloc: KernelUse.Vmalloc,
  "page-tables": KernelUse.PageTable,
  direct: KernelUse.Direct,
  pcp: KernelUse.Direct,
};

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
  const toPcp: Owner[] = [];
  for (const { part, pages } of postBootParts(totalBytes)) {
    if (pages === 0) continue;
    const name = `boot-${part.what}`;
    if (part.kind === "shmem") writeTmpfsFile(memory, name, pages * PAGE_SIZE);
    else {
      const reclaimable = part.kind === "reclaimable";
      const use = KERNEL_USE[part.kind];
      const { owner } = allocKernelMemory(memory, name, pages * PAGE_SIZE, 1, reclaimable, use);
      if (part.kind === "pcp") toPcp.push(owner);
    }
  }
  // free_reserved_area: the init memory goes back page by page through the per-cpu lists.
  for (const owner of toPcp) freeKernelMemory(memory, owner);
}
