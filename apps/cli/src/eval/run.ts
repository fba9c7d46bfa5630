import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type CachePolicy,
  type Corrector,
  parseCorrector,
  parsePolicy,
  parseSchedule,
  scheduleCachingLevel,
} from "@ditcache/cache";
import { readSafetensorsFile, writeFileAtomic, writeSafetensors } from "@ditcache/core";
import type { DiTModel } from "@ditcache/dit";
import { type EocCorrector, eoc, type Priors } from "@ditcache/eoc";
import {
  type FeatureExtractor,
  FeatureStats,
  frechetDistance,
  inceptionScore,
  meanSquaredError,
  precisionRecall,
  psnr,
  ssim,
} from "@ditcache/metrics";
import { type CacheSetting, generate, type SamplerSetting } from "@ditcache/pipeline";
import { ProgressBar } from "../progress.js";
import { quantile } from "../stats.js";
import {
  assertSameSettings,
  type CalibrationContext,
  dynamicThresholds,
  eocPriors,
  eocPriorsName,
  LEARNED_BUDGET,
  learnedBase,
  type ThresholdChoice,
} from "./calibration.js";
import type { RowSpec } from "./rows.js";

/** First seed of the evaluation set; calibration uses seeds 0..n-1, far below it. */
export const EVAL_FIRST_SEED = 100_000;

/** Real images the FID reference statistics come from. */
export interface RealImages {
  /** Printable description ("1,000 held-out MNIST digits"). */
  readonly description: string;
  /** Loads them: NCHW [count, 1, 32, 32] in [-1, 1]. */
  load(): Promise<{ images: Float32Array; count: number }>;
}

/** A feature extractor that also gives logits (the digit classifier). */
export type Classifier = FeatureExtractor & { readonly hash: string; readonly classes: number };

