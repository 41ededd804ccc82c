// Bad input from outside the model: a file, a command-line value, a scenario field. The shell
// (cli/, bench/) prints `message` alone and exits with status 2; a stack trace is never shown for
// an InputError, because the fix is in the input, not in the code.

/** Where the bad input is and what was expected there. */
export interface InputErrorSpec {
  /** The file (or "<argv>" for a command-line value) that holds the bad input. */
  readonly file: string;
  /** 1-based line, for text inputs. */
  readonly line?: number;
  /** 1-based column on that line, when known (YAML nodes). */
  readonly column?: number;
  /** The field, option or record that is wrong, e.g. "version" or "record 12". */
  readonly field?: string;
  /** What is wrong and what was expected, without the location: "expected 1, got 7". */
  readonly message: string;
}

export class InputError extends Error {
  override name = "InputError";
  readonly file: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  readonly field: string | undefined;
  /** The reason without the location (`message` is the full, printable text). */
  readonly reason: string;

  constructor(spec: InputErrorSpec) {
    super(formatInputError(spec));
    this.file = spec.file;
    this.line = spec.line;
    this.column = spec.column;
    this.field = spec.field;
    this.reason = spec.message;
  }
}

/** "file:line[:column]: field: reason", leaving out the parts that are not known. */
function formatInputError(spec: InputErrorSpec): string {
  const line = spec.line === undefined ? "" : `:${spec.line}`;
  const column = spec.line === undefined || spec.column === undefined ? "" : `:${spec.column}`;
  const location = `${spec.file}${line}${column}`;
  const field = spec.field === undefined ? "" : `${spec.field}: `;
  return `${location}: ${field}${spec.message}`;
}
