// Goal: the parts of `balloonlab validate` that need no QEMU are right: the newc cpio writer,
// module dependencies read from .modinfo, the /proc parsers, pagemap-free smaps parsing, the
// host kernel mapped to the model's nearest version, and the verdicts with their tolerances.
// Method: small hand-made inputs with known answers.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import { executeScenario } from "../../src/cli/scenario_execution.ts";
import { loadScenarioFile, parseScenarioText } from "../../src/cli/scenario_file.ts";
import {
  cgroupCharge,
  limitSteps,
  memoryHierarchy,
  parseCgroupStat,
  parseMounts,
} from "../../src/cli/validate_cgroup.ts";
import { compareSnapshot, nearestModelKernel } from "../../src/cli/validate_compare.ts";
import { cpioNewc, gzipCpio } from "../../src/cli/validate_cpio.ts";
import {
  findRamMapping,
  type HostMeasurement,
  hugeHeadFlags,
  pagemapBlockCounts,
  parseMeminfo,
  parseSmaps,
  partialAnonThpHead,
} from "../../src/cli/validate_host_measure.ts";
import { moduleDepends } from "../../src/cli/validate_initramfs.ts";
import {
  allocatedDetail,
  checkRealSteps,
  deferredSplitDetail,
} from "../../src/cli/validate_real_run.ts";
import {
  hostBlocksText,
  NOT_MEASURED,
  parseBuddyinfo,
  parseGuestBlocks,
  parseVmstat,
  realLadder,
  unusableIndex,
} from "../../src/cli/validate_snapshot.ts";
import { HostKnobs, pagecacheImageMiB, qemuArgs, qemuCommand } from "../../src/cli/validate_vm.ts";
import { InputError } from "../../src/core/input_error.ts";

describe("cpio newc", () => {
  test("headers, 4-byte padding and the trailer", () => {
    const archive = cpioNewc([{ kind: "file", path: "init", data: Buffer.from("abc") }]);
    const text = archive.toString("latin1");
    expect(text.startsWith("070701")).toBe(true);
    expect(archive.length % 4).toBe(0);
    expect(text).toContain("init\0");
    expect(text).toContain("abc");
    expect(text).toContain("TRAILER!!!\0");
    // file size field (7th) is 3
    expect(text.slice(6 + 6 * 8, 6 + 7 * 8)).toBe("00000003");
  });
  test("gzip round trip", () => {
    const entries = [{ kind: "symlink", path: "bin/sh", target: "busybox" }] as const;
    expect(gunzipSync(gzipCpio(entries)).equals(cpioNewc(entries))).toBe(true);
  });
});

describe("parsers", () => {
  test("module depends from .modinfo", () => {
    const data = Buffer.from("\0license=GPL\0depends=virtio,virtio_ring\0intree=Y\0", "latin1");
    expect(moduleDepends(data)).toEqual(["virtio", "virtio_ring"]);
    expect(moduleDepends(Buffer.from("\0depends=\0", "latin1"))).toEqual([]);
  });
  test("buddyinfo, vmstat, meminfo, unusable index", () => {
    const buddy = parseBuddyinfo(
      "Node 0, zone      DMA  1  0  0  0  0  0  0  0  1  1  3\n" +
        "Node 0, zone    DMA32  4  0  0  0  0  0  0  0  0  0  100\n",
    );
    expect(buddy.DMA32![10]).toBe(100);
    expect(unusableIndex(buddy, 9)).toBe(0);
    expect(parseVmstat("nr_free_pages 12\npgfault 3\n")).toEqual({ nr_free_pages: 12, pgfault: 3 });
    expect(parseMeminfo("MemFree:  100 kB\nHugePages_Total:   2\n")).toEqual({
      MemFree: 100,
      HugePages_Total: 2,
    });
  });
  test("smaps: the guest-RAM mapping is found by its size", () => {
    const smaps =
      "7f0000000000-7f0028000000 rw-p 00000000 00:00 0 \nRss:  1024 kB\nAnonHugePages: 0 kB\n" +
      "7f1000000000-7f1000001000 rw-p 00000000 00:00 0 \nRss:  4 kB\n";
    const mapping = findRamMapping(parseSmaps(smaps), 640 * 2 ** 20);
    expect(mapping.fields.Rss).toBe(1024);
    expect(() => findRamMapping(parseSmaps(smaps), 2 ** 30)).toThrow(/no mapping/);
  });
});

