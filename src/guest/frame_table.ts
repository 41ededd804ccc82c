// The frame table: the model's struct page, as struct-of-arrays over guest-physical frames.
//
// One entry per 4 KiB frame (pfn), sized when the guest is created and never grown. Like the
// kernel's struct page, the two link words are a union: a free block's head (on a buddy free list
// or a per-cpu list) uses them as next/prev links; an allocated block's head uses them as its
// reverse map (owner id and index within the owner). Bytes per frame: state 1 + order 1 +
// link0 4 + link1 4 = 10. A 1 TiB guest (268 M frames) needs 2.7 GB.
//
// Per-pageblock state (migratetype and the compaction skip hint) is one byte per 512 frames.

import { assert } from "../core/assert.ts";
import { MIGRATE_MOVABLE, pageblock_order } from "../core/limits.ts";

/** Who owns a frame: the low 4 bits of `state`. */
export enum FrameKind {
  /** Free: in the buddy allocator or on a per-cpu list. */
  Free = 0,
  /** Never given to the buddy allocator: firmware, kernel image, memmap, holes. */
  Reserved = 1,
  /** Anonymous memory of a process. */
  Anon = 2,
  /** Clean page cache of a file: reclaimable, movable. */
  PageCache = 3,
  /** tmpfs/shmem file pages: movable, not reclaimable without swap. */
  Shmem = 4,
  /** Kernel allocations (slab, page tables): unmovable. */
  Kernel = 5,
  /** Reclaimable kernel allocations (dentries, inodes). */
  KernelReclaimable = 6,
  /** A virtio-balloon page: movable through balloon compaction. */
  Balloon = 7,
  /** Pinned (GUP, vfio) user memory: not migratable. */
  Pinned = 8,
}
export const FRAME_KIND_COUNT = 9;

/** Flag bits in the high half of `state`. */
export const FRAME_KIND_MASK = 0x0f;
/** PageBuddy: the head of a free block on a buddy free list. */
export const FRAME_BUDDY = 0x10;
/** The head of a block on a per-cpu list (counted as allocated by the buddy allocator). */
export const FRAME_PCP = 0x20;
/** PageReported: a free block the host has been told about (mm/page_reporting.c). */
export const FRAME_REPORTED = 0x40;
/** PageTail: a frame inside an allocated block of order > 0, not its head. */
export const FRAME_TAIL = 0x80;

/** `order` byte: bits 0..3 the block order, bits 4..6 the free list's migratetype. */
export const ORDER_MASK = 0x0f;
export const ORDER_MT_SHIFT = 4;

export const NO_PFN = -1;

export interface FrameTable {
  /** Frames covered, pfn 0 .. frameCount - 1 (holes included). */
  readonly frameCount: number;
  /** FrameKind in bits 0..3, FRAME_* flags above. */
  readonly state: Uint8Array;
  /** Order of a block head (free or allocated), and the free list's migratetype. */
  readonly order: Uint8Array;
  /** Free head: next pfn on its list. Allocated head: owner id. */
  readonly link0: Int32Array;
  /** Free head: previous pfn on its list. Allocated head: index within the owner. */
  readonly link1: Int32Array;
  /** Migratetype per pageblock (get_pageblock_migratetype). */
  readonly pageblockMt: Uint8Array;
  /** PB_migrate_skip per pageblock (compaction's skip hint). */
  readonly pageblockSkip: Uint8Array;
}

/** Bytes of per-frame state, for the benchmark's bytes-per-frame figure. */
export const FRAME_TABLE_BYTES_PER_FRAME = 1 + 1 + 4 + 4;

export function createFrameTable(frameCount: number): FrameTable {
  assert(Number.isInteger(frameCount) && frameCount > 0, "frame count must be a positive integer");
  assert(frameCount < 2 ** 31, "frame count must fit a signed 32-bit pfn");
  const pageblockCount = Math.ceil(frameCount / (1 << pageblock_order));
  const table: FrameTable = {
    frameCount,
    state: new Uint8Array(frameCount),
    order: new Uint8Array(frameCount),
    link0: new Int32Array(frameCount),
    link1: new Int32Array(frameCount),
    pageblockMt: new Uint8Array(pageblockCount),
    pageblockSkip: new Uint8Array(pageblockCount),
  };
  // Every pageblock starts MOVABLE (memmap_init_range(..., MIGRATE_MOVABLE), mm/mm_init.c).
  table.pageblockMt.fill(MIGRATE_MOVABLE);
  // Every frame starts reserved until the boot layout frees it to the buddy allocator.
  table.state.fill(FrameKind.Reserved);
  return table;
}

/**
 * What migrate_pages can move: LRU pages (anonymous, page cache, shmem) and balloon pages
 * (__PageMovable). Pinned pages stay on the LRU but cannot move; kernel pages never move.
 */
export function isMovableKind(kind: number): boolean {
  return (
    kind === FrameKind.Anon ||
    kind === FrameKind.PageCache ||
    kind === FrameKind.Shmem ||
    kind === FrameKind.Balloon
  );
}

export function frameKind(table: FrameTable, pfn: number): FrameKind {
  return (table.state[pfn]! & FRAME_KIND_MASK) as FrameKind;
}

export function pageblockMigratetype(table: FrameTable, pfn: number): number {
  return table.pageblockMt[pfn >>> pageblock_order]!;
}
