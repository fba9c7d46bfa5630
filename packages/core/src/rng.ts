import { invalidArgument } from "./errors.js";
import { sizeOf } from "./shape.js";

/**
 * A seeded random number generator that gives the same sequence on every run and platform.
 *
 * Algorithm (exact, so other languages can reproduce it):
 * 1. Seed: an integer `seed` in `[0, 2^53)` is split into `lo = seed mod 2^32` and
 *    `hi = floor(seed / 2^32)`. A SplitMix32 stream `w` starts at `lo`; each draw does
 *    `w = (w + 0x9E3779B9) mod 2^32; z = w; z = (z ^ (z >>> 16)) * 0x85EBCA6B mod 2^32;
 *    z = (z ^ (z >>> 13)) * 0xC2B2AE35 mod 2^32; z ^= z >>> 16` and returns `z`. A second
 *    SplitMix32 stream starts at `hi ^ 0x6A09E667`. State word `s[i]` (i = 0..3) is the i-th draw
 *    of the first stream XOR the i-th draw of the second. An all-zero state becomes `s[0] = 1`.
 * 2. Integers: xoshiro128** (Blackman & Vigna): `result = rotl(s[1] * 5, 7) * 9`, then
 *    `t = s[1] << 9; s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
 *    s[3] = rotl(s[3], 11)`, all on 32-bit words.
 * 3. `uniform()`: two draws `a`, `b`: `((a >>> 5) * 2^26 + (b >>> 6)) / 2^53`, a float64 in `[0, 1)`.
 * 4. `normal()`: Box–Muller in float64 on `u1 = 1 - uniform()` (in `(0, 1]`) then `u2 = uniform()`:
 *    `r = sqrt(-2 ln u1)`, `z0 = r cos(2π u2)`, `z1 = r sin(2π u2)`; returns `z0` and keeps `z1`
 *    for the next call.
 * 5. `normals(n)`: n successive `normal()` values rounded to float32.
 *
 * Integer and uniform outputs are bit-exact everywhere. Normals use `Math.log`, `Math.cos` and
 * `Math.sin`; V8 (Node, Chrome, Deno) implements them with the same fdlibm port on every
 * platform, so they are bit-exact across V8 runtimes and within an ulp elsewhere.
 */
export interface Rng {
  /** Next 32-bit unsigned integer of the xoshiro128** stream. */
  nextUint32(): number;
  /** Uniform float64 in `[0, 1)` with 53 random bits. */
  uniform(): number;
  /** Standard normal float64 (Box–Muller, the pair's second value is kept for the next call). */
  normal(): number;
  /** `n` standard normals rounded to float32. */
  normals(n: number): Float32Array;
}

const GOLDEN = 0x9e3779b9;

function splitMix32(start: number): () => number {
  let w = start >>> 0;
  return () => {
    w = (w + GOLDEN) >>> 0;
    let z = w;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Creates the seeded generator described on {@link Rng}.
 *
 * @param seed - An integer in `[0, 2^53)`.
 * @example
 * const rng = createRng(42);
 * const noise = rng.normals(16);
 */
export function createRng(seed: number): Rng {
  if (!Number.isSafeInteger(seed) || seed < 0) invalidArgument("seed", seed, "an integer in [0, 2^53)");
  const lo = seed >>> 0;
  const hi = Math.floor(seed / 2 ** 32) >>> 0;
  const first = splitMix32(lo);
  const second = splitMix32(hi ^ 0x6a09e667);
  let s0 = (first() ^ second()) >>> 0;
  let s1 = (first() ^ second()) >>> 0;
  let s2 = (first() ^ second()) >>> 0;
  let s3 = (first() ^ second()) >>> 0;
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;

  let spare: number | undefined;

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 11);
    return result;
  };
  const uniform = (): number => {
    const a = nextUint32() >>> 5;
    const b = nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  };
  const normal = (): number => {
    if (spare !== undefined) {
      const value = spare;
      spare = undefined;
      return value;
    }
    const u1 = 1 - uniform();
    const u2 = uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
  const normals = (n: number): Float32Array => {
    if (!Number.isSafeInteger(n) || n < 0) invalidArgument("n", n, "a non-negative integer");
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = normal();
    return out;
  };
  return { nextUint32, uniform, normal, normals };
}

/**
 * Standard normal noise of a shape, the first `sizeOf(shape)` values of `createRng(seed).normals`.
 *
 * @example
 * const x = backend.tensor(gaussianNoise(0, [1, 4, 32, 32]), [1, 4, 32, 32]);
 */
export function gaussianNoise(seed: number, shape: readonly number[]): Float32Array {
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0)
      invalidArgument("shape", shape, "non-negative integer dimensions");
  }
  return createRng(seed).normals(sizeOf(shape));
}