describe("QEMU's memory cgroup", () => {
  test("v1 is found from the mounts when no cgroup2 mount has the memory controller", () => {
    const mounts =
      "cgroup2 /nonexistent/unified cgroup2 rw,relatime 0 0\n" +
      "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n" +
      "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n";
    expect(parseMounts(mounts)[2]).toEqual([
      "/sys/fs/cgroup/memory",
      "cgroup",
      ["rw", "relatime", "memory"],
    ]);
    expect(memoryHierarchy(mounts)).toEqual({ version: 1, root: "/sys/fs/cgroup/memory" });
    expect(memoryHierarchy("proc /proc proc rw 0 0\n")).toBeUndefined();
  });
  test("memory.stat of v1 and v2 as a charge in kB", () => {
    const v1 = parseCgroupStat(
      "cache 8192\nrss 4194304\nrss_huge 2097152\nshmem 4096\n" +
        "active_anon 3145728\ninactive_anon 2097152\n",
    );
    expect(cgroupCharge(1, v1, 10240)).toEqual({
      anon_kB: 4096,
      shmem_kB: 4,
      anonThp_kB: 2048,
      anonLru_kB: 5120,
      file_kB: 8,
      usage_kB: 10,
    });
    const v2 = parseCgroupStat(
      "anon 2048\nfile 4096\nshmem 1024\nanon_thp 0\ninactive_anon 3072\n",
    );
    expect(cgroupCharge(2, v2, 0)).toMatchObject({
      anon_kB: 2,
      shmem_kB: 1,
      anonLru_kB: 3,
      file_kB: 4,
    });
  });
  test("QEMU joins the cgroup through sh before exec, keeping setpriv", () => {
    const command = qemuCommand(["-m", "640M"], "/cg/balloonlab-1/cgroup.procs");
    expect(command.slice(0, 4)).toEqual([
      "sh",
      "-c",
      'echo $$ > "$0" && exec "$@"',
      "/cg/balloonlab-1/cgroup.procs",
    ]);
    expect(command.slice(-3)).toEqual(["qemu-system-x86_64", "-m", "640M"]);
    expect(qemuCommand(["-m", "640M"])[0]).not.toBe("sh");
  });
  test("allocated: the cgroup's anon LRU less QEMU's own anon, plus hugetlb; else MemFree", () => {
    const host = {
      mapping: { start: 0, end: 0, name: "", fields: { Rss: 1000 } },
      meminfo: { MemFree: 5000, HugePages_Total: 10, HugePages_Free: 7 },
      qemuRss_kB: 1300,
      qemuOwnAnon_kB: 200,
    } as unknown as HostMeasurement;
    const before = { memFree_kB: 7000, hugetlbUsed: 1, cgroup: undefined, slabsScanned: 0 };
    const memfree = allocatedDetail(before, host, undefined);
    expect(memfree).toMatchObject({ source: "memfree", allocated_kB: 7000 - 5000 - 300 });
    expect(memfree.hugetlb_kB).toBe(2 * 2048);
    const cgroup = { version: 1 as const, dir: "/cg", procs: "/cg/cgroup.procs" };
    const charge = cgroupCharge(1, { active_anon: 1200 * 1024, rss: 1100 * 1024 }, 0);
    const detail = allocatedDetail({ ...before, cgroup }, host, charge);
    expect(detail).toMatchObject({ source: "cgroup-v1", allocated_kB: 1000 + 2 * 2048 });
  });
});

