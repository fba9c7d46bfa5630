import { invalidArgument } from "@ditcache/core";

/** Options of {@link inceptionScore}. */
export interface InceptionScoreOptions {
  /** Number of equal slices the score is computed on; mean and std are over slices. @defaultValue 10 */
  splits?: number;
}

/** Result of {@link inceptionScore}. */
export interface InceptionScore {
  /** Mean of the per-split scores. */
  mean: number;
  /** Population standard deviation of the per-split scores (0 for one split). */
  std: number;
  /** The score of each split. */
  splits: number[];
}

/**
 * Inception-Score-style score from classifier logits: exp(E_x[KL(p(y|x) || p(y))]) with p(y)
 * the marginal over the split. High when each sample is classified confidently and the
 * classes are balanced; at most the number of classes. Split i covers samples
 * [floor(i N / splits), floor((i + 1) N / splits)), as in the original implementation, and
 * log-probabilities come from a stable log-softmax of the logits.
 *
 * @param logits - row-major (N, classes).
 * @throws DitcacheError INVALID_ARGUMENT for bad sizes or more splits than samples.
 */
export function inceptionScore(
  logits: Float32Array,
  classes: number,
  options: InceptionScoreOptions = {},
): InceptionScore {
  if (!(logits instanceof Float32Array)) invalidArgument("logits", logits, "a Float32Array");
  if (!Number.isSafeInteger(classes) || classes < 1)
    invalidArgument("classes", classes, "a positive integer");
  if (logits.length === 0 || logits.length % classes !== 0) {
    invalidArgument("logits.length", logits.length, `a positive multiple of classes (${classes})`);
  }
  const count = logits.length / classes;
  const splits = options.splits ?? 10;
  if (!Number.isSafeInteger(splits) || splits < 1 || splits > count) {
    invalidArgument("options.splits", splits, `an integer in [1, ${count}] (the number of samples)`);
  }
  const logProbabilities = new Float64Array(logits.length);
  for (let s = 0; s < count; s++) {
    const row = s * classes;
    let max = Number.NEGATIVE_INFINITY;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[row + c]!);
    if (!Number.isFinite(max)) invalidArgument(`logits[${s}]`, max, "finite values");
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[row + c]! - max);
    const logSum = max + Math.log(sum);
    for (let c = 0; c < classes; c++) logProbabilities[row + c] = logits[row + c]! - logSum;
  }
  const scores: number[] = [];
  const marginal = new Float64Array(classes);
  for (let i = 0; i < splits; i++) {
    const start = Math.floor((i * count) / splits);
    const end = Math.floor(((i + 1) * count) / splits);
    marginal.fill(0);
    for (let s = start; s < end; s++) {
      for (let c = 0; c < classes; c++)
        marginal[c] = marginal[c]! + Math.exp(logProbabilities[s * classes + c]!);
    }
    for (let c = 0; c < classes; c++) marginal[c] = Math.log(marginal[c]! / (end - start));
    let kl = 0;
    for (let s = start; s < end; s++) {
      for (let c = 0; c < classes; c++) {
        const logP = logProbabilities[s * classes + c]!;
        const p = Math.exp(logP);
        if (p > 0) kl += p * (logP - marginal[c]!);
      }
    }
    scores.push(Math.exp(kl / (end - start)));
  }
  const mean = scores.reduce((a, b) => a + b, 0) / splits;
  const variance = scores.reduce((a, b) => a + (b - mean) ** 2, 0) / splits;
  return { mean, std: Math.sqrt(variance), splits: scores };
}
