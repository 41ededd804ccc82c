// `balloonlab validate` (issue #5): a memory cgroup of QEMU's own, so that the host memory
// allocated for guest RAM is the cgroup's charge rather than an estimate from host MemFree.
// cgroup v2 when the host has the memory controller there (a cgroup2 mount whose
// cgroup.controllers and cgroup.subtree_control name "memory"), else v1 (a `cgroup` mount with
// the memory controller); the child is `balloonlab-<pid>` at the root of that hierarchy, made
// before QEMU starts (QEMU joins it through a `sh -c 'echo $$ > cgroup.procs; exec ...'`
// wrapper, validate_vm.ts, so every page it ever touches is charged there) and removed on every
// exit path through HostKnobs (v1: memory.force_empty first, then rmdir, retried while QEMU's
// last pages go away). When none can be made the caller falls back to MemFree.

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HostKnobs } from "./validate_vm.ts";

/** Where `host.ramAllocated_kB` of the real side comes from. */
export type AllocatedSource = "cgroup-v1" | "cgroup-v2" | "memfree";

export interface QemuCgroup {
  readonly version: 1 | 2;
  readonly dir: string;
  /** The file QEMU's wrapper writes its pid to. */
  readonly procs: string;
}

/** The cgroup's charge, kB, from memory.stat (and memory.usage_in_bytes / memory.current). */
export interface CgroupCharge {
  /** v1 `rss`, v2 `anon`: anonymous pages mapped (THPs included). */
  readonly anon_kB: number;
  /** v1 and v2 `shmem`: shmem/tmpfs pages (memfd, a tmpfs backing file), THPs included. */
  readonly shmem_kB: number;
  /** v1 `rss_huge`, v2 `anon_thp`. */
  readonly anonThp_kB: number;
  /**
   * `active_anon + inactive_anon` (v1 and v2): anonymous and shmem folios on the cgroup's LRU,
   * whole, so a THP whose PMD was split and which waits for the deferred split counts whole.
   */
  readonly anonLru_kB: number;
  /** v1 `cache`, v2 `file`: the page cache charged (shmem included). */
  readonly file_kB: number;
  /** memory.usage_in_bytes (v1) or memory.current (v2). */
  readonly usage_kB: number;
}

