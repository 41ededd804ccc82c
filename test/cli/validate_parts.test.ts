// Goal: the parts of `balloonlab validate` that need no QEMU are right: the newc cpio writer,
// module dependencies read from .modinfo, the /proc parsers, pagemap-free smaps parsing, the
// host kernel mapped to the model's nearest version, and the verdicts with their tolerances.
// Method: small hand-made inputs with known answers.
import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import { executeScenario } from "../../src/cli/scenario_execution.ts";
import { parseScenarioText } from "../../src/cli/scenario_file.ts";
import { compareSnapshot, nearestModelKernel } from "../../src/cli/validate_compare.ts";
import { cpioNewc, gzipCpio } from "../../src/cli/validate_cpio.ts";
import { findRamMapping, parseMeminfo, parseSmaps } from "../../src/cli/validate_host_measure.ts";
import { moduleDepends } from "../../src/cli/validate_initramfs.ts";
import { checkRealSteps } from "../../src/cli/validate_real_run.ts";
import { parseBuddyinfo, parseVmstat, unusableIndex } from "../../src/cli/validate_snapshot.ts";
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
  test("steps the real side cannot do are refused as bad input", () => {
    const scenario = parseScenarioText(
      "guest: { memory: 512MiB }\nsteps:\n  - slab: { size: 10MiB }\n",
      "inline.yaml",
    );
    expect(() => checkRealSteps(scenario, "inline.yaml")).toThrow(InputError);
  });
});
