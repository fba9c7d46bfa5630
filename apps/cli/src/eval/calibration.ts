import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type CachePolicy,
  createReuseErrorRecorder,
  learnedPolicy,
  learnSchedule,
  parsePolicy,
  scheduleCachingLevel,
  scheduleToJson,
} from "@ditcache/cache";
import { DitcacheError, writeFileAtomic } from "@ditcache/core";
import type { DiTModel } from "@ditcache/dit";
import {
  CLOSED_LOOP_CANDIDATES,
  type FitSpace,
  type FitTrajectory,
  type Granularity,
  loadPriors,
  type Priors,
} from "@ditcache/eoc";
import { calibrateModel, generate, type SamplerSetting, samplerDescriptor } from "@ditcache/pipeline";
import { ProgressBar } from "../progress.js";

/** Target caching level of the learned schedule (the paper's Learning-to-Cache router: 248 of 1120). */
export const LEARNED_BUDGET = 0.22;

/** What the calibration steps need: the model, the sampler, the calibration set. */
export interface CalibrationContext {
  readonly model: DiTModel;
  readonly modelHash: string;
  readonly sampler: SamplerSetting;
  /** Calibration samples (seeds 0..n-1, label i mod classes), disjoint from the evaluation seeds. */
  readonly samples: number;
  /** Images per generate call. */
  readonly batchSize: number;
  /** Folder of the derived settings (learned table, thresholds, priors). */
  readonly dir: string;
  readonly log: (line: string) => void;
  readonly signal?: AbortSignal;
}

/** Labels and seeds of the calibration set, in batches. */
function calibrationBatches(context: CalibrationContext): { labels: number[]; seeds: number[] }[] {
  const classes = context.model.config.numClasses;
  const batches = [];
  for (let start = 0; start < context.samples; start += context.batchSize) {
    const count = Math.min(context.batchSize, context.samples - start);
    const seeds = Array.from({ length: count }, (_, i) => start + i);
    batches.push({ seeds, labels: seeds.map((seed) => seed % classes) });
  }
  return batches;
}

/**
 * The learned schedule (Learning-to-Cache in spirit): per-site reuse errors of uncached runs on
 * the calibration set, then `learnSchedule` at {@link LEARNED_BUDGET}. Cached as JSON; the policy
 * reads the file, so its spec (and the EOC priors made for it) name that file.
 */
export async function learnedBase(context: CalibrationContext): Promise<CachePolicy> {
  const file = join(context.dir, "learned-schedule.json");
  if (!existsSync(file)) {
    const bar = new ProgressBar("learning the schedule", context.samples);
    let done = 0;
    const table = await learnSchedule(async () => {
      const recorder = createReuseErrorRecorder();
      try {
        for (const batch of calibrationBatches(context)) {
          await generate({
            model: context.model,
            ...batch,
            ...context.sampler,
            hook: recorder,
            ...signalOf(context),
          });
          done += batch.seeds.length;
          bar.update(done);
        }
        return recorder.table();
      } finally {
        recorder.dispose();
      }
    }, LEARNED_BUDGET);
    await writeFileAtomic(file, `${scheduleToJson(table)}\n`);
    context.log(
      `learned schedule: caching level ${(100 * scheduleCachingLevel(table)).toFixed(1)}% -> ${file}`,
    );
  }
  return learnedPolicy({ file });
}

/** A threshold found for a dynamic policy, with every probe of the search. */
export interface ThresholdChoice {
  readonly policy: string;
  readonly threshold: number;
  readonly macsRatio: number;
  readonly targetMacsRatio: number;
  readonly probes: readonly { threshold: number; macsRatio: number }[];
}

async function macsRatio(context: CalibrationContext, policy: CachePolicy): Promise<number> {
  let computed = 0;
  let full = 0;
  for (const batch of calibrationBatches(context)) {
    const { summary } = await generate({
      model: context.model,
      ...batch,
      ...context.sampler,
      cache: { policy },
      ...signalOf(context),
    });
    computed += summary!.macs.computed;
    full += summary!.macs.full;
  }
  return full > 0 ? computed / full : 1;
}

/**
 * Thresholds of FBCache and TeaCache that reach the MACs ratio of FORA 50% on the calibration set,
 * with the evaluation's batch size (a batch decides together): grow the threshold until the ratio
 * falls to the target, then bisect. Done once; the choice and its probes are kept in
 * thresholds.json.
 */
