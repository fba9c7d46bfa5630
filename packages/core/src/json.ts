import { DitcacheError } from "./errors.js";

/**
 * Parses a config given as JSON text or an already-parsed value into a plain object; anything
 * else is a BAD_FILE error naming the source and what it should have been.
 */
export function parseJsonObject(
  source: string | Record<string, unknown>,
  name: string,
  expected: string,
): Record<string, unknown> {
  let raw: unknown = source;
  if (typeof source === "string") {
    try {
      raw = JSON.parse(source);
    } catch (error) {
      throw new DitcacheError("BAD_FILE", `${name}: invalid JSON (${(error as Error).message})`, {
        cause: error,
      });
    }
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new DitcacheError("BAD_FILE", `${name}: expected ${expected}`);
  }
  return raw as Record<string, unknown>;
}
