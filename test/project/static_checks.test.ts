// Goal: type errors, lint findings and style rules fail the test suite, not a review.
// Method: run the TypeScript compiler and Biome over the tree as child processes, and scan src/
// for what the style guide forbids in the model (wall clock, Math.random, console, null).
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, test } from "vitest";

const root = join(import.meta.dirname, "..", "..");

function run(command: string, args: string[]): { status: number; output: string } {
  try {
    const output = execFileSync(command, args, { cwd: root, encoding: "utf8", stdio: "pipe" });
    return { status: 0, output };
  } catch (error) {
    const failure = error as { status?: number; stdout?: string; stderr?: string };
    return {
      status: failure.status ?? 1,
      output: `${failure.stdout ?? ""}${failure.stderr ?? ""}`,
    };
  }
}

function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) files.push(...sourceFiles(path));
    else if (name.endsWith(".ts")) files.push(path);
  }
  return files;
}

/**
 * Which layers each layer may import (besides itself): core <- guest, host <- virtio <- sim <-
 * cli/web/bench; policies see guest and host; check and metrics read the model, and nothing in
 * the model reads them.
 */
const LAYER_IMPORTS: Record<string, readonly string[]> = {
  core: [],
  guest: ["core"],
  host: ["core"],
  virtio: ["core", "guest", "host"],
  policies: ["core", "guest", "host"],
  workloads: ["core"],
  check: ["core", "guest", "host", "virtio", "policies"],
  metrics: ["core", "guest", "host", "virtio", "policies"],
  sim: ["core", "guest", "host", "virtio", "policies", "workloads", "check", "metrics"],
  cli: ["core", "guest", "host", "virtio", "policies", "workloads", "check", "metrics", "sim"],
  web: ["core", "metrics", "sim"],
};

/** Layers that model the system: they never read the clock, draw randomness or print. */
const MODEL_LAYERS = ["core", "guest", "host", "virtio", "policies", "workloads", "check"];

describe("static checks", () => {
  test("tsc --noEmit finds no type errors", () => {
    const result = run("npx", ["tsc", "--noEmit"]);
    expect(result.output).toBe("");
    expect(result.status).toBe(0);
  });

  test("biome check finds no lint or format problems", () => {
    const result = run("npx", ["biome", "check", "src", "test", "bench", "bin", "scripts"]);
    expect(result.status, result.output).toBe(0);
  });

  test("model layers use no wall clock, Math.random, console or null", () => {
    const banned = /Math\.random|Date\.now|performance\.now|new Date\(|console\.|\bnull\b/;
    const offenders: string[] = [];
    for (const layer of MODEL_LAYERS) {
      const dir = join(root, "src", layer);
      let files: string[] = [];
      try {
        files = sourceFiles(dir);
      } catch {
        continue;
      }
      for (const file of files) {
        readFileSync(file, "utf8")
          .split("\n")
          .forEach((line, index) => {
            const code = line.replace(/\/\/.*$/, "");
            if (banned.test(code)) offenders.push(`${relative(root, file)}:${index + 1}: ${line}`);
          });
      }
    }
    expect(offenders).toEqual([]);
  });

  test("file names are snake_case and no index.ts", () => {
    const bad = sourceFiles(join(root, "src"))
      .map((file) => relative(root, file))
      .filter((file) => !/^[a-z0-9_/]+\.ts$/.test(file) || file.endsWith("/index.ts"));
    expect(bad).toEqual([]);
  });

  test("imports run one way between layers (style.md 5.2)", () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(join(root, "src"))) {
      const layer = relative(join(root, "src"), file).split("/")[0]!;
      const allowed = LAYER_IMPORTS[layer];
      if (allowed === undefined) {
        offenders.push(`${relative(root, file)}: layer ${layer} has no import rule`);
        continue;
      }
      for (const match of readFileSync(file, "utf8").matchAll(/from "\.\.\/([a-z_]+)\//g)) {
        const target = match[1]!;
        if (!allowed.includes(target)) offenders.push(`${relative(root, file)} imports ${target}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
