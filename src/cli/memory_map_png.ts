// Memory-map pictures for reports: one pixel per 2 MiB block of guest RAM (RAMBlock order, so
// the guest picture and the host picture line up pixel for pixel), laid out in rows of a power
// of two of blocks (about four times wider than tall), as indexed-palette PNGs encoded with
// fast-png straight from the snapshot's typed arrays. The guest picture colours a block by what
// the guest uses it for (SnapshotViews.maps.guestBlockKind: the FrameKind holding most of its
// frames, ties to the lower kind: a block half free, half anon shows as free); the host picture by what backs it on
// the host (hostBlockState with the resident page count).

import { encode } from "fast-png";
import { HPAGE_PMD_NR } from "../core/limits.ts";
import { FrameKind } from "../guest/frame_table.ts";
import { BlockState } from "../host/guest_ram.ts";
import { GUEST_BLOCK_THP } from "../metrics/vm_snapshot.ts";
import type { MemoryMaps } from "../sim/scenario_runner.ts";

/** Rows hold a power of two of blocks, between these bounds (64 blocks = 128 MiB per row). */
const MIN_ROW_BLOCKS = 32;
const MAX_ROW_BLOCKS = 512;
/** Pictures are shown about this wide in CSS pixels, and written as files half that wide. */
const DISPLAY_WIDTH = 1024;
const FILE_WIDTH = 512;

export interface MapCategory {
  readonly label: string;
  /** CSS colour, #rrggbb. */
  readonly color: string;
}

/** A picture: one category index per block, and the palette that names the categories. */
export interface MapPicture {
  readonly categories: readonly MapCategory[];
  readonly pixels: Uint8Array;
  /** Blocks per category, in palette order. */
  readonly counts: number[];
}

/** Guest categories, indexed by FrameKind; GUEST_THP_INDEX for a PMD-mapped guest THP. */
export const GUEST_CATEGORIES: readonly MapCategory[] = [
  { label: "free", color: "#e8e8e8" },
  { label: "reserved", color: "#555555" },
  { label: "anon (4 KiB)", color: "#f0a030" },
  { label: "page cache", color: "#4f9fd8" },
  { label: "shmem / tmpfs", color: "#9a6fd0" },
  { label: "kernel (unmovable)", color: "#c83c3c" },
  { label: "kernel (reclaimable)", color: "#e88080" },
  { label: "balloon", color: "#38b060" },
  { label: "pinned", color: "#202020" },
  { label: "guest THP (PMD-mapped)", color: "#a05a00" },
];
const GUEST_THP_INDEX = GUEST_CATEGORIES.length - 1;

export const HOST_CATEGORIES: readonly MapCategory[] = [
  { label: "not backed", color: "#f4f4f4" },
  { label: "4 KiB pages, partly resident", color: "#9ec9ea" },
  { label: "4 KiB pages, all resident", color: "#2a6fb0" },
  { label: "THP, PMD-mapped", color: "#d07a10" },
  { label: "THP split, waiting (ThpPte)", color: "#d03c8c" },
  { label: "shmem THP, unmapped", color: "#8a60c0" },
  { label: "hugetlb page", color: "#2e8b57" },
];

function guestCategory(kind: number): number {
  if (kind === GUEST_BLOCK_THP) return GUEST_THP_INDEX;
  if (kind <= FrameKind.Pinned) return kind;
  return FrameKind.Reserved;
}

function hostCategory(state: number, resident: number): number {
  switch (state) {
    case BlockState.ThpPmd:
      return 3;
    case BlockState.ThpPte:
      return 4;
    case BlockState.ThpUnmapped:
      return 5;
    case BlockState.Hugetlb:
      return 6;
    default:
      if (resident === 0) return 0;
      return resident >= HPAGE_PMD_NR ? 2 : 1;
  }
}

function picture(categories: readonly MapCategory[], pixels: Uint8Array): MapPicture {
  const counts = new Array<number>(categories.length).fill(0);
  for (const pixel of pixels) counts[pixel]!++;
  return { categories, pixels, counts };
}

export function guestPicture(maps: MemoryMaps): MapPicture {
  const pixels = maps.guestBlockKind.map(guestCategory);
  return picture(GUEST_CATEGORIES, pixels);
}

export function hostPicture(maps: MemoryMaps): MapPicture {
  const pixels = new Uint8Array(maps.hostBlockState.length);
  for (let block = 0; block < pixels.length; block++) {
    pixels[block] = hostCategory(maps.hostBlockState[block]!, maps.hostResidentPages[block]!);
  }
  return picture(HOST_CATEGORIES, pixels);
}

function rgb(color: string): [number, number, number] {
  const value = Number.parseInt(color.slice(1), 16);
  return [(value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff];
}

/** Width and height in blocks of a picture: rows of 2^k blocks, about 4:1. */
export function mapSize(blocks: number): { width: number; height: number } {
  const ideal = Math.sqrt(Math.max(1, blocks) * 4);
  const width = Math.min(
    MAX_ROW_BLOCKS,
    Math.max(MIN_ROW_BLOCKS, 2 ** Math.round(Math.log2(ideal))),
  );
  return { width, height: Math.max(1, Math.ceil(blocks / width)) };
}

/** CSS pixels per block for a picture `width` blocks wide. */
export function displayScale(width: number): number {
  return Math.max(1, Math.floor(DISPLAY_WIDTH / width));
}

/** PNG file pixels per block for a picture `width` blocks wide. */
export function fileScale(width: number): number {
  return Math.max(1, Math.floor(FILE_WIDTH / width));
}

/**
 * Encodes the picture as an 8-bit indexed PNG, `scale` pixels per block on each side. Blocks
 * past the end of the last row take an extra palette entry drawn in white.
 */
export function encodeMapPng(map: MapPicture, scale = 1): Uint8Array {
  const { width, height } = mapSize(map.pixels.length);
  const padding = map.categories.length;
  const data = new Uint8Array(width * scale * height * scale).fill(padding);
  const rowBytes = width * scale;
  for (let block = 0; block < map.pixels.length; block++) {
    const x = (block % width) * scale;
    const y = Math.floor(block / width) * scale;
    const value = map.pixels[block]!;
    for (let dy = 0; dy < scale; dy++) {
      const start = (y + dy) * rowBytes + x;
      data.fill(value, start, start + scale);
    }
  }
  const palette = [...map.categories.map((category) => rgb(category.color)), rgb("#ffffff")];
  return encode({
    width: width * scale,
    height: height * scale,
    data,
    depth: 8,
    channels: 1,
    palette,
  });
}
