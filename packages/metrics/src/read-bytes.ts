import { readFile } from "node:fs/promises";
import { DitcacheError } from "@ditcache/core";

/**
 * Reads a whole file as a plain Uint8Array (the classifier hashes the same bytes it parses).
 * Node's Buffer is avoided on purpose: its `slice` returns a view rather than a copy, which
 * typed-array consumers do not expect.
 */
export async function readBytes(path: string, what: string): Promise<Uint8Array> {
  try {
    const buffer = await readFile(path);
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new DitcacheError(
      code === "ENOENT" ? "NOT_FOUND" : "BAD_FILE",
      `${path}: cannot read ${what} (${code ?? String(error)})`,
      {
        cause: error,
      },
    );
  }
}