describe("THP ladder of the real side", () => {
  /** A pagemap of `pages` entries: present with the given PFN, or absent (undefined). */
  function pagemap(pfns: Array<number | undefined>): Buffer {
    const buffer = Buffer.alloc(pfns.length * 8);
    pfns.forEach((pfn, page) => {
      if (pfn !== undefined) buffer.writeBigUInt64LE((1n << 63n) | BigInt(pfn), page * 8);
    });
    return buffer;
  }
  test("host: one aligned huge page behind all 512 pages, by PFN and kpageflags", () => {
    const thpHead = (1n << 15n) | (1n << 22n);
    const hugetlbHead = (1n << 15n) | (1n << 17n);
    expect(hugeHeadFlags(thpHead)).toBe(true);
    expect(hugeHeadFlags(hugetlbHead)).toBe(true);
    expect(hugeHeadFlags(1n << 22n)).toBe(false);
    const pfns: Array<number | undefined> = [];
    for (let i = 0; i < 512; i++) pfns.push(1024 + i); // block 0: THP at pfn 1024
    for (let i = 0; i < 512; i++) pfns.push(4096 + ((i * 7) % 512)); // block 1: scattered
    for (let i = 0; i < 512; i++) pfns.push(i < 100 ? 8192 + i : undefined); // block 2: partial
    for (let i = 0; i < 512; i++) pfns.push(2048 + i); // block 3: contiguous, not huge
    const heads = new Map([
      [1024n, thpHead],
      [4096n, thpHead],
      [8192n, hugetlbHead],
    ]);
    const counts = pagemapBlockCounts(pagemap(pfns), 2048, (pfn) => heads.get(pfn) ?? 0n);
    expect([...counts.hostHuge]).toEqual([1, 0, 0, 0]);
    expect(counts).toMatchObject({ fullBlocks: 3, partialBlocks: 1, emptyBlocks: 0 });
    expect(counts.presentPages).toBe(3 * 512 + 100);
    expect(hostBlocksText(counts.hostHuge)).toBe("H...");
  });
  test("host: anonymous THPs mapped whole and partly unmapped, by PFN and kpageflags", () => {
    const anonHead = (1n << 15n) | (1n << 22n) | (1n << 12n);
    const anonTail = (1n << 16n) | (1n << 22n) | (1n << 12n);
    const pfns: Array<number | undefined> = [];
    for (let i = 0; i < 512; i++) pfns.push(1024 + i); // block 0: whole anon THP
    for (let i = 0; i < 512; i++) pfns.push(i % 2 === 1 ? 2048 + i : undefined); // 1: half
    for (let i = 0; i < 512; i++) pfns.push(i < 2 ? 4096 + i * 3 : undefined); // 2: not one THP
    for (let i = 0; i < 512; i++) pfns.push(i < 8 ? 8192 + i : undefined); // 3: small pages
    const flags = (pfn: bigint): bigint => {
      if (pfn === 1024n || pfn === 2048n || pfn === 4096n) return anonHead;
      if ((pfn > 1024n && pfn < 1536n) || (pfn > 2048n && pfn < 2560n)) return anonTail;
      return 0n;
    };
    const counts = pagemapBlockCounts(pagemap(pfns), 2048, flags);
    expect([...counts.anonThp]).toEqual([1, 2, 0, 0]);
    expect([...counts.anonThpHead]).toEqual([1024, 2048, 0, 0]);
    expect(partialAnonThpHead(pagemap(pfns), 512, flags)).toBe(2048);
    const queued = deferredSplitDetail(
      counts.anonThp,
      counts.anonThpHead,
      new Map(),
      true,
      undefined,
    );
    expect(queued).toMatchObject({ deferredSplit_kB: 2 * 2048, partialThps: 1, wholeQueued: 1 });
    const scanned = deferredSplitDetail(
      counts.anonThp,
      counts.anonThpHead,
      new Map([[0, 1024]]),
      true,
      "reason",
    );
    expect(scanned).toMatchObject({ deferredSplit_kB: 2048, known: false, note: "reason" });
    const old = deferredSplitDetail(
      counts.anonThp,
      counts.anonThpHead,
      new Map(),
      false,
      undefined,
    );
    expect(old.deferredSplit_kB).toBe(2048);
  });
  test("guest blocks and host huge blocks make the ladder", () => {
    const guest = parseGuestBlocks("BF\nHHt.\n");
    expect(guest).toBe("BFHHt.");
    const ladder = realLadder(guest, Uint8Array.from([1, 1, 1, 0, 1, 0, 1]));
    expect(ladder).toEqual({
      ballooned: 1,
      free: 1,
      hugeBoth: 1,
      guestOnly: 1,
      hostOnly: 2,
      neither: 1,
    });
    expect(NOT_MEASURED).not.toContain("ladder");
  });
});

