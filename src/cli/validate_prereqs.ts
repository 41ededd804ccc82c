// `balloonlab validate` (issue #5): what the real side needs on the host and, with --install,
// getting it. Debian packages (QEMU, a static busybox, gcc and the static libc) are installed
// with apt; the guest kernel is the versioned image that the metapackage
// linux-image-cloud-amd64 depends on, fetched with `apt-get download` and unpacked with
// `dpkg-deb -x` into a cache directory, never installed on the host.

import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { InputError } from "../core/input_error.ts";

/** Debian package -> a file that proves it is there. */
export const REQUIRED_PACKAGES: ReadonlyArray<readonly [string, string]> = [
  ["qemu-system-x86", "/usr/bin/qemu-system-x86_64"],
  ["busybox-static", "/bin/busybox"],
  ["gcc", "/usr/bin/gcc"],
  ["libc6-dev", "/usr/lib/x86_64-linux-gnu/libc.a"],
  // mke2fs: the read-only ext4 disk of the `pagecache` steps
  ["e2fsprogs", "/sbin/mke2fs"],
];

export const KERNEL_METAPACKAGE = "linux-image-cloud-amd64";

export function cacheDir(): string {
  return process.env.BALLOONLAB_CACHE ?? "/var/cache/balloonlab";
}

export interface GuestKernel {
  readonly packageName: string;
  /** e.g. 6.1.0-56-cloud-amd64 */
  readonly release: string;
  readonly vmlinuz: string;
  readonly modulesDir: string;
}

function packageInstalled(name: string): boolean {
  const result = spawnSync("dpkg-query", ["-W", `-f=${"$"}{db:Status-Abbrev}`, name], {
    encoding: "utf8",
  });
  return result.status === 0 && result.stdout.startsWith("ii");
}

export function missingPackages(): string[] {
  return REQUIRED_PACKAGES.filter(
    ([name, file]) => !existsSync(file) || !packageInstalled(name),
  ).map(([name]) => name);
}

/** The versioned kernel image the metapackage depends on, from the apt lists. */
export function resolveKernelPackage(): string | undefined {
  const result = spawnSync("apt-cache", ["depends", KERNEL_METAPACKAGE], { encoding: "utf8" });
  if (result.status !== 0) return undefined;
  const match = /Depends:\s*(linux-image-\S+)/.exec(result.stdout);
  return match?.[1];
}

/** The unpacked kernel in the cache, if an earlier --install put it there. */
export function cachedKernel(): GuestKernel | undefined {
  const root = join(cacheDir(), "kernel");
  if (!existsSync(root)) return undefined;
  const wanted = resolveKernelPackage();
  const names = readdirSync(root).filter((name) => name.startsWith("linux-image-"));
  const name = wanted !== undefined && names.includes(wanted) ? wanted : names.sort().at(-1);
  return name === undefined ? undefined : kernelIn(join(root, name), name);
}

function kernelIn(dir: string, packageName: string): GuestKernel | undefined {
  const boot = join(dir, "boot");
  if (!existsSync(boot)) return undefined;
  const image = readdirSync(boot).find((file) => file.startsWith("vmlinuz-"));
  if (image === undefined) return undefined;
  const release = image.slice("vmlinuz-".length);
  const modulesDir = join(dir, "lib", "modules", release);
  if (!existsSync(modulesDir)) return undefined;
  return { packageName, release, vmlinuz: join(boot, image), modulesDir };
}

function run(command: string, args: readonly string[], cwd?: string): void {
  process.stderr.write(`validate: ${command} ${args.join(" ")}\n`);
  execFileSync(command, [...args], {
    cwd,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}

/** Fetches and unpacks the guest kernel into the cache; returns it. */
export function fetchKernel(): GuestKernel {
  const name = resolveKernelPackage();
  if (name === undefined) {
    throw new Error(`apt-cache depends ${KERNEL_METAPACKAGE} names no linux-image package`);
  }
  const root = join(cacheDir(), "kernel");
  const download = join(cacheDir(), "download");
  rmSync(download, { recursive: true, force: true });
  mkdirSync(download, { recursive: true });
  mkdirSync(root, { recursive: true });
  run("apt-get", ["download", name], download);
  const deb = readdirSync(download).find((file) => file.endsWith(".deb"));
  if (deb === undefined) throw new Error(`apt-get download ${name} left no .deb`);
  const partial = join(root, `${name}.partial`);
  rmSync(partial, { recursive: true, force: true });
  run("dpkg-deb", ["-x", join(download, deb), partial]);
  renameSync(partial, join(root, name));
  rmSync(download, { recursive: true, force: true });
  const kernel = kernelIn(join(root, name), name);
  if (kernel === undefined) throw new Error(`${deb} holds no vmlinuz and modules`);
  return kernel;
}

/** --install: apt-get update and install what is missing, then fetch the kernel if needed. */
export function installPrerequisites(): GuestKernel {
  requireRoot();
  const missing = missingPackages();
  if (missing.length > 0 || resolveKernelPackage() === undefined) {
    run("apt-get", ["update", "-qq"]);
  }
  if (missing.length > 0) {
    run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing]);
  }
  return cachedKernel() ?? fetchKernel();
}

export function requireRoot(): void {
  if (process.getuid?.() === 0) return;
  throw new InputError({
    file: "<argv>",
    field: "validate",
    message: "needs root (QEMU's /proc/PID/pagemap, host knobs, apt): run it as root",
  });
}

/** Without --install: everything present, or an InputError (exit 2) naming what is missing. */
export function checkPrerequisites(): GuestKernel {
  requireRoot();
  const missing = missingPackages();
  const kernel = cachedKernel();
  const problems = missing.map((name) => `Debian package ${name}`);
  if (kernel === undefined) {
    problems.push(`the guest kernel (${KERNEL_METAPACKAGE}'s image, unpacked in ${cacheDir()})`);
  }
  if (problems.length > 0 || kernel === undefined) {
    const message =
      `missing: ${problems.join("; ")}. Run \`balloonlab validate --install\` ` +
      "(apt-get install, apt-get download; the kernel is never installed on the host)";
    throw new InputError({ file: "<host>", field: "validate", message });
  }
  return kernel;
}
