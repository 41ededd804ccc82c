// Assertions that cost nothing when they pass (TypeScript compiler's Debug.assert, TigerBeetle's
// assertion density). The message is a thunk so that building it costs nothing on the hot path.

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(condition: boolean, message?: string | (() => string)): asserts condition {
  if (!condition) {
    const text = typeof message === "function" ? message() : (message ?? "assertion failed");
    throw new AssertionError(text);
  }
}

export function assertNever(value: never, what: string): never {
  throw new AssertionError(`unexpected ${what}: ${String(value)}`);
}
