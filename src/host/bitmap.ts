// Page bitmaps: one bit per 4 KiB page in Uint32Array words, 32 pages a word, so that a 1 TiB
// guest (268,435,456 pages) costs 32 MiB per bitmap. A 2 MiB block (HPAGE_PMD_NR = 512 pages)
// is exactly WORDS_PER_BLOCK = 16 aligned words, so per-block work touches 16 words, not 512
// pages, and nothing here allocates.
//
// Ranges are half-open [first, end) in page indexes. Word masks are built as int32 and stored
// in the Uint32Array, which keeps the low 32 bits, so signedness never matters.

import { HPAGE_PMD_NR } from "../core/limits.ts";

export const BITS_PER_WORD = 32;
export const WORDS_PER_BLOCK = HPAGE_PMD_NR / BITS_PER_WORD;

/** A zeroed bitmap of at least `bitCount` bits, rounded up to whole 2 MiB blocks. */
export function createBitmap(bitCount: number): Uint32Array {
  const blocks = Math.ceil(bitCount / HPAGE_PMD_NR);
  return new Uint32Array(blocks * WORDS_PER_BLOCK);
}

/** Bits set in a 32-bit word (the SWAR popcount of Hacker's Delight, 5-2). */
export function popcount32(word: number): number {
  let x = word - ((word >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** The bits of word `word` that fall inside [first, end). */
export function wordMask(word: number, first: number, end: number): number {
  const base = word * BITS_PER_WORD;
  const lo = first > base ? first - base : 0;
  const hi = end < base + BITS_PER_WORD ? end - base : BITS_PER_WORD;
  if (hi <= lo) return 0;
  const width = hi - lo;
  return width === BITS_PER_WORD ? -1 : ((1 << width) - 1) << lo;
}

export function testBit(map: Uint32Array, index: number): boolean {
  return (map[index >>> 5]! & (1 << (index & 31))) !== 0;
}

/** Sets the bits of [first, end); returns how many were clear before. */
export function setRange(map: Uint32Array, first: number, end: number): number {
  let changed = 0;
  if (end <= first) return 0;
  for (let word = first >>> 5; word <= (end - 1) >>> 5; word++) {
    const mask = wordMask(word, first, end);
    const old = map[word]!;
    changed += popcount32(mask & ~old);
    map[word] = old | mask;
  }
  return changed;
}

/** Clears the bits of [first, end); returns how many were set before. */
export function clearRange(map: Uint32Array, first: number, end: number): number {
  let changed = 0;
  if (end <= first) return 0;
  for (let word = first >>> 5; word <= (end - 1) >>> 5; word++) {
    const mask = wordMask(word, first, end);
    const old = map[word]!;
    changed += popcount32(mask & old);
    map[word] = old & ~mask;
  }
  return changed;
}

/** Set bits in [first, end). */
export function countRange(map: Uint32Array, first: number, end: number): number {
  let count = 0;
  if (end <= first) return 0;
  for (let word = first >>> 5; word <= (end - 1) >>> 5; word++) {
    count += popcount32(map[word]! & wordMask(word, first, end));
  }
  return count;
}