describe("model side and verdicts", () => {
  test("host kernels map to the nearest model version", () => {
    expect(nearestModelKernel("6.18.44-fc-v657")).toBe("6.18");
    expect(nearestModelKernel("6.1.0-56-cloud-amd64")).toBe("6.1");
    expect(nearestModelKernel("5.10.0-30-amd64")).toBe("5.6");
    expect(nearestModelKernel("6.12.9")).toBe("6.18");
  });
  test("identical snapshots pass; a resident 10 % off fails at 5 %", () => {
    const scenario = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - memhog: { size: 100MiB }\n  - snapshot: s\n",
      "inline.yaml",
    );
    const snapshot = executeScenario(scenario).result.snapshots[0]!;
    const same = compareSnapshot(snapshot, snapshot, scenario.guest.memoryBytes);
    expect(same.every((v) => v.verdict !== "fail")).toBe(true);
    const off = structuredClone(snapshot);
    off.host.ramResident_kB += 0.1 * 512 * 1024;
    const verdicts = compareSnapshot(snapshot, off, scenario.guest.memoryBytes);
    expect(verdicts.find((v) => v.quantity === "host.ramResident_kB")?.verdict).toBe("fail");
  });
  test("allocated: a real verdict from a cgroup, info from MemFree; ladder counts at 5 %", () => {
    const scenario = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - memhog: { size: 100MiB }\n  - snapshot: s\n",
      "inline.yaml",
    );
    const snapshot = executeScenario(scenario).result.snapshots[0]!;
    const off = structuredClone(snapshot);
    off.host.ramAllocated_kB += 0.06 * 512 * 1024;
    off.ladder.free += 13; // 5 % of 256 blocks is 12.8
    const allocated = (source: "cgroup-v2" | "memfree") =>
      compareSnapshot(snapshot, off, scenario.guest.memoryBytes, source).find(
        (v) => v.quantity === "host.ramAllocated_kB",
      );
    expect(allocated("cgroup-v2")).toMatchObject({ verdict: "fail", tolerance: 0.05 * 512 * 1024 });
    expect(allocated("memfree")?.verdict).toBe("info");
    const ladder = compareSnapshot(snapshot, off, scenario.guest.memoryBytes, "cgroup-v1").filter(
      (v) => v.quantity.startsWith("ladder."),
    );
    expect(ladder.map((v) => v.quantity.slice(7))).toEqual([
      "hugeBoth",
      "guestOnly",
      "hostOnly",
      "neither",
      "free",
      "ballooned",
    ]);
    expect(ladder.find((v) => v.quantity === "ladder.free")?.verdict).toBe("fail");
    expect(ladder.filter((v) => v.verdict === "fail")).toHaveLength(1);
  });
  test("deferred split gets a verdict, info when the host's queue is not known", () => {
    const scenario = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - memhog: { size: 64MiB, thp: true }\n  - snapshot: s\n",
      "inline.yaml",
    );
    const snapshot = executeScenario(scenario).result.snapshots[0]!;
    const off = { ...snapshot, host: { ...snapshot.host, deferredSplit_kB: 10 ** 7 } };
    const find = (known: boolean) =>
      compareSnapshot(snapshot, off, scenario.guest.memoryBytes, "cgroup-v1", { known }).find(
        (v) => v.quantity === "host.deferredSplit_kB",
      );
    expect(find(true)?.verdict).toBe("fail");
    expect(find(false)?.verdict).toBe("info");
    expect(NOT_MEASURED).not.toContain("host.deferredSplit_kB");
  });
  test("hostPressure lowers the v1 limit in steps down to its target", () => {
    const steps = limitSteps(512 * 2 ** 20, 100 * 2 ** 20 + 1);
    expect(steps.at(-1)).toBe(100 * 2 ** 20 + 4096);
    expect(steps.length).toBeLessThanOrEqual(34);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!).toBeLessThan(steps[i - 1]!);
    expect(limitSteps(512 * 2 ** 20, 512 * 2 ** 20 - 4096)).toEqual([512 * 2 ** 20 - 4096]);
  });
  test("host knobs: only a differing value is written, and it is restored", () => {
    const dir = mkdtempSync(join(tmpdir(), "knobs-"));
    const same = join(dir, "same");
    const other = join(dir, "other");
    writeFileSync(same, "511\n");
    writeFileSync(other, "10000\n");
    const knobs = new HostKnobs();
    knobs.setKnob(same, "511");
    knobs.setKnob(other, "100");
    expect(readFileSync(other, "utf8")).toBe("100");
    const done = knobs.temporary("temporary", () => writeFileSync(same, "temp-undone"));
    done();
    expect(readFileSync(same, "utf8")).toBe("temp-undone");
    knobs.restore();
    expect(readFileSync(other, "utf8")).toBe("10000");
    expect(knobs.log).toEqual([`${same}: 511 (already)`, `${other}: 10000 -> 100`]);
    rmSync(dir, { recursive: true });
  });
  test("pagecache: an ext4 image big enough for the files, attached read-only", () => {
    expect(pagecacheImageMiB([384 * 2 ** 20, 64 * 2 ** 20])).toBe(Math.ceil(448 * 1.02) + 16);
    const scenario = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - pagecache: { size: 10MiB, drop: true }\n",
      "inline.yaml",
    );
    expect(() => checkRealSteps(scenario, "inline.yaml")).not.toThrow();
    const kernel = { packageName: "k", release: "r", vmlinuz: "/k", modulesDir: "/m" };
    const files = { initramfs: "/i", workDir: "/w", backend: "memory-backend-ram,id=ram0" };
    const args = qemuArgs(scenario, kernel, { ...files, disk: "/w/pagecache.ext4" });
    expect(args.slice(-2)).toEqual([
      "-drive",
      "file=/w/pagecache.ext4,if=virtio,format=raw,readonly=on",
    ]);
    expect(qemuArgs(scenario, kernel, files)).not.toContain("-drive");
  });
  test("slab is performed (pipe pages); a balloon policy other than Linux's is refused", () => {
    const slab = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - slab: { size: 10MiB, spread: 8 }\n",
      "inline.yaml",
    );
    expect(() => checkRealSteps(slab, "inline.yaml")).not.toThrow();
    const shipped = "validate/scenarios/unmovable.yaml";
    const unmovable = loadScenarioFile(shipped);
    expect(() => checkRealSteps(unmovable, shipped)).not.toThrow();
    expect(unmovable.steps).toContainEqual({ kind: "slab", sizeBytes: 32 * 2 ** 20, spread: 8 });
    const workload = readFileSync("validate/guest/workload.c", "utf8");
    expect(workload).toContain('strcmp(verb, "slab")');
    expect(workload).toContain("F_SETPIPE_SZ");
    const policy = parseScenarioText(
      "guest: { memory: 512MiB }\nballoon: { policy: thp-order }\nsteps:\n  - snapshot: s\n",
      "inline.yaml",
    );
    expect(() => checkRealSteps(policy, "inline.yaml")).toThrow(InputError);
  });
});
