// Goal: `balloonlab run` and `balloonlab compare` work as a user runs them: a scenario file in, a
// fresh output directory out with result.json that matches the published schema
// (docs/result.schema.json, kept in step with the code), byte-identical for the same seed;
// --json, --set and --seed work; compare writes one cell per axis value plus manifest.json and
// comparison.json; a bad scenario exits 2 naming the file and line, and writes nothing.
// Method: run src/cli/main.ts through tsx in child processes on small scenarios (1 GiB guests)
// written to a temporary directory; read back what they wrote.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import { parquetReadObjects } from "hyparquet";
import { afterAll, describe, expect, test } from "vitest";
import { resultJsonSchema, resultSchema } from "../../src/cli/result_schema.ts";

const root = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "balloonlab-run-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function balloonlab(...args: string[]) {
  const result = spawnSync(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: root,
    encoding: "utf8",
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const SCENARIO = `name: small
seed: 7
guest: { memory: 1GiB, kernel: "6.1" }
host: { backing: anon, thp: { enabled: always } }
steps:
  - memhog: { size: 600MiB, keepEvery: 2, id: frag }
  - snapshot: before
  - balloon: { target: 768MiB }
  - wait: 5s
  - snapshot: after
`;

const scenarioPath = join(dir, "small.yaml");
writeFileSync(scenarioPath, SCENARIO);

describe("balloonlab run", () => {
  test("writes result.json that matches the schema; the same seed gives the same bytes", () => {
    const first = join(dir, "first");
    const second = join(dir, "second");
    expect(balloonlab("run", scenarioPath, "--out", first).status).toBe(0);
    expect(balloonlab("run", scenarioPath, "--out", second).status).toBe(0);
    const text = readFileSync(join(first, "result.json"), "utf8");
    expect(readFileSync(join(second, "result.json"), "utf8")).toBe(text);
    // Checked against the published JSON Schema, with a JSON Schema validator.
    const published = JSON.parse(readFileSync(join(root, "docs", "result.schema.json"), "utf8"));
    const validate = new Ajv2020({ strict: false }).compile(published);
    expect(validate(JSON.parse(text)), JSON.stringify(validate.errors)).toBe(true);
    const result = resultSchema.parse(JSON.parse(text));
    expect(result.seed).toBe(7);
    expect(result.snapshots.map((snapshot) => snapshot.name)).toEqual(["before", "after"]);
    const after = result.snapshots[1]!;
    expect(after.balloon.pagesInflated).toBe((256 * 1024 * 1024) / 4096);
    expect(after.balloon.logicalSizeMiB).toBe(768);
    expect(after.host.ramResident_kB).toBeLessThan(result.snapshots[0]!.host.ramResident_kB);
    expect(Object.keys(after.guest.buddyinfo)).toEqual(["DMA", "DMA32"]);
    expect(after.guest.vmstat.balloon_inflate).toBe(65536);
    expect(existsSync(join(first, "timeline.csv"))).toBe(true);
  });

  test("--json prints result.json; --set and --seed override the file", () => {
    const out = join(dir, "json");
    const run = balloonlab(
      "run",
      scenarioPath,
      "--out",
      out,
      "--json",
      "--set",
      "balloon.policy=highest-order-first",
      "--seed",
      "3",
    );
    expect(run.status).toBe(0);
    const printed = JSON.parse(run.stdout);
    expect(printed).toEqual(JSON.parse(readFileSync(join(out, "result.json"), "utf8")));
    expect(printed.seed).toBe(3);
    expect(printed.scenario.balloon.policy).toBe("highest-order-first");
  });

  test("a bad scenario exits 2 with file and line, no stack trace, nothing written", () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, SCENARIO.replace("policy", "policy").replace("768MiB", "8GiB"));
    const out = join(dir, "bad-out");
    const run = balloonlab("run", bad, "--out", out);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/bad\.yaml:8:/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });

  test("long runs: waits are sampled along the timeline, which also goes to Parquet", async () => {
    const long = join(dir, "long.yaml");
    writeFileSync(
      long,
      "name: long\nguest: { memory: 1GiB }\nsteps:\n  - wait: 20min\n  - wait: 20min\n" +
        "  - snapshot: end\n",
    );
    const out = join(dir, "long");
    expect(balloonlab("run", long, "--out", out).status).toBe(0);
    const csvRows = readFileSync(join(out, "timeline.csv"), "utf8").trim().split("\n").length - 1;
    expect(csvRows).toBeGreaterThan(1000);
    const bytes = readFileSync(join(out, "timeline.parquet"));
    const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    const rows = (await parquetReadObjects({ file })) as { simTimeMs: number; kind: string }[];
    expect(rows).toHaveLength(csvRows);
    expect(rows.at(-1)!.simTimeMs).toBe(40 * 60_000);
    expect(rows.filter((row) => row.kind === "wait").length).toBeGreaterThan(1000);
  });

  test("the published JSON Schema is the one the code generates", () => {
    const published = JSON.parse(readFileSync(join(root, "docs", "result.schema.json"), "utf8"));
    expect(published).toEqual(resultJsonSchema());
  });
});

describe("balloonlab compare", () => {
  test("one cell per policy, manifest.json and comparison.json", () => {
    const out = join(dir, "compare");
    const run = balloonlab(
      "compare",
      scenarioPath,
      "--policies",
      "linux-4k,highest-order-first",
      "--axis",
      "host.backing=anon,memfd",
      "--out",
      out,
    );
    expect(run.status).toBe(0);
    const cells = [
      "linux-4k_anon",
      "linux-4k_memfd",
      "highest-order-first_anon",
      "highest-order-first_memfd",
    ];
    for (const cell of cells) expect(existsSync(join(out, cell, "result.json"))).toBe(true);
    const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8"));
    expect(manifest.cells.map((cell: { name: string }) => cell.name)).toEqual(cells);
    const comparison = JSON.parse(readFileSync(join(out, "comparison.json"), "utf8"));
    expect(comparison.rows).toHaveLength(4);
    const byCell = Object.fromEntries(
      comparison.rows.map((row: { cell: string; hostUnmappedMiB: number }) => [row.cell, row]),
    );
    // memfd gives memory back at once; anon THP holds it until the deferred split.
    expect(byCell["linux-4k_memfd"].hostFreedMiB).toBeGreaterThan(200);
    expect(byCell["linux-4k_anon"].hostFreedMiB).toBeLessThan(50);
    expect(run.stdout).toMatch(/linux-4k_anon/);
  });

  test("a bad axis exits 2 before anything runs", () => {
    const out = join(dir, "bad-compare");
    const run = balloonlab("compare", scenarioPath, "--policies", "linux-4k,bogus", "--out", out);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/policy/);
    expect(existsSync(out)).toBe(false);
  });
});
