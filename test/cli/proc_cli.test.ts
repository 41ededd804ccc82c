// Goal: `balloonlab proc import` and `balloonlab proc export` work as a user runs them: import
// writes import.json and files identical to the captures, export writes every view, and bad
// input exits 2 with "balloonlab: <file>:<line>: <message>", no stack trace and no output files.
// Method: run src/cli/main.ts through tsx in a child process on the fixtures under
// test/fixtures/proc, each run into a fresh temporary directory, and on a fixture broken on
// purpose.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";

const root = join(import.meta.dirname, "..", "..");
const fixtures = join(root, "test", "fixtures", "proc");
const dir = mkdtempSync(join(tmpdir(), "balloonlab-proc-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function balloonlab(...args: string[]) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: root,
    encoding: "utf8",
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function freshDir(name: string): string {
  return mkdtempSync(join(dir, `${name}-`));
}

const STACK_LINE = /\n\s+at /;

describe("balloonlab proc", () => {
  test("import of the 2 GiB guest with zoneinfo: exit 0, files identical, import.json", () => {
    const out = freshDir("import");
    const result = balloonlab(
      "proc",
      "import",
      "--buddyinfo",
      join(fixtures, "guest_2g_6.1.buddyinfo"),
      "--pagetypeinfo",
      join(fixtures, "guest_2g_6.1.pagetypeinfo"),
      "--zoneinfo",
      join(fixtures, "guest_2g_6.1.zoneinfo"),
      "--kernel",
      "6.1",
      "--out",
      out,
    );
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toBe("");
    expect(readdirSync(out).sort()).toEqual([
      "buddyinfo",
      "import.json",
      "pagetypeinfo",
      "zoneinfo",
    ]);
    for (const name of ["buddyinfo", "pagetypeinfo"]) {
      const expected = readFileSync(join(fixtures, `guest_2g_6.1.${name}`), "utf8");
      expect(readFileSync(join(out, name), "utf8")).toBe(expected);
    }
    const summary = JSON.parse(readFileSync(join(out, "import.json"), "utf8")) as {
      kernel: string;
      zones: { name: string; managedPages: number; freeBlocks: Record<string, number[]> }[];
      rules: string[];
    };
    expect(summary.kernel).toBe("6.1");
    expect(summary.zones.map((zone) => zone.name)).toEqual(["DMA", "DMA32"]);
    expect(summary.zones[1]!.managedPages).toBe(491483);
    expect(summary.zones[1]!.freeBlocks.Movable![10]).toBe(302);
    expect(summary.rules.length).toBeGreaterThan(0);
  });

  test("import then export of the 24 GiB host: every view written, the files kept", () => {
    const imported = freshDir("host");
    const args = ["--buddyinfo", join(fixtures, "host_24g.buddyinfo")];
    args.push("--pagetypeinfo", join(fixtures, "host_24g.pagetypeinfo"), "--out", imported);
    expect(balloonlab("proc", "import", ...args).status).toBe(0);
    const out = freshDir("export");
    const result = balloonlab("proc", "export", "--from", imported, "--out", out);
    expect(result.status, result.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual([
      "buddyinfo",
      "extfrag_index",
      "meminfo",
      "meminfo.json",
      "pagetypeinfo",
      "unusable_index",
      "vmstat",
      "vmstat.json",
      "zoneinfo",
    ]);
    const pagetypeinfo = readFileSync(join(fixtures, "host_24g.pagetypeinfo"), "utf8");
    expect(readFileSync(join(out, "pagetypeinfo"), "utf8")).toBe(pagetypeinfo);
    expect(readFileSync(join(out, "vmstat"), "utf8").split("\n")).toHaveLength(174);
    const meminfo = JSON.parse(readFileSync(join(out, "meminfo.json"), "utf8")) as {
      MemTotal: number;
    };
    expect(meminfo.MemTotal).toBeGreaterThan(23 * 1024 * 1024);
  });

  test("bad input exits 2 with file:line: message, no stack trace, no output", () => {
    const broken = join(dir, "broken.buddyinfo");
    const text = readFileSync(join(fixtures, "cma_4g.buddyinfo"), "utf8");
    writeFileSync(broken, text.replace("DMA32", "HighMem"));
    const out = join(dir, "never-written");
    const result = balloonlab(
      "proc",
      "import",
      "--buddyinfo",
      broken,
      "--pagetypeinfo",
      join(fixtures, "cma_4g.pagetypeinfo"),
      "--out",
      out,
    );
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(
      `balloonlab: ${broken}:2: unknown zone "HighMem": expected one of DMA, DMA32, Normal,` +
        " Movable, Device\n",
    );
    expect(result.stderr).not.toMatch(STACK_LINE);
    expect(existsSync(out)).toBe(false);
  });

  test("a missing file, an unknown kernel and a missing option all exit 2", () => {
    const out = join(dir, "never-written-2");
    const missing = balloonlab(
      "proc",
      "import",
      "--buddyinfo",
      join(dir, "nope"),
      "--pagetypeinfo",
      join(fixtures, "cma_4g.pagetypeinfo"),
      "--out",
      out,
    );
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe(
      `balloonlab: ${join(dir, "nope")}: cannot read the file (ENOENT)\n`,
    );
    const kernel = balloonlab(
      "proc",
      "import",
      "--buddyinfo",
      join(fixtures, "cma_4g.buddyinfo"),
      "--pagetypeinfo",
      join(fixtures, "cma_4g.pagetypeinfo"),
      "--kernel",
      "4.19",
      "--out",
      out,
    );
    expect(kernel.status).toBe(2);
    expect(kernel.stderr).toContain("--kernel: expected one of 5.6, 6.1, 6.18");
    const option = balloonlab("proc", "import", "--out", out);
    expect(option.status).toBe(2);
    for (const result of [missing, kernel, option]) expect(result.stderr).not.toMatch(STACK_LINE);
    expect(existsSync(out)).toBe(false);
  });
});
