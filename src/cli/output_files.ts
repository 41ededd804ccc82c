// Writing results: every file goes to a temporary name in its directory and is renamed into
// place, so that a reader never sees a half-written file and a failed run leaves none behind.

import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

let temporaryCounter = 0;

/** Writes `data` to `path` atomically (write a sibling temporary file, then rename). */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  temporaryCounter++;
  const temporary = join(dirname(path), `.${process.pid}.${temporaryCounter}.tmp`);
  try {
    writeFileSync(temporary, data);
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/** JSON with two-space indentation and a final newline. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, undefined, 2)}\n`);
}
