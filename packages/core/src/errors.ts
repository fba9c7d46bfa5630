const brand = Symbol.for("@ditcache/core/DitcacheError");

/** Stable machine-readable error codes used across ditcache packages. */
export type DitcacheErrorCode =
  | "INVALID_ARGUMENT"
  | "SHAPE_MISMATCH"
  | "BAD_FILE"
  | "MISSING_WEIGHT"
  | "UNEXPECTED_WEIGHT"
  | "UNSUPPORTED"
  | "BACKEND_UNAVAILABLE"
  | "NUMERIC_FAULT"
  | "INCOMPATIBLE_FILE"
  | "ABORTED"
  | "NOT_FOUND";

/**
 * The one error type ditcache throws on purpose. Its message is a single line that says what
 * was wrong and what was expected; `code` is stable for programs.
 */
export class DitcacheError extends Error {
  /** Stable code for programmatic handling. */
  readonly code: DitcacheErrorCode;
  // biome-ignore lint/correctness/noUnusedPrivateClassMembers: read through the symbol by isInstance
  private readonly [brand] = true;

  constructor(code: DitcacheErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DitcacheError";
    this.code = code;
  }

  /** True for any DitcacheError, even one thrown by a second copy of this package. */
  static isInstance(value: unknown): value is DitcacheError {
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** Throws an INVALID_ARGUMENT error naming the argument, what it was and what was expected. */
export function invalidArgument(name: string, got: unknown, expected: string): never {
  throw new DitcacheError("INVALID_ARGUMENT", `${name}: expected ${expected}, got ${describe(got)}`);
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value == null) return String(value);
  if (Array.isArray(value))
    return `[${value.slice(0, 8).map(describe).join(", ")}${value.length > 8 ? ", …" : ""}]`;
  return typeof value;
}
