import { parseCorrector, parsePolicy } from "@ditcache/cache";
import { encodePng } from "@ditcache/core";
import type { DiTModel } from "@ditcache/dit";
import { psnr } from "@ditcache/metrics";
import { type CacheSetting, generate, imageGrid } from "@ditcache/pipeline";
import type { JobRequest, JobResult, RunPhase, RunReport } from "./protocol.js";

/** Options of {@link compareRuns}. */
export interface CompareOptions {
  /** Policy spec to run (already validated, server parameters included). */
  policy: string;
  /** Corrector spec to run. */
  corrector: string;
  /** Called after every step of every run. */
  onProgress?: (phase: RunPhase, step: number, count: number) => void;
  /** Cancels between steps. */
  signal?: AbortSignal;
  /**
   * Runs one untimed step with this batch first: work done once per input shape (graph
   * compilation on onnx and tfjs, JIT and allocation on cpu) would otherwise be charged to the
   * uncached run alone. @defaultValue false
   */
  warmUp?: boolean;
}

function dataUrl(images: Float32Array, shape: readonly number[]): string {
  const grid = imageGrid(images, shape, { gap: 1 });
  return `data:image/png;base64,${Buffer.from(encodePng(grid)).toString("base64")}`;
}

function meanSquaredDifference(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const delta = a[i]! - b[i]!;
    sum += delta * delta;
  }
  return sum / a.length;
}

/**
 * Runs one request three ways on the same noise: uncached, cached with the chosen corrector,
 * and (when that corrector is not plain reuse) cached with plain reuse, and measures each
 * against the uncached run: wall-clock time, PSNR of the final images and the MSE between
 * the x_t trajectories at every step.
 */
export async function compareRuns(
  model: DiTModel,
  request: JobRequest,
  options: CompareOptions,
): Promise<Omit<JobResult, "id" | "request" | "model">> {
  const seeds = request.labels.map((_, index) => request.seed + index);
  const base = {
    model,
    labels: request.labels,
    seeds,
    steps: request.steps,
    sampler: request.sampler,
    cfgScale: request.cfgScale,
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const withReuse = parseCorrector(options.corrector).name !== "reuse";
  if (options.warmUp) await generate({ ...base, steps: 2 });
  const reference: Float32Array[] = [];
  const uncached = await generate({
    ...base,
    onStep: (event) => {
      reference[event.index] = event.x;
      options.onProgress?.("uncached", event.index + 1, event.count);
    },
  });
  const runs: RunReport[] = [
    {
      phase: "uncached",
      milliseconds: uncached.milliseconds,
      stepMilliseconds: uncached.stepMilliseconds,
      image: dataUrl(uncached.images, uncached.shape),
      psnr: null,
      errorCurve: reference.map(() => 0),
    },
  ];

  const cachedRun = async (phase: RunPhase, cache: CacheSetting) => {
    const errorCurve: number[] = [];
    const result = await generate({
      ...base,
      cache,
      onStep: (event) => {
        errorCurve[event.index] = meanSquaredDifference(event.x, reference[event.index]!);
        options.onProgress?.(phase, event.index + 1, event.count);
      },
    });
    const score = psnr(result.images, uncached.images, uncached.shape).mean;
    runs.push({
      phase,
      milliseconds: result.milliseconds,
      stepMilliseconds: result.stepMilliseconds,
      image: dataUrl(result.images, result.shape),
      psnr: Number.isFinite(score) ? score : null,
      errorCurve,
      policy: result.summary!.policy,
      corrector: result.summary!.corrector,
    });
    return result;
  };

  const cached = await cachedRun("cached", {
    policy: parsePolicy(options.policy),
    corrector: parseCorrector(options.corrector),
  });
  const reuse = withReuse
    ? await cachedRun("reuse", { policy: parsePolicy(options.policy), corrector: parseCorrector("reuse") })
    : undefined;
  const summary = cached.summary!;
  return {
    speedup: uncached.milliseconds / cached.milliseconds,
    reuseSpeedup: reuse ? uncached.milliseconds / reuse.milliseconds : null,
    macsRatio: summary.macs.ratio,
    cachingLevel: summary.cachingLevel,
    sites: summary.sites,
    decisions: summary.decisions,
    runs,
  };
}
