// `balloonlab proc import` and `balloonlab proc export`: a guest from a real machine's /proc files,
// and the /proc views of such a guest.
//
//   balloonlab proc import --buddyinfo F --pagetypeinfo F [--zoneinfo F] [--kernel V] --out DIR
//     Builds the guest (src/guest/proc_import.ts, docs/proc_import.md) and writes DIR/import.json
//     (kernel, zones, pageblocks and free blocks per migratetype, owners, placement rules) and the
//     guest's own buddyinfo, pagetypeinfo and zoneinfo, which re-import to the same guest.
//   balloonlab proc export --from DIR --out DIR2 [--kernel V]
//     Rebuilds the guest from DIR (written by import; the kernel from DIR/import.json unless
//     given) and writes all its views: buddyinfo, pagetypeinfo, zoneinfo, vmstat, meminfo,
//     extfrag_index, unusable_index, and vmstat.json / meminfo.json.
//
// Bad input exits 2 with "balloonlab: <file>:<line>: <message>" (main.ts prints InputError).
// Everything is computed before the first write; files are written under temporary names and
// renamed, so a failed run leaves no partial output.

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "@commander-js/extra-typings";
import { InputError } from "../core/input_error.ts";
import { isKernelVersion, KERNEL_VERSIONS, type KernelVersion } from "../guest/kernel_version.ts";
import { importProc, type ProcImport, type ProcImportInput } from "../guest/proc_import.ts";
import { parseBuddyinfo, parsePagetypeinfo, parseZoneinfo } from "../metrics/proc_parse.ts";
import {
  exportProc,
  formatExtfragIndex,
  formatMeminfo,
  formatUnusableIndex,
  formatVmstat,
  meminfoKb,
  vmstatRecord,
} from "../metrics/proc_views.ts";

const DEFAULT_KERNEL = "6.1";

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as { code?: string }).code ?? "error";
    throw new InputError({ file, message: `cannot read the file (${code})` });
  }
}

function kernelOption(value: string): KernelVersion {
  if (!isKernelVersion(value)) {
    throw new InputError({
      file: "<argv>",
      field: "--kernel",
      message: `expected one of ${KERNEL_VERSIONS.join(", ")}, got "${value}"`,
    });
  }
  return value;
}

export interface ImportFiles {
  readonly buddyinfo: string;
  readonly pagetypeinfo: string;
  readonly zoneinfo: string | undefined;
}

/** Reads and parses the files (InputError naming the file and line on bad input). */
export function parseImportFiles(files: ImportFiles, kernel: KernelVersion): ProcImportInput {
  const buddyinfo = parseBuddyinfo(readText(files.buddyinfo), files.buddyinfo);
  const pagetypeinfo = parsePagetypeinfo(readText(files.pagetypeinfo), files.pagetypeinfo);
  const zoneinfo =
    files.zoneinfo === undefined
      ? undefined
      : parseZoneinfo(readText(files.zoneinfo), files.zoneinfo);
  return { buddyinfo, pagetypeinfo, zoneinfo, kernel };
}

function importFiles(files: ImportFiles, kernel: KernelVersion): ProcImport {
  return importProc(parseImportFiles(files, kernel));
}

/** Writes every file under a temporary name first, then renames them all into place. */
function writeOutputs(dir: string, files: Readonly<Record<string, string>>): void {
  mkdirSync(dir, { recursive: true });
  const names = Object.keys(files);
  for (const name of names) {
    writeFileSync(join(dir, `.${name}.tmp-${process.pid}`), files[name]!);
  }
  for (const name of names) renameSync(join(dir, `.${name}.tmp-${process.pid}`), join(dir, name));
}

/** Indented JSON with arrays of numbers kept on one line (free blocks per order). */
function jsonText(value: unknown): string {
  const text = JSON.stringify(value, undefined, 2);
  const inline = (_: string, inner: string): string => `[${inner.split(/,\s*/).join(", ")}]`;
  return `${text.replace(/\[\s+([-\d.,\s]+?)\s+\]/g, inline)}\n`;
}

