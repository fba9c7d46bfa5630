import {
  type Backend,
  type BatchHalf,
  createRng,
  DitcacheError,
  formatShape,
  type StepInfo,
  sizeOf,
  type Tensor,
} from "@ditcache/core";
import { createSchedule, type DiffusionSchedule } from "./schedule.js";
import { ddimStep, ddpmStep, type ModelPrediction, type StepOutput } from "./step.js";

/**
 * A denoiser as the samplers call it: x (rows, C, H, W) at per-row ORIGINAL timesteps with
 * per-row labels -> eps (rows, C, H, W), followed by v (rows, C, H, W) when it learns sigma.
 * The sampler disposes both x and the returned tensor after use.
 *
 * @example
 * const model: ModelFn = (x, t, y, step) => dit.forward(x, t, y, { hook, step });
 */
export type ModelFn = (x: Tensor, timesteps: number[], labels: number[], step: StepInfo) => Promise<Tensor>;

/** Options shared by {@link ddimSample} and {@link ddpmSample}. */
export interface SampleOptions {
  /** Where x and the model output live. */
  backend: Backend;
  /** [N, C, H, W] of the samples. */
  shape: readonly number[];
  /** One class label per sample. */
  labels: readonly number[];
  /**
   * Number of steps, respaced evenly as the official sample.py does (`create_diffusion(str(steps))`).
   * Give either this or `respacing`. @defaultValue 250 for DDPM, 50 for DDIM
   */
  steps?: number;
  /** Respacing string as `space_timesteps` takes it ("ddim20", "250", "10,10"); overrides `steps`. */
  respacing?: string;
  /** Classifier-free guidance scale; 1 disables guidance (one forward of N rows). @defaultValue 1 */
  cfgScale?: number;
  /** The null label for the unconditional half; required when `cfgScale` is not 1 (a DiT's numClasses). */
  nullLabel?: number;
  /**
   * eps channels guided by CFG. The official DiT guides the first 3 (of 4 latent channels); a
   * number larger than C is clamped to C as in the project's Python reference. @defaultValue 3
   */
  guideChannels?: number | "all";
  /** Whether the model outputs v after eps (2C channels, LEARNED_RANGE variance). @defaultValue true */
  learnSigma?: boolean;
  /** Clamp predicted x_0 to [-1, 1]. @defaultValue false (as the official sample.py) */
  clipDenoised?: boolean;
  /** Initial x_T, N*C*H*W values; else drawn from `seed`. */
  noise?: Float32Array;
  /** Seed of x_T (when `noise` is absent) and of the per-step noise (then drawn after x_T). @defaultValue 0 */
  seed?: number;
  /** Per-step noise (N*C*H*W values) for step k; else drawn from `seed`. */
  stepNoise?: (k: number) => Float32Array;
  /** Called after every step. */
  onStep?: (event: SamplerStep) => void;
  /** Stops sampling between steps with an ABORTED error. */
  signal?: AbortSignal;
}

/** Options of {@link ddimSample}. */
export interface DdimOptions extends SampleOptions {
  /** DDIM eta: 0 is deterministic, 1 is DDPM-like. @defaultValue 0 */
  eta?: number;
}

/** One finished step. */
export interface SamplerStep {
  /** 0-based step index in the run. */
  readonly index: number;
  /** Steps in the run. */
  readonly count: number;
  /** Original timestep the model saw. */
  readonly timestep: number;
  /** x after the step (N, C, H, W) on the host; x_0 after the last step. */
  readonly x: Float32Array;
  /** The x_0 predicted at this step. */
  readonly predictedX0: Float32Array;
  /** Wall-clock milliseconds of the step, model included. */
  readonly milliseconds: number;
}

/** What a sampler returns. */
export interface SampleResult {
  /** x_0 (N, C, H, W) on the backend (the conditional half when guided). */
  readonly sample: Tensor;
  /** Milliseconds per step. */
  readonly stepMilliseconds: number[];
}

