// `balloonlab validate` (issue #5): one QEMU guest for a scenario, and the host knobs it needs.
// QEMU gets the scenario's backing as the machine's memory backend, a virtio-balloon-pci with
// free page reporting as the scenario says, the guest kernel and initramfs, ttyS0 (the kernel
// console) to a log file, ttyS1 (the workload's command channel) and QMP as unix sockets this
// process listens on. QEMU never outlives the command: it runs under `setpriv --pdeathsig KILL`
// and is killed on exit, SIGINT, SIGTERM and errors; host knobs (a huge=always tmpfs mount,
// hugetlb pages reserved, the scenario's khugepaged settings, QEMU's memory cgroup,
// validate_cgroup.ts) are undone the same way. A scenario with `pagecache` steps also gets a
// read-only ext4 disk (extents, no journal) with one file per step.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import type { Scenario } from "../sim/scenario.ts";
import type { GuestKernel } from "./validate_prereqs.ts";
import { GuestChannel, QmpClient, SocketListener } from "./validate_qmp.ts";
import { qemuTraceArgs } from "./validate_trace.ts";

const MiB = 2 ** 20;

/** Undo actions for host changes, run once, last first; also on exit and on signals. */
export class HostKnobs {
  private readonly undo: Array<{ what: string; action: () => void }> = [];
  readonly log: string[] = [];

  add(what: string, action: () => void): void {
    this.undo.push({ what, action });
    this.log.push(what);
  }

  /** Writes a /proc or /sys file and remembers its old value. */
  writeFile(path: string, value: string): void {
    const old = readFileSync(path, "utf8").trim();
    writeFileSync(path, value);
    this.add(`${path}: ${old} -> ${value}`, () => writeFileSync(path, old));
  }

  /**
   * Writes a sysfs/procfs knob only when its value differs (compared as numbers or text),
   * restored like writeFile; an equal value is only recorded.
   */
  setKnob(path: string, value: string): void {
    const old = readFileSync(path, "utf8").trim();
    if (
      old === value ||
      (/^-?\d+$/.test(old) && /^-?\d+$/.test(value) && Number(old) === Number(value))
    ) {
      this.log.push(`${path}: ${old} (already)`);
      return;
    }
    this.writeFile(path, value);
  }

  /**
   * An undo action for a change that is undone before the run ends (`done()` runs it at once
   * and drops it from the list); until then it is undone with the rest on any exit path.
   */
  temporary(what: string, action: () => void): () => void {
    const entry = { what, action };
    this.undo.push(entry);
    let ran = false;
    return () => {
      if (ran) return;
      ran = true;
      const index = this.undo.indexOf(entry);
      if (index >= 0) this.undo.splice(index, 1);
      action();
    };
  }

  restore(): void {
    for (const { what, action } of this.undo.splice(0).reverse()) {
      try {
        action();
      } catch (error) {
        process.stderr.write(`validate: could not undo ${what}: ${String(error)}\n`);
      }
    }
  }
}

/** umount, retried for up to 5 s while QEMU's last references go away, then lazily. */
function unmount(mount: string): void {
  for (let waited = 0; waited < 5000; waited += 100) {
    try {
      execFileSync("umount", [mount], { stdio: "ignore" });
      return;
    } catch {
      sleepSync(100);
    }
  }
  execFileSync("umount", ["-l", mount]);
}

const KHUGEPAGED = "/sys/kernel/mm/transparent_hugepage/khugepaged";

/**
 * The scenario's host khugepaged settings written to the host before QEMU starts (only the ones
 * that differ), restored with the other knobs. Host THP enabled/defrag/shmem_enabled are not
 * changed: the model takes the host's real values instead (validate_compare.ts).
 */
export function applyHostKhugepaged(scenario: Scenario, knobs: HostKnobs): void {
  const { scanSleepMs, pagesToScan, maxPtesNone } = scenario.host.khugepaged;
  const settings: Array<[string, number]> = [
    ["scan_sleep_millisecs", scanSleepMs],
    ["pages_to_scan", pagesToScan],
    ["max_ptes_none", maxPtesNone],
  ];
  for (const [file, value] of settings) knobs.setKnob(join(KHUGEPAGED, file), String(value));
}