/** Mount points of `/proc/self/mounts` lines: [mount point, fs type, options]. */
export function parseMounts(text: string): Array<[string, string, string[]]> {
  return text
    .split("\n")
    .map((line) => line.split(" "))
    .filter((fields) => fields.length >= 4)
    .map((fields) => [fields[1]!.replace(/\\040/g, " "), fields[2]!, fields[3]!.split(",")]);
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** The hierarchy a memory cgroup can be made in: v2 if it has the controller, else v1. */
export function memoryHierarchy(mountsText: string): { version: 1 | 2; root: string } | undefined {
  const mounts = parseMounts(mountsText);
  for (const [point, type] of mounts) {
    if (type !== "cgroup2") continue;
    const has = (file: string): boolean => /\bmemory\b/.test(readText(join(point, file)));
    if (has("cgroup.controllers") && has("cgroup.subtree_control"))
      return { version: 2, root: point };
  }
  for (const [point, type, options] of mounts) {
    if (type === "cgroup" && options.includes("memory")) return { version: 1, root: point };
  }
  return undefined;
}

/** Sleeps synchronously (usable in exit and signal handlers). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * v1: moves what is left charged to the parent; rmdir, retried for 2 s while tasks remain (QEMU
 * must have been reaped: a zombie is still a task; see RunningVm.stopAndReap).
 */
function removeCgroup(cgroup: QemuCgroup): void {
  for (let waited = 0; ; waited += 100) {
    if (cgroup.version === 1) {
      try {
        writeFileSync(join(cgroup.dir, "memory.force_empty"), "0");
      } catch {
        // EBUSY while a task is still in it; rmdir below says the same
      }
    }
    try {
      rmdirSync(cgroup.dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
      if (waited >= 2000) throw error;
      sleepSync(100);
    }
  }
}

/**
 * Makes `balloonlab-<pid>` in the host's memory hierarchy, removed with the other host knobs;
 * undefined (with the reason on stderr) when the host has no memory controller or it cannot
 * be made.
 */
export function createQemuCgroup(knobs: HostKnobs): QemuCgroup | undefined {
  const hierarchy = memoryHierarchy(readText("/proc/self/mounts"));
  if (hierarchy === undefined) {
    process.stderr.write("validate: no memory cgroup controller; allocated memory from MemFree\n");
    return undefined;
  }
  const dir = join(hierarchy.root, `balloonlab-${process.pid}`);
  try {
    mkdirSync(dir);
  } catch (error) {
    process.stderr.write(
      `validate: cannot make ${dir} (${String(error)}); allocated memory from MemFree\n`,
    );
    return undefined;
  }
  const cgroup: QemuCgroup = { version: hierarchy.version, dir, procs: join(dir, "cgroup.procs") };
  knobs.add(`memory cgroup v${cgroup.version} ${dir} for QEMU`, () => removeCgroup(cgroup));
  if (!existsSync(join(dir, "memory.stat"))) {
    process.stderr.write(`validate: ${dir} has no memory.stat; allocated memory from MemFree\n`);
    return undefined;
  }
  return cgroup;
}

/** memory.stat as numbers (bytes for sizes). */
export function parseCgroupStat(text: string): Record<string, number> {
  const fields: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const match = /^(\w+)\s+(\d+)$/.exec(line.trim());
    if (match) fields[match[1]!] = Number(match[2]);
  }
  return fields;
}

/** The charge of a cgroup from its memory.stat and usage, kB. */
export function cgroupCharge(version: 1 | 2, stat: Record<string, number>, usageBytes: number) {
  const kB = (bytes: number | undefined): number => Math.round((bytes ?? 0) / 1024);
  const charge: CgroupCharge =
    version === 1
      ? {
          anon_kB: kB(stat.rss),
          shmem_kB: kB(stat.shmem),
          anonThp_kB: kB(stat.rss_huge),
          anonLru_kB: kB((stat.active_anon ?? 0) + (stat.inactive_anon ?? 0)),
          file_kB: kB(stat.cache),
          usage_kB: kB(usageBytes),
        }
      : {
          anon_kB: kB(stat.anon),
          shmem_kB: kB(stat.shmem),
          anonThp_kB: kB(stat.anon_thp),
          anonLru_kB: kB((stat.active_anon ?? 0) + (stat.inactive_anon ?? 0)),
          file_kB: kB(stat.file),
          usage_kB: kB(usageBytes),
        };
  return charge;
}

export function readCgroupCharge(cgroup: QemuCgroup): CgroupCharge {
  const stat = parseCgroupStat(readFileSync(join(cgroup.dir, "memory.stat"), "utf8"));
  const usageFile = cgroup.version === 1 ? "memory.usage_in_bytes" : "memory.current";
  const usage = Number(readFileSync(join(cgroup.dir, usageFile), "utf8").trim());
  return cgroupCharge(cgroup.version, stat, usage);
}

/** What a `hostPressure` step did to QEMU's cgroup (validation.json `real.pressure`, the log). */
export interface PressureResult {
  readonly sizeBytes: number;
  readonly version: 1 | 2;
  readonly usageBefore_kB: number;
  readonly usageAfter_kB: number;
  /** v1: the lowest limit that was accepted (kB); v2: the bytes asked of memory.reclaim. */
  readonly lowest_kB: number;
  /** The limit aimed at: usage - size, bounded below by the unreclaimable charge (kB). */
  readonly target_kB: number;
  readonly writes: number;
  /** v1 EBUSY or v2 EAGAIN: the kernel could not reclaim further (reclaim ran to the end). */
  readonly exhausted: boolean;
  readonly message: string;
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

function usageBytes(cgroup: QemuCgroup): number {
  const file = cgroup.version === 1 ? "memory.usage_in_bytes" : "memory.current";
  return Number(readFileSync(join(cgroup.dir, file), "utf8").trim());
}

/** The v1 limit steps from `usage` down to `target`, each a multiple of 4 KiB (about 32 steps). */
export function limitSteps(usage: number, target: number): number[] {
  const page = 4096;
  const step = Math.max(4 * 2 ** 20, Math.ceil((usage - target) / 32 / page) * page);
  const steps: number[] = [];
  for (let limit = Math.floor(usage / page) * page - step; limit > target; limit -= step) {
    steps.push(limit);
  }
  steps.push(Math.ceil(target / page) * page);
  return steps;
}

/**
 * Host memory pressure on QEMU alone: the kernel reclaims from QEMU's cgroup. With no swap only
 * page cache and what the deferred split shrinker frees (the unmapped subpages of partly unmapped
 * THPs, memcg-aware queue) can go. v1: memory.oom_control oom_kill_disable=1 for the step, then
 * memory.limit_in_bytes lowered step by step from the charge towards (charge - size), bounded
 * below by the charge that cannot be reclaimed (mapped anon + shmem), stopping at the first
 * EBUSY (the kernel reclaimed all it could and kept the old limit); when `size` is more than can
 * go, one more write 4 MiB below that bound, which the kernel refuses with EBUSY only after its
 * reclaim made no more progress; then the old limit and oom_control are written back. v2:
 * memory.reclaim of `size` (EAGAIN: less could be freed), likewise one more 4 MiB then.
 * Both restores are also registered with `knobs` in case the run is interrupted.
 */
export function pressureCgroup(
  cgroup: QemuCgroup,
  sizeBytes: number,
  knobs: HostKnobs,
): PressureResult {
  const kB = (bytes: number): number => Math.round(bytes / 1024);
  const before = usageBytes(cgroup);
  const charge = readCgroupCharge(cgroup);
  const floor = (charge.anon_kB + charge.shmem_kB) * 1024;
  const target = Math.max(before - sizeBytes, floor);
  let writes = 0;
  let exhausted = false;
  let lowest = before;
  if (cgroup.version === 2) {
    try {
      writes++;
      writeFileSync(join(cgroup.dir, "memory.reclaim"), String(Math.max(0, before - target)));
    } catch (error) {
      if (errnoCode(error) !== "EAGAIN") throw error;
      exhausted = true;
    }
    // Asked for more than can go: reclaim until the kernel can free no more (EAGAIN).
    if (!exhausted && target === floor) {
      try {
        writes++;
        writeFileSync(join(cgroup.dir, "memory.reclaim"), String(4 * 2 ** 20));
      } catch (error) {
        if (errnoCode(error) !== "EAGAIN") throw error;
        exhausted = true;
      }
    }
    lowest = before - Math.max(0, before - target);
  } else {
    const limitFile = join(cgroup.dir, "memory.limit_in_bytes");
    const oomFile = join(cgroup.dir, "memory.oom_control");
    const oldLimit = readFileSync(limitFile, "utf8").trim();
    const oldOom = /oom_kill_disable\s+(\d)/.exec(readFileSync(oomFile, "utf8"))?.[1] ?? "0";
    const restoreOom = knobs.temporary(`${oomFile}: oom_kill_disable ${oldOom} -> 1`, () =>
      writeFileSync(oomFile, oldOom),
    );
    writeFileSync(oomFile, "1");
    const restoreLimit = knobs.temporary(`${limitFile}: lowered, back to ${oldLimit}`, () => {
      // "-1" for an unlimited old value (the file shows PAGE_COUNTER_MAX in bytes)
      const unlimited = Number(oldLimit) >= 2 ** 62;
      writeFileSync(limitFile, unlimited ? "-1" : oldLimit);
    });
    try {
      for (const limit of limitSteps(before, target)) {
        try {
          writes++;
          writeFileSync(limitFile, String(limit));
          lowest = limit;
        } catch (error) {
          if (errnoCode(error) !== "EBUSY") throw error;
          exhausted = true;
          break;
        }
      }
      // The size asked for more than can go: one limit below what cannot be reclaimed, which
      // the kernel refuses (EBUSY) once its reclaim makes no more progress, so that reclaim (and
      // the deferred split shrinker's scan of its whole queue) runs to the end.
      if (!exhausted && target === floor && floor > 4 * 2 ** 20) {
        try {
          writes++;
          writeFileSync(limitFile, String(floor - 4 * 2 ** 20));
          lowest = floor - 4 * 2 ** 20;
        } catch (error) {
          if (errnoCode(error) !== "EBUSY") throw error;
          exhausted = true;
        }
      }
    } finally {
      restoreLimit();
      restoreOom();
    }
  }
  const after = usageBytes(cgroup);
  const how =
    cgroup.version === 1
      ? `limit lowered in ${writes} writes to ${kB(lowest)} kB${exhausted ? " (then EBUSY)" : ""}, restored`
      : `memory.reclaim ${kB(before - target)} kB${exhausted ? " (EAGAIN)" : ""}`;
  return {
    sizeBytes,
    version: cgroup.version,
    usageBefore_kB: kB(before),
    usageAfter_kB: kB(after),
    lowest_kB: kB(lowest),
    target_kB: kB(target),
    writes,
    exhausted,
    message:
      `hostPressure ${sizeBytes}: cgroup v${cgroup.version} usage ${kB(before)} kB, target ` +
      `${kB(target)} kB; ${how}; usage now ${kB(after)} kB (${kB(before - after)} kB freed)`,
  };
}
