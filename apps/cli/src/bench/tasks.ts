import { statSync } from "node:fs";
import { join } from "node:path";
import { type CachePolicy, type Corrector, parsePolicy, taylorCorrector } from "@ditcache/cache";
import { type Backend, DitcacheError } from "@ditcache/core";
import { type DiTModel, type DiTPresetName, ditMacs, ditPreset } from "@ditcache/dit";
import { type EocCorrector, type EocOptions, eoc, type Priors } from "@ditcache/eoc";
import { loadDemoModel } from "@ditcache/models";
import { calibrateModel, createBackend, generate } from "@ditcache/pipeline";
import { lcgFill, randomModel, weightBytes } from "./weights.js";

/** One measurement, run in its own process so that its peak RSS is its own. */
export type BenchTask =
  | {
      readonly kind: "forward";
      readonly preset: DiTPresetName;
      /** pipeline backend spec: "onnx", "tfjs:wasm", ... */
      readonly backend: string;
      readonly threads: number;
      readonly runs: number;
      /** Also time one DDIM run of this many steps (CFG pair, batch 2); 0 = no. */
      readonly ddimSteps: number;
    }
  | {
      readonly kind: "cache";
      /** A preset with random weights, or "demo": the embedded trained model, ten images a run (one per digit). */
      readonly preset: DiTPresetName | "demo";
      readonly threads: number;
      readonly steps: number;
      readonly rounds: number;
      /** Also measure EOC on top of FORA 50%. */
      readonly eoc: boolean;
      /** Also measure only the cache rows (false with eoc alone). */
      readonly cache: boolean;
      readonly eocSamples: number;
      /** Where a calibrated priors file is written (its size is reported). */
      readonly outDir: string;
    };

/** What a forward task measured. */
export interface ForwardResult {
  readonly preset: string;
  readonly backend: string;
  readonly threads: number;
  readonly weightBytes: number;
  /** Analytic GFLOP of one batch-2 forward (2 x MACs of @ditcache/dit's ditMacs). */
  readonly gflopForward: number;
  /** Timed forwards after the first. */
  readonly runs: number;
  /** First forward, compiling every unit. */
  readonly firstForwardMs: number;
  readonly forwardMsMedian: number;
  readonly forwardMsMin: number;
  /**
   * CPU time of the process (all threads) per forward, median: the work done, which stays
   * comparable when other processes take the cores.
   */
  readonly forwardCpuMsMedian: number;
  readonly ddimSteps: number;
  readonly ddimMs: number | null;
  readonly ddimCpuMs: number | null;
  /** Process peak resident set size (maxRSS) in bytes. */
  readonly peakRssBytes: number;
  /**
   * tfjs-wasm only: its WebAssembly memory after the runs, i.e. its peak (it never shrinks).
   * tfjs-wasm caps it at 4 GiB.
   */
  readonly wasmMemoryBytes?: number;
}

/** One cache variant row. */
export interface CacheVariantResult {
  readonly name: string;
  readonly spec: string;
  readonly ms: number;
  /** CPU time of the process during the run (best round, taken separately from the wall-clock). */
  readonly cpuMs: number;
  /** MACs computed / MACs of the uncached run (summary.macs.ratio; 1 when uncached). */
  readonly macsRatio: number;
  /** summary.memory.peakBytes (0 when uncached). */
  readonly cachePeakBytes: number;
  readonly corrector?: string;
  readonly counts?: Readonly<Record<string, number>>;
  /** Wall-clock ms of every round, in round order: what paired comparisons between rows use. */
  readonly roundMs: readonly number[];
  /** CPU ms of every round, in round order. */
  readonly roundCpuMs: readonly number[];
}

/** What a cache task measured. */
export interface CacheResult {
  readonly preset: string;
  readonly threads: number;
  readonly steps: number;
  readonly rounds: number;
  readonly variants: readonly CacheVariantResult[];
  readonly eocCalibrationMs: number | null;
  readonly eocSamples: number;
  /** Bytes of the calibrated (channel granularity, F16) priors file, as saved. */
  readonly priorsFileBytes: number | null;
  readonly peakRssBytes: number;
}

const peakRss = (): number => process.resourceUsage().maxRSS * 1024;