/** The -object for guest RAM, with the host setup its backing needs. */
export function backendObject(scenario: Scenario, workDir: string, knobs: HostKnobs): string {
  const size = `size=${scenario.guest.memoryBytes / MiB}M`;
  switch (scenario.host.backing) {
    case "anon":
      return `memory-backend-ram,id=ram0,${size}`;
    case "memfd":
      return `memory-backend-memfd,id=ram0,${size},share=on`;
    case "tmpfs-huge": {
      const mount = join(workDir, "huge-tmpfs");
      mkdirSync(mount, { recursive: true });
      execFileSync("mount", ["-t", "tmpfs", "-o", "huge=always", "balloonlab-validate", mount]);
      knobs.add(`tmpfs huge=always mounted on ${mount}`, () => unmount(mount));
      // align=2M: QEMU aligns a file mapping only to the file's page size (4 KiB on tmpfs), and
      // a VMA whose start is not 2 MiB-aligned to the file offset gets no THPs (THPeligible 0).
      const file = `mem-path=${join(mount, "guest-ram")}`;
      return `memory-backend-file,id=ram0,${size},${file},share=on,align=2M`;
    }
    case "hugetlbfs": {
      const path = "/proc/sys/vm/nr_hugepages";
      const pages = scenario.guest.memoryBytes / (2 * MiB);
      const old = Number(readFileSync(path, "utf8").trim());
      knobs.writeFile(path, String(old + pages));
      return `memory-backend-memfd,id=ram0,${size},hugetlb=on,hugetlbsize=2M,share=on`;
    }
  }
}

/** The read-only ext4 disk of a scenario's `pagecache` steps: the image and each step's file. */
export interface PagecacheDisk {
  readonly image: string;
  /** Step index -> the file's path in the guest (on /mnt/data). */
  readonly files: ReadonlyMap<number, string>;
}

/** The file a `pagecache` step reads, in the disk's root, by the step's index. */
export function pagecacheFileName(stepIndex: number): string {
  return `pagecache-${stepIndex}`;
}

/** The image size for files of these sizes: theirs, 2 % for the file system's blocks, 16 MiB more, in MiB. */
export function pagecacheImageMiB(sizes: readonly number[]): number {
  const total = sizes.reduce((sum, size) => sum + size, 0);
  return Math.ceil((total * 1.02) / MiB) + 16;
}

/**
 * For a scenario with `pagecache` steps, an ext4 image made with `mke2fs -t ext4 -d` in the work
 * directory holding one file of the step's size per step (written with a non-zero pattern, so no
 * holes), attached read-only as virtio disk /dev/vda; undefined when there is no such step.
 */
