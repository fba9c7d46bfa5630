import { type CachePolicy, type CacheSummary, type Corrector, createCacheEngine } from "@ditcache/cache";
import {
  type Backend,
  checkFiniteHook,
  DitcacheError,
  gaussianNoise,
  invalidArgument,
  type SiteHook,
  sizeOf,
} from "@ditcache/core";
import { ddimSample, ddpmSample, type ModelFn, type SamplerStep } from "@ditcache/diffusion";
import type { DiTModel } from "@ditcache/dit";

/** A cache setting: when to reuse, and how to correct what is reused. */
export interface CacheSetting {
  /** When to reuse. */
  policy: CachePolicy;
  /** How to turn a cached value into the value used. @defaultValue plain reuse */
  corrector?: Corrector;
}

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** The model; its backend runs everything. */
  model: DiTModel;
  /** One class label per image. */
  labels: readonly number[];
  /**
   * Seed of each image's initial noise (x_T). An image's noise depends only on its own seed, so the
   * same seed gives the same image whatever else is in the batch. @defaultValue 0, 1, 2, …
   */
  seeds?: readonly number[];
  /** Denoising steps. @defaultValue 20 */
  steps?: number;
  /** Sampler. @defaultValue "ddim" */
  sampler?: "ddim" | "ddpm";
  /** DDIM eta. @defaultValue 0 */
  eta?: number;
  /** Classifier-free guidance scale; 1 disables guidance. @defaultValue 4 */
  cfgScale?: number;
  /** eps channels guided by CFG: 3 as the official DiT, or "all". @defaultValue "all" */
  guideChannels?: number | "all";
  /** Cache setting; omitted = uncached. */
  cache?: CacheSetting;
  /** A site hook to use instead of a cache engine (calibration, fault checks). */
  hook?: SiteHook;
  /**
   * Read every site's output back and stop at the first NaN or infinity with a NUMERIC_FAULT
   * naming the site, step and timestep ({@link checkFiniteHook} around the cache engine or
   * `hook`). Costs one device-to-host copy per site call; nothing when off. @defaultValue false
   */
  checkFinite?: boolean;
  /** Called after every step. */
  onStep?: (event: SamplerStep) => void;
  /** Cancels between steps. */
  signal?: AbortSignal;
}

/** What {@link generate} returns. */
export interface GenerateResult {
  /** Images (N, C, H, W) in the model's range (about [-1, 1]). */
  readonly images: Float32Array;
  /** [N, C, H, W]. */
  readonly shape: readonly [number, number, number, number];
  /** Wall-clock milliseconds of the whole sampling run. */
  readonly milliseconds: number;
  /** Wall-clock milliseconds per step. */
  readonly stepMilliseconds: readonly number[];
  /** What the cache did, when a cache setting was given. */
  readonly summary?: CacheSummary;
}

/** Upper bound on one request's images, so a typo cannot exhaust memory. */
export const MAX_IMAGES = 1024;

/**
 * Samples images from a DiT: the noise for each seed, the sampler with classifier-free guidance,
 * and — when `cache` is given — a fresh cache engine for this run only.
 *
 * @example
 * const { images, summary } = await generate({ model, labels: [3, 7], cache: { policy: foraPolicy({ interval: 2 }) } });
 */
export async function generate(options: GenerateOptions): Promise<GenerateResult> {
  const { model, labels } = options;
  if (!Array.isArray(labels) || labels.length === 0 || labels.length > MAX_IMAGES) {
    invalidArgument("labels", labels, `1 to ${MAX_IMAGES} class labels`);
  }
  for (const label of labels) {
    if (!Number.isInteger(label) || label < 0 || label >= model.config.numClasses) {
      invalidArgument("labels", labels, `integers in [0, ${model.config.numClasses - 1}]`);
    }
  }
  const seeds = options.seeds ?? labels.map((_, index) => index);
  if (seeds.length !== labels.length || seeds.some((seed) => !Number.isSafeInteger(seed) || seed < 0)) {
    invalidArgument("seeds", seeds, `${labels.length} non-negative integer seeds, one per label`);
  }
  const steps = options.steps ?? 20;
  if (!Number.isInteger(steps) || steps < 1 || steps > 1000)
    invalidArgument("steps", steps, "an integer in [1, 1000]");
  if (options.cache !== undefined && options.hook !== undefined) {
    throw new DitcacheError("INVALID_ARGUMENT", "options: give either cache or hook, not both");
  }

  const { inChannels: c, inputSize: size } = model.config;
  const shape = [labels.length, c, size, size] as const;
  const perImage = c * size * size;
  const noise = new Float32Array(sizeOf(shape));
  for (const [index, seed] of seeds.entries())
    noise.set(gaussianNoise(seed, [c, size, size]), index * perImage);

  const backend: Backend = model.backend;
  const engine = options.cache
    ? createCacheEngine({
        policy: options.cache.policy,
        backend,
        ...(options.cache.corrector ? { corrector: options.cache.corrector } : {}),
      })
    : undefined;
  const active = engine ?? options.hook;
  const hook = options.checkFinite === true ? checkFiniteHook(active) : active;
  const conditioning = model.runConditioning();
  const denoiser: ModelFn = (x, timesteps, rowLabels, step) =>
    model.forward(x, timesteps, rowLabels, { step, conditioning, ...(hook ? { hook } : {}) });
  const sampleOptions = {
    backend,
    shape,
    labels,
    respacing: options.sampler === "ddpm" ? String(steps) : `ddim${steps}`,
    cfgScale: options.cfgScale ?? 4,
    nullLabel: model.config.numClasses,
    guideChannels: options.guideChannels ?? "all",
    learnSigma: model.config.learnSigma,
    noise,
    ...(options.onStep ? { onStep: options.onStep } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const started = performance.now();
  try {
    const result =
      options.sampler === "ddpm"
        ? await ddpmSample(denoiser, sampleOptions)
        : await ddimSample(denoiser, { ...sampleOptions, eta: options.eta ?? 0 });
    const milliseconds = performance.now() - started;
    const images = await backend.read(result.sample);
    backend.dispose(result.sample);
    return {
      images,
      shape: [shape[0], shape[1], shape[2], shape[3]],
      milliseconds,
      stepMilliseconds: result.stepMilliseconds,
      ...(engine ? { summary: engine.summary() } : {}),
    };
  } finally {
    conditioning.dispose();
    engine?.dispose();
  }
}
