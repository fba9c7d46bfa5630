import { type CachePolicy, parsePolicy } from "@ditcache/cache";
import type { DiTModel } from "@ditcache/dit";
import type { CalibrateOptions, FitSpace, FitTrajectory, SamplerDescriptor } from "@ditcache/eoc";
import {
  type CalibrationProgress,
  calibrate,
  type EocOptions,
  eoc,
  loadPriors,
  type Priors,
} from "@ditcache/eoc";
import type { CacheSetting } from "./generate.js";
import { generate } from "./generate.js";

/** The sampler settings that priors are tied to; the same fields {@link generate} takes. */
export interface SamplerSetting {
  /** Denoising steps. */
  steps: number;
  /** Sampler. */
  sampler: "ddim" | "ddpm";
  /** Classifier-free guidance scale. */
  cfgScale: number;
  /** eps channels guided by CFG. */
  guideChannels: number | "all";
}

/** The descriptor stored in (and checked against) a priors file for a sampler setting. */
export function samplerDescriptor(setting: SamplerSetting): SamplerDescriptor {
  return {
    respacing: setting.sampler === "ddpm" ? String(setting.steps) : `ddim${setting.steps}`,
    sampler: setting.sampler,
    cfgScale: setting.cfgScale,
    guideChannels: setting.guideChannels,
  };
}

/** Options of {@link calibrateModel}. */
export interface CalibrateModelOptions extends SamplerSetting {
  /** The model to calibrate. */
  model: DiTModel;
  /** Fingerprint of the model's weights (see `fileDigest` in @ditcache/core). */
  modelHash: string;
  /** The cache policy EOC will correct. */
  basePolicy: CachePolicy;
  /** Calibration samples; sample i has label i mod classes and seed `firstSeed + i`. */
  samples: number;
  /** Seed of sample 0. Keep calibration seeds apart from evaluation seeds. @defaultValue 0 */
  firstSeed?: number;
  /** Storage granularity of the priors. @defaultValue "channel" */
  granularity?: "channel" | "token-channel";
  /** Where the coefficients are fitted (see `calibrate` in @ditcache/eoc). @defaultValue "guided" */
  fitSpace?: FitSpace;
  /** Weigh errors by the model's adaLN gates (see `calibrate` in @ditcache/eoc). @defaultValue true */
  gateWeighted?: boolean;
  /** The pass-2 trajectory of the fits (see `calibrate` in @ditcache/eoc). @defaultValue "trend-corrected" */
  fitTrajectory?: FitTrajectory;
  /** Pass 3, the closed-loop choice of the trend scale (see `calibrate` in @ditcache/eoc). @defaultValue on */
  closedLoop?: CalibrateOptions["closedLoop"];
  /** Trend order kept when no closed loop chooses one (see `calibrate` in @ditcache/eoc). @defaultValue 1 */
  trendOrder?: number;
  /** Progress of each pass. */
  onProgress?: (event: CalibrationProgress) => void;
  /** Cancels between samples. */
  signal?: AbortSignal;
}

/**
 * EOC prior extraction for a DiT and a sampler setting: one label per class in turn, fixed seeds,
 * exactly the sampler of the target runs.
 */
export function calibrateModel(options: CalibrateModelOptions): Promise<Priors> {
  const { model, samples } = options;
  const firstSeed = options.firstSeed ?? 0;
  const classes = model.config.numClasses;
  const labels = Array.from({ length: samples }, (_, i) => i % classes);
  const seeds = labels.map((_, i) => firstSeed + i);
  return calibrate({
    runSample: async (hook, index) => {
      await generate({
        model,
        labels: [labels[index]!],
        seeds: [seeds[index]!],
        steps: options.steps,
        sampler: options.sampler,
        cfgScale: options.cfgScale,
        guideChannels: options.guideChannels,
        hook,
        ...(options.signal ? { signal: options.signal } : {}),
      });
    },
    basePolicy: options.basePolicy,
    steps: options.steps,
    depth: model.config.depth,
    samples,
    descriptor: {
      modelHash: options.modelHash,
      sampler: samplerDescriptor(options),
      calibration: {
        seeds,
        labels,
        description: `label i mod ${classes}, seeds ${firstSeed}..${firstSeed + samples - 1}`,
      },
    },
    ...(options.granularity ? { granularity: options.granularity } : {}),
    ...(options.fitSpace ? { fitSpace: options.fitSpace } : {}),
    ...(options.gateWeighted !== undefined ? { gateWeighted: options.gateWeighted } : {}),
    ...(options.fitTrajectory ? { fitTrajectory: options.fitTrajectory } : {}),
    ...(options.closedLoop !== undefined ? { closedLoop: options.closedLoop } : {}),
    ...(options.trendOrder !== undefined ? { trendOrder: options.trendOrder } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

/**
 * The EOC cache setting: loads priors, checking that they were made for this model, sampler,
 * step count and base policy (a mismatch is an error naming the field), and pairs the base
 * policy with the EOC corrector. Without a base policy, the one the priors were calibrated for.
 *
 * @throws DitcacheError INCOMPATIBLE_FILE naming what differs; the policy's own error when the
 *   priors' base policy cannot be recreated (a schedule file that is gone).
 */
export async function eocSetting(options: {
  priorsPath: string;
  model: DiTModel;
  modelHash: string;
  /** The policy whose reuse EOC corrects. @defaultValue the priors' (`parsePolicy` of their spec) */
  basePolicy?: CachePolicy;
  sampler: SamplerSetting;
  eocOptions?: EocOptions;
}): Promise<CacheSetting> {
  const priors = await loadPriors(options.priorsPath, {
    modelHash: options.modelHash,
    sampler: samplerDescriptor(options.sampler),
    steps: options.sampler.steps,
    depth: options.model.config.depth,
    ...(options.basePolicy ? { basePolicy: options.basePolicy } : {}),
  });
  const basePolicy = options.basePolicy ?? parsePolicy(priors.header.basePolicy);
  return eoc(basePolicy, priors, options.eocOptions ?? {});
}
