// A file's page index tree (lib/xarray.c): the page cache finds a file's pages through an
// xarray of 64-slot nodes (XA_CHUNK_SHIFT), allocated from the radix_tree_node slab cache, which
// is reclaimable kernel memory (SLAB_RECLAIM_ACCOUNT, so MIGRATE_RECLAIMABLE pageblocks).
//
// Why the model has it. A large file brings a slab page of nodes every 896 of its pages, placed
// between them; deleting the file frees those slab pages, order-1 frees that on 6.1 empty the
// per-cpu lists after the burst of freed file pages (free_high, pcp.ts). The real 6.1 guest shows
// exactly this: after a 384 MiB tmpfs file is deleted its DMA32 per-cpu count is 0 and MemFree
// holds every page, where a model without the tree kept 44 MiB on the per-cpu list.
//
// Simplified: a file's nodes fill whole slabs of their own; the remainder (fewer than a slab's
// worth) is taken to sit in partial slabs shared with other files and is not modelled, so small
// files have no tree pages. Nodes are freed when the file is released or fully reclaimed.

import { PAGE_SIZE } from "../core/limits.ts";
import { FrameKind, NO_PFN } from "./frame_table.ts";
import { __GFP_RECLAIM, GFP_KERNEL_RECLAIMABLE } from "./gfp.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { createOwner, type Owner } from "./owners.ts";
import { allocPages, assignFrames, freePages } from "./page_alloc.ts";

/** XA_CHUNK_SHIFT (include/linux/xarray.h, !CONFIG_BASE_SMALL): 64 slots per node. */
const XA_CHUNK_SHIFT = 6;
export const XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT;
/**
 * radix_tree_node objects per page: 584-byte objects, 14 per 2-page slab (slab order 1), as
 * /proc/slabinfo of the 6.1 guest shows (SLUB calculate_order).
 */
const RADIX_TREE_NODES_PER_PAGE = 7;
/** The slab's order (oo); SLUB falls back to order 0 (s->min) when it cannot get one. */
const RADIX_TREE_NODE_SLAB_ORDER = 1;

/** Nodes an xarray needs to hold indices 0..entries-1 (one entry alone sits in the head). */
export function xarrayNodes(entries: number): number {
  let nodes = 0;
  for (let level = entries; level > 1; ) {
    level = Math.ceil(level / XA_CHUNK_SIZE);
    nodes += level;
  }
  return nodes;
}

/** The slab pages a tree of `nodes` nodes holds as whole slabs of its own. */
function treePages(nodes: number): number {
  const slabPages = 1 << RADIX_TREE_NODE_SLAB_ORDER;
  const perSlab = RADIX_TREE_NODES_PER_PAGE * slabPages;
  return Math.floor(nodes / perSlab) * slabPages;
}

/** The owner of a file's tree slab pages, sized for the whole file. */
export function createIndexTree(memory: GuestMemory, file: Owner): Owner {
  const pages = treePages(xarrayNodes(file.pages.length));
  return createOwner(memory.owners, FrameKind.KernelReclaimable, `${file.name} xarray`, pages);
}

/**
 * Grows the tree to hold indices 0..entries-1: allocate_slab tries the slab's order without
 * reclaim (__GFP_NORETRY, __GFP_RECLAIM cleared for oo > min, mm/slub.c v6.1), then order 0 with
 * the cache's full flags. Returns pages that could not be allocated.
 */
export function growIndexTree(memory: GuestMemory, tree: Owner, entries: number): number {
  const wanted = Math.min(treePages(xarrayNodes(entries)), tree.pages.length);
  let missing = 0;
  while (tree.residentPages < wanted) {
    const index = tree.residentPages;
    const gfp = GFP_KERNEL_RECLAIMABLE & ~__GFP_RECLAIM;
    const pfn = allocPages(memory, gfp, RADIX_TREE_NODE_SLAB_ORDER);
    if (pfn !== NO_PFN) {
      assignFrames(memory, pfn, RADIX_TREE_NODE_SLAB_ORDER, tree.kind, tree.id, index);
      for (let i = 0; i < 1 << RADIX_TREE_NODE_SLAB_ORDER; i++) tree.pages[index + i] = pfn + i;
      tree.residentPages += 1 << RADIX_TREE_NODE_SLAB_ORDER;
      continue;
    }
    const single = allocPages(memory, GFP_KERNEL_RECLAIMABLE, 0);
    if (single === NO_PFN) {
      missing += wanted - tree.residentPages;
      break;
    }
    assignFrames(memory, single, 0, tree.kind, tree.id, index);
    tree.pages[index] = single;
    tree.residentPages++;
  }
  return missing;
}

/** Frees every slab page of the tree (the file was deleted, truncated or fully reclaimed). */
export function freeIndexTree(memory: GuestMemory, tree: Owner): void {
  for (let index = 0; index < tree.pages.length; ) {
    const pfn = tree.pages[index]!;
    if (pfn === NO_PFN) {
      index++;
      continue;
    }
    // An allocated block's head frame records its order (assignFrames).
    const freeOrder = memory.table.order[pfn]!;
    freePages(memory, pfn, freeOrder);
    for (let i = 0; i < 1 << freeOrder; i++) tree.pages[index + i] = NO_PFN;
    tree.residentPages -= 1 << freeOrder;
    index += 1 << freeOrder;
  }
  tree.released = true;
}

/** Bytes of tree for a file of `sizeBytes` (for documentation and tests). */
export function indexTreeBytes(sizeBytes: number): number {
  return treePages(xarrayNodes(Math.ceil(sizeBytes / PAGE_SIZE))) * PAGE_SIZE;
}
