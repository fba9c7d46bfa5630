/**
 * The conditioning of a whole sampling run, computed ahead: c = t_embedder(t) + y_embedder(y) and
 * every block's adaLN modulation for the steps of a run, in few batched passes.
 *
 * Why: at batch 2 each block's modulation Linear(D, 6D) is a matrix-vector product that reads its
 * weights for two rows of work (DiT-XL/2: 223M weights, 0.9 GB in float32, read every step). A
 * cached step skips most branches but still needs every gate, so this read bounds the speed-up
 * of heavy caching. The timesteps and labels of a run are known before it starts; computing the
 * modulations of many steps per weight read turns that cost from per-step into per-run.
 */
import type { Backend, Executable, StepInfo, Tensor } from "@ditcache/core";
import { DitcacheError, disposeAll } from "@ditcache/core";
import { timestepEmbedding } from "./embeddings.js";
import { TIMESTEP_FREQUENCY_SIZE } from "./layouts/official.js";

/** The six adaLN chunks of one block, each (N, 1, D) to broadcast over tokens. */
export interface Modulation {
  readonly shiftAttention: Tensor;
  readonly scaleAttention: Tensor;
  readonly gateAttention: Tensor;
  readonly shiftMlp: Tensor;
  readonly scaleMlp: Tensor;
  readonly gateMlp: Tensor;
}

/** What one step of a run needs from the conditioning: c (N, D) and each block's modulation. */
export interface StepConditioning {
  readonly c: Tensor;
  readonly blocks: readonly Modulation[];
}

/** Names the six chunks of `chunk(6, dim=1)`, in that order. */
export function modulationOf(chunks: readonly Tensor[]): Modulation {
  const chunk = (j: number): Tensor => chunks[j]!;
  return {
    shiftAttention: chunk(0),
    scaleAttention: chunk(1),
    gateAttention: chunk(2),
    shiftMlp: chunk(3),
    scaleMlp: chunk(4),
    gateMlp: chunk(5),
  };
}

/** The model's parts a run's conditioning is computed with. */
export interface ConditioningParts {
  readonly backend: Backend;
  readonly hiddenSize: number;
  /** Rows of `y_embedder.embedding_table.weight`, (classes, D). */
  readonly labelTable: Float32Array;
  /** (time features, label rows) -> c. */
  readonly condition: Executable;
  /** Per block: c -> six (rows, 1, D) chunks. */
  readonly modulations: readonly Executable[];
}

/** Options of {@link DiTModel.runConditioning}. */
export interface RunConditioningOptions {
  /**
   * Host bytes one pass may hold (c plus every block's six chunks, for all its rows): bounds the
   * memory of a large batch, which then takes several passes (at least one step each).
   * @defaultValue 64 MiB
   */
  passBytes?: number;
}

/**
 * Per-run store of precomputed conditioning, from {@link DiTModel.runConditioning}. Hand it to
 * every forward of one run (`ForwardOptions.conditioning`) and dispose it after. It holds nothing
 * shared: two runs side by side each have their own.
 */
export class RunConditioning {
  readonly #parts: ConditioningParts;
  readonly #passBytes: number;
  readonly #steps = new Map<number, StepConditioning>();
  #key = "";
  #disposed = false;

  /** @internal Made by the model. */
  constructor(parts: ConditioningParts, options: RunConditioningOptions = {}) {
    const passBytes = options.passBytes ?? 64 * 2 ** 20;
    if (typeof passBytes !== "number" || !(passBytes > 0)) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `options.passBytes: expected a number of bytes > 0, got ${JSON.stringify(passBytes)}`,
      );
    }
    this.#parts = parts;
    this.#passBytes = passBytes;
  }

  /**
   * The conditioning of this forward's step, or undefined where the step does not allow it (the
   * sampler gave no run timesteps, or the rows are not all at the step's timestep): the forward
   * then computes its own. The first call for a step computes a pass of steps from it on; a step
   * taken is released, as the sampler does not revisit it.
   */
  async take(
    step: StepInfo,
    timesteps: readonly number[],
    labels: readonly number[],
  ): Promise<StepConditioning | undefined> {
    const run = step.timesteps;
    if (this.#disposed || run === undefined || run[step.index] !== step.timestep) return undefined;
    if (timesteps.some((t) => t !== step.timestep)) return undefined;
    const key = `${run.join(",")}|${labels.join(",")}`;
    if (key !== this.#key) {
      this.#release();
      this.#key = key;
    }
    if (!this.#steps.has(step.index)) await this.#compute(run, step.index, labels);
    const taken = this.#steps.get(step.index);
    this.#steps.delete(step.index);
    return taken;
  }

  /** Releases what is held. Idempotent. */
  dispose(): void {
    this.#disposed = true;
    this.#release();
  }

  #release(): void {
    const backend = this.#parts.backend;
    for (const step of this.#steps.values()) releaseStep(backend, step);
    this.#steps.clear();
  }

  /** Computes steps `from`, `from + 1`, … of the run in one pass, as many as `passBytes` allow. */
  async #compute(run: readonly number[], from: number, labels: readonly number[]): Promise<void> {
    const { backend, hiddenSize: d, labelTable, condition, modulations } = this.#parts;
    const n = labels.length;
    const rowBytes = 4 * d * (1 + 6 * modulations.length);
    const count = Math.max(1, Math.min(run.length - from, Math.floor(this.#passBytes / (rowBytes * n))));
    const rows = count * n;
    const rowTimesteps: number[] = [];
    const labelRows = new Float32Array(rows * d);
    for (let s = 0; s < count; s++) {
      for (const [i, label] of labels.entries()) {
        rowTimesteps.push(run[from + s]!);
        labelRows.set(labelTable.subarray(label * d, (label + 1) * d), (s * n + i) * d);
      }
    }
    const inputs = [
      backend.tensor(timestepEmbedding(rowTimesteps), [rows, TIMESTEP_FREQUENCY_SIZE]),
      backend.tensor(labelRows, [rows, d]),
    ];
    let c: Tensor | undefined;
    try {
      [c] = await condition.run(inputs);
    } finally {
      disposeAll(backend, inputs);
    }
    const blocks: Float32Array[][] = [];
    let cHost: Float32Array;
    try {
      cHost = await backend.read(c!);
      for (const modulation of modulations) {
        const chunks = await modulation.run([c!]);
        try {
          blocks.push(await Promise.all(chunks.map((chunk) => backend.read(chunk))));
        } finally {
          disposeAll(backend, chunks);
        }
      }
    } finally {
      backend.dispose(c!);
    }
    const slice = (host: Float32Array, s: number): Float32Array => host.slice(s * n * d, (s + 1) * n * d);
    for (let s = 0; s < count; s++) {
      this.#steps.set(from + s, {
        c: backend.tensor(slice(cHost, s), [n, d]),
        blocks: blocks.map((chunks) =>
          modulationOf(chunks.map((host) => backend.tensor(slice(host, s), [n, 1, d]))),
        ),
      });
    }
  }
}

/** Disposes the tensors of one step's conditioning. */
export function releaseStep(backend: Backend, step: StepConditioning): void {
  backend.dispose(step.c);
  for (const block of step.blocks) disposeAll(backend, Object.values(block));
}
