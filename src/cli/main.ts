// The balloonlab command line: subcommands, exit codes and error reporting.
// Exit 0 on success, 1 when a run fails, 2 on bad input or usage (commander's own errors too).
// Bad input is reported as one line naming the file and what was expected, never a stack trace.
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Command, CommanderError } from "@commander-js/extra-typings";
import { InputError } from "../core/input_error.ts";
import { registerCompareCommand } from "./compare_command.ts";
import { registerDemoCommand } from "./demo_command.ts";
import { registerProcCommand } from "./proc_command.ts";
import { registerRunCommand } from "./run_command.ts";
import { registerTraceCommand } from "./trace_command.ts";
import { registerValidateCommand } from "./validate_command.ts";

export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;

export function createProgram(): Command {
  const program = new Command()
    .name("balloonlab")
    .description(
      "What ballooning costs a Linux guest and what the host really gets back: a co-simulation.",
    )
    .version("0.1.0")
    .exitOverride()
    .showHelpAfterError();
  registerRunCommand(program);
  registerCompareCommand(program);
  registerDemoCommand(program);
  registerProcCommand(program);
  registerTraceCommand(program);
  registerValidateCommand(program);
  return program;
}

/** Runs the CLI and returns the exit code. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (error) {
    return exitCodeFor(error);
  }
}

function exitCodeFor(error: unknown): number {
  if (error instanceof CommanderError) {
    // --help and --version end through exitOverride with code 0.
    if (error.exitCode === 0) return 0;
    return EXIT_BAD_INPUT;
  }
  if (error instanceof InputError) {
    process.stderr.write(`balloonlab: ${error.message}\n`);
    return EXIT_BAD_INPUT;
  }
  const text = error instanceof Error ? error.message : String(error);
  process.stderr.write(`balloonlab: run failed: ${text}\n`);
  if (process.env.BALLOONLAB_DEBUG === "1" && error instanceof Error) {
    process.stderr.write(`${error.stack ?? ""}\n`);
  }
  return EXIT_FAILURE;
}

// Run when this file is the process entry (`node --import tsx src/cli/main.ts ...`).
const isEntry =
  process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isEntry) {
  process.exitCode = await runCli(process.argv.slice(2));
}
