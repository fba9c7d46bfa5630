import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";

/**
 * Short content fingerprint: the first 16 hex digits of SHA-256. Used to tie priors, statistics
 * and caches to the exact weights they were made with.
 */
export function contentDigest(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex").slice(0, 16);
}

/** {@link contentDigest} of a file's bytes. */
export async function fileDigest(path: string): Promise<string> {
  return contentDigest(await readFile(path));
}
