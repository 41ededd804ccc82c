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
