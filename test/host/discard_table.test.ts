// Goal: every row of the table in semantics 6.3 (what one balloon inflate or free page report
// does to host memory, per backing) holds in the model, for resident AND allocated memory, with
// QEMU's syscalls and alignment rules. Method: fault guest RAM in with guest writes, discard
// with ramBlockDiscardRange exactly as QEMU calls it, and compare resident bytes, allocated
// bytes, the meminfo-like lines and the syscall counters with the row; the independent checker
// runs after every step.
import { describe, expect, test } from "vitest";
import { hostSnapshot } from "../../src/host/host_api.ts";
import {
  BLOCK,
  discard,
  expectClean,
  GiB,
  hostRam,
  KiB,
  MiB,
  PAGES_PER_BLOCK,
  usage,
  write,
} from "./helpers.ts";

const PAGE = 4 * KiB;

describe("private anon (memory-backend-ram)", () => {
  test("THP off: a 4 KiB MADV_DONTNEED frees 4 KiB now", () => {
    const ram = hostRam({ backing: "anon", thp: { enabled: "never" } });
    write(ram, 0, BLOCK);
    expect(hostSnapshot(ram).counters.faults4k).toBe(512);
    expect(discard(ram, PAGE, PAGE)).toEqual({
      kind: "discarded",
      freedBytes: PAGE,
      unmappedBytes: PAGE,
    });
    expect(usage(ram)).toEqual({ resident: BLOCK - PAGE, allocated: BLOCK - PAGE });
    const { counters } = hostSnapshot(ram);
    expect([counters.madvise, counters.fallocate]).toEqual([1, 0]);
  });

  test.each(["5.6", "6.1", "6.18"])("THP on (%s): the PMD splits, nothing is freed", (kernel) => {
    const ram = hostRam({ backing: "anon", kernel });
    write(ram, 0, BLOCK);
    expect(hostSnapshot(ram).anonHugePagesBytes).toBe(BLOCK);
    discard(ram, PAGE, PAGE);
    const snapshot = hostSnapshot(ram);
    expect(usage(ram)).toEqual({ resident: BLOCK - PAGE, allocated: BLOCK });
    expect(snapshot.anonHugePagesBytes).toBe(0);
    expect(snapshot.deferredSplitPartialBytes).toBe(BLOCK);
    expect(snapshot.counters.splitPmd).toBe(1);
    expect(snapshot.counters.deferredSplitPage).toBe(1);
  });
});

describe("memfd / shmem", () => {
  test("no THP: PUNCH_HOLE + DONTNEED free 4 KiB", () => {
    const ram = hostRam({ backing: "memfd" });
    write(ram, 0, BLOCK);
    expect(hostSnapshot(ram).shmemHugePagesBytes).toBe(0);
    discard(ram, 10 * PAGE, PAGE);
    expect(usage(ram)).toEqual({ resident: BLOCK - PAGE, allocated: BLOCK - PAGE });
    const { counters } = hostSnapshot(ram);
    expect([counters.madvise, counters.fallocate]).toEqual([1, 1]);
  });

  test.each([
    ["memfd", { shmemEnabled: "always" as const }],
    ["tmpfs-huge", {}],
  ])("%s THP on Linux 5.6: a punched subpage is zeroed, nothing is ever freed", (backing, thp) => {
    const ram = hostRam({ backing, kernel: "5.6", thp });
    write(ram, 0, BLOCK);
    expect(hostSnapshot(ram).shmemPmdMappedBytes).toBe(BLOCK);
    discard(ram, PAGE, PAGE);
    // The partial punch zaps the whole PMD mapping (file __split_huge_pmd), the THP stays.
    expect(usage(ram)).toEqual({ resident: 0, allocated: BLOCK });
    for (let page = 0; page < PAGES_PER_BLOCK; page++) discard(ram, page * PAGE, PAGE);
    expect(usage(ram)).toEqual({ resident: 0, allocated: BLOCK });
    expect(hostSnapshot(ram).shmemHugePagesBytes).toBe(BLOCK);
    expect(hostSnapshot(ram).counters.splitShmem).toBe(0);
  });

  test.each([
    ["memfd", "6.1"],
    ["tmpfs-huge", "6.1"],
    ["tmpfs-huge", "6.18"],
  ])("%s THP on Linux %s: the THP splits and 4 KiB is freed", (backing, kernel) => {
    const ram = hostRam({ backing, kernel, thp: { shmemEnabled: "always" } });
    write(ram, 0, BLOCK);
    discard(ram, PAGE, PAGE);
    // split_huge_page unmaps the folio and does not remap file pages: Rss drops for the block.
    expect(usage(ram)).toEqual({ resident: 0, allocated: BLOCK - PAGE });
    const snapshot = hostSnapshot(ram);
    expect(snapshot.shmemHugePagesBytes).toBe(0);
    expect(snapshot.counters.splitShmem).toBe(1);
    // The guest touches the block again: 511 minor faults from the page cache, 1 new page.
    write(ram, 0, BLOCK);
    expect(usage(ram)).toEqual({ resident: BLOCK, allocated: BLOCK });
    expect(hostSnapshot(ram).counters.faultsMapped).toBe(511);
  });
});

