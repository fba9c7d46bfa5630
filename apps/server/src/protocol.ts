import type { DiTConfig } from "@ditcache/dit";
import type { BackendSpec } from "@ditcache/pipeline";

/**
 * Where the worker gets its model. Chosen by whoever starts the server, never by a client:
 * the embedded demo model, seeded random weights (tests, development), or an operator's file.
 */
export type ModelSource =
  | { readonly kind: "demo" }
  | { readonly kind: "random"; readonly config: DiTConfig; readonly seed?: number; readonly name?: string }
  | { readonly kind: "file"; readonly path: string; readonly name?: string };

/** What the page and the API say about the loaded model. */
export interface ModelInfo {
  /** Display name. */
  readonly name: string;
  /** Backend spec the worker runs. */
  readonly backend: string;
  /** Classes (labels are integers in [0, numClasses - 1]). */
  readonly numClasses: number;
  /** Image side in pixels. */
  readonly inputSize: number;
  /** Image channels. */
  readonly inChannels: number;
  /** Transformer blocks. */
  readonly depth: number;
  /** Hidden width. */
  readonly hiddenSize: number;
  /** Patch side. */
  readonly patchSize: number;
}

/** A validated generation request (what the API accepted). */
export interface JobRequest {
  /** One class label per image. */
  readonly labels: readonly number[];
  /** Seed of the first image; image i uses seed + i. */
  readonly seed: number;
  /** Denoising steps. */
  readonly steps: number;
  /** Sampler. */
  readonly sampler: "ddim" | "ddpm";
  /** Classifier-free guidance scale. */
  readonly cfgScale: number;
  /** Cache policy spec as the client gave it. */
  readonly policy: string;
  /** Corrector spec as the client gave it ("reuse" = plain reuse). */
  readonly corrector: string;
}

/** The runs of one job, in order. "reuse" is the cached run with plain reuse, for comparison. */
export type RunPhase = "uncached" | "cached" | "reuse";

/** One finished sampling run. */
export interface RunReport {
  /** Which run. */
  readonly phase: RunPhase;
  /** Wall-clock milliseconds of the run. */
  readonly milliseconds: number;
  /** Milliseconds per step. */
  readonly stepMilliseconds: readonly number[];
  /** The image grid as a PNG data URL. */
  readonly image: string;
  /** PSNR (dB) vs the uncached images; null when identical (infinite) or for the uncached run. */
  readonly psnr: number | null;
  /** Per step: MSE between this run's x_t and the uncached x_t (all zeros for the uncached run). */
  readonly errorCurve: readonly number[];
  /** Cache policy spec actually run (normalised), absent for the uncached run. */
  readonly policy?: string;
  /** Corrector spec actually run, absent for the uncached run. */
  readonly corrector?: string;
}

/** What GET /api/jobs/:id/result returns for a finished job. */
export interface JobResult {
  /** Job id. */
  readonly id: string;
  /** The accepted request. */
  readonly request: JobRequest;
  /** The model it ran on. */
  readonly model: ModelInfo;
  /** Uncached ms / cached ms. */
  readonly speedup: number;
  /** Uncached ms / plain-reuse ms, when that run was made. */
  readonly reuseSpeedup: number | null;
  /** Computed / full MACs of the cacheable sites in the cached run. */
  readonly macsRatio: number;
  /** Fraction of (step x block) computations reused. */
  readonly cachingLevel: number;
  /** Column keys of `decisions`, e.g. "block0.attn". */
  readonly sites: readonly string[];
  /** One string per step, one character per site: C computed, R reused, H half reused, - not called. */
  readonly decisions: readonly string[];
  /** The runs: uncached, cached, and (when the corrector is not plain reuse) reuse. */
  readonly runs: readonly RunReport[];
}

/** Messages the main thread sends the worker. */
export type ToWorker = {
  readonly type: "run";
  readonly id: string;
  readonly request: JobRequest;
  /** Policy spec to run (validated, server parameters included). */
  readonly policy: string;
  /** Corrector spec to run (validated, server parameters included). */
  readonly corrector: string;
  /** Int32Array(1) over shared memory: the main thread stores 1 to cancel. */
  readonly cancel: SharedArrayBuffer;
};

/** Messages the worker sends the main thread. */
export type FromWorker =
  | { readonly type: "ready"; readonly model: ModelInfo }
  | { readonly type: "load-error"; readonly message: string }
  | {
      readonly type: "progress";
      readonly id: string;
      readonly phase: RunPhase;
      readonly step: number;
      readonly count: number;
    }
  | {
      readonly type: "result";
      readonly id: string;
      readonly result: Omit<JobResult, "id" | "request" | "model">;
    }
  | { readonly type: "failed"; readonly id: string; readonly code: string; readonly message: string };

/** Backend spec accepted by the server (the pipeline's). */
export type ServerBackendSpec = BackendSpec;
