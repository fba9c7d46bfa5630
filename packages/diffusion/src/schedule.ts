import { DitcacheError } from "@ditcache/core";

/**
 * `get_named_beta_schedule("linear", numTimesteps)` of the official code: betas from
 * 1e-4 to 0.02 (scaled by 1000 / numTimesteps), float64, computed as `np.linspace` does
 * (`i * step + start`, the last value set to the end exactly).
 *
 * @throws DitcacheError INVALID_ARGUMENT when `numTimesteps` is not a positive integer.
 */
export function linearBetaSchedule(numTimesteps = 1000): Float64Array {
  checkTimestepCount(numTimesteps);
  const scale = 1000 / numTimesteps;
  const start = scale * 0.0001;
  const end = scale * 0.02;
  const betas = new Float64Array(numTimesteps);
  const step = numTimesteps > 1 ? (end - start) / (numTimesteps - 1) : 0;
  for (let i = 0; i < numTimesteps; i++) betas[i] = i * step + start;
  if (numTimesteps > 1) betas[numTimesteps - 1] = end;
  return betas;
}

function checkTimestepCount(numTimesteps: number): void {
  if (!Number.isSafeInteger(numTimesteps) || numTimesteps < 1) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `numTimesteps: expected a positive integer, got ${numTimesteps}`,
    );
  }
}

/** Python's `round()`: halves go to the even neighbour. */
function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function parseCount(text: string, respacing: string): number {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `respacing: expected "ddimN", "N" or comma-separated counts like "10,15,20", got ${JSON.stringify(respacing)}`,
    );
  }
  return Number(trimmed);
}

/**
 * The timesteps a respaced process keeps, ascending: `space_timesteps` of the official respace.py.
 * - `"ddimN"`: the smallest integer stride s with `len(range(0, T, s)) == N`.
 * - `"N"` or `"a,b,c"`: T is cut into equal sections (the first `T % sections` one longer) and
 *   each section gets its count of steps at a fractional stride, rounded as Python rounds.
 *
 * @example spaceTimesteps(1000, "ddim20") // [0, 50, 100, ..., 950]
 * @throws DitcacheError INVALID_ARGUMENT naming the respacing and why it cannot be made.
 */
export function spaceTimesteps(numTimesteps: number, respacing: string | readonly number[]): number[] {
  checkTimestepCount(numTimesteps);
  let sections: readonly number[];
  if (typeof respacing === "string") {
    if (respacing.startsWith("ddim")) {
      const desired = parseCount(respacing.slice(4), respacing);
      for (let stride = 1; stride < numTimesteps; stride++) {
        if (Math.ceil(numTimesteps / stride) === desired) {
          return Array.from({ length: desired }, (_, i) => i * stride);
        }
      }
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `respacing ${JSON.stringify(respacing)}: cannot take exactly ${desired} of ${numTimesteps} steps with an integer stride`,
      );
    }
    sections = respacing.split(",").map((part) => parseCount(part, respacing));
  } else if (Array.isArray(respacing)) {
    sections = respacing;
    for (const count of sections) {
      if (!Number.isSafeInteger(count) || count < 0) {
        throw new DitcacheError(
          "INVALID_ARGUMENT",
          `respacing: expected non-negative integer counts, got [${sections.join(", ")}]`,
        );
      }
    }
  } else {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `respacing: expected a string or an array of counts, got ${typeof respacing}`,
    );
  }
  if (sections.length === 0 || sections.every((count) => count === 0)) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `respacing ${JSON.stringify(respacing)}: expected at least one step`,
    );
  }
  const sizePer = Math.floor(numTimesteps / sections.length);
  const extra = numTimesteps % sections.length;
  const steps = new Set<number>();
  let start = 0;
  sections.forEach((count, i) => {
    const size = sizePer + (i < extra ? 1 : 0);
    if (size < count) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `respacing ${JSON.stringify(respacing)}: cannot divide a section of ${size} steps into ${count}`,
      );
    }
    const stride = count <= 1 ? 1 : (size - 1) / (count - 1);
    let index = 0;
    for (let k = 0; k < count; k++) {
      steps.add(start + roundHalfEven(index));
      index += stride;
    }
    start += size;
  });
  return [...steps].sort((a, b) => a - b);
}

/**
 * The coefficients of a (possibly respaced) Gaussian diffusion, float64, named as in
 * gaussian_diffusion.py. Index k is a step of THIS process; `timestepMap[k]` is the original
 * timestep the model sees.
 */