/**
 * Timed forwards of a tfjs-wasm row: `runs` up to DiT-S/2's work, one above (at ~10 GFLOP/s a
 * DiT-XL/2 forward takes ~20-30 s on tfjs-wasm, after a compiling forward as long).
 */
export function tfjsForwardRuns(preset: DiTPresetName, runs: number): number {
  return ditMacs(ditPreset(preset)).forward <= ditMacs(ditPreset("DiT-S/2")).forward ? runs : 1;
}

/** Runs a task in this process. */
export async function runTask(task: BenchTask): Promise<ForwardResult | CacheResult> {
  return task.kind === "forward" ? runForward(task) : runCache(task);
}

/**
 * The backend of a row. ONNX drops the host copy of each param once its session exists
 * (`hostParams: "release"`): every run here has one batch size (a CFG pair), and the weights
 * then sit in memory once, as with PyTorch.
 */
/** `keepHostParams`: the run compiles units for more than one batch size (host copies stay for the new sessions). */
async function makeBackend(spec: string, threads: number, keepHostParams = false): Promise<Backend> {
  if (spec === "onnx") {
    const { createOnnxBackend } = await import("@ditcache/backend-onnx");
    return createOnnxBackend({ intraOpNumThreads: threads, hostParams: keepHostParams ? "keep" : "release" });
  }
  return createBackend(spec, { threads });
}

async function runForward(task: Extract<BenchTask, { kind: "forward" }>): Promise<ForwardResult> {
  const backend = await makeBackend(task.backend, task.threads);
  try {
    return await measureForward(task, backend);
  } catch (error) {
    throw withWasmMemory(error, backend);
  } finally {
    await backend.close?.();
  }
}

async function measureForward(
  task: Extract<BenchTask, { kind: "forward" }>,
  backend: Backend,
): Promise<ForwardResult> {
  const config = ditPreset(task.preset);
  const model = randomModel(config, backend);
  const batch = 2;
  const side = config.inputSize;
  const x = backend.tensor(lcgFill(batch * config.inChannels * side * side, 1, 99), [
    batch,
    config.inChannels,
    side,
    side,
  ]);
  const cpuTimes: number[] = [];
  const forward = async (): Promise<number> => {
    const start = performance.now();
    const cpuStart = process.cpuUsage();
    const out = await model.forward(x, [500, 500], [207, config.numClasses]);
    await backend.read(out);
    backend.dispose(out);
    cpuTimes.push(cpuMsSince(cpuStart));
    return performance.now() - start;
  };
  try {
    const firstForwardMs = await forward();
    const times: number[] = [];
    for (let run = 0; run < task.runs; run++) times.push(await forward());
    times.sort((a, b) => a - b);
    const forwardCpu = cpuTimes.slice(1).sort((a, b) => a - b);
    let ddimMs: number | null = null;
    let ddimCpuMs: number | null = null;
    if (task.ddimSteps > 0) {
      const cpuStart = process.cpuUsage();
      const result = await generate({ model, labels: [207], seeds: [0], steps: task.ddimSteps, cfgScale: 4 });
      ddimCpuMs = cpuMsSince(cpuStart);
      ddimMs = result.milliseconds;
    }
    const wasm = wasmMemoryBytes(backend);
    return {
      preset: task.preset,
      backend: task.backend,
      threads: task.threads,
      weightBytes: weightBytes(config),
      gflopForward: (2 * ditMacs(config).forward * batch) / 1e9,
      runs: task.runs,
      firstForwardMs,
      forwardMsMedian: times[Math.floor(times.length / 2)]!,
      forwardMsMin: times[0]!,
      forwardCpuMsMedian: forwardCpu[Math.floor(forwardCpu.length / 2)]!,
      ddimSteps: task.ddimSteps,
      ddimMs,
      ddimCpuMs,
      peakRssBytes: peakRss(),
      ...(wasm !== undefined && { wasmMemoryBytes: wasm }),
    };
  } finally {
    backend.dispose(x);
    model.dispose();
  }
}

/**
 * What `TfjsBackend.wasmMemoryBytes()` reports for a tfjs-wasm backend; undefined for any other.
 * Asked by shape: the CLI reaches backend-tfjs only through the pipeline's `createBackend`.
 */