describe("hugetlbfs", () => {
  test("2 MiB pages: 4 KiB and unaligned discards are refused, 2 MiB ones free a page", () => {
    const ram = hostRam({ backing: "hugetlbfs" });
    write(ram, 0, 2 * BLOCK);
    const before = hostSnapshot(ram);
    expect(before.hugetlbPagesTotal - before.hugetlbPagesFree).toBe(2);
    expect(discard(ram, 0, PAGE).kind).toBe("error");
    expect(discard(ram, PAGE, PAGE).kind).toBe("error");
    expect(discard(ram, MiB, BLOCK).kind).toBe("error");
    expect(usage(ram)).toEqual({ resident: 2 * BLOCK, allocated: 2 * BLOCK });
    expect(discard(ram, BLOCK, BLOCK)).toEqual({
      kind: "discarded",
      freedBytes: BLOCK,
      unmappedBytes: BLOCK,
    });
    const after = hostSnapshot(ram);
    expect(usage(ram)).toEqual({ resident: BLOCK, allocated: BLOCK });
    expect(after.hugetlbPagesFree).toBe(before.hugetlbPagesFree + 1);
    // The pool was reserved at boot: MemFree does not move.
    expect(after.hostMemFreeBytes).toBe(before.hostMemFreeBytes);
    expect([after.counters.fallocate, after.counters.madvise]).toEqual([1, 0]);
    expect(after.counters.discardErrors).toBe(3);
  });

  test("1 GiB pages: a 2 MiB report is not aligned, a 1 GiB discard frees the page", () => {
    const ram = hostRam({ backing: "hugetlbfs", hugetlbPageBytes: GiB }, 2 * GiB);
    write(ram, 0, PAGE);
    expect(usage(ram)).toEqual({ resident: GiB, allocated: GiB });
    expect(discard(ram, 0, BLOCK).kind).toBe("error");
    expect(discard(ram, 0, GiB).kind).toBe("discarded");
    expect(usage(ram)).toEqual({ resident: 0, allocated: 0 });
    expect(hostSnapshot(ram).hugetlbPagesFree).toBe(2);
  });
});

describe("a 2 MiB-aligned discard frees whole huge pages on every backing", () => {
  const cases = [
    ["anon", "5.6", {}],
    ["anon", "6.1", {}],
    ["anon", "6.18", {}],
    ["memfd", "5.6", { shmemEnabled: "always" as const }],
    ["memfd", "6.18", { shmemEnabled: "always" as const }],
    ["tmpfs-huge", "5.6", {}],
    ["tmpfs-huge", "6.1", {}],
    ["hugetlbfs", "6.1", {}],
  ] as const;
  test.each(cases)("%s on %s", (backing, kernel, thp) => {
    const ram = hostRam({ backing, kernel, thp });
    write(ram, 0, 4 * BLOCK);
    expect(hostSnapshot(ram).blocks.huge).toBe(4);
    const result = discard(ram, BLOCK, 2 * BLOCK);
    expect(result).toEqual({ kind: "discarded", freedBytes: 2 * BLOCK, unmappedBytes: 2 * BLOCK });
    expect(usage(ram)).toEqual({ resident: 2 * BLOCK, allocated: 2 * BLOCK });
    expect(hostSnapshot(ram).deferredSplitPartialBytes).toBe(0);
  });
});

describe("QEMU's checks and inhibition", () => {
  test("a range past the end of the RAMBlock is refused", () => {
    const ram = hostRam({ backing: "anon" }, 8 * MiB);
    const result = discard(ram, 6 * MiB, 4 * MiB);
    expect(result.kind).toBe("error");
    if (result.kind === "error") expect(result.message).toContain("Overrun block");
    expect(hostSnapshot(ram).counters.madvise).toBe(0);
  });

  test("a zero-length discard: madvise accepts it, fallocate fails with EINVAL", () => {
    const anon = hostRam({ backing: "anon" });
    expect(discard(anon, 0, 0).kind).toBe("discarded");
    const memfd = hostRam({ backing: "memfd" });
    expect(discard(memfd, 0, 0).kind).toBe("error");
    expect(hostSnapshot(memfd).counters.madvise).toBe(0);
  });

  test.each(["anon", "memfd", "tmpfs-huge", "hugetlbfs"])(
    "%s: inhibited discards are acknowledged and change nothing",
    (backing) => {
      const ram = hostRam({ backing, discardInhibited: true });
      write(ram, 0, 4 * BLOCK);
      const before = hostSnapshot(ram);
      expect(discard(ram, 0, PAGE)).toEqual({ kind: "ignored" });
      expect(discard(ram, 0, 2 * BLOCK)).toEqual({ kind: "ignored" });
      const after = hostSnapshot(ram);
      expect(after.counters.discardsIgnored).toBe(2);
      expect({ ...after, counters: before.counters }).toEqual(before);
      expect([after.counters.madvise, after.counters.fallocate]).toEqual([0, 0]);
      expectClean(ram);
    },
  );
});
