// Goal: the host model scales to a 1 TiB guest (268,435,456 pages) within the memory budget
// (3 bits per 4 KiB page plus 15 bytes per 2 MiB block) and in reasonable time: half the RAM
// written, a quarter discarded, a snapshot and a full check. Method: a 2 TiB host backing 1 TiB
// of guest RAM with anon THP (2 MiB faults, the common case) and with memfd (4 KiB faults),
// writes in 1 GiB chunks, discards of every other 2 MiB block of the written half (what free
// page reporting sends), then the snapshot's numbers and the checker; the wall time of each
// run is logged (the test shell may read the clock, the model does not).
import { describe, expect, test } from "vitest";
import { checkHostRam } from "../../src/check/host_checker.ts";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import {
  createGuestRam,
  createHostConfig,
  hostGuestWrite,
  hostSnapshot,
  ramBlockDiscardRange,
} from "../../src/host/host_api.ts";
import { BLOCK, GiB } from "./helpers.ts";

const TiB = 1024 * GiB;
const PAGES = TiB / PAGE_SIZE;

describe("a 1 TiB guest", () => {
  test.each(["anon", "memfd"])("%s: write 1/2, discard 1/4, snapshot, check", (backing) => {
    const started = performance.now();
    const config = createHostConfig({ kernel: "6.18", memoryBytes: 2 * TiB, backing });
    const ram = createGuestRam(config, PAGES);
    expect(ram.pageCount).toBe(268_435_456);
    const bitmapBytes = ram.resident.byteLength + ram.touched.byteLength + ram.own.byteLength;
    expect(bitmapBytes / PAGES).toBeLessThanOrEqual(0.375);
    const chunkPages = GiB / PAGE_SIZE;
    for (let page = 0; page < PAGES / 2; page += chunkPages) hostGuestWrite(ram, page, chunkPages);
    for (let offset = 0; offset < TiB / 2; offset += 2 * BLOCK) {
      ramBlockDiscardRange(ram, offset, BLOCK);
    }
    const snapshot = hostSnapshot(ram);
    expect(snapshot.residentBytes).toBe(TiB / 4);
    expect(snapshot.allocatedBytes).toBe(TiB / 4);
    expect(snapshot.blocks.huge).toBe(backing === "anon" ? TiB / 4 / BLOCK : 0);
    expect(checkHostRam(ram)).toEqual([]);
    const seconds = (performance.now() - started) / 1000;
    console.log(`1 TiB ${backing}: ${seconds.toFixed(2)} s`);
    expect(seconds).toBeLessThan(30);
  });
});