function wasmMemoryBytes(backend: Backend): number | undefined {
  const report = (backend as Partial<{ wasmMemoryBytes(): number | undefined }>).wasmMemoryBytes;
  return typeof report === "function" ? report.call(backend) : undefined;
}

/** A tfjs-wasm failure says how full its (4 GiB at most) WebAssembly memory was. */
function withWasmMemory(error: unknown, backend: Backend): unknown {
  const wasm = wasmMemoryBytes(backend);
  const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
  // backend-tfjs's own out-of-memory error already says it.
  if (wasm === undefined || message.includes("WebAssembly memory")) return error;
  return new DitcacheError(
    DitcacheError.isInstance(error) ? error.code : "UNSUPPORTED",
    `${message} (WebAssembly memory at ${(wasm / 1e9).toFixed(2)} GB of tfjs-wasm's 4 GiB cap)`,
    { cause: error },
  );
}

interface Variant {
  readonly name: string;
  readonly policy?: CachePolicy;
  readonly corrector?: Corrector;
  /** An EOC corrector made from the priors calibrated in the run: its options. */
  readonly eoc?: EocOptions;
}

async function runCache(task: Extract<BenchTask, { kind: "cache" }>): Promise<CacheResult> {
  const demo = task.preset === "demo";
  // The demo's calibration runs one image at a time, its timed runs ten.
  const backend = await makeBackend("onnx", task.threads, demo);
  const model = demo
    ? await loadDemoModel(backend)
    : randomModel(ditPreset(task.preset as DiTPresetName), backend);
  // One ImageNet class for the random presets; a batch of digits for the demo model, whose steps
  // at one image would be all per-call overhead.
  const labels = demo ? Array.from({ length: 10 }, (_, i) => i) : [207];
  const seeds = labels.map((_, i) => i);
  const fora50 = parsePolicy("fora:interval=2");
  const variants: Variant[] = [
    { name: "uncached" },
    ...(task.cache
      ? [
          { name: "FORA 25%", policy: parsePolicy("fora:reuseEvery=4") },
          { name: "FORA 50%", policy: fora50 },
          { name: "FORA 75%", policy: parsePolicy("fora:interval=4") },
        ]
      : [{ name: "FORA 50%", policy: fora50 }]),
    // The forecast alone, with the same full-size terms as EOC's order 2: what EOC adds beyond it.
    ...(task.eoc
      ? [
          { name: "FORA 50% + TaylorSeer 2", policy: fora50, corrector: taylorCorrector({ order: 2 }) },
          // The paper's correction alone: one broadcast term, D, on top of plain reuse.
          { name: "FORA 50% + EOC prior term", policy: fora50, eoc: { mode: "prior" as const, tau: 0 } },
          { name: "FORA 50% + EOC", policy: fora50, eoc: { tau: 0 } },
        ]
      : []),
  ];
  try {
    // Compile every unit once so that no row pays for session creation: the first step of a run,
    // which also builds the run conditioning's batched pass (with hostParams "release" a unit's
    // first session fixes its input shapes, so a lone forward would leave that pass uncompilable).
    const warmup = new AbortController();
    await generate({
      model,
      labels,
      seeds,
      steps: task.steps,
      cfgScale: 4,
      onStep: () => warmup.abort(),
      signal: warmup.signal,
    }).catch((error: unknown) => {
      if (!(DitcacheError.isInstance(error) && error.code === "ABORTED")) throw error;
    });
    let priors: Priors | undefined;
    let eocCalibrationMs: number | null = null;
    let priorsFileBytes: number | null = null;
    if (task.eoc) {
      const started = performance.now();
      priors = await benchPriors(
        model,
        demo ? "demo" : "bench-random-weights",
        fora50,
        task.steps,
        task.eocSamples,
      );
      eocCalibrationMs = performance.now() - started;
      const path = join(
        task.outDir,
        `priors-${task.preset.replace("/", "-")}-${task.steps}steps.safetensors`,
      );
      await priors.save(path);
      priorsFileBytes = statSync(path).size;
    }
    // One corrector per EOC row, kept across rounds (its prior tensors are uploaded once).
    const eocCorrectors = new Map<string, EocCorrector>();
    for (const variant of variants)
      if (variant.eoc && priors) eocCorrectors.set(variant.name, eoc(fora50, priors, variant.eoc).corrector);
    // The fastest round of each row; the rounds' times are added at the end.
    const best = new Map<string, Omit<CacheVariantResult, "roundMs" | "roundCpuMs">>();
    const roundMs = new Map<string, number[]>(variants.map((variant) => [variant.name, []]));
    const roundCpuMs = new Map<string, number[]>(variants.map((variant) => [variant.name, []]));
    // Rounds interleave the variants, so a slow patch of a shared machine hits all of them; every
    // other round runs them in reverse, so that no row always follows the same neighbour.
    for (let round = 0; round < task.rounds; round++) {
      for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
        const eocCorrector = eocCorrectors.get(variant.name);
        const corrector = eocCorrector ?? variant.corrector;
        const cache =
          variant.policy === undefined
            ? undefined
            : { policy: variant.policy, ...(corrector ? { corrector } : {}) };
        const countsBefore = eocCorrector ? { ...eocCorrector.counts } : undefined;
        const cpuStart = process.cpuUsage();
        const result = await generate({
          model,
          labels,
          seeds,
          steps: task.steps,
          cfgScale: 4,
          ...(cache ? { cache } : {}),
        });
        const cpuMs = cpuMsSince(cpuStart);
        roundMs.get(variant.name)!.push(result.milliseconds);
        roundCpuMs.get(variant.name)!.push(cpuMs);
        const previous = best.get(variant.name);
        // Wall-clock and CPU time each keep their own best round.
        const bestCpu = Math.min(cpuMs, previous?.cpuMs ?? Number.POSITIVE_INFINITY);
        if (previous !== undefined && previous.ms <= result.milliseconds) {
          best.set(variant.name, { ...previous, cpuMs: bestCpu });
          continue;
        }
        best.set(variant.name, {
          name: variant.name,
          spec: variant.policy?.spec ?? "none",
          ms: result.milliseconds,
          cpuMs: bestCpu,
          macsRatio: result.summary?.macs.ratio ?? 1,
          cachePeakBytes: result.summary?.memory.peakBytes ?? 0,
          ...(result.summary ? { corrector: result.summary.corrector } : {}),
          ...(countsBefore && eocCorrector ? { counts: countsSince(eocCorrector.counts, countsBefore) } : {}),
        });
      }
    }
    for (const corrector of eocCorrectors.values()) corrector.dispose();
    return {
      preset: task.preset,
      threads: task.threads,
      steps: task.steps,
      rounds: task.rounds,
      variants: variants.map((variant) => ({
        ...best.get(variant.name)!,
        roundMs: roundMs.get(variant.name)!,
        roundCpuMs: roundCpuMs.get(variant.name)!,
      })),
      eocCalibrationMs,
      eocSamples: task.eocSamples,
      priorsFileBytes,
      peakRssBytes: peakRss(),
    };
  } finally {
    model.dispose();
    await backend.close?.();
  }
}

