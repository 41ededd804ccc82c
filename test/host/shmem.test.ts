// Goal: shmem-backed guest RAM (memfd, huge=always tmpfs) behaves as mm/shmem.c does around the
// 5.7 change: before it a punched THP is refaulted whole (the zeroed subpage is resident
// again); from it the THP splits unless a reference pins it (Hugh's caveat, drawn from the
// seeded PRNG); khugepaged's collapse_file re-creates a THP from cached pages and leaves the
// block unmapped until the guest touches it; the shmem_enabled policy and khugepaged's start
// rule (6.12+ also for shmem) are honoured. Method: small hosts per backing and kernel, guest
// writes, 4 KiB and 2 MiB discards and khugepaged scans, comparing snapshots; the checker runs
// after every step.
import { describe, expect, test } from "vitest";
import { BlockState, hostKhugepagedScan, hostSnapshot } from "../../src/host/host_api.ts";
import {
  BLOCK,
  discard,
  expectClean,
  hostRam,
  KiB,
  PAGES_PER_BLOCK,
  usage,
  write,
} from "./helpers.ts";

const PAGE = 4 * KiB;
const ALL_BLOCKS = 32 * PAGES_PER_BLOCK;

describe("huge=always tmpfs", () => {
  test("5.6: the next touch maps the punched THP whole again, zeroed page included", () => {
    const ram = hostRam({ backing: "tmpfs-huge", kernel: "5.6" });
    write(ram, 0, BLOCK);
    discard(ram, 0, PAGE);
    expect(ram.blockState[0]).toBe(BlockState.ThpUnmapped);
    write(ram, BLOCK / 2, PAGE);
    expect(usage(ram)).toEqual({ resident: BLOCK, allocated: BLOCK });
    const snapshot = hostSnapshot(ram);
    expect(snapshot.shmemPmdMappedBytes).toBe(BLOCK);
    expect(snapshot.residentBytesByCause.guestTouched).toBe(BLOCK - PAGE);
    expect(snapshot.residentBytesByCause.thpFault).toBe(PAGE);
    expect(snapshot.counters.faultsMapped).toBe(1);
  });

  test("6.1 with every split failing: the THP stays, as before 5.7", () => {
    const ram = hostRam({ backing: "tmpfs-huge", shmemSplitFailPerMille: 1000 });
    write(ram, 0, BLOCK);
    for (let page = 0; page < 8; page++) discard(ram, page * PAGE, PAGE);
    expect(usage(ram)).toEqual({ resident: 0, allocated: BLOCK });
    expect(hostSnapshot(ram).counters.splitShmemFailed).toBe(8);
  });

  test("a seeded failure rate is reproducible and gives some of each outcome", () => {
    const outcomes = [1, 1, 2].map((seed) => {
      const ram = hostRam({ backing: "tmpfs-huge", shmemSplitFailPerMille: 500, seed });
      write(ram, 0, 32 * BLOCK);
      for (let block = 0; block < 32; block++) discard(ram, block * BLOCK, PAGE);
      const { counters } = hostSnapshot(ram);
      return [counters.splitShmem, counters.splitShmemFailed];
    });
    expect(outcomes[0]).toEqual(outcomes[1]);
    expect(outcomes[0]![0]! + outcomes[0]![1]!).toBe(32);
    expect(outcomes[0]![0]).toBeGreaterThan(0);
    expect(outcomes[0]![1]).toBeGreaterThan(0);
  });

  test("collapse_file makes a THP of 511 cached pages; it is mapped at the next touch", () => {
    const ram = hostRam({ backing: "tmpfs-huge" });
    write(ram, 0, BLOCK);
    discard(ram, 0, PAGE);
    expect(usage(ram)).toEqual({ resident: 0, allocated: BLOCK - PAGE });
    expect(hostKhugepagedScan(ram, ALL_BLOCKS).collapsed).toBe(1);
    expectClean(ram);
    // retract_page_tables: 2 MiB allocated again, nothing mapped.
    expect(usage(ram)).toEqual({ resident: 0, allocated: BLOCK });
    expect(hostSnapshot(ram).shmemHugePagesBytes).toBe(BLOCK);
    write(ram, PAGE, PAGE);
    expect(usage(ram)).toEqual({ resident: BLOCK, allocated: BLOCK });
    expect(hostSnapshot(ram).residentBytesByCause.collapse).toBe(PAGE);
  });

  test("max_ptes_none 0 needs all 512 pages in the page cache", () => {
    const ram = hostRam({ backing: "tmpfs-huge", khugepaged: { maxPtesNone: 0 } });
    write(ram, 0, BLOCK);
    discard(ram, 0, PAGE);
    expect(hostKhugepagedScan(ram, ALL_BLOCKS).collapsed).toBe(0);
    write(ram, 0, PAGE);
    expect(hostKhugepagedScan(ram, ALL_BLOCKS).collapsed).toBe(1);
    expectClean(ram);
  });

  test("shmem_enabled=deny turns THP off even on a huge=always mount", () => {
    const ram = hostRam({ backing: "tmpfs-huge", thp: { shmemEnabled: "deny" } });
    write(ram, 0, BLOCK);
    expect(hostSnapshot(ram).counters.faults2m).toBe(0);
    expect(hostSnapshot(ram).counters.faults4k).toBe(PAGES_PER_BLOCK);
  });

  test("a THP allocated over a leftover PTE table is mapped page by page", () => {
    const ram = hostRam({ backing: "tmpfs-huge" });
    write(ram, 0, BLOCK);
    discard(ram, 0, PAGE); // split: 511 cached pages, pmd_none
    write(ram, 0, PAGE); // a 4 KiB page: the range is not empty, the block gets a PTE table
    discard(ram, 0, BLOCK); // all gone, the table stays (6.1 has no PT reclaim)
    expect(ram.blockState[0]).toBe(BlockState.Pte);
    write(ram, PAGE, PAGE); // the range is empty: a THP, but no pmd_none for do_set_pmd
    expect(ram.blockState[0]).toBe(BlockState.ThpPte);
    expect(usage(ram)).toEqual({ resident: PAGE, allocated: BLOCK });
    expect(hostSnapshot(ram).shmemPmdMappedBytes).toBe(0);
    expect(hostSnapshot(ram).shmemHugePagesBytes).toBe(BLOCK);
  });
});

describe("khugepaged's start rule for shmem", () => {
  test.each([
    ["6.1", false],
    ["6.18", true],
  ])("anon THP never, memfd shmem_enabled=always, %s: collapses %s", (kernel, collapses) => {
    const ram = hostRam({
      backing: "memfd",
      kernel,
      thp: { enabled: "never", shmemEnabled: "always" },
    });
    write(ram, 0, BLOCK);
    discard(ram, 0, PAGE);
    expect(hostKhugepagedScan(ram, ALL_BLOCKS).collapsed).toBe(collapses ? 1 : 0);
    expectClean(ram);
  });

  test("memfd without shmem THP is never collapsed", () => {
    const ram = hostRam({ backing: "memfd", thp: { enabled: "always" } });
    write(ram, 0, BLOCK);
    expect(hostKhugepagedScan(ram, ALL_BLOCKS)).toEqual({
      blocksScanned: 0,
      pagesScanned: 0,
      collapsed: 0,
      allocFailed: 0,
    });
  });
});
