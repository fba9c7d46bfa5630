import { invalidArgument } from "@ditcache/core";
import { formatSpec, type ParamSchema, validateParams } from "../params.js";
import type { CachePolicy } from "../policy.js";
import { type GuardOptions, guardParams, guardsFrom } from "./guards.js";

/** Parameters of {@link teacachePolicy}. */
export const teacachePolicyParams: ParamSchema = {
  threshold: {
    type: "number",
    min: 0,
    description: "reuse while the accumulated rescaled change stays below this",
  },
  coefficients: {
    type: "number[]",
    description: "rescale polynomial, highest degree first (numpy.poly1d order)",
  },
  ...guardParams,
};

/** Options of {@link teacachePolicy}. */
export interface TeacachePolicyOptions extends GuardOptions {
  /** Accumulator threshold; 0 never reuses. @defaultValue 0.1 */
  threshold?: number;
  /**
   * Rescale polynomial from input change to output change, highest degree first; fit one per
   * model with {@link fitTeaCachePolynomial}. @defaultValue [1, 0] (no rescale)
   */
  coefficients?: readonly number[];
}

/** Evaluates a polynomial given highest degree first (Horner). */
export function evaluatePolynomial(coefficients: readonly number[], x: number): number {
  let value = 0;
  for (const coefficient of coefficients) value = value * x + coefficient;
  return value;
}

/**
 * TeaCache (Liu et al., "Timestep Embedding Tells: It's Time to Cache for Video Diffusion Model",
 * CVPR 2025): the relative L1 change of the timestep-modulated input of block 0 (the model's
 * indicator) between consecutive steps, rescaled by a fitted polynomial, is accumulated since
 * the last computed step; while the sum stays below the threshold the residual of the whole
 * block stack is reused. Guard defaults as in the reference: the first and last steps compute.
 * Signal: "indicator".
 */
export function teacachePolicy(options: TeacachePolicyOptions = {}): CachePolicy {
  const params = validateParams("teacache", teacachePolicyParams, { ...options });
  const threshold = (params.threshold as number | undefined) ?? 0.1;
  const coefficients = (params.coefficients as readonly number[] | undefined) ?? [1, 0];
  if (coefficients.length === 0)
    invalidArgument("teacache coefficients", coefficients, "at least one coefficient");
  const guards = guardsFrom(params, { stepMask: [-1] });
  return {
    name: "teacache",
    spec: formatSpec("teacache", teacachePolicyParams, { ...params, threshold, coefficients }),
    dynamic: true,
    sites: ["blocks"],
    perHalf: (params.perHalf as boolean | undefined) ?? false,
    guards,
    signals: [{ name: "indicator", source: "indicator", reference: "previousStep" }],
    decide(query) {
      const last = query.lastComputedStep;
      if (last === undefined) return "compute";
      let accumulated = 0;
      for (let step = last + 1; step <= query.step.index; step++) {
        const change = query.signal("indicator", step);
        if (change === undefined) return "compute";
        accumulated += Math.abs(evaluatePolynomial(coefficients, change));
      }
      return accumulated < threshold ? "reuse" : "compute";
    },
  };
}

/**
 * Least-squares fit of TeaCache's rescale polynomial from (input change, output change) pairs,
 * e.g. the indicator's and the model output's relative L1 changes over uncached runs. Returns
 * coefficients highest degree first, as `teacachePolicy({ coefficients })` takes them. Solved by
 * Householder QR (stable for the small, clustered inputs these pairs have).
 */
export function fitTeaCachePolynomial(
  samples: readonly { input: number; output: number }[],
  degree = 4,
): number[] {
  if (!Number.isInteger(degree) || degree < 0 || degree > 8)
    invalidArgument("degree", degree, "an integer in [0, 8]");
  if (!Array.isArray(samples) || samples.length < degree + 1) {
    invalidArgument("samples", samples, `at least degree + 1 = ${degree + 1} (input, output) pairs`);
  }
  for (const sample of samples) {
    if (!Number.isFinite(sample?.input) || !Number.isFinite(sample?.output)) {
      invalidArgument("samples", sample, "pairs of finite numbers { input, output }");
    }
  }
  const rows = samples.length;
  const cols = degree + 1;
  // Vandermonde matrix, highest power first, column-major copy for the reflections.
  const a = samples.map((sample) => Array.from({ length: cols }, (_, j) => sample.input ** (degree - j)));
  const b = samples.map((sample) => sample.output);
  for (let k = 0; k < cols; k++) {
    let norm = 0;
    for (let i = k; i < rows; i++) norm += a[i]![k]! ** 2;
    norm = Math.sqrt(norm);
    if (norm === 0)
      invalidArgument("samples", samples.length, "inputs with enough distinct values for the degree");
    const alpha = a[k]![k]! > 0 ? -norm : norm;
    const v = Array.from({ length: rows }, (_, i) => (i < k ? 0 : a[i]![k]!));
    v[k]! -= alpha;
    let vv = 0;
    for (let i = k; i < rows; i++) vv += v[i]! ** 2;
    if (vv === 0) continue;
    for (let j = k; j < cols; j++) {
      let dot = 0;
      for (let i = k; i < rows; i++) dot += v[i]! * a[i]![j]!;
      const f = (2 * dot) / vv;
      for (let i = k; i < rows; i++) a[i]![j]! -= f * v[i]!;
    }
    let dot = 0;
    for (let i = k; i < rows; i++) dot += v[i]! * b[i]!;
    const f = (2 * dot) / vv;
    for (let i = k; i < rows; i++) b[i]! -= f * v[i]!;
  }
  const x = new Array<number>(cols).fill(0);
  for (let k = cols - 1; k >= 0; k--) {
    let sum = b[k]!;
    for (let j = k + 1; j < cols; j++) sum -= a[k]![j]! * x[j]!;
    if (Math.abs(a[k]![k]!) < 1e-300)
      invalidArgument("samples", samples.length, "inputs with enough distinct values for the degree");
    x[k] = sum / a[k]![k]!;
  }
  return x;
}