interface Plan {
  readonly schedule: DiffusionSchedule;
  readonly n: number;
  readonly channels: number;
  readonly pixels: number;
  readonly labels: number[];
  readonly guided: boolean;
  readonly guideChannels: number;
  readonly cfgScale: number;
  readonly learnSigma: boolean;
}

function fail(name: string, expected: string, got: unknown): never {
  const shown = Array.isArray(got)
    ? `[${got.slice(0, 8).join(", ")}]`
    : typeof got === "string"
      ? JSON.stringify(got)
      : String(got);
  throw new DitcacheError("INVALID_ARGUMENT", `${name}: expected ${expected}, got ${shown}`);
}

function plan(options: SampleOptions, defaultSteps: number): Plan {
  if (typeof options?.backend?.tensor !== "function") fail("options.backend", "a Backend", options?.backend);
  const shape = options.shape;
  if (
    !Array.isArray(shape) ||
    shape.length !== 4 ||
    !shape.every((dim) => Number.isSafeInteger(dim) && dim > 0)
  ) {
    fail("options.shape", "[N, C, H, W] of positive integers", shape);
  }
  const [n, channels, height, width] = shape as [number, number, number, number];
  const labels = options.labels;
  if (
    !Array.isArray(labels) ||
    labels.length !== n ||
    !labels.every((y) => Number.isSafeInteger(y) && y >= 0)
  ) {
    fail("options.labels", `${n} non-negative integers (one per sample)`, labels);
  }
  let respacing: string;
  if (options.respacing !== undefined) {
    if (typeof options.respacing !== "string")
      fail("options.respacing", 'a string like "ddim20" or "250"', options.respacing);
    respacing = options.respacing;
  } else {
    const steps = options.steps ?? defaultSteps;
    if (!Number.isSafeInteger(steps) || steps < 1) fail("options.steps", "a positive integer", steps);
    respacing = String(steps);
  }
  const schedule = createSchedule({ respacing });
  const cfgScale = options.cfgScale ?? 1;
  if (!Number.isFinite(cfgScale) || cfgScale < 0) fail("options.cfgScale", "a finite number >= 0", cfgScale);
  const guided = cfgScale !== 1;
  if (guided && (!Number.isSafeInteger(options.nullLabel) || options.nullLabel! < 0)) {
    fail(
      "options.nullLabel",
      "the null class label (the model's numClasses) when cfgScale is not 1",
      options.nullLabel,
    );
  }
  const guide = options.guideChannels ?? 3;
  if (guide !== "all" && (!Number.isSafeInteger(guide) || guide < 1)) {
    fail("options.guideChannels", 'a positive integer or "all"', guide);
  }
  const learnSigma = options.learnSigma ?? true;
  if (typeof learnSigma !== "boolean") fail("options.learnSigma", "a boolean", learnSigma);
  if (
    options.noise !== undefined &&
    (!(options.noise instanceof Float32Array) || options.noise.length !== sizeOf(shape))
  ) {
    fail(
      "options.noise",
      `a Float32Array of ${sizeOf(shape)} values`,
      (options.noise as { length?: number })?.length,
    );
  }
  return {
    schedule,
    n,
    channels,
    pixels: height * width,
    labels: guided ? [...labels, ...labels.map(() => options.nullLabel!)] : [...labels],
    guided,
    guideChannels: guide === "all" ? channels : Math.min(guide, channels),
    cfgScale,
    learnSigma,
  };
}

/**
 * Reads the model output and applies guidance as `forward_with_cfg` does: rows are
 * [cond; uncond]; the first `guideChannels` eps channels become u + s (c - u), every other channel
 * (the rest of eps, and v) is the cond row's.
 */
