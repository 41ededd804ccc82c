// `balloonlab validate` (issue #5): the guest's initramfs, built at run time into a work
// directory. It holds Debian's static busybox, the guest kernel's virtio-balloon and virtio-blk
// modules and the modules they depend on (read from each module's .modinfo `depends=`, since the unpacked
// package has no modules.dep), validate/init.sh as /init, and the workload compiled from
// validate/guest/workload.c with `gcc -static`.

import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CpioEntry, gzipCpio } from "./validate_cpio.ts";
import type { GuestKernel } from "./validate_prereqs.ts";

/** validate/ at the repository root. */
export const VALIDATE_DIR = fileURLToPath(new URL("../../validate/", import.meta.url));

/**
 * The modules the guest loads: the balloon over PCI and the block driver for the `pagecache`
 * steps' disk (ext4 is built into Debian's cloud kernel; a kernel with ext4 as a
 * module gets it and its dependencies too, see guestModules); dependencies come first.
 */
export const GUEST_MODULES: readonly string[] = ["virtio_pci", "virtio_balloon", "virtio_blk"];

/** GUEST_MODULES, plus ext4 where the kernel has it as a module rather than built in. */
export function guestModules(modulesDir: string): string[] {
  const ext4 = join(modulesDir, "kernel", "fs", "ext4", "ext4.ko");
  return existsSync(ext4) ? [...GUEST_MODULES, "ext4"] : [...GUEST_MODULES];
}

/** Every module file under `dir`, by module name (dashes as underscores). */
function moduleFiles(dir: string, found = new Map<string, string>()): Map<string, string> {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) moduleFiles(path, found);
    else if (name.endsWith(".ko")) found.set(name.slice(0, -3).replaceAll("-", "_"), path);
  }
  return found;
}

/** The `depends=` field of a module's .modinfo section. */
export function moduleDepends(data: Uint8Array): string[] {
  const text = Buffer.from(data).toString("latin1");
  const match = /\0depends=([^\0]*)\0/.exec(text);
  if (!match || match[1] === "") return [];
  return match[1]!.split(",").map((name) => name.replaceAll("-", "_"));
}

export interface GuestModule {
  readonly name: string;
  readonly data: Uint8Array;
}

/** `wanted` and their dependencies, each after what it depends on (insmod order). */
export function resolveModules(modulesDir: string, wanted: readonly string[]): GuestModule[] {
  const files = moduleFiles(join(modulesDir, "kernel"));
  const builtin = readBuiltin(modulesDir);
  const ordered: GuestModule[] = [];
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name) || builtin.has(name)) return;
    seen.add(name);
    const file = files.get(name);
    if (file === undefined) throw new Error(`guest kernel has no module ${name}`);
    const data = readFileSync(file);
    for (const dependency of moduleDepends(data)) visit(dependency);
    ordered.push({ name, data });
  };
  for (const name of wanted) visit(name);
  return ordered;
}

/** Modules built into the kernel (modules.builtin), which need no insmod. */
function readBuiltin(modulesDir: string): Set<string> {
  const file = join(modulesDir, "modules.builtin");
  if (!existsSync(file)) return new Set();
  const names = readFileSync(file, "utf8").split("\n").filter(Boolean);
  return new Set(names.map((path) => path.replace(/^.*\//, "").replace(/\.ko$/, "")));
}

/** Compiles the workload with gcc -static into `workDir`; returns the binary's path. */
export function buildWorkload(workDir: string): string {
  const source = join(VALIDATE_DIR, "guest", "workload.c");
  const binary = join(workDir, "workload");
  execFileSync("gcc", ["-static", "-O2", "-Wall", "-o", binary, source], { stdio: "inherit" });
  return binary;
}

/** Builds initramfs.gz in `workDir` and returns its path. */
export function buildInitramfs(workDir: string, kernel: GuestKernel): string {
  const modules = resolveModules(kernel.modulesDir, guestModules(kernel.modulesDir));
  const template = readFileSync(join(VALIDATE_DIR, "init.sh"), "utf8");
  const init = template.replace("@MODULES@", modules.map((module) => module.name).join(" "));
  const workload = readFileSync(buildWorkload(workDir));
  const entries: CpioEntry[] = [
    { kind: "dir", path: "bin" },
    { kind: "dir", path: "modules" },
    { kind: "file", path: "bin/busybox", data: readFileSync("/bin/busybox"), mode: 0o755 },
    { kind: "symlink", path: "bin/sh", target: "busybox" },
    { kind: "file", path: "init", data: Buffer.from(init), mode: 0o755 },
    { kind: "file", path: "workload", data: workload, mode: 0o755 },
    ...modules.map(
      (module): CpioEntry => ({
        kind: "file",
        path: `modules/${module.name}.ko`,
        data: module.data,
      }),
    ),
  ];
  const path = join(workDir, "initramfs.gz");
  writeFileSync(path, gzipCpio(entries));
  return path;
}