/**
 * EOC priors calibrated on the benchmark's own random model with a few samples (the sampler of
 * the timed runs), with the judgment off (tau 0) so every reused branch is corrected: the
 * overhead measured is EOC's worst case, not whatever a random model's priors happen to skip.
 */
/** Priors for the EOC rows, calibrated on the bench's own model. */
function benchPriors(
  model: DiTModel,
  modelHash: string,
  basePolicy: CachePolicy,
  steps: number,
  samples: number,
): Promise<Priors> {
  return calibrateModel({
    model,
    modelHash,
    basePolicy,
    samples,
    steps,
    sampler: "ddim",
    cfgScale: 4,
    guideChannels: "all",
    granularity: "channel",
    // The timing does not depend on the trend scale; its closed-loop choice would only add runs.
    closedLoop: false,
    // The most terms a default candidate applies: F_last, F_prev, F_prev2 (order 2) and D.
    trendOrder: 2,
  });
}

/** Corrector counts of one run: counts now minus counts before it. */
function countsSince(
  now: Readonly<Record<string, number>>,
  before: Readonly<Record<string, number>>,
): Record<string, number> {
  return Object.fromEntries(Object.entries(now).map(([key, value]) => [key, value - (before[key] ?? 0)]));
}

/** CPU milliseconds of this process (all threads) since a `process.cpuUsage()` reading. */
function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}
