import { mkdir } from "node:fs/promises";
import { dirname, extname } from "node:path";
import { DitcacheError, encodePng, writeFileAtomic, writeSafetensors } from "@ditcache/core";
import { imageGrid } from "@ditcache/pipeline";

/** Throws a one-line usage error. */
export function fail(message: string): never {
  throw new DitcacheError("INVALID_ARGUMENT", message);
}

/**
 * Writes images (N, C, H, W): a PNG grid for .png (1 or 3 channels), the raw array for .safetensors.
 * The write is atomic: an interrupted run leaves no half-written file.
 */
export async function writeImages(
  path: string,
  images: Float32Array,
  shape: readonly number[],
  options: { columns?: number; scale?: number; metadata?: Record<string, string> } = {},
): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const extension = extname(path).toLowerCase();
  if (extension === ".safetensors") {
    await writeFileAtomic(
      path,
      writeSafetensors({ samples: { shape, data: images } }, { metadata: options.metadata ?? {} }),
    );
    return;
  }
  if (extension !== ".png") fail(`--out: expected a .png or .safetensors path, got ${JSON.stringify(path)}`);
  const channels = shape[1];
  if (channels !== 1 && channels !== 3) {
    fail(
      `--out: ${channels}-channel latents cannot be a PNG; write .safetensors (or decode them with a VAE)`,
    );
  }
  await writeFileAtomic(path, encodePng(imageGrid(images, shape, options)));
}

/** Formats milliseconds for people. */
export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}
