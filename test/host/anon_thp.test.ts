// Goal: the life of a host anon THP under 4 KiB ballooning follows semantics 3.2-3.5: 511
// discards of 512 free nothing, the 512th frees the whole THP (case a); host pressure makes
// the deferred split shrinker free the unmapped subpages (case b), plus the zero-filled mapped
// ones from v6.12; khugepaged with max_ptes_none 511 re-inflates a block with one resident page
// to 2 MiB and with 0 does not; PT reclaim (6.14+) lets an emptied block take a THP fault again;
// a THP fault that finds too little memory falls back to 4 KiB unless direct reclaim helps.
// Method: small anon-backed hosts per kernel; guest writes, 4 KiB and 2 MiB discards, pressure
// through hostSetPressure/hostReclaim and khugepaged scans, comparing snapshots with the
// kernel's arithmetic; the checker runs after every step.
import { describe, expect, test } from "vitest";
import { checkHostRam } from "../../src/check/host_checker.ts";
import {
  BlockState,
  type GuestRam,
  hostBlockHuge,
  hostFreeBytes,
  hostKhugepagedScan,
  hostReclaim,
  hostSetPressure,
  hostSnapshot,
} from "../../src/host/host_api.ts";
import {
  BLOCK,
  discard,
  expectClean,
  GiB,
  type HostInput,
  hostRam,
  KiB,
  MiB,
  PAGES_PER_BLOCK,
  usage,
  write,
} from "./helpers.ts";

const PAGE = 4 * KiB;

/** Discards pages [first, end) of `block` one 4 KiB call at a time, as the balloon does. */
function balloon(ram: GuestRam, block: number, first: number, end: number): void {
  for (let page = first; page < end; page++) discard(ram, block * BLOCK + page * PAGE, PAGE);
}

/** Sets the scenario's pressure so that host free memory is exactly `freeBytes`. */
function setFree(ram: GuestRam, freeBytes: number): void {
  hostSetPressure(ram, ram.otherUsedBytes + hostFreeBytes(ram) - freeBytes);
  expect(hostFreeBytes(ram)).toBe(freeBytes);
}

/** Host free memory `bytes` below the low watermark: kswapd would run. */
function squeeze(ram: GuestRam, bytes: number): void {
  setFree(ram, hostSnapshot(ram).watermarkLowBytes - bytes);
}

/** Host free memory too low for an order-9 allocation at the min watermark. */
function starveThp(ram: GuestRam): void {
  setFree(ram, hostSnapshot(ram).watermarkMinBytes + MiB);
}