export function pagecacheDisk(scenario: Scenario, workDir: string): PagecacheDisk | undefined {
  const steps: Array<[number, number]> = [];
  scenario.steps.forEach((step, index) => {
    if (step.kind === "pagecache") steps.push([index, step.sizeBytes]);
  });
  if (steps.length === 0) return undefined;
  const dir = join(workDir, "pagecache-files");
  mkdirSync(dir, { recursive: true });
  const chunk = Buffer.alloc(MiB, 0x5a);
  const files = new Map<number, string>();
  for (const [index, size] of steps) {
    const name = pagecacheFileName(index);
    const fd = openSync(join(dir, name), "w");
    try {
      for (let done = 0; done < size; ) {
        const length = Math.min(chunk.length, size - done);
        done += writeSync(fd, chunk, 0, length);
      }
    } finally {
      closeSync(fd);
    }
    files.set(index, `/mnt/data/${name}`);
  }
  const image = join(workDir, "pagecache.ext4");
  const sizeMiB = pagecacheImageMiB(steps.map(([, size]) => size));
  execFileSync(
    "mke2fs",
    [
      "-q",
      "-t",
      "ext4",
      // Extents without a journal: a file's block map is a few extent entries in its inode, so
      // reading it brings no indirect blocks into the page cache (ext2 reads one per 4 MiB,
      // which lands between the data pages and stays after drop_caches).
      "-O",
      "^has_journal",
      "-b",
      "4096",
      "-m",
      "0",
      "-N",
      "128",
      "-d",
      dir,
      "-F",
      image,
      `${sizeMiB}M`,
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  rmSync(dir, { recursive: true, force: true });
  return { image, files };
}

export function qemuArgs(
  scenario: Scenario,
  kernel: GuestKernel,
  files: { initramfs: string; workDir: string; backend: string; disk?: string; trace?: string },
): string[] {
  const { guest, balloon } = scenario;
  const reporting = balloon.freePageReporting.enabled ? "on" : "off";
  const append = [
    "console=ttyS0",
    "panic=-1",
    `init_on_alloc=${guest.initOnAlloc ? 1 : 0}`,
    "quiet",
  ].join(" ");
  return [
    ...["-machine", `${guest.machine},memory-backend=ram0`, "-accel", "tcg,tb-size=256"],
    ...["-m", `${guest.memoryBytes / MiB}M`, "-smp", String(guest.cpus)],
    ...["-object", files.backend, "-nographic", "-vga", "none", "-net", "none", "-no-reboot"],
    ...["-kernel", kernel.vmlinuz, "-initrd", files.initramfs, "-append", append],
    ...["-chardev", `file,id=console,path=${join(files.workDir, "console.log")}`],
    ...["-serial", "chardev:console"],
    ...["-chardev", `socket,id=ctl,path=${join(files.workDir, "ctl.sock")}`],
    ...["-serial", "chardev:ctl"],
    ...["-chardev", `socket,id=qmp,path=${join(files.workDir, "qmp.sock")}`],
    ...["-mon", "chardev=qmp,mode=control", "-monitor", "none"],
    ...["-device", `virtio-balloon-pci,id=balloon0,free-page-reporting=${reporting}`],
    ...(files.disk === undefined
      ? []
      : ["-drive", `file=${files.disk},if=virtio,format=raw,readonly=on`]),
    ...(files.trace === undefined ? [] : qemuTraceArgs(files.trace)),
  ];
}

export interface RunningVm {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly qmp: QmpClient;
  readonly guest: GuestChannel;
  readonly guestRelease: string;
  readonly stderr: string[];
  /** Kills QEMU and waits (synchronously) until it is gone or a zombie; usable on exit. */
  stop(): void;
  /**
   * stop(), then waits (up to 5 s) until Node has reaped QEMU: a zombie still counts as a task of
   * its cgroup, which cannot be removed before.
   */
  stopAndReap(): Promise<void>;
}

/** Sleeps synchronously (usable in exit and signal handlers). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether `pid` is gone or a zombie (its memory and files released). */
function released(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return true;
  }
}

/**
 * Kills QEMU with SIGKILL if it is still running and waits (up to 5 s, synchronously) until it
 * has released guest RAM and its files, so that a tmpfs under it can be unmounted.
 */
function kill(child: ChildProcess): void {
  const ended = typeof child.exitCode === "number" || typeof child.signalCode === "string";
  if (ended || child.pid === undefined) return;
  child.kill("SIGKILL");
  for (let waited = 0; waited < 5000 && !released(child.pid); waited += 20) sleepSync(20);
}

/**
 * The command line that starts QEMU: under `setpriv --pdeathsig KILL` when there is setpriv,
 * and, given a cgroup's `cgroup.procs`, through `sh -c` that first moves itself (and so QEMU,
 * which it becomes by exec) into that cgroup.
 */
export function qemuCommand(args: readonly string[], cgroupProcs?: string): string[] {
  const pdeath = existsSync("/usr/bin/setpriv") ? ["setpriv", "--pdeathsig", "KILL", "--"] : [];
  const qemu = [...pdeath, "qemu-system-x86_64", ...args];
  if (cgroupProcs === undefined) return qemu;
  return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', cgroupProcs, ...qemu];
}

/** Starts QEMU, waits for QMP and the workload's HELLO; kills QEMU on any failure. */
export async function startVm(
  args: readonly string[],
  workDir: string,
  cgroupProcs?: string,
  onSpawn?: (stopAndReap: () => Promise<void>) => void,
): Promise<RunningVm> {
  const ctl = await SocketListener.listen(join(workDir, "ctl.sock"));
  const qmpListener = await SocketListener.listen(join(workDir, "qmp.sock"));
  const command = qemuCommand(args, cgroupProcs);
  const child = spawn(command[0]!, command.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  const stderr: string[] = [];
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => stderr.push(chunk));
  const onExit = (): void => kill(child);
  process.on("exit", onExit);
  let reaped = false;
  const exitEvent = new Promise<void>((resolve) => {
    child.on("exit", () => {
      reaped = true;
      resolve();
    });
  });
  const exited = new Promise<never>((_, reject) => {
    child.on("exit", (code, signal) => {
      reject(new Error(`QEMU exited (${signal ?? code}): ${stderr.join("").trim()}`));
    });
  });
  exited.catch(() => undefined);
  const stop = (): void => {
    kill(child);
    process.off("exit", onExit);
    ctl.close();
    qmpListener.close();
  };
  const stopAndReap = async (): Promise<void> => {
    stop();
    if (reaped) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 5000);
    });
    await Promise.race([exitEvent, timeout]);
    clearTimeout(timer);
  };
  // Before the guest is up, a signal handler can only stop QEMU through this.
  onSpawn?.(stopAndReap);
  try {
    const guestSocket = await Promise.race([ctl.accept(30_000, "serial"), exited]);
    const qmpSocket = await Promise.race([qmpListener.accept(30_000, "QMP"), exited]);
    const qmp = new QmpClient(qmpSocket);
    await Promise.race([qmp.handshake(30_000), exited]);
    const guest = new GuestChannel(guestSocket);
    const guestRelease = await Promise.race([guest.hello(180_000), exited]);
    return {
      process: child,
      pid: child.pid!,
      qmp,
      guest,
      guestRelease,
      stderr,
      stop,
      stopAndReap,
    };
  } catch (error) {
    // Reaped, not only killed: a zombie would keep QEMU's memory cgroup from being removed.
    await stopAndReap();
    throw error;
  }
}