export async function dynamicThresholds(
  context: CalibrationContext,
): Promise<Record<string, ThresholdChoice>> {
  const file = join(context.dir, "thresholds.json");
  if (existsSync(file)) return JSON.parse(await readFile(file, "utf8")) as Record<string, ThresholdChoice>;
  const target = await macsRatio(context, parsePolicy("fora:interval=2"));
  const out: Record<string, ThresholdChoice> = {};
  for (const name of ["fbcache", "teacache"]) {
    const probes: { threshold: number; macsRatio: number }[] = [];
    const probe = async (threshold: number) => {
      const ratio = await macsRatio(context, parsePolicy(`${name}:threshold=${threshold}`));
      probes.push({ threshold, macsRatio: ratio });
      context.log(
        `  ${name} threshold ${threshold.toPrecision(4)}: MACs ratio ${ratio.toFixed(3)} (target ${target.toFixed(3)})`,
      );
      return ratio;
    };
    let low = 0;
    let high = 0.02;
    for (let i = 0; i < 12 && (await probe(high)) > target; i++) {
      low = high;
      high *= 2;
    }
    for (let i = 0; i < 7; i++) {
      const middle = Number(((low + high) / 2).toPrecision(6));
      if ((await probe(middle)) > target) low = middle;
      else high = middle;
    }
    const best = probes.reduce((a, b) =>
      Math.abs(b.macsRatio - target) < Math.abs(a.macsRatio - target) ||
      (Math.abs(b.macsRatio - target) === Math.abs(a.macsRatio - target) && b.threshold < a.threshold)
        ? b
        : a,
    );
    out[name] = {
      policy: name,
      threshold: best.threshold,
      macsRatio: best.macsRatio,
      targetMacsRatio: target,
      probes,
    };
  }
  await writeFileAtomic(file, `${JSON.stringify(out, null, 2)}\n`);
  return out;
}

/** How an EOC row's priors are fitted; an absent field takes `calibrate`'s default. */
export interface EocFit {
  readonly fitSpace?: FitSpace;
  readonly gateWeighted?: boolean;
  readonly fitTrajectory?: FitTrajectory;
  /** Restrict the closed loop to the candidates of this forecast order (and keep its fits). */
  readonly trendOrder?: number;
}

/** Name of a priors set in the calibration folder (and of its file); the default fit keeps the plain name. */
export function eocPriorsName(baseId: string, granularity: Granularity, fit: EocFit): string {
  return (
    `priors-${baseId}-${granularity}` +
    (fit.fitSpace === "rows" ? "-rowsfit" : "") +
    (fit.gateWeighted === false ? "-nogate" : "") +
    (fit.fitTrajectory === "reuse" ? "-reuserun" : "") +
    (fit.trendOrder !== undefined ? `-order${fit.trendOrder}` : "")
  );
}

/**
 * EOC priors of a static base policy at a granularity and fit, calibrated on the calibration set (seeds
 * 0..n-1) with the evaluation's sampler; cached in the folder and checked against model, sampler
 * and policy when reused.
 */
export async function eocPriors(
  context: CalibrationContext,
  baseId: string,
  policy: CachePolicy,
  granularity: Granularity,
  fit: EocFit,
): Promise<Priors> {
  const file = join(context.dir, `${eocPriorsName(baseId, granularity, fit)}.safetensors`);
  const expected = {
    modelHash: context.modelHash,
    sampler: samplerDescriptor(context.sampler),
    steps: context.sampler.steps,
    basePolicy: policy,
    depth: context.model.config.depth,
  };
  if (existsSync(file)) return loadPriors(file, expected);
  // Three passes (the third, the closed-loop trend scale, has its own run count): a third each.
  const bar = new ProgressBar(`EOC priors ${baseId} (${granularity})`, 300);
  const passes = ["mean", "fit", "closed-loop"] as const;
  const priors = await calibrateModel({
    model: context.model,
    modelHash: context.modelHash,
    ...context.sampler,
    basePolicy: policy,
    samples: context.samples,
    granularity,
    ...fit,
    ...(fit.trendOrder !== undefined
      ? {
          closedLoop: {
            candidates: CLOSED_LOOP_CANDIDATES.filter(
              (candidate) => (candidate.trendOrder ?? 1) === fit.trendOrder,
            ),
          },
        }
      : {}),
    onProgress: (event) =>
      bar.update(
        event.status === "done"
          ? 300
          : 100 * passes.indexOf(event.status) + Math.round((100 * event.sample) / event.samples),
      ),
    ...signalOf(context),
  });
  await priors.save(file);
  return loadPriors(file, expected);
}

function signalOf(context: { signal?: AbortSignal }): { signal?: AbortSignal } {
  return context.signal ? { signal: context.signal } : {};
}

/** Throws when a cached settings file disagrees with this run's. */
export function assertSameSettings(
  file: string,
  stored: Record<string, unknown>,
  current: Record<string, unknown>,
): void {
  for (const [key, value] of Object.entries(current)) {
    if (JSON.stringify(stored[key]) !== JSON.stringify(value)) {
      throw new DitcacheError(
        "INCOMPATIBLE_FILE",
        `${file}: the output folder holds a run with another ${key} (${JSON.stringify(stored[key])}, this run ${JSON.stringify(value)}); use another --out or delete the folder`,
      );
    }
  }
}