describe.each(["5.6", "6.1", "6.18"])("anon THP on %s", (kernel) => {
  const input: HostInput = { backing: "anon", kernel };

  test("511 of 512 discards free nothing; the 512th frees the THP whole", () => {
    const ram = hostRam(input);
    write(ram, 0, BLOCK);
    balloon(ram, 0, 0, 511);
    expect(usage(ram)).toEqual({ resident: PAGE, allocated: BLOCK });
    expect(hostSnapshot(ram).deferredSplitBytes).toBe(BLOCK);
    balloon(ram, 0, 511, 512);
    expect(usage(ram)).toEqual({ resident: 0, allocated: 0 });
    expect(hostSnapshot(ram).deferredSplitBytes).toBe(0);
    expect(hostSnapshot(ram).counters.splitDeferred).toBe(0);
  });

  test("host pressure makes the shrinker free the unmapped subpages", () => {
    const ram = hostRam(input);
    // The guest writes one page per block: THP faults fill the rest with zeros.
    for (let block = 0; block < 4; block++) write(ram, block * BLOCK, PAGE);
    for (let block = 0; block < 4; block++) balloon(ram, block, 256, 512);
    expect(usage(ram)).toEqual({ resident: 4 * MiB, allocated: 8 * MiB });
    expect(hostReclaim(ram, 0)).toBe(0); // free is far above the low watermark
    squeeze(ram, 8 * MiB);
    const freed = hostReclaim(ram, 0);
    // 6.18 also maps the 255 zero-filled subpages still mapped to the shared zero page.
    const keptPerBlock = kernel === "6.18" ? 1 : 256;
    expect(freed).toBe(4 * (PAGES_PER_BLOCK - keptPerBlock) * PAGE);
    expect(usage(ram)).toEqual({
      resident: 4 * keptPerBlock * PAGE,
      allocated: 4 * keptPerBlock * PAGE,
    });
    const snapshot = hostSnapshot(ram);
    expect(snapshot.counters.splitDeferred).toBe(4);
    expect(snapshot.counters.freedByShrinkerBytes).toBe(freed);
    expect(snapshot.deferredSplitBytes).toBe(0);
    expectClean(ram);
  });

  test("khugepaged (max_ptes_none 511) re-collapses a block with one resident page", () => {
    const ram = hostRam(input);
    write(ram, 0, BLOCK);
    balloon(ram, 0, 1, 512);
    squeeze(ram, MiB);
    hostReclaim(ram, 0);
    expect(usage(ram)).toEqual({ resident: PAGE, allocated: PAGE });
    hostSetPressure(ram, 0);
    const result = hostKhugepagedScan(ram, 4096);
    expectClean(ram);
    expect(result.collapsed).toBe(1);
    expect(usage(ram)).toEqual({ resident: BLOCK, allocated: BLOCK });
    expect(hostBlockHuge(ram, 0)).toBe(true);
    expect(hostSnapshot(ram).residentBytesByCause.collapse).toBe(BLOCK - PAGE);
  });

  test("khugepaged with max_ptes_none 0 leaves a block with holes alone", () => {
    const ram = hostRam({ ...input, khugepaged: { maxPtesNone: 0 } });
    write(ram, 0, 2 * BLOCK);
    balloon(ram, 0, 1, 512);
    balloon(ram, 1, 0, 1);
    squeeze(ram, MiB);
    hostReclaim(ram, 0);
    hostSetPressure(ram, 0);
    // Block 0 has 1 page, block 1 has 511: both have holes. Scan all 32 blocks each time.
    expect(hostKhugepagedScan(ram, 32 * PAGES_PER_BLOCK).collapsed).toBe(0);
    expectClean(ram);
    write(ram, BLOCK, PAGE); // fill block 1's hole: 512 present, no hole
    expect(hostKhugepagedScan(ram, 32 * PAGES_PER_BLOCK).collapsed).toBe(1);
    expect(usage(ram)).toEqual({ resident: PAGE + BLOCK, allocated: PAGE + BLOCK });
  });
});

describe("version differences", () => {
  test("a PTE-mapped THP is collapsed from 5.8 (6.1) but not on 5.6", () => {
    for (const kernel of ["5.6", "6.1"]) {
      const ram = hostRam({ backing: "anon", kernel });
      write(ram, 0, BLOCK);
      balloon(ram, 0, 0, 1);
      const result = hostKhugepagedScan(ram, 4096);
      expectClean(ram);
      expect(result.collapsed).toBe(kernel === "5.6" ? 0 : 1);
      expect(usage(ram).allocated).toBe(BLOCK);
      expect(usage(ram).resident).toBe(kernel === "5.6" ? BLOCK - PAGE : BLOCK);
    }
  });

  test("6.18 frees the emptied PTE table, so the block takes a THP fault again", () => {
    for (const kernel of ["6.1", "6.18"]) {
      const ram = hostRam({ backing: "anon", kernel });
      write(ram, 0, BLOCK);
      balloon(ram, 0, 0, 512); // the THP goes, its PTE table stays (pre-6.14)
      discard(ram, 0, BLOCK);
      write(ram, 0, PAGE);
      const { counters } = hostSnapshot(ram);
      expect(counters.faults2m).toBe(kernel === "6.18" ? 2 : 1);
      expect(counters.faults4k).toBe(kernel === "6.18" ? 0 : 1);
      expect(counters.ptTablesReclaimed).toBe(kernel === "6.18" ? 1 : 0);
    }
  });

  test("6.18 queues THPs at fault; the shrinker drops fully mapped ones unsplit", () => {
    const ram = hostRam({ backing: "anon", kernel: "6.18" });
    write(ram, 0, 2 * BLOCK);
    expect(hostSnapshot(ram).deferredSplitBytes).toBe(2 * BLOCK);
    expect(hostSnapshot(ram).deferredSplitPartialBytes).toBe(0);
    squeeze(ram, MiB);
    expect(hostReclaim(ram, 0)).toBe(0);
    expectClean(ram);
    expect(hostSnapshot(ram).deferredSplitBytes).toBe(0);
    expect(hostSnapshot(ram).anonHugePagesBytes).toBe(2 * BLOCK);
  });

  test("6.18 splits underused THPs when max_ptes_none is below 511", () => {
    for (const kernel of ["6.1", "6.18"]) {
      const ram = hostRam({ backing: "anon", kernel, khugepaged: { maxPtesNone: 255 } });
      write(ram, 0, PAGE); // 511 zero-filled subpages > 255
      write(ram, BLOCK, BLOCK); // fully written: not underused
      squeeze(ram, MiB);
      const freed = hostReclaim(ram, 0);
      expectClean(ram);
      expect(freed).toBe(kernel === "6.18" ? BLOCK - PAGE : 0);
      expect(hostBlockHuge(ram, 0)).toBe(kernel !== "6.18");
      expect(hostBlockHuge(ram, 1)).toBe(true);
    }
  });
});