/** Options of {@link runEvaluation}. */
export interface EvaluationOptions {
  readonly model: DiTModel;
  /** Fingerprint of the model weights (priors and the output folder are tied to it). */
  readonly modelHash: string;
  readonly classifier: Classifier;
  readonly realImages: RealImages;
  readonly sampler: SamplerSetting;
  /** Evaluation samples per row (seeds 100000 + i, label i mod classes). */
  readonly samples: number;
  /** Calibration samples (EOC priors, learned schedule, thresholds). */
  readonly calibrationSamples: number;
  /** Images per generate call. @defaultValue 50 */
  readonly batchSize?: number;
  /** Rows to run (the uncached row first). */
  readonly rows: readonly RowSpec[];
  /** Output folder: rows/, calibration/, reference/. */
  readonly out: string;
  /**
   * Re-measure the speed of rows read back from disk (their images and scores are kept), e.g.
   * after a run whose cores were shared. @defaultValue false
   */
  readonly retime?: boolean;
  /** Called when a row was computed in this run (not when it was read back from disk). */
  readonly onRowComputed?: (id: string) => void;
  readonly log?: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** A finished row, as written to rows/<id>.json. */
export interface RowResult {
  readonly id: string;
  readonly base: string;
  readonly baseLabel: string;
  readonly corrector: string;
  readonly correctorLabel: string;
  readonly ablation: boolean;
  readonly policySpec: string | null;
  readonly correctorSpec: string | null;
  readonly samples: number;
  /** Fraction of (step x block) computations reused (mean over batches). */
  readonly cachingLevel: number;
  /** MACs of cacheable sites computed / uncached. */
  readonly macsRatio: number;
  /** Wall-clock ms per image with this row's setting: median of the timing rounds ({@link TIMING_ROUNDS}). */
  readonly msPerImage: number;
  /** Uncached ms per image, median of the same rounds (the none row: its own). */
  readonly uncachedMsPerImage: number;
  /** Median over the rounds of uncached ms / this row's ms, each round timing both on one batch. */
  readonly speedup: number;
  readonly fid: number;
  readonly isMean: number;
  readonly isStd: number;
  readonly precision: number;
  readonly recall: number;
  /** Mean per-image PSNR vs the uncached images in dB (null when identical: infinite). */
  readonly psnr: number | null;
  readonly ssim: number;
  readonly mse: number;
  /** Fraction of samples the classifier labels as requested. */
  readonly agreement: number;
  /** EOC corrector counts (EOC rows). */
  readonly eocCounts?: { corrected: number; judged: number; disagreed: number; noPrior: number };
  readonly finishedAt: string;
  /** When the speed fields were measured again (`retime`), if they were. */
  readonly timedAt?: string;
}

/** What {@link runEvaluation} returns. */
export interface EvaluationResult {
  /** Every finished row of the selection (computed now or read back). */
  readonly rows: RowResult[];
  /** Derived settings: learned schedule level, thresholds. */
  readonly calibration: Record<string, unknown>;
  /** Rows computed in this run. */
  readonly computed: string[];
}

/** Timing rounds per row: each times one uncached and one cached batch, alternating which goes first. */
export const TIMING_ROUNDS = 3;
/** Images in a timing batch (the demo's ten digits). */
const TIMING_BATCH = 10;

interface SessionState {
  uncached?: Float32Array;
  /** The timing batch's uncached units are compiled (once per process). */
  timingWarm?: boolean;
  realFeatures?: Float32Array;
  reference?: FeatureStats;
}

/**
 * Runs the rows that have no finished file yet, writing each one atomically as rows/<id>.json as
 * soon as it is done (an interrupted run resumes at the next row), and returns every finished row.
 * The uncached images are kept as rows/none.images.safetensors so that resumed rows compare with
 * the same reference.
 */
export async function runEvaluation(options: EvaluationOptions): Promise<EvaluationResult> {
  const { model, classifier, sampler, samples, out } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  const batchSize = options.batchSize ?? 50;
  const rowsDir = join(out, "rows");
  const calibrationDir = join(out, "calibration");
  await mkdir(rowsDir, { recursive: true });
  await mkdir(calibrationDir, { recursive: true });

  const settings = {
    modelHash: options.modelHash,
    classifier: `${classifier.name}:${classifier.hash}`,
    sampler,
    samples,
    calibrationSamples: options.calibrationSamples,
    batchSize,
    evalSeeds: `${EVAL_FIRST_SEED}..${EVAL_FIRST_SEED + samples - 1}, label i mod ${model.config.numClasses}`,
    calibrationSeeds: `0..${options.calibrationSamples - 1}, label i mod ${model.config.numClasses}`,
    reference: options.realImages.description,
  };
  const settingsFile = join(out, "settings.json");
  if (existsSync(settingsFile)) {
    assertSameSettings(settingsFile, JSON.parse(await readFile(settingsFile, "utf8")), settings);
  } else {
    await writeFileAtomic(settingsFile, `${JSON.stringify(settings, null, 2)}\n`);
  }

  const context: CalibrationContext = {
    model,
    modelHash: options.modelHash,
    sampler,
    samples: options.calibrationSamples,
    batchSize,
    dir: calibrationDir,
    log,
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const classes = model.config.numClasses;
  const labels = Array.from({ length: samples }, (_, i) => i % classes);
  const seeds = labels.map((_, i) => EVAL_FIRST_SEED + i);
  const state: SessionState = {};
  const results: RowResult[] = [];
  const computed: string[] = [];
  const calibration: Record<string, unknown> = {};
  const policies = new Map<string, CachePolicy>();
  const priors = new Map<string, Priors>();

  const basePolicy = async (row: RowSpec): Promise<CachePolicy> => {
    const key = row.base.id;
    let policy = policies.get(key);
    if (policy !== undefined) return policy;
    if (row.base.spec !== undefined) policy = parsePolicy(row.base.spec);
    else if (key === "learned") policy = await learnedBase(context);
    else {
      const thresholds = await dynamicThresholds(context);
      policy = parsePolicy(`${key}:threshold=${thresholds[key]!.threshold}`);
    }
    policies.set(key, policy);
    return policy;
  };

  /** The row's cache setting (none for the uncached row), calibrating what it needs on first use. */
  const settingOf = async (
    row: RowSpec,
  ): Promise<{ setting?: CacheSetting; eocCorrector?: EocCorrector }> => {
    if (row.base.id === "none") return {};
    const policy = await basePolicy(row);
    if (!row.corrector.eoc) return { setting: { policy, corrector: parseCorrector(row.corrector.spec!) } };
    const { granularity, options: eocOptions, ...fit } = row.corrector.eoc;
    const key = eocPriorsName(row.base.id, granularity, fit);
    let set = priors.get(key);
    if (set === undefined) {
      set = await eocPriors(context, row.base.id, policy, granularity, fit);
      priors.set(key, set);
    }
    const pair = eoc(policy, set, eocOptions);
    return { setting: { policy, corrector: pair.corrector as Corrector }, eocCorrector: pair.corrector };
  };

  for (const row of options.rows) {
    if (row.notApplicable !== undefined) continue;
    const file = join(rowsDir, `${row.id}.json`);
    const done = existsSync(file);
    if (done && !options.retime) {
      results.push(JSON.parse(await readFile(file, "utf8")) as RowResult);
      continue;
    }
    options.signal?.throwIfAborted();
    const { setting, eocCorrector } = await settingOf(row);
    try {
      const result = done
        ? {
            ...(JSON.parse(await readFile(file, "utf8")) as RowResult),
            ...(await timeRow(setting)),
            timedAt: new Date().toISOString(),
          }
        : await runRow(row, setting, eocCorrector);
      await writeFileAtomic(file, `${JSON.stringify(result, null, 2)}\n`);
      results.push(result);
      if (!done) {
        computed.push(row.id);
        options.onRowComputed?.(row.id);
      } else log(`${row.id}: speed-up ${result.speedup.toFixed(2)} (re-timed)`);
    } finally {
      eocCorrector?.dispose();
    }
  }
  for (const [key, policy] of policies) calibration[`${key}.policy`] = policy.spec;
  // Derived settings made by an earlier (resumed) run are reported too.
  const thresholdsFile = join(calibrationDir, "thresholds.json");
  if (existsSync(thresholdsFile)) {
    for (const choice of Object.values(
      JSON.parse(await readFile(thresholdsFile, "utf8")) as Record<string, ThresholdChoice>,
    )) {
      calibration[`${choice.policy}.threshold`] =
        `${choice.threshold} (MACs ratio ${choice.macsRatio.toFixed(3)} on the calibration set; FORA 50%: ${choice.targetMacsRatio.toFixed(3)}; ${choice.probes.length} probes in calibration/thresholds.json)`;
    }
  }
  const learnedFile = join(calibrationDir, "learned-schedule.json");
  if (existsSync(learnedFile)) {
    const table = parseSchedule(await readFile(learnedFile, "utf8"));
    calibration["learned.schedule"] =
      `learnSchedule budget ${LEARNED_BUDGET} on ${options.calibrationSamples} calibration samples: caching level ${(100 * scheduleCachingLevel(table)).toFixed(1)}%`;
  }
  return { rows: results, calibration, computed };

  async function uncachedImages(): Promise<Float32Array> {
    if (state.uncached) return state.uncached;
    const file = join(rowsDir, "none.images.safetensors");
    const { tensors } = await readSafetensorsFile(file);
    state.uncached = tensors.get("samples")!.data;
    return state.uncached;
  }

  async function referenceStats(): Promise<{ stats: FeatureStats; features: Float32Array }> {
    if (state.reference && state.realFeatures)
      return { stats: state.reference, features: state.realFeatures };
    const file = join(out, "reference", "real-features.safetensors");
    const identity = `${classifier.name}:${classifier.hash}`;
    let features: Float32Array | undefined;
    if (existsSync(file)) {
      const { tensors, metadata } = await readSafetensorsFile(file);
      if (metadata.extractor === identity && metadata.description === options.realImages.description) {
        features = tensors.get("features")!.data;
      }
    }
    if (features === undefined) {
      log(`reference: classifier features of ${options.realImages.description}`);
      const { images, count } = await options.realImages.load();
      ({ features } = await classifier.extract(images, [count, 1, 32, 32]));
      await mkdir(join(out, "reference"), { recursive: true });
      await writeFileAtomic(
        file,
        writeSafetensors(
          { features: { shape: [count, classifier.dim], data: features } },
          { metadata: { extractor: identity, description: options.realImages.description } },
        ),
      );
    }
    state.realFeatures = features;
    state.reference = new FeatureStats(classifier.dim, { extractor: classifier }).add(
      features,
      classifier.dim,
    );
    return { stats: state.reference, features };
  }

  /**
   * The row's speed, measured side by side with uncached sampling on one batch of the evaluation
   * labels and seeds: an untimed run first (compiling the batch shape's units: uncached once per
   * process, cached once per row, whose corrector may bring units of its own), then
   * {@link TIMING_ROUNDS} rounds of one uncached and one cached run, alternating which goes first,
   * so that a slow patch of a shared machine hits both sides of a ratio. Medians over the rounds.
   */
  async function timeRow(
    setting: CacheSetting | undefined,
  ): Promise<Pick<RowResult, "msPerImage" | "uncachedMsPerImage" | "speedup">> {
    const count = Math.min(TIMING_BATCH, samples);
    const batch = { model, labels: labels.slice(0, count), seeds: seeds.slice(0, count), ...sampler };
    const time = async (cached: boolean) =>
      (await generate({ ...batch, ...(cached && setting ? { cache: setting } : {}) })).milliseconds / count;
    if (!state.timingWarm) await time(false);
    state.timingWarm = true;
    if (setting) await time(true);
    const uncached: number[] = [];
    const rowMs: number[] = [];
    for (let round = 0; round < TIMING_ROUNDS; round++) {
      options.signal?.throwIfAborted();
      const first = round % 2 === 0;
      const a = await time(!first);
      const b = setting ? await time(first) : a;
      uncached.push(first ? a : b);
      rowMs.push(first ? b : a);
    }
    return {
      msPerImage: quantile(rowMs, 0.5),
      uncachedMsPerImage: quantile(uncached, 0.5),
      speedup: quantile(
        uncached.map((ms, i) => ms / rowMs[i]!),
        0.5,
      ),
    };
  }

  async function runRow(
    row: RowSpec,
    setting: CacheSetting | undefined,
    eocCorrector: EocCorrector | undefined,
  ): Promise<RowResult> {
    const isReference = row.id === "none";
    const reference = isReference ? undefined : await uncachedImages();
    const { stats: realStats, features: realFeatures } = await referenceStats();
    const batches = Math.ceil(samples / batchSize);
    const bar = new ProgressBar(row.id.padEnd(22), batches * sampler.steps);
    const images = isReference
      ? new Float32Array(samples * model.config.inChannels * model.config.inputSize ** 2)
      : undefined;
    const generated = new FeatureStats(classifier.dim, { extractor: classifier });
    const features = new Float32Array(samples * classifier.dim);
    const logits = new Float32Array(samples * classifier.classes);
    let levelSum = 0;
    let macsComputed = 0;
    let macsFull = 0;
    let psnrSum = 0;
    let psnrInfinite = 0;
    let ssimSum = 0;
    let mseSum = 0;
    let agree = 0;
    for (let b = 0; b < batches; b++) {
      const start = b * batchSize;
      const count = Math.min(batchSize, samples - start);
      const result = await generate({
        model,
        labels: labels.slice(start, start + count),
        seeds: seeds.slice(start, start + count),
        ...sampler,
        ...(setting ? { cache: setting } : {}),
        onStep: (event) => bar.update(b * sampler.steps + event.index + 1),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (result.summary) {
        levelSum += result.summary.cachingLevel * count;
        macsComputed += result.summary.macs.computed;
        macsFull += result.summary.macs.full;
      }
      const perImage = result.images.length / count;
      if (images) images.set(result.images, start * perImage);
      if (reference) {
        const target = reference.subarray(start * perImage, (start + count) * perImage);
        for (const value of psnr(result.images, target, result.shape, { dataRange: 2 }).perImage) {
          if (Number.isFinite(value)) psnrSum += value;
          else psnrInfinite++;
        }
        ssimSum += ssim(result.images, target, result.shape, { dataRange: 2 }).mean * count;
        mseSum += meanSquaredError(result.images, target, result.shape).mean * count;
      }
      const extraction = await classifier.extract(result.images, [...result.shape]);
      generated.add(extraction.features, classifier.dim);
      features.set(extraction.features, start * classifier.dim);
      logits.set(extraction.logits!, start * classifier.classes);
      for (let i = 0; i < count; i++) {
        const row = extraction.logits!.subarray(i * classifier.classes, (i + 1) * classifier.classes);
        if (row.indexOf(Math.max(...row)) === labels[start + i]) agree++;
      }
    }
    if (images) {
      state.uncached = images;
      await writeFileAtomic(
        join(rowsDir, "none.images.safetensors"),
        writeSafetensors(
          {
            samples: {
              shape: [samples, model.config.inChannels, model.config.inputSize, model.config.inputSize],
              data: images,
            },
          },
          { metadata: { seeds: `${EVAL_FIRST_SEED}+i`, labels: `i mod ${classes}` } },
        ),
      );
    }
    const speed = await timeRow(setting);
    const score = inceptionScore(logits, classifier.classes, { splits: Math.min(10, samples) });
    const pr = precisionRecall(realFeatures, features, classifier.dim, { k: 3 });
    return {
      id: row.id,
      base: row.base.id,
      baseLabel: row.base.label,
      corrector: row.corrector.id,
      correctorLabel: row.corrector.label,
      ablation: row.ablation,
      policySpec: setting?.policy.spec ?? null,
      correctorSpec: setting?.corrector?.spec ?? null,
      samples,
      cachingLevel: levelSum / samples,
      macsRatio: macsFull > 0 ? macsComputed / macsFull : 1,
      ...speed,
      fid: frechetDistance(generated, realStats),
      isMean: score.mean,
      isStd: score.std,
      precision: pr.precision,
      recall: pr.recall,
      psnr: isReference || psnrInfinite > 0 ? null : psnrSum / samples,
      ssim: isReference ? 1 : ssimSum / samples,
      mse: isReference ? 0 : mseSum / samples,
      agreement: agree / samples,
      ...(eocCorrector ? { eocCounts: { ...eocCorrector.counts } } : {}),
      finishedAt: new Date().toISOString(),
    };
  }
}
