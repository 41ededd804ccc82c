// `balloonlab validate` (issue #5): what the host really holds for the guest's RAM, read from
// QEMU's /proc/PID/smaps (the guest-RAM mapping is the one whose size is the guest's memory) and
// /proc/PID/pagemap (the present bit, 63, per 4 KiB page, counted per 2 MiB block), with host
// /proc/meminfo for MemFree and hugetlb pages.

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
}

/** Present pages per 2 MiB block of [start, end) from /proc/PID/pagemap. */
export function pagemapBlocks(pid: number, start: number, end: number): BlockCounts {
  const pages = (end - start) / PAGE;
  const buffer = Buffer.alloc(pages * 8);
  const fd = openSync(`/proc/${pid}/pagemap`, "r");
  try {
    let done = 0;
    while (done < buffer.length) {
      const got = readSync(fd, buffer, done, buffer.length - done, (start / PAGE) * 8 + done);
      if (got <= 0) break;
      done += got;
    }
  } finally {
    closeSync(fd);
  }
  let full = 0;
  let partial = 0;
  let empty = 0;
  let present = 0;
  for (let block = 0; block * BLOCK_PAGES < pages; block++) {
    let inBlock = 0;
    const last = Math.min(pages, (block + 1) * BLOCK_PAGES);
    for (let page = block * BLOCK_PAGES; page < last; page++) {
      // bit 63: present; bit 62: swapped (counted as not resident)
      if ((buffer[page * 8 + 7]! & 0x80) !== 0) inBlock++;
    }
    present += inBlock;
    if (inBlock === last - block * BLOCK_PAGES) full++;
    else if (inBlock === 0) empty++;
    else partial++;
  }
  const blocks2M = full + partial + empty;
  return {
    blocks2M,
    fullBlocks: full,
    partialBlocks: partial,
    emptyBlocks: empty,
    presentPages: present,
  };
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
}

export function measureHost(pid: number, ramBytes: number): HostMeasurement {
  const mappings = parseSmaps(readFileSync(`/proc/${pid}/smaps`, "utf8"));
  const mapping = findRamMapping(mappings, ramBytes);
  const blocks = pagemapBlocks(pid, mapping.start, mapping.end);
  const meminfo = parseMeminfo(readFileSync("/proc/meminfo", "utf8"));
  const qemuRss_kB = mappings.reduce((sum, each) => sum + (each.fields.Rss ?? 0), 0);
  return { mapping, blocks, meminfo, qemuRss_kB };
}
