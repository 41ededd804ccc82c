// Goal: the balloonlab command behaves as documented: help exits 0, usage errors exit 2 with a
// message and no stack trace, and the demo (what `npm start` runs) prints buddyinfo twice.
// Method: run bin/balloonlab.mjs as a user would, in a child process.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, test } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const bin = join(root, "bin", "balloonlab.mjs");

function balloonlab(...args: string[]) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd: root, encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("balloonlab command", () => {
  test("--help lists the commands and exits 0", () => {
    const result = balloonlab("--help");
    expect(result.status).toBe(0);
    expect(result.stdout).toContain("demo");
  });

  test("an unknown command exits 2 without a stack trace", () => {
    const result = balloonlab("no-such-command");
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/unknown command/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  test("a bad kernel version exits 2 naming the option and the allowed values", () => {
    const result = balloonlab("demo", "--kernel", "5.10");
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("--kernel");
    expect(result.stderr).toContain("5.6, 6.1, 6.18");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  test("demo fragments, prints buddyinfo, compacts and prints it again", () => {
    const result = balloonlab("demo", "--kernel", "6.1");
    expect(result.status, result.stderr).toBe(0);
    const tables = result.stdout.split("$ cat /proc/buddyinfo");
    expect(tables.length).toBe(3);
    expect(result.stdout).toMatch(/Node 0, zone\s+DMA32/);
    const migrated = Number(/pgmigrate_success (\d+)/.exec(result.stdout)?.[1]);
    expect(migrated).toBeGreaterThan(0);
  });

  test("demo output is byte-identical for the same seed", () => {
    const first = balloonlab("demo", "--seed", "7").stdout;
    const second = balloonlab("demo", "--seed", "7").stdout;
    expect(first).toBe(second);
  });
});
