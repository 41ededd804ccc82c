// Goal: every malformed input in the corpus is refused the way a user needs it: exit 2, one
// message that names the file (and line) and the problem, no stack trace, no output written.
// The corpus: the scenario files under test/fixtures/scenarios/bad (what each must say is
// pinned in test/cli/scenario_file.test.ts) and /proc captures under test/fixtures/proc/bad.
// Method: the real CLI entry (runCli) runs in this process for each file, with stderr captured,
// `run FILE --out DIR` for scenarios and `proc import` for the /proc files.
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { runCli } from "../../src/cli/main.ts";

const root = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "balloonlab-corpus-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ status: number; stderr: string }> {
  const original = process.stderr.write.bind(process.stderr);
  let stderr = "";
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    return { status: await runCli(args), stderr };
  } finally {
    process.stderr.write = original;
  }
}

const scenarioDir = join(root, "test", "fixtures", "scenarios", "bad");
const procDir = join(root, "test", "fixtures", "proc", "bad");
const goodProc = join(root, "test", "fixtures", "proc");
const scenarios = readdirSync(scenarioDir).filter((name) => name.endsWith(".yaml"));
const procFiles = readdirSync(procDir);

describe("malformed inputs", () => {
  test("the corpus holds at least 30 files", () => {
    expect(scenarios.length + procFiles.length).toBeGreaterThanOrEqual(30);
  });

  test.each(scenarios)("scenario %s: exit 2, file:line: message, nothing written", async (name) => {
    const out = join(dir, name);
    const result = await cli(["run", join(scenarioDir, name), "--out", out]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(
      new RegExp(`^balloonlab: [^\\n]*${name.replace(".", "\\.")}:\\d+`),
    );
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });

  test.each(procFiles)("/proc capture %s: exit 2, file:line: message", async (name) => {
    const out = join(dir, name);
    const buddyinfo = name.endsWith(".buddyinfo")
      ? join(procDir, name)
      : join(goodProc, "guest_2g_6.1.buddyinfo");
    const pagetypeinfo = name.endsWith(".pagetypeinfo")
      ? join(procDir, name)
      : join(goodProc, "guest_2g_6.1.pagetypeinfo");
    const args = ["proc", "import", "--buddyinfo", buddyinfo, "--pagetypeinfo", pagetypeinfo];
    const result = await cli([...args, "--out", out]);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(
      new RegExp(`^balloonlab: [^\\n]*${name.replace(".", "\\.")}:\\d+: \\S`),
    );
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });
});