function predictionFromOutput(
  output: Float32Array,
  outputShape: readonly number[],
  p: Plan,
): ModelPrediction {
  const rows = p.guided ? 2 * p.n : p.n;
  const outChannels = p.learnSigma ? 2 * p.channels : p.channels;
  const expected = [rows, outChannels, Math.sqrt(p.pixels), Math.sqrt(p.pixels)];
  if (
    outputShape.length !== 4 ||
    outputShape[0] !== rows ||
    outputShape[1] !== outChannels ||
    outputShape[2]! * outputShape[3]! !== p.pixels
  ) {
    throw new DitcacheError(
      "SHAPE_MISMATCH",
      `model output: expected shape [${rows}, ${outChannels}, H, W] (learnSigma ${p.learnSigma}, ${p.guided ? "CFG doubles the rows" : "no CFG"}), got ${formatShape(outputShape)}; e.g. ${formatShape(expected)}`,
    );
  }
  const f = Math.fround;
  const scale = f(p.cfgScale);
  const plane = p.pixels;
  const eps = new Float32Array(p.n * p.channels * plane);
  const varianceValues = p.learnSigma ? new Float32Array(eps.length) : undefined;
  for (let row = 0; row < p.n; row++) {
    for (let channel = 0; channel < p.channels; channel++) {
      const source = (row * outChannels + channel) * plane;
      const target = (row * p.channels + channel) * plane;
      if (p.guided && channel < p.guideChannels) {
        const uncondSource = ((row + p.n) * outChannels + channel) * plane;
        for (let i = 0; i < plane; i++) {
          const cond = output[source + i]!;
          const uncond = output[uncondSource + i]!;
          eps[target + i] = f(uncond + f(scale * f(cond - uncond)));
        }
      } else {
        eps.set(output.subarray(source, source + plane), target);
      }
      if (varianceValues !== undefined) {
        const varianceSource = (row * outChannels + p.channels + channel) * plane;
        varianceValues.set(output.subarray(varianceSource, varianceSource + plane), target);
      }
    }
  }
  return varianceValues === undefined ? { eps } : { eps, varianceValues };
}

type Update = (
  k: number,
  x: Float32Array,
  prediction: ModelPrediction,
  noise: Float32Array | undefined,
) => StepOutput;

/** Resolves after pending events (I/O, timers, signal handlers) have had a turn. */
function yieldToEvents(): Promise<void> {
  return new Promise((resolve) =>
    typeof setImmediate === "function" ? setImmediate(resolve) : setTimeout(resolve, 0),
  );
}

async function* run(
  model: ModelFn,
  options: SampleOptions,
  p: Plan,
  needsNoise: boolean,
  update: Update,
): AsyncGenerator<SamplerStep, void, undefined> {
  const { backend, signal } = options;
  const size = p.n * p.channels * p.pixels;
  const rng = createRng(options.seed ?? 0);
  let x = options.noise?.slice() ?? rng.normals(size); // x_T, (N, C, H, W)
  const rowShape = [p.guided ? 2 * p.n : p.n, ...options.shape.slice(1)];
  const rows: readonly BatchHalf[] = p.labels.map((_, i) => (i < p.n ? "cond" : "uncond"));
  const count = p.schedule.numTimesteps;
  const timesteps = [...p.schedule.timestepMap].reverse(); // sampling order: T-1 down to 0
  for (let index = 0; index < count; index++) {
    // A backend whose ops resolve at once (cpu) would chain every step as microtasks and never
    // let the event loop deliver what aborts the signal (SIGINT, a cancel message, a timer).
    if (signal !== undefined) await yieldToEvents();
    if (signal?.aborted) {
      throw new DitcacheError("ABORTED", `sampling aborted before step ${index} of ${count}`, {
        cause: signal.reason,
      });
    }
    const started = performance.now();
    const k = count - 1 - index; // schedule step: T-1 down to 0
    const timestep = p.schedule.timestepMap[k]!;
    const input = new Float32Array(rowShape[0]! * p.channels * p.pixels);
    input.set(x);
    if (p.guided) input.set(x, size); // [x; x]: forward_with_cfg duplicates the cond half
    const xTensor = backend.tensor(input, rowShape);
    const step: StepInfo = { index, count, timestep, rows, timesteps };
    let output: Tensor | undefined;
    let values: Float32Array;
    try {
      output = await model(
        xTensor,
        p.labels.map(() => timestep),
        [...p.labels],
        step,
      );
      values = await backend.read(output);
    } finally {
      backend.dispose(xTensor);
      if (output !== undefined) backend.dispose(output);
    }
    const prediction = predictionFromOutput(values, output.shape, p);
    let noise: Float32Array | undefined;
    if (needsNoise) {
      noise = options.stepNoise?.(index) ?? rng.normals(size);
      if (!(noise instanceof Float32Array) || noise.length !== size) {
        fail(
          `options.stepNoise(${index})`,
          `a Float32Array of ${size} values`,
          (noise as { length?: number })?.length,
        );
      }
    }
    const out = update(k, x, prediction, noise);
    x = out.sample;
    const event: SamplerStep = {
      index,
      count,
      timestep,
      x,
      predictedX0: out.predictedX0,
      milliseconds: performance.now() - started,
    };
    options.onStep?.(event);
    yield event;
  }
}