export interface DiffusionSchedule {
  /** Steps of this process. */
  readonly numTimesteps: number;
  /** Original timestep of each step, ascending. */
  readonly timestepMap: readonly number[];
  /** Betas of this process (recomputed from the kept alphas_cumprod when respaced). */
  readonly betas: Float64Array;
  /** log(betas): the upper end of the learned variance range. */
  readonly logBetas: Float64Array;
  /** Cumulative product of 1 - beta. */
  readonly alphasCumprod: Float64Array;
  /** alphas_cumprod shifted right with 1 first. */
  readonly alphasCumprodPrev: Float64Array;
  /** sqrt(1 / alphas_cumprod). */
  readonly sqrtRecipAlphasCumprod: Float64Array;
  /** sqrt(1 / alphas_cumprod - 1). */
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  /** Variance of q(x_{t-1} | x_t, x_0). */
  readonly posteriorVariance: Float64Array;
  /** log of the posterior variance with its first (zero) entry replaced by the second. */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** Posterior mean coefficient of x_0. */
  readonly posteriorMeanCoef1: Float64Array;
  /** Posterior mean coefficient of x_t. */
  readonly posteriorMeanCoef2: Float64Array;
  /** log of the FIXED_LARGE variance, `log(append(posterior_variance[1], betas[1:]))`. */
  readonly fixedLargeLogVariance: Float64Array;
}

/** Options of {@link createSchedule}. */
export interface ScheduleOptions {
  /** Respacing as `space_timesteps` takes it ("ddim20", "250", "10,10", or counts). @defaultValue all steps */
  respacing?: string | readonly number[];
  /** Steps of the base process. @defaultValue 1000 */
  numTimesteps?: number;
}

/**
 * `create_diffusion(respacing)` of the official code for the linear schedule: the base
 * process's alphas_cumprod, the kept steps, and the coefficients recomputed from the new betas
 * exactly as `SpacedDiffusion` does.
 *
 * @throws DitcacheError INVALID_ARGUMENT for a bad respacing or step count.
 */
export function createSchedule(options: ScheduleOptions = {}): DiffusionSchedule {
  const base = linearBetaSchedule(options.numTimesteps ?? 1000);
  const respacing = options.respacing ?? [base.length];
  const keep = spaceTimesteps(
    base.length,
    typeof respacing === "string" && respacing === "" ? [base.length] : respacing,
  );
  const baseCumprod = cumulativeAlphas(base);
  const kept = new Set(keep);
  const betas: number[] = [];
  const timestepMap: number[] = [];
  let last = 1;
  baseCumprod.forEach((alphaCumprod, i) => {
    if (!kept.has(i)) return;
    betas.push(1 - alphaCumprod / last);
    last = alphaCumprod;
    timestepMap.push(i);
  });
  return coefficients(Float64Array.from(betas), timestepMap);
}

function cumulativeAlphas(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let product = 1;
  betas.forEach((beta, i) => {
    product *= 1 - beta;
    out[i] = product;
  });
  return out;
}

function coefficients(betas: Float64Array, timestepMap: number[]): DiffusionSchedule {
  const n = betas.length;
  const map = (fn: (i: number) => number) => Float64Array.from({ length: n }, (_, i) => fn(i));
  const alphasCumprod = cumulativeAlphas(betas);
  const alphasCumprodPrev = map((i) => (i === 0 ? 1 : alphasCumprod[i - 1]!));
  const posteriorVariance = map((i) => (betas[i]! * (1 - alphasCumprodPrev[i]!)) / (1 - alphasCumprod[i]!));
  // With one step there is no second entry: the official code leaves the array empty (NaN here).
  const second = n > 1 ? posteriorVariance[1]! : Number.NaN;
  return {
    numTimesteps: n,
    timestepMap: Object.freeze(timestepMap),
    betas,
    logBetas: map((i) => Math.log(betas[i]!)),
    alphasCumprod,
    alphasCumprodPrev,
    sqrtRecipAlphasCumprod: map((i) => Math.sqrt(1 / alphasCumprod[i]!)),
    sqrtRecipm1AlphasCumprod: map((i) => Math.sqrt(1 / alphasCumprod[i]! - 1)),
    posteriorVariance,
    posteriorLogVarianceClipped: map((i) => Math.log(i === 0 ? second : posteriorVariance[i]!)),
    posteriorMeanCoef1: map((i) => (betas[i]! * Math.sqrt(alphasCumprodPrev[i]!)) / (1 - alphasCumprod[i]!)),
    posteriorMeanCoef2: map(
      (i) => ((1 - alphasCumprodPrev[i]!) * Math.sqrt(1 - betas[i]!)) / (1 - alphasCumprod[i]!),
    ),
    fixedLargeLogVariance: map((i) => Math.log(i === 0 ? second : betas[i]!)),
  };
}