function runImport(files: ImportFiles, kernel: KernelVersion, out: string): void {
  const imported = importFiles(files, kernel);
  const views = exportProc(imported.memory, imported.record);
  const summary = {
    sources: { ...files },
    ...imported.summary,
  };
  writeOutputs(out, {
    "import.json": jsonText(summary),
    buddyinfo: views.buddyinfo,
    pagetypeinfo: views.pagetypeinfo,
    zoneinfo: views.zoneinfo,
  });
}

/** The kernel an import directory was made for (import.json), unless the option overrides it. */
function importedKernel(from: string, option: string | undefined): KernelVersion {
  if (option !== undefined) return kernelOption(option);
  const file = join(from, "import.json");
  let kernel: unknown;
  try {
    kernel = (JSON.parse(readText(file)) as { kernel?: unknown }).kernel;
  } catch (error) {
    if (error instanceof InputError) throw error;
    throw new InputError({ file, message: "expected JSON written by `balloonlab proc import`" });
  }
  if (typeof kernel !== "string" || !isKernelVersion(kernel)) {
    throw new InputError({ file, field: "kernel", message: "expected a supported kernel version" });
  }
  return kernel;
}

function runExport(from: string, out: string, kernelValue: string | undefined): void {
  const kernel = importedKernel(from, kernelValue);
  const zoneinfo = join(from, "zoneinfo");
  const imported = importFiles(
    {
      buddyinfo: join(from, "buddyinfo"),
      pagetypeinfo: join(from, "pagetypeinfo"),
      zoneinfo: existsSync(zoneinfo) ? zoneinfo : undefined,
    },
    kernel,
  );
  const { memory, record } = imported;
  const views = exportProc(memory, record);
  writeOutputs(out, {
    buddyinfo: views.buddyinfo,
    pagetypeinfo: views.pagetypeinfo,
    zoneinfo: views.zoneinfo,
    vmstat: formatVmstat(memory),
    meminfo: formatMeminfo(memory),
    extfrag_index: formatExtfragIndex(memory),
    unusable_index: formatUnusableIndex(memory),
    "vmstat.json": jsonText(vmstatRecord(memory)),
    "meminfo.json": jsonText(meminfoKb(memory)),
  });
}

export function registerProcCommand(program: Command): void {
  const proc = program
    .command("proc")
    .description("build a guest from /proc files and print its /proc views");
  proc
    .command("import")
    .description("build a guest from /proc/buddyinfo, /proc/pagetypeinfo and /proc/zoneinfo")
    .requiredOption("--buddyinfo <file>", "a /proc/buddyinfo capture")
    .requiredOption("--pagetypeinfo <file>", "a /proc/pagetypeinfo capture, taken with buddyinfo")
    .option("--zoneinfo <file>", "a /proc/zoneinfo capture (zone spans, watermarks)")
    .option("--kernel <version>", `kernel rules and formats (${KERNEL_VERSIONS.join(", ")})`)
    .requiredOption("--out <dir>", "directory for import.json and the guest's own files")
    .action((options) => {
      const kernel = kernelOption(options.kernel ?? DEFAULT_KERNEL);
      const files = {
        buddyinfo: options.buddyinfo,
        pagetypeinfo: options.pagetypeinfo,
        zoneinfo: options.zoneinfo,
      };
      runImport(files, kernel, options.out);
    });
  proc
    .command("export")
    .description("rebuild an imported guest and write all of its /proc views")
    .requiredOption("--from <dir>", "a directory written by `balloonlab proc import`")
    .requiredOption("--out <dir>", "directory for the views")
    .option("--kernel <version>", "print for this kernel instead of the imported one")
    .action((options) => {
      runExport(options.from, options.out, options.kernel);
    });
}
