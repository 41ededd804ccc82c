// Unmovable and reclaimable kernel memory (slab, page tables), the allocations that pin
// pageblocks: a pageblock holding one of these pages can never be compacted into a free 2 MiB
// block (mm/compaction.c cannot migrate them).

import { assert } from "../core/assert.ts";
import { PAGE_SIZE } from "../core/limits.ts";
import { FrameKind, NO_PFN } from "./frame_table.ts";
import { GFP_KERNEL, GFP_KERNEL_RECLAIMABLE } from "./gfp.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { createOwner, KernelUse, type Owner } from "./owners.ts";
import { allocPages, assignFrames, freePages } from "./page_alloc.ts";

export interface KernelAllocation {
  readonly owner: Owner;
  /** Pages that could not be allocated. */
  readonly missingPages: number;
}

/**
 * Allocates `sizeBytes` of kernel memory as order-0 pages. With `spread` = k > 1 it allocates k
 * times as many and frees all but every k-th, as a slab cache does after most objects are freed:
 * the pages that stay are spread over k times as many pageblocks. `use` says which /proc
 * counter unreclaimable pages count under (slab unless said otherwise).
 */
export function allocKernelMemory(
  memory: GuestMemory,
  name: string,
  sizeBytes: number,
  spread: number,
  reclaimable: boolean,
  use: KernelUse = KernelUse.Slab,
): KernelAllocation {
  assert(Number.isInteger(spread) && spread >= 1, "spread must be a positive integer");
  const keepPages = Math.ceil(sizeBytes / PAGE_SIZE);
  const kind = reclaimable ? FrameKind.KernelReclaimable : FrameKind.Kernel;
  const gfp = reclaimable ? GFP_KERNEL_RECLAIMABLE : GFP_KERNEL;
  const owner = createOwner(memory.owners, kind, name, keepPages * spread, 0, use);
  let missingPages = 0;
  for (let index = 0; index < owner.pages.length; index++) {
    const pfn = allocPages(memory, gfp, 0);
    if (pfn === NO_PFN) {
      missingPages++;
      continue;
    }
    assignFrames(memory, pfn, 0, kind, owner.id, index);
    owner.pages[index] = pfn;
    owner.residentPages++;
  }
  for (let index = 0; index < owner.pages.length; index++) {
    if (index % spread === 0) continue;
    const pfn = owner.pages[index]!;
    if (pfn === NO_PFN) continue;
    freePages(memory, pfn, 0);
    owner.pages[index] = NO_PFN;
    owner.residentPages--;
  }
  return { owner, missingPages };
}

/** Frees every page of an order-0 kernel allocation (kfree of the lot, put_page each). */
export function freeKernelMemory(memory: GuestMemory, owner: Owner): void {
  for (let index = 0; index < owner.pages.length; index++) {
    const pfn = owner.pages[index]!;
    if (pfn === NO_PFN) continue;
    freePages(memory, pfn, 0);
    owner.pages[index] = NO_PFN;
  }
  owner.residentPages = 0;
  owner.released = true;
}

/**
 * GFP_PGTABLE_USER (include/asm-generic/pgalloc.h, 6.1): GFP_KERNEL_ACCOUNT | __GFP_ZERO. The
 * accounting and the zeroing do not change where the page comes from: unmovable, may reclaim.
 */
export const GFP_PGTABLE_USER = GFP_KERNEL;

/**
 * Models pte_alloc_one → __pte_alloc_one (include/asm-generic/pgalloc.h, 6.1): one order-0
 * GFP_PGTABLE_USER page for a PTE table, kept by `owner` (a FrameKind.Kernel owner with
 * KernelUse.PageTable) at slot `index`. False when the allocation failed (VM_FAULT_OOM).
 */
export function allocPageTablePage(memory: GuestMemory, owner: Owner, index: number): boolean {
  const pfn = allocPages(memory, GFP_PGTABLE_USER, 0);
  if (pfn === NO_PFN) return false;
  assignFrames(memory, pfn, 0, FrameKind.Kernel, owner.id, index);
  owner.pages[index] = pfn;
  owner.residentPages++;
  return true;
}

/** Models pte_free (include/asm-generic/pgalloc.h, 6.1): the table's page goes back at once. */
export function freePageTablePage(memory: GuestMemory, owner: Owner, index: number): void {
  const pfn = owner.pages[index]!;
  assert(pfn !== NO_PFN, () => `${owner.name}: no page table at slot ${index}`);
  owner.pages[index] = NO_PFN;
  owner.residentPages--;
  freePages(memory, pfn, 0);
}
