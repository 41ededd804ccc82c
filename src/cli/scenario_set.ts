// `--set path=value`: command-line overrides of one scenario setting (issue #4), such as
// `--set balloon.policy=thp-order --set guest.memory=4GiB`. The path is a dotted path of keys of
// the file format (scenario_schema.ts); the value is a YAML scalar, kept as written where the
// setting is a string (so `--set guest.kernel=6.10` stays "6.10"). Overrides are applied to the
// parsed YAML document before validation, so they are checked exactly like the file; any error
// they cause names `--set <path>` instead of a file line. Steps cannot be set this way.

import { type Document, isCollection, parseDocument } from "yaml";
import { z } from "zod";
import { InputError } from "../core/input_error.ts";
import { objectKeys, scenarioFileSchema, schemaAt } from "./scenario_schema.ts";

/** One parsed `--set`: the path as keys, and the value to put there. */
export interface ScenarioSet {
  readonly path: readonly string[];
  readonly value: unknown;
}

/** The file name errors about the command line carry (as for other options). */
export const ARGV_FILE = "<argv>";

function setError(path: string, message: string): InputError {
  return new InputError({ file: ARGV_FILE, field: `--set ${path}`, message });
}

/** Why `path` names no setting, or undefined when it names one. */
function pathProblem(path: readonly string[]): string | undefined {
  const text = path.join(".");
  if (path[0] === "steps") {
    return (
      "steps cannot be set from the command line: --set takes a setting's path; " +
      "edit the steps in the file"
    );
  }
  let known = 0;
  while (known < path.length && schemaAt(scenarioFileSchema, path.slice(0, known + 1))) known++;
  if (known < path.length) {
    const parent = path.slice(0, known);
    const keys = objectKeys(schemaAt(scenarioFileSchema, parent)) ?? [];
    const where = parent.length === 0 ? "the top level" : parent.join(".");
    const has = keys.length === 0 ? "no keys" : `the keys ${keys.join(", ")}`;
    return `unknown path ${text}: ${where} has ${has}`;
  }
  const keys = objectKeys(schemaAt(scenarioFileSchema, path));
  if (keys !== undefined) {
    const paths = keys.map((key) => `${text}.${key}`).join(", ");
    return `${text} is a group of settings; set one of ${paths}`;
  }
  return undefined;
}

/** The value of `text` for the setting at `path`: a string where the setting is one. */
function scalarValue(path: readonly string[], text: string): unknown {
  const leaf = schemaAt(scenarioFileSchema, path);
  if (leaf instanceof z.ZodString || leaf instanceof z.ZodEnum) return text;
  const doc = parseDocument(text);
  if (doc.errors.length > 0 || isCollection(doc.contents)) {
    throw setError(
      path.join("."),
      `expected a YAML scalar (a number, true or false), got "${text}"`,
    );
  }
  return doc.toJS();
}

/** Parses every `path=value`; throws an InputError naming the first bad one. */
export function parseScenarioSets(overrides: readonly string[]): ScenarioSet[] {
  return overrides.map((override) => {
    const equals = override.indexOf("=");
    if (equals <= 0) {
      throw new InputError({
        file: ARGV_FILE,
        field: "--set",
        message: `expected path=value (e.g. balloon.policy=thp-order), got "${override}"`,
      });
    }
    const pathText = override.slice(0, equals);
    const path = pathText.split(".");
    const problem = pathProblem(path);
    if (problem !== undefined) throw setError(pathText, problem);
    return { path, value: scalarValue(path, override.slice(equals + 1)) };
  });
}

/** Puts every override into the document, in order (a later one wins). */
export function applyScenarioSets(doc: Document, sets: readonly ScenarioSet[]): void {
  for (const set of sets) {
    try {
      doc.setIn(set.path, doc.createNode(set.value));
    } catch {
      const parent = set.path.slice(0, -1).join(".");
      throw setError(set.path.join("."), `cannot set it: ${parent} in the file is not a mapping`);
    }
  }
}

/** The override that decides the value at `path` (a key path in the file), if any. */
export function setAt(
  sets: readonly ScenarioSet[],
  path: readonly (string | number)[],
): ScenarioSet | undefined {
  return sets.findLast(
    (set) => set.path.length <= path.length && set.path.every((key, index) => key === path[index]),
  );
}

/** An error at a value an override put there: named by `--set <path>`. */
export function errorAtSet(set: ScenarioSet, message: string): InputError {
  return setError(set.path.join("."), message);
}