describe("THP fault allocation", () => {
  test("too little free memory: thp_fault_fallback and a 4 KiB fault", () => {
    const ram = hostRam({ backing: "anon", thp: { defrag: "never" } });
    starveThp(ram);
    write(ram, 0, PAGE);
    const { counters } = hostSnapshot(ram);
    expect([counters.faults2m, counters.thpFaultFallback, counters.faults4k]).toEqual([0, 1, 1]);
    expect(ram.blockState[0]).toBe(BlockState.Pte);
    // The block has a page table now: 4 KiB faults even after the pressure is gone.
    hostSetPressure(ram, 0);
    write(ram, PAGE, PAGE);
    expect(hostSnapshot(ram).counters.faults4k).toBe(2);
  });

  test("defrag=madvise: direct reclaim runs the shrinker and the THP fault succeeds", () => {
    const ram = hostRam({ backing: "anon" });
    write(ram, 0, BLOCK);
    balloon(ram, 0, 1, 512);
    starveThp(ram);
    write(ram, BLOCK, PAGE);
    const { counters } = hostSnapshot(ram);
    expect([counters.faults2m, counters.thpFaultFallback, counters.splitDeferred]).toEqual([
      2, 0, 1,
    ]);
  });

  test("a host below 512 MiB has no THP (hugepage_init)", () => {
    const ram = hostRam({ backing: "anon", memoryBytes: 256 * MiB, thp: { enabled: "always" } });
    write(ram, 0, BLOCK);
    expect(hostSnapshot(ram).counters.faults2m).toBe(0);
    expect(hostKhugepagedScan(ram, 4096).blocksScanned).toBe(0);
  });

  test("a partial last block never takes a THP", () => {
    const ram = hostRam({ backing: "anon" }, 3 * MiB);
    write(ram, 0, 3 * MiB);
    expect(hostSnapshot(ram).blocks).toEqual({ full: 2, partial: 0, empty: 0, huge: 1 });
    expect(checkHostRam(ram)).toEqual([]);
  });
});

describe("khugepaged scanning", () => {
  test("pages_to_scan 4096 looks at 8 blocks per wake-up, round-robin", () => {
    const ram = hostRam({ backing: "anon", thp: { enabled: "never" }, memoryBytes: 4 * GiB });
    const scanned = hostKhugepagedScan(ram, 4096);
    expect(scanned.blocksScanned).toBe(0); // THP never: khugepaged does not run
    const thp = hostRam({ backing: "anon" }, 20 * MiB);
    expect(hostKhugepagedScan(thp, 4096)).toEqual({
      blocksScanned: 8,
      pagesScanned: 4096,
      collapsed: 0,
      allocFailed: 0,
    });
    expect(hostKhugepagedScan(thp, 4096).blocksScanned).toBe(8);
    expect(thp.khugepagedCursor).toBe(6); // 16 blocks visited of 10, wrapping
    expect(hostKhugepagedScan(thp, 1).blocksScanned).toBe(1);
  });
});
