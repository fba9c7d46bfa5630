/**
 * One denoising step on the host, element by element. PyTorch does this arithmetic in float32
 * with coefficients cast to float32 (`_extract_into_tensor`); every operation here is rounded the
 * same way and in the same order, so a step matches the reference to float32 rounding.
 */
import type { DiffusionSchedule } from "./schedule.js";

const f = Math.fround;

/** What the model predicted for the N sample rows, split by channel role. */
export interface ModelPrediction {
  /** eps, (N, C, H, W). */
  readonly eps: Float32Array;
  /** Variance interpolation v in [-1, 1], (N, C, H, W), when the model learns sigma. */
  readonly varianceValues?: Float32Array;
}

/** Inputs of one step: x_t, the prediction at step k of the schedule, and the step's noise. */
export interface StepInput {
  readonly schedule: DiffusionSchedule;
  /** Step of the schedule (not the original timestep). */
  readonly k: number;
  readonly x: Float32Array;
  readonly prediction: ModelPrediction;
  readonly clipDenoised: boolean;
  /** Standard normal noise like x; absent means zero noise. */
  readonly noise?: Float32Array;
}

/** x_{t-1} and the x_0 predicted on the way. */
export interface StepOutput {
  readonly sample: Float32Array;
  readonly predictedX0: Float32Array;
}

function predictX0(input: StepInput): Float32Array {
  const { schedule, k, x, prediction, clipDenoised } = input;
  const a = f(schedule.sqrtRecipAlphasCumprod[k]!);
  const b = f(schedule.sqrtRecipm1AlphasCumprod[k]!);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const value = f(f(a * x[i]!) - f(b * prediction.eps[i]!));
    out[i] = clipDenoised ? Math.min(1, Math.max(-1, value)) : value;
  }
  return out;
}

/** `ddim_sample` (eta as given) for an EPSILON model. */
export function ddimStep(input: StepInput, eta: number): StepOutput {
  const { schedule, k, x, noise } = input;
  const predictedX0 = predictX0(input);
  const a = f(schedule.sqrtRecipAlphasCumprod[k]!);
  const b = f(schedule.sqrtRecipm1AlphasCumprod[k]!);
  const alphaBar = f(schedule.alphasCumprod[k]!);
  const alphaBarPrev = f(schedule.alphasCumprodPrev[k]!);
  const sigma = f(
    f(f(eta) * f(Math.sqrt(f(f(1 - alphaBarPrev) / f(1 - alphaBar))))) *
      f(Math.sqrt(f(1 - f(alphaBar / alphaBarPrev)))),
  );
  const sqrtPrev = f(Math.sqrt(alphaBarPrev));
  const direction = f(Math.sqrt(f(f(1 - alphaBarPrev) - f(sigma * sigma))));
  const noiseScale = f((k !== 0 ? 1 : 0) * sigma);
  const sample = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    // The official code re-derives eps from x_0 (it may have been clipped).
    const eps = f(f(f(a * x[i]!) - predictedX0[i]!) / b);
    const mean = f(f(predictedX0[i]! * sqrtPrev) + f(direction * eps));
    sample[i] = noise === undefined ? mean : f(mean + f(noiseScale * noise[i]!));
  }
  return { sample, predictedX0 };
}

/** `p_sample` for an EPSILON model with LEARNED_RANGE (or, without v, FIXED_LARGE) variance. */
export function ddpmStep(input: StepInput): StepOutput {
  const { schedule, k, x, noise, prediction } = input;
  const predictedX0 = predictX0(input);
  const coef1 = f(schedule.posteriorMeanCoef1[k]!);
  const coef2 = f(schedule.posteriorMeanCoef2[k]!);
  const minLog = f(schedule.posteriorLogVarianceClipped[k]!);
  const maxLog = f(schedule.logBetas[k]!);
  const fixedLog = f(schedule.fixedLargeLogVariance[k]!);
  const mask = k !== 0 ? 1 : 0;
  const v = prediction.varianceValues;
  const sample = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let logVariance = fixedLog;
    if (v !== undefined) {
      const fraction = f(f(v[i]! + 1) / 2);
      logVariance = f(f(fraction * maxLog) + f(f(1 - fraction) * minLog));
    }
    const mean = f(f(coef1 * predictedX0[i]!) + f(coef2 * x[i]!));
    sample[i] =
      noise === undefined ? mean : f(mean + f(f(mask * f(Math.exp(f(0.5 * logVariance)))) * noise[i]!));
  }
  return { sample, predictedX0 };
}
