// `balloonlab validate` (issue #5): a gzip-compressed cpio archive in the kernel's "newc" format
// (Documentation/driver-api/early-userspace/buffer-format.rst), the guest's initramfs. Written
// here so the host needs no cpio tool: directories, regular files and symlinks are enough.

import { gzipSync } from "node:zlib";

export type CpioEntry =
  | { readonly kind: "dir"; readonly path: string; readonly mode?: number }
  | {
      readonly kind: "file";
      readonly path: string;
      readonly data: Uint8Array;
      readonly mode?: number;
    }
  | { readonly kind: "symlink"; readonly path: string; readonly target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function hex8(value: number): string {
  return value.toString(16).padStart(8, "0");
}

function pad4(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function record(ino: number, mode: number, name: string, data: Uint8Array): Buffer[] {
  const nameBytes = Buffer.from(`${name}\0`, "utf8");
  const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, nameBytes.length, 0];
  const header = Buffer.from(`070701${fields.map(hex8).join("")}`, "ascii");
  const headerAndName = header.length + nameBytes.length;
  return [header, nameBytes, pad4(headerAndName), Buffer.from(data), pad4(data.length)];
}

/** The newc archive of `entries` (paths relative, without a leading "/"), uncompressed. */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((entry, index) => {
    const ino = index + 1;
    if (entry.kind === "dir") {
      parts.push(...record(ino, S_IFDIR | (entry.mode ?? 0o755), entry.path, new Uint8Array()));
    } else if (entry.kind === "file") {
      parts.push(...record(ino, S_IFREG | (entry.mode ?? 0o644), entry.path, entry.data));
    } else {
      const target = Buffer.from(entry.target, "utf8");
      parts.push(...record(ino, S_IFLNK | 0o777, entry.path, target));
    }
  });
  parts.push(...record(0, 0, "TRAILER!!!", new Uint8Array()));
  return Buffer.concat(parts);
}

/** The archive gzip-compressed, as the kernel unpacks an initramfs (CONFIG_RD_GZIP). */
export function gzipCpio(entries: readonly CpioEntry[]): Buffer {
  return gzipSync(cpioNewc(entries), { level: 1 });
}
