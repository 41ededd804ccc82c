// Who holds allocated frames: processes (anonymous memory), files (page cache, tmpfs) and the
// kernel. Each owner has a page table from its page index to pfn (NO_PFN where nothing is
// mapped), the model's reduced PTEs; every allocated frame points back to its owner and index
// through the frame table's link words (the reverse map), which compaction uses to move it.

import { assert } from "../core/assert.ts";
import { type FrameKind, type FrameTable, NO_PFN } from "./frame_table.ts";

/**
 * What an unmovable kernel allocation is, for the counters /proc shows it under: slab
 * (SUnreclaim, nr_slab_unreclaimable), vmalloc (VmallocUsed), page tables (PageTables,
 * nr_page_table_pages) or a direct alloc_pages user with no counter of its own.
 */
export enum KernelUse {
  Slab = 0,
  Vmalloc = 1,
  PageTable = 2,
  Direct = 3,
}
export const KERNEL_USE_COUNT = 4;

export interface Owner {
  readonly id: number;
  /** What its frames are (FrameKind.Anon, PageCache, Shmem, Kernel, ...). */
  readonly kind: FrameKind;
  /** A name for reports (process or file name). */
  readonly name: string;
  /** Page index -> pfn, NO_PFN where nothing is present. */
  readonly pages: Int32Array;
  /** Pages present. */
  residentPages: number;
  /** Pages of this owner mapped by a huge page (THP), for AnonHugePages. */
  hugePages: number;
  /** Owner ended (process exited, file deleted): the id is not reused. */
  released: boolean;
  /** Order at which a new fault maps this owner's memory (9 for a THP-eligible process). */
  readonly faultOrder: number;
  /** A file's page index tree (xarray_nodes.ts): its radix_tree_node slab pages. */
  indexTree: Owner | undefined;
  /** For FrameKind.Kernel owners: which kernel counter their pages count under. */
  kernelUse: KernelUse;
}

export interface OwnerRegistry {
  readonly owners: Owner[];
}

export function createOwnerRegistry(): OwnerRegistry {
  // Id 0 is the kernel's own boot allocations, so that a zero link never reads as "no owner".
  return { owners: [] };
}

export function createOwner(
  registry: OwnerRegistry,
  kind: FrameKind,
  name: string,
  sizePages: number,
  faultOrder = 0,
  kernelUse = KernelUse.Slab,
): Owner {
  assert(Number.isInteger(sizePages) && sizePages >= 0, "owner size must be whole pages");
  const owner: Owner = {
    id: registry.owners.length,
    kind,
    name,
    pages: new Int32Array(sizePages).fill(NO_PFN),
    residentPages: 0,
    hugePages: 0,
    released: false,
    faultOrder,
    indexTree: undefined,
    kernelUse,
  };
  registry.owners.push(owner);
  return owner;
}

export function ownerOf(registry: OwnerRegistry, table: FrameTable, pfn: number): Owner {
  const owner = registry.owners[table.link0[pfn]!];
  assert(owner !== undefined, () => `pfn ${pfn} has no owner`);
  return owner;
}