function checkEta(eta: number): number {
  if (!Number.isFinite(eta) || eta < 0) fail("options.eta", "a finite number >= 0", eta);
  return eta;
}

/**
 * DDIM (`ddim_sample_loop` of the official code) as an async iterator: one event per step,
 * x_0 in the last event's `x`. Noise is drawn only when eta > 0.
 *
 * @example
 * for await (const step of ddimSteps(model, { backend, shape: [1, 4, 32, 32], labels: [207], steps: 20 })) {
 *   console.log(step.index, step.timestep);
 * }
 * @throws DitcacheError INVALID_ARGUMENT for bad options, ABORTED when the signal fires.
 */
export function ddimSteps(
  model: ModelFn,
  options: DdimOptions,
): AsyncGenerator<SamplerStep, void, undefined> {
  const p = plan(options, 50);
  const eta = checkEta(options.eta ?? 0);
  return run(model, options, p, eta > 0, (k, x, prediction, noise) =>
    ddimStep(
      {
        schedule: p.schedule,
        k,
        x,
        prediction,
        clipDenoised: options.clipDenoised ?? false,
        ...(noise ? { noise } : {}),
      },
      eta,
    ),
  );
}

/**
 * Ancestral DDPM sampling (`p_sample_loop` of the official code) as an async iterator, with the
 * learned-range variance when `learnSigma` (FIXED_LARGE otherwise).
 *
 * @throws DitcacheError INVALID_ARGUMENT for bad options (fewer than 2 steps among them),
 *   ABORTED when the signal fires.
 */
export function ddpmSteps(
  model: ModelFn,
  options: SampleOptions,
): AsyncGenerator<SamplerStep, void, undefined> {
  const p = plan(options, 250);
  if (p.schedule.numTimesteps < 2) {
    fail(
      "options.steps",
      "at least 2 steps for DDPM (the variance of step 0 is taken from step 1)",
      p.schedule.numTimesteps,
    );
  }
  return run(model, options, p, true, (k, x, prediction, noise) =>
    ddpmStep({
      schedule: p.schedule,
      k,
      x,
      prediction,
      clipDenoised: options.clipDenoised ?? false,
      ...(noise ? { noise } : {}),
    }),
  );
}

async function complete(
  options: SampleOptions,
  steps: AsyncGenerator<SamplerStep, void, undefined>,
): Promise<SampleResult> {
  const stepMilliseconds: number[] = [];
  let last: SamplerStep | undefined;
  for await (const step of steps) {
    stepMilliseconds.push(step.milliseconds);
    last = step;
  }
  return { sample: options.backend.tensor(last!.x, [...options.shape]), stepMilliseconds };
}

/**
 * Runs {@link ddimSteps} to completion.
 *
 * @example
 * const { sample } = await ddimSample(model, { backend, shape: [2, 4, 32, 32], labels: [207, 360],
 *   respacing: "ddim20", cfgScale: 4, nullLabel: 1000, seed: 0 });
 */
export async function ddimSample(model: ModelFn, options: DdimOptions): Promise<SampleResult> {
  return complete(options, ddimSteps(model, options));
}

/** Runs {@link ddpmSteps} to completion. */
export async function ddpmSample(model: ModelFn, options: SampleOptions): Promise<SampleResult> {
  return complete(options, ddpmSteps(model, options));
}
