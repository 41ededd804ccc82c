// Goal: the host configuration refuses what the model cannot run (other kernels, unknown
// backings and knobs, out-of-range khugepaged values, a hugetlb pool larger than the host) with
// every problem named, fills the kernel's defaults, and the host kernel table and watermarks
// give the values the kernel sources give. Method: build configs with createHostConfig /
// validateHostConfig and compare with the documented defaults and hand-computed watermarks.
import { describe, expect, test } from "vitest";
import {
  createGuestRam,
  createHostConfig,
  type HostConfig,
  hostKernelRules,
  hostSnapshot,
  validateHostConfig,
} from "../../src/host/host_api.ts";
import { GiB, MiB } from "./helpers.ts";

const base = { kernel: "6.1", memoryBytes: 16 * GiB, backing: "anon" } as const;

describe("host config", () => {
  test("defaults are the kernel's: khugepaged 10 s / 4096 / 511, shmem_enabled never", () => {
    const config = createHostConfig(base);
    expect(config.khugepaged).toEqual({ scanSleepMs: 10000, pagesToScan: 4096, maxPtesNone: 511 });
    expect(config.thp).toEqual({ enabled: "madvise", defrag: "madvise", shmemEnabled: "never" });
    expect(config.hugetlbPageBytes).toBe(2 * MiB);
    expect(validateHostConfig(config)).toEqual([]);
  });

  test.each(["5.10", "6.6", "", "latest"])("kernel %j is refused", (kernel) => {
    expect(() => createHostConfig({ ...base, kernel })).toThrow(/kernel/);
    expect(() => hostKernelRules(kernel)).toThrow(RangeError);
  });

  test("every problem is listed at once", () => {
    const bad = {
      ...createHostConfig(base),
      backing: "file",
      hugetlbPageBytes: 4 * MiB,
      thp: { enabled: "sometimes", defrag: "fast", shmemEnabled: "yes" },
      khugepaged: { scanSleepMs: -1, pagesToScan: 0, maxPtesNone: 512 },
      shmemSplitFailPerMille: 1001,
      memoryBytes: 1000,
    } as unknown as HostConfig;
    const problems = validateHostConfig(bad);
    expect(problems).toHaveLength(10);
    expect(problems.join("\n")).toMatch(/maxPtesNone 512: expected 0..511/);
  });

  test("a hugetlb pool that does not fit, or RAM not in whole huge pages, is refused", () => {
    const small = createHostConfig({ ...base, memoryBytes: GiB, backing: "hugetlbfs" });
    expect(() => createGuestRam(small, (2 * GiB) / 4096)).toThrow(/does not fit/);
    const huge = createHostConfig({ ...base, backing: "hugetlbfs", hugetlbPageBytes: GiB });
    expect(() => createGuestRam(huge, (3 * GiB) / 2 / 4096)).toThrow(/multiple/);
  });
});

describe("host kernel table and watermarks", () => {
  test("the table's rows split the versions where the changes landed", () => {
    const rows = ["5.6", "6.1", "6.18"].map((v) => hostKernelRules(v));
    expect(rows.map((r) => r.shmemSplitOnPunch)).toEqual([false, true, true]);
    expect(rows.map((r) => r.collapsePteMappedThp)).toEqual([false, true, true]);
    expect(rows.map((r) => r.thpQueueAtFault)).toEqual([false, false, true]);
    expect(rows.map((r) => r.ptReclaim)).toEqual([false, false, true]);
    expect(rows.map((r) => r.minFreeKbytesMax)).toEqual([65536, 262144, 262144]);
  });

  test("64 GiB host with khugepaged: min 16896, low 33673, high 50450 pages", () => {
    const ram = createGuestRam(createHostConfig({ ...base, memoryBytes: 64 * GiB }), 512);
    expect(ram.watermarks).toEqual({
      minFreeKbytes: 67584,
      minPages: 16896,
      lowPages: 33673,
      highPages: 50450,
    });
    expect(hostSnapshot(ram).watermarkLowBytes).toBe(33673 * 4096);
  });

  test("8 GiB host without THP: the square-root rule (min_free_kbytes 11585)", () => {
    const config = createHostConfig({ ...base, memoryBytes: 8 * GiB, thp: { enabled: "never" } });
    const ram = createGuestRam(config, 512);
    // delta = max(2896 / 4, 2097152 * 10 / 10000) = 2097 (semantics 1.7's example).
    expect(ram.watermarks).toEqual({
      minFreeKbytes: 11585,
      minPages: 2896,
      lowPages: 4993,
      highPages: 7090,
    });
  });
});
