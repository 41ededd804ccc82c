// Clean page cache and tmpfs files (mm/filemap.c, mm/shmem.c, mm/vmscan.c), reduced to what
// fragments memory and what reclaim can take back.
//
// A file read fills order-0 movable pages (GFP_HIGHUSER_MOVABLE through the mapping's gfp).
// Clean page cache is reclaimable: reclaim evicts the oldest file first, lowest page index
// first, standing in for the kernel's inactive-list LRU order for read-once files (the model
// keeps no per-page LRU). tmpfs pages are Shmem: movable, but not reclaimable without swap.

import { assert } from "../core/assert.ts";
import { PAGE_SIZE } from "../core/limits.ts";
import { FrameKind, NO_PFN } from "./frame_table.ts";
import { GFP_HIGHUSER_MOVABLE } from "./gfp.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { createOwner, type Owner } from "./owners.ts";
import { allocPages, assignFrames, freePages } from "./page_alloc.ts";
import { VmEvent } from "./vm_event.ts";
import { createIndexTree, freeIndexTree, growIndexTree, XA_CHUNK_SIZE } from "./xarray_nodes.ts";

export interface PageCacheState {
  /** Files with page cache, oldest first (the reclaim order). */
  readonly files: Owner[];
  /** Index into `files` of the first file that may still hold pages. */
  oldest: number;
}

export function createPageCacheState(): PageCacheState {
  return { files: [], oldest: 0 };
}

/**
 * Fills `owner` page by page from `firstIndex`; returns pages that could not be allocated. The
 * file's index tree grows as the pages go in (xas_nomem allocates a node before the page is
 * stored), so its slab pages sit between the file's pages as they do in a real guest.
 */
export function fillFilePages(memory: GuestMemory, owner: Owner, firstIndex: number): number {
  let missing = 0;
  if (owner.indexTree === undefined) owner.indexTree = createIndexTree(memory, owner);
  const tree = owner.indexTree;
  for (let index = firstIndex; index < owner.pages.length; index++) {
    if (owner.pages[index] !== NO_PFN) continue;
    if (index % XA_CHUNK_SIZE === 0) growIndexTree(memory, tree, index + 1);
    const pfn = allocPages(memory, GFP_HIGHUSER_MOVABLE, 0);
    if (pfn === NO_PFN) {
      missing++;
      continue;
    }
    assignFrames(memory, pfn, 0, owner.kind, owner.id, index);
    owner.pages[index] = pfn;
    owner.residentPages++;
  }
  return missing;
}

/** Reads a file of `sizeBytes` into the page cache (generic_file_read → page_cache_ra_*). */
export function readFileIntoCache(
  memory: GuestMemory,
  state: PageCacheState,
  name: string,
  sizeBytes: number,
): Owner {
  const owner = createOwner(
    memory.owners,
    FrameKind.PageCache,
    name,
    Math.ceil(sizeBytes / PAGE_SIZE),
  );
  fillFilePages(memory, owner, 0);
  state.files.push(owner);
  return owner;
}

/** Writes a tmpfs file of `sizeBytes` (shmem_get_folio for each page; huge=never). */
export function writeTmpfsFile(memory: GuestMemory, name: string, sizeBytes: number): Owner {
  const owner = createOwner(memory.owners, FrameKind.Shmem, name, Math.ceil(sizeBytes / PAGE_SIZE));
  fillFilePages(memory, owner, 0);
  return owner;
}

/**
 * Frees every page of a file (truncate_inode_pages, or unlink of a tmpfs file), then its index
 * tree's slab pages (the emptied nodes go back to the slab, the empty slabs to the allocator).
 */
export function releaseFile(memory: GuestMemory, owner: Owner): number {
  let freed = 0;
  for (let index = 0; index < owner.pages.length; index++) {
    const pfn = owner.pages[index]!;
    if (pfn === NO_PFN) continue;
    freePages(memory, pfn, 0);
    owner.pages[index] = NO_PFN;
    freed++;
  }
  owner.residentPages = 0;
  owner.released = true;
  if (owner.indexTree !== undefined) freeIndexTree(memory, owner.indexTree);
  return freed;
}

/** echo 1 > /proc/sys/vm/drop_caches: drop every clean page cache page (drop_pagecache). */
export function dropCaches(memory: GuestMemory, state: PageCacheState): number {
  let freed = 0;
  for (const file of state.files) if (!file.released) freed += releaseFile(memory, file);
  state.oldest = state.files.length;
  memory.events[VmEvent.drop_pagecache]!++;
  return freed;
}

/**
 * Models shrink_node on clean file pages only: evict up to `targetPages` page cache pages,
 * oldest file first; counts pgscan/pgsteal for kswapd or direct reclaim.
 */
export function reclaimPageCache(
  memory: GuestMemory,
  state: PageCacheState,
  targetPages: number,
  direct: boolean,
): number {
  assert(targetPages >= 0, "reclaim target must not be negative");
  let freed = 0;
  while (freed < targetPages && state.oldest < state.files.length) {
    const file = state.files[state.oldest]!;
    for (let index = 0; index < file.pages.length && freed < targetPages; index++) {
      const pfn = file.pages[index]!;
      if (pfn === NO_PFN) continue;
      freePages(memory, pfn, 0);
      file.pages[index] = NO_PFN;
      file.residentPages--;
      freed++;
    }
    if (file.residentPages === 0) {
      if (file.indexTree !== undefined) freeIndexTree(memory, file.indexTree);
      state.oldest++;
    }
  }
  memory.events[direct ? VmEvent.pgscan_direct : VmEvent.pgscan_kswapd]! += freed;
  memory.events[direct ? VmEvent.pgsteal_direct : VmEvent.pgsteal_kswapd]! += freed;
  return freed;
}
