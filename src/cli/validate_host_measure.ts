// `balloonlab validate` (issue #5): what the host really holds for the guest's RAM, read from
// QEMU's /proc/PID/smaps (the guest-RAM mapping is the one whose size is the guest's memory) and
// /proc/PID/pagemap (the present bit, 63, per 4 KiB page, counted per 2 MiB block; the PFNs, with
// the host's /proc/kpageflags, say which blocks one huge page backs), with host /proc/meminfo for
// MemFree and hugetlb pages.

import { closeSync, openSync, readFileSync, readSync } from "node:fs";

const PAGE = 4096;
const BLOCK_PAGES = 512;

export interface SmapsMapping {
  readonly start: number;
  readonly end: number;
  readonly name: string;
  /** Every "Key: N kB" field, in kB. */
  readonly fields: Record<string, number>;
}

/** Parses /proc/PID/smaps text into mappings. */
export function parseSmaps(text: string): SmapsMapping[] {
  const mappings: SmapsMapping[] = [];
  let current:
    | { start: number; end: number; name: string; fields: Record<string, number> }
    | undefined;
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      current = {
        start: Number.parseInt(head[1]!, 16),
        end: Number.parseInt(head[2]!, 16),
        name: head[3] ?? "",
        fields: {},
      };
      mappings.push(current);
      continue;
    }
    const field = /^(\w+):\s+(\d+) kB$/.exec(line);
    if (field && current) current.fields[field[1]!] = Number(field[2]);
  }
  return mappings;
}

/** The guest-RAM mapping: exactly the guest's size (the largest such, should there be two). */
export function findRamMapping(mappings: readonly SmapsMapping[], ramBytes: number): SmapsMapping {
  const found = mappings.filter((mapping) => mapping.end - mapping.start === ramBytes);
  if (found.length === 0) throw new Error(`no mapping of ${ramBytes} bytes in QEMU's smaps`);
  return found.sort((a, b) => (b.fields.Rss ?? 0) - (a.fields.Rss ?? 0))[0]!;
}

export interface BlockCounts {
  readonly blocks2M: number;
  readonly fullBlocks: number;
  readonly partialBlocks: number;
  readonly emptyBlocks: number;
  readonly presentPages: number;
  /**
   * Per 2 MiB block of the mapping, 1 where the host backs it with one huge page: all 512
   * pages present on consecutive PFNs from a 2 MiB-aligned one, and that PFN's host
   * /proc/kpageflags has KPF_COMPOUND_HEAD with KPF_THP or KPF_HUGE (hugetlb).
   */
  readonly hostHuge: Uint8Array;
  /**
   * Per block: 1 where all 512 pages map one anonymous host THP whole (hostHuge with KPF_ANON),
   * 2 where some pages are present and they all belong to one anonymous 2 MiB host THP, but
   * not all 512 are mapped (a partly unmapped THP: the host's deferred split queue has it), else
   * 0; with the THP's head PFN in `anonThpHead` (0 elsewhere).
   */
  readonly anonThp: Uint8Array;
  readonly anonThpHead: Float64Array;
}

/** include/uapi/linux/kernel-page-flags.h */
export const KPF_ANON = 12n;
export const KPF_COMPOUND_HEAD = 15n;
export const KPF_COMPOUND_TAIL = 16n;
export const KPF_HUGE = 17n;
export const KPF_THP = 22n;

const PFN_MASK = (1n << 55n) - 1n;

/** Whether host kpageflags `flags` are those of the head of a THP or a hugetlb page. */
export function hugeHeadFlags(flags: bigint): boolean {
  const head = (flags >> KPF_COMPOUND_HEAD) & 1n;
  const huge = ((flags >> KPF_THP) & 1n) | ((flags >> KPF_HUGE) & 1n);
  return head === 1n && huge === 1n;
}

const bit = (flags: bigint, which: bigint): boolean => ((flags >> which) & 1n) === 1n;

/** Whether host kpageflags `flags` are those of the head of an anonymous THP. */
export function anonThpHeadFlags(flags: bigint): boolean {
  return bit(flags, KPF_COMPOUND_HEAD) && bit(flags, KPF_THP) && bit(flags, KPF_ANON);
}

/**
 * A block whose present pages (some, not all 512) are the subpages of one anonymous 2 MiB THP:
 * every present page i maps PFN head + i, head 2 MiB-aligned, head's flags those of an anon THP
 * head and the present pages' flags THP (a tail or the head). Returns the head PFN or 0.
 */
export function partialAnonThpHead(
  buffer: Buffer,
  first: number,
  flagsOf: (pfn: bigint) => bigint,
): number {
  let head = -1n;
  let present = 0;
  for (let page = first; page < first + BLOCK_PAGES; page++) {
    if ((buffer[page * 8 + 7]! & 0x80) === 0) continue;
    present++;
    const pfn = buffer.readBigUInt64LE(page * 8) & PFN_MASK;
    const expected = pfn - BigInt(page - first);
    if (head === -1n) head = expected;
    if (expected !== head) return 0;
  }
  if (present === 0 || present === BLOCK_PAGES || head <= 0n) return 0;
  if (head % BigInt(BLOCK_PAGES) !== 0n || !anonThpHeadFlags(flagsOf(head))) return 0;
  // The last subpage is a tail of the same compound page (not a smaller folio at the head).
  if (!bit(flagsOf(head + BigInt(BLOCK_PAGES - 1)), KPF_COMPOUND_TAIL)) return 0;
  return Number(head);
}

/**
 * Blocks of a mapping from its pagemap entries (8 bytes per 4 KiB page): present pages per
 * 2 MiB block and whether a huge page backs the block (`flagsOf(pfn)`: host kpageflags).
 */
