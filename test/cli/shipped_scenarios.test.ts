// Goal: the scenario files shipped under scenarios/ stay valid and keep saying where they come
// from: each loads, names the thread message (or source) that raised its question in its
// opening comment, and says how to run its comparison; the file form of the embedded default
// experiment is the embedded text itself.
// Method: load every file with the CLI's loader (no run: the CLI tests run scenarios), read its
// leading comment lines.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { DEFAULT_SCENARIO_YAML } from "../../src/cli/default_scenario.ts";
import { loadScenarioFile } from "../../src/cli/scenario_file.ts";

const dir = join(import.meta.dirname, "..", "..", "scenarios");
const files = readdirSync(dir).filter((name) => name.endsWith(".yaml"));

describe("shipped scenarios", () => {
  test("there is one per question of the thread", () => {
    expect(files.length).toBeGreaterThanOrEqual(9);
  });

  test.each(files)("%s loads and cites its source", (name) => {
    const path = join(dir, name);
    const scenario = loadScenarioFile(path);
    expect(`${scenario.name}.yaml`).toBe(name);
    const comment = readFileSync(path, "utf8")
      .split("\n")
      .filter((line) => line.startsWith("#"))
      .join("\n");
    expect(comment).toMatch(/20(19|20)-\d\d-\d\d/);
    expect(comment).toMatch(/Hildenbrand|Duyck|Tsirkin|Yang Shi|thread/);
  });

  test("scenarios/thread-question.yaml is the embedded default experiment", () => {
    expect(readFileSync(join(dir, "thread-question.yaml"), "utf8")).toBe(DEFAULT_SCENARIO_YAML);
  });
});
