// Boot reservations and boot writes (memory_layout.ts DEFAULT_BOOT_RESERVATION), checked against
// Debian 12's 6.1.0-56-cloud-amd64 booted in a 640 MiB QEMU pc guest (dmesg, /proc/meminfo).

import { describe, expect, test } from "vitest";
import { PAGE_SIZE } from "../../src/core/limits.ts";
import { kernelRules } from "../../src/guest/kernel_version.ts";
import {
  DEFAULT_BOOT_RESERVATION,
  guestLayout,
  memmapBytes,
  vfsHashBytes,
} from "../../src/guest/memory_layout.ts";
import { GiB, MiB } from "./helpers.ts";

function layout640() {
  return guestLayout("pc", 640 * MiB, kernelRules("6.1"));
}

function pagesIn(ranges: readonly { startPfn: number; endPfn: number }[]): number {
  return ranges.reduce((sum, range) => sum + range.endPfn - range.startPfn, 0);
}

function rangeNamed(
  ranges: readonly { what: string; startPfn: number; endPfn: number }[],
  what: string,
) {
  const range = ranges.find((r) => r.what === what);
  expect(range, what).toBeDefined();
  return range!;
}

describe("boot reservations: the 640 MiB validation guest", () => {
  test("memmap: 2 MiB of struct page per present 128 MiB section (5 sections, 10 MiB)", () => {
    expect(memmapBytes(layout640().ramRanges)).toBe(10 * MiB);
  });

  test("dentry and inode hashes: 131072 and 65536 entries of 8 bytes (dmesg)", () => {
    expect(vfsHashBytes(layout640().ramRanges)).toBe((131072 + 65536) * 8);
  });

  test("MemTotal 609552 kB as the real guest's: 654840 kB present minus 45288 kB kept", () => {
    const layout = layout640();
    const present = pagesIn(layout.ramRanges);
    // The real e820 ends 32 pages below 640 MiB; the model keeps 36 (the 2 GiB capture's).
    expect(present * 4).toBe(654840 - 16);
    let reservedRam = 0;
    for (const r of layout.reserved) {
      for (const ram of layout.ramRanges) {
        reservedRam += Math.max(
          0,
          Math.min(r.endPfn, ram.endPfn) - Math.max(r.startPfn, ram.startPfn),
        );
      }
    }
    // Real 609552 kB; the model is those 16 kB of e820 short.
    expect((present - reservedRam) * 4).toBe(609552 - 16);
  });

  test("kernel image: 40 MiB at the lowest KASLR slot past the init_size buffer", () => {
    const layout = layout640();
    const kept = rangeNamed(layout.reserved, "kernel image");
    const freed = rangeNamed(layout.bootWritten!, "kernel image, freed");
    expect(kept.startPfn * PAGE_SIZE).toBe(68 * MiB);
    expect((freed.endPfn - kept.startPfn) * PAGE_SIZE).toBe(40 * MiB);
    expect((freed.endPfn - freed.startPfn) * 4).toBe(2612 + 2040 + 1892 + 2036 + 36);
  });

  test("written and freed: bzImage at 1 MiB, decompressor copy, initrd at the top", () => {
    const layout = layout640();
    const bzImage = rangeNamed(layout.bootWritten!, "bzImage");
    expect(bzImage.startPfn).toBe(256);
    const copy = rangeNamed(layout.bootWritten!, "decompressor copy");
    expect(copy.endPfn * PAGE_SIZE).toBe(16 * MiB + DEFAULT_BOOT_RESERVATION.kernelInitBytes);
    const initrd = rangeNamed(layout.bootWritten!, "initrd");
    const top = layout.ramRanges.at(-1)!.endPfn;
    expect(initrd.endPfn).toBe(top);
    // memblock's top-down allocations sit just below the initrd.
    expect(rangeNamed(layout.reserved, "memmap").endPfn).toBe(initrd.startPfn);
  });
});

describe("boot reservations: other sizes", () => {
  test("a 64 MiB guest has no KASLR slot: the image stays at CONFIG_PHYSICAL_START", () => {
    const layout = guestLayout("pc", 64 * MiB, kernelRules("6.1"));
    expect(rangeNamed(layout.reserved, "kernel image").startPfn * PAGE_SIZE).toBe(16 * MiB);
  });

  test("RAM above 4 GiB: memblock allocates at the top, the initrd stays below 4 GiB", () => {
    const layout = guestLayout("pc", 6 * GiB, kernelRules("6.1"));
    const initrd = rangeNamed(layout.bootWritten!, "initrd");
    expect(initrd.endPfn * PAGE_SIZE).toBeLessThanOrEqual(4 * GiB);
    expect(rangeNamed(layout.reserved, "memmap").endPfn).toBe(layout.ramRanges.at(-1)!.endPfn);
  });
});