export function pagemapBlockCounts(
  buffer: Buffer,
  pages: number,
  flagsOf: (pfn: bigint) => bigint,
): BlockCounts {
  let full = 0;
  let partial = 0;
  let empty = 0;
  let present = 0;
  const hostHuge = new Uint8Array(Math.ceil(pages / BLOCK_PAGES));
  const anonThp = new Uint8Array(hostHuge.length);
  const anonThpHead = new Float64Array(hostHuge.length);
  for (let block = 0; block * BLOCK_PAGES < pages; block++) {
    let inBlock = 0;
    const first = block * BLOCK_PAGES;
    const last = Math.min(pages, first + BLOCK_PAGES);
    const firstPfn = buffer.readBigUInt64LE(first * 8) & PFN_MASK;
    let contiguous = firstPfn % BigInt(BLOCK_PAGES) === 0n;
    for (let page = first; page < last; page++) {
      // bit 63: present; bit 62: swapped (counted as not resident); bits 0-54: the PFN
      if ((buffer[page * 8 + 7]! & 0x80) !== 0) inBlock++;
      else contiguous = false;
      if (contiguous && page > first) {
        contiguous =
          (buffer.readBigUInt64LE(page * 8) & PFN_MASK) === firstPfn + BigInt(page - first);
      }
    }
    present += inBlock;
    if (inBlock === last - first) full++;
    else if (inBlock === 0) empty++;
    else partial++;
    const whole = last - first === BLOCK_PAGES && inBlock === BLOCK_PAGES;
    if (whole && contiguous && firstPfn !== 0n) {
      const flags = flagsOf(firstPfn);
      if (hugeHeadFlags(flags)) hostHuge[block] = 1;
      if (anonThpHeadFlags(flags)) {
        anonThp[block] = 1;
        anonThpHead[block] = Number(firstPfn);
      }
    } else if (inBlock > 0 && inBlock < BLOCK_PAGES && last - first === BLOCK_PAGES) {
      const head = partialAnonThpHead(buffer, first, flagsOf);
      if (head !== 0) {
        anonThp[block] = 2;
        anonThpHead[block] = head;
      }
    }
  }
  const blocks2M = full + partial + empty;
  return {
    blocks2M,
    fullBlocks: full,
    partialBlocks: partial,
    emptyBlocks: empty,
    presentPages: present,
    hostHuge,
    anonThp,
    anonThpHead,
  };
}

function readFully(fd: number, buffer: Buffer, position: number): void {
  let done = 0;
  while (done < buffer.length) {
    const got = readSync(fd, buffer, done, buffer.length - done, position + done);
    if (got <= 0) break;
    done += got;
  }
}

/** Present pages and huge pages per 2 MiB block of [start, end) from /proc/PID/pagemap. */
export function pagemapBlocks(pid: number, start: number, end: number): BlockCounts {
  const pages = (end - start) / PAGE;
  const buffer = Buffer.alloc(pages * 8);
  const fd = openSync(`/proc/${pid}/pagemap`, "r");
  try {
    readFully(fd, buffer, (start / PAGE) * 8);
  } finally {
    closeSync(fd);
  }
  const flagsFd = openSync("/proc/kpageflags", "r");
  const word = Buffer.alloc(8);
  try {
    return pagemapBlockCounts(buffer, pages, (pfn) => {
      word.fill(0);
      readFully(flagsFd, word, Number(pfn) * 8);
      return word.readBigUInt64LE(0);
    });
  } finally {
    closeSync(flagsFd);
  }
}

/** /proc/meminfo as numbers (kB fields in kB, counts as counts). */
export function parseMeminfo(text: string): Record<string, number> {
  const fields: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const match = /^([\w()]+):\s+(\d+)/.exec(line);
    if (match) fields[match[1]!] = Number(match[2]);
  }
  return fields;
}

export interface HostMeasurement {
  readonly mapping: SmapsMapping;
  readonly blocks: BlockCounts;
  readonly meminfo: Record<string, number>;
  /** QEMU's whole Rss (smaps_rollup), kB. */
  readonly qemuRss_kB: number;
  /** QEMU's anonymous memory outside guest RAM (smaps `Anonymous` of the other mappings), kB. */
  readonly qemuOwnAnon_kB: number;
  /** QEMU's THPs outside guest RAM (smaps `AnonHugePages` of the other mappings), kB. */
  readonly qemuOwnThp_kB: number;
}

export function measureHost(pid: number, ramBytes: number): HostMeasurement {
  const mappings = parseSmaps(readFileSync(`/proc/${pid}/smaps`, "utf8"));
  const mapping = findRamMapping(mappings, ramBytes);
  const blocks = pagemapBlocks(pid, mapping.start, mapping.end);
  const meminfo = parseMeminfo(readFileSync("/proc/meminfo", "utf8"));
  const qemuRss_kB = mappings.reduce((sum, each) => sum + (each.fields.Rss ?? 0), 0);
  const anon_kB = mappings.reduce((sum, each) => sum + (each.fields.Anonymous ?? 0), 0);
  const qemuOwnAnon_kB = anon_kB - (mapping.fields.Anonymous ?? 0);
  const thp_kB = mappings.reduce((sum, each) => sum + (each.fields.AnonHugePages ?? 0), 0);
  const qemuOwnThp_kB = thp_kB - (mapping.fields.AnonHugePages ?? 0);
  return { mapping, blocks, meminfo, qemuRss_kB, qemuOwnAnon_kB, qemuOwnThp_kB };
}
