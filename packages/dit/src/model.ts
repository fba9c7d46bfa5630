/**
 * The DiT of Peebles & Xie (facebookresearch/DiT models.py), written once against `Ops` and run
 * as coarse compiled units (one per embedder, per block branch, per final layer) so that a graph
 * backend fuses each into one executable. Every block's attention and MLP branch, every block
 * and the whole block stack go through the {@link SiteHook}: that is the only seam a cache uses.
 */
import {
  type Backend,
  computeHook,
  DitcacheError,
  disposeAll,
  type Executable,
  formatShape,
  type Ops,
  type SiteCall,
  type SiteHook,
  type SiteId,
  type StepInfo,
  siteId,
  type Tensor,
  type Unit,
} from "@ditcache/core";
import { type DiTConfig, hasNullClass, outChannels, tokenCount, validateConfig } from "./config.js";
import { type DiTMacs, ditMacs, siteMacs } from "./cost.js";
import { TIMESTEP_FREQUENCY_SIZE } from "./layouts/official.js";
import { readDiTFile } from "./load.js";
import {
  checkWeights,
  checkWeightsFinite,
  type HostArray,
  WEIGHT_LAYOUTS,
  type WeightLayout,
  type WeightLayoutName,
} from "./weights.js";

/** LayerNorm epsilon of every norm in DiT (`nn.LayerNorm(..., elementwise_affine=False, eps=1e-6)`). */
const NORM_EPS = 1e-6;

// ================================================================================================
// Embedders (host side: cheap, and exact to the float32 arithmetic of the official code)
// ================================================================================================

/**
 * Sinusoidal timestep features, `TimestepEmbedder.timestep_embedding` of the official code:
 * `[cos(t * f_k), sin(t * f_k)]` with `f_k = exp(-ln(maxPeriod) * k / half)`. Each operation is
 * rounded to float32 in the order PyTorch does it, so the features match to the last bit or so.
 *
 * @returns (N, dim) row-major.
 */
export function timestepEmbedding(
  timesteps: readonly number[],
  dim: number = TIMESTEP_FREQUENCY_SIZE,
  maxPeriod = 10000,
): Float32Array {
  const f = Math.fround;
  const half = Math.floor(dim / 2);
  const logPeriod = f(-Math.log(maxPeriod));
  const frequencies = new Float32Array(half);
  for (let k = 0; k < half; k++) frequencies[k] = f(Math.exp(f(f(logPeriod * k) / half)));
  const out = new Float32Array(timesteps.length * dim); // (N, dim); an odd dim leaves a zero column
  timesteps.forEach((t, n) => {
    const time = f(t);
    for (let k = 0; k < half; k++) {
      const arg = f(time * frequencies[k]!);
      out[n * dim + k] = Math.cos(arg);
      out[n * dim + half + k] = Math.sin(arg);
    }
  });
  return out;
}

/**
 * The fixed 2-D sin-cos position embedding, `get_2d_sincos_pos_embed(embedDim, gridSize)` of the
 * official code (float64, then float32). Quirk kept from the original: the first half of the
 * channels encodes the column (w) index, the second half the row (h) index.
 *
 * @returns (gridSize^2, embedDim) row-major; token m = row * gridSize + column.
 */
export function sincosPositionEmbedding(embedDim: number, gridSize: number): Float32Array {
  if (embedDim % 4 !== 0) {
    throw new DitcacheError("INVALID_ARGUMENT", `embedDim: expected a multiple of 4, got ${embedDim}`);
  }
  const axisDim = embedDim / 2; // channels per axis: sin half then cos half
  const quarter = axisDim / 2;
  const omega = Float64Array.from({ length: quarter }, (_, k) => 1 / 10000 ** (k / quarter));
  const out = new Float32Array(gridSize * gridSize * embedDim);
  for (let row = 0; row < gridSize; row++) {
    for (let column = 0; column < gridSize; column++) {
      const base = (row * gridSize + column) * embedDim;
      for (let k = 0; k < quarter; k++) {
        out[base + k] = Math.sin(column * omega[k]!);
        out[base + quarter + k] = Math.cos(column * omega[k]!);
        out[base + axisDim + k] = Math.sin(row * omega[k]!);
        out[base + axisDim + quarter + k] = Math.cos(row * omega[k]!);
      }
    }
  }
  return out;
}

/** `x * (1 + scale) + shift` with per-row (N, 1, D) shift and scale. */
function modulate<T>(ops: Ops<T>, x: T, shift: T, scale: T): T {
  return ops.add(ops.mul(x, ops.add(ops.constant(1), scale)), shift);
}

/** Patch embedding as one GEMM over flattened patches (equal to the stride-p conv), plus position. */
function embedUnit(config: DiTConfig, params: Record<string, Tensor>): Unit {
  const p = config.patchSize;
  const grid = config.inputSize / p;
  return {
    name: "embed",
    params,
    build: (ops, [x], w) => {
      const n = ops.shape(x!)[0]!;
      let h = ops.reshape(x!, [n, config.inChannels, grid, p, grid, p]); // (N, C, h, p, w, p)
      h = ops.transpose(h, [0, 2, 4, 1, 3, 5]); // (N, h, w, C, p, p)
      h = ops.reshape(h, [n, grid * grid, config.inChannels * p * p]); // (N, T, C*p*p)
      h = ops.linear(h, w.weight!, w.bias!); // (N, T, D)
      return [ops.add(h, w.position!)];
    },
  };
}

/** c = t_embedder(t) + y_embedder(y): the timestep MLP on the host-made features plus the label rows. */
function conditionUnit(params: Record<string, Tensor>): Unit {
  return {
    name: "condition",
    params,
    build: (ops, [timeFeatures, labelEmbedding], w) => {
      let t = ops.linear(timeFeatures!, w.weight0!, w.bias0!); // (N, D)
      t = ops.linear(ops.silu(t), w.weight2!, w.bias2!);
      return [ops.add(t, labelEmbedding!)]; // (N, D)
    },
  };
}

// ================================================================================================
// Block
// ================================================================================================

/** The six adaLN chunks of one block, each (N, 1, D) to broadcast over tokens. */
interface Modulation {
  readonly shiftAttention: Tensor;
  readonly scaleAttention: Tensor;
  readonly gateAttention: Tensor;
  readonly shiftMlp: Tensor;
  readonly scaleMlp: Tensor;
  readonly gateMlp: Tensor;
}

/** adaLN_modulation = SiLU + Linear(D, 6D), chunked into 6 (shift, scale, gate for each branch). */
function modulationUnit(name: string, chunks: number, params: Record<string, Tensor>): Unit {
  return {
    name,
    params,
    build: (ops, [c], w) => {
      const m = ops.linear(ops.silu(c!), w.weight!, w.bias!); // (N, chunks*D)
      const [n, width] = ops.shape(m) as [number, number];
      const d = width / chunks;
      return Array.from({ length: chunks }, (_, j) =>
        ops.reshape(ops.slice(m, 1, j * d, (j + 1) * d), [n, 1, d]),
      );
    },
  };
}

/** Attention branch, PRE-gate: attn(modulate(norm1(x), shift, scale)). */
function attentionUnit(name: string, config: DiTConfig, params: Record<string, Tensor>): Unit {
  const heads = config.numHeads;
  const headDim = config.hiddenSize / heads;
  return {
    name,
    params,
    build: (ops, [x, shift, scale], w) => {
      const [n, t, d] = ops.shape(x!) as [number, number, number];
      const h = modulate(ops, ops.layerNorm(x!, NORM_EPS), shift!, scale!); // (N, T, D)
      let qkv = ops.linear(h, w.qkvWeight!, w.qkvBias!); // (N, T, 3D)
      qkv = ops.reshape(qkv, [n, t, 3, heads, headDim]);
      qkv = ops.transpose(qkv, [2, 0, 3, 1, 4]); // (3, N, H, T, Dh)
      const part = (i: number) => ops.reshape(ops.slice(qkv, 0, i, i + 1), [n, heads, t, headDim]);
      let o = ops.attention(part(0), part(1), part(2), headDim ** -0.5); // (N, H, T, Dh)
      o = ops.reshape(ops.transpose(o, [0, 2, 1, 3]), [n, t, d]); // (N, T, D)
      return [ops.linear(o, w.projWeight!, w.projBias!)];
    },
  };
}

/** MLP branch, PRE-gate: fc2(gelu_tanh(fc1(modulate(norm2(x), shift, scale)))). */
function mlpUnit(name: string, params: Record<string, Tensor>): Unit {
  return {
    name,
    params,
    build: (ops, [x, shift, scale], w) => {
      const h = modulate(ops, ops.layerNorm(x!, NORM_EPS), shift!, scale!); // (N, T, D)
      const hidden = ops.gelu(ops.linear(h, w.fc1Weight!, w.fc1Bias!), "tanh"); // (N, T, M)
      return [ops.linear(hidden, w.fc2Weight!, w.fc2Bias!)]; // (N, T, D)
    },
  };
}

/** x + gate * branch: where the CURRENT step's gate is applied to a computed or reused branch. */
const gatedResidualUnit: Unit = {
  name: "gated_residual",
  build: (ops, [x, branch, gate]) => [ops.add(x!, ops.mul(gate!, branch!))],
};

/** modulate(norm1(x), shift, scale): block 0's modulated input, the TeaCache indicator. */
const modulatedNormUnit: Unit = {
  name: "modulated_norm",
  build: (ops, [x, shift, scale]) => [modulate(ops, ops.layerNorm(x!, NORM_EPS), shift!, scale!)],
};

// ================================================================================================
// Final layer
// ================================================================================================

/** FinalLayer (adaLN shift/scale, norm, linear) followed by unpatchify to (N, outC, H, W). */
function finalUnit(config: DiTConfig, params: Record<string, Tensor>): Unit {
  const p = config.patchSize;
  const grid = config.inputSize / p;
  const channels = outChannels(config);
  return {
    name: "final",
    params,
    build: (ops, [x, c], w) => {
      const n = ops.shape(x!)[0]!;
      const m = ops.linear(ops.silu(c!), w.modulationWeight!, w.modulationBias!); // (N, 2D)
      const d = config.hiddenSize;
      const shift = ops.reshape(ops.slice(m, 1, 0, d), [n, 1, d]);
      const scale = ops.reshape(ops.slice(m, 1, d, 2 * d), [n, 1, d]);
      let h = modulate(ops, ops.layerNorm(x!, NORM_EPS), shift, scale); // (N, T, D)
      h = ops.linear(h, w.linearWeight!, w.linearBias!); // (N, T, p*p*outC)
      h = ops.reshape(h, [n, grid, grid, p, p, channels]); // (N, h, w, p, q, c)
      h = ops.transpose(h, [0, 5, 1, 3, 2, 4]); // (N, c, h, p, w, q)
      return [ops.reshape(h, [n, channels, grid * p, grid * p])]; // (N, outC, H, W)
    },
  };
}

// ================================================================================================
// Model
// ================================================================================================

/** Options of {@link DiTModel.forward}. */
export interface ForwardOptions {
  /**
   * Receives every site call. Ownership: the model owns the tensor `run` returns and disposes it
   * once used, so a hook that keeps a value across steps returns a copy of it; what `compute()`
   * and `indicator()` return belongs to the hook (to return or dispose). `call.input`,
   * `call.compute` and `call.indicator` are valid only until `run` settles.
   * @defaultValue computeHook
   */
  hook?: SiteHook;
  /** Where this forward stands in a sampling run. @defaultValue step 0 of 1, every row "cond" */
  step?: StepInfo;
}

/** Options of {@link DiTModel.load}. */
export interface LoadOptions {
  /** Where the weights live and the units run. */
  backend: Backend;
  /** The config; overrides the one in the file. @defaultValue from the file or its sibling .json */
  config?: DiTConfig;
  /** Key layout of the checkpoint. @defaultValue "official" */
  layout?: WeightLayoutName;
  /**
   * Refuse weights holding NaN or infinity (NUMERIC_FAULT naming the key); one pass over the
   * weights, cheap next to reading them. @defaultValue true
   */
  checkFinite?: boolean;
}

interface BlockExecutables {
  readonly modulation: Executable;
  readonly attention: Executable;
  readonly mlp: Executable;
}

/**
 * A DiT bound to one backend: weights live there as unit params, the forward runs compiled units.
 *
 * @example
 * const model = await DiTModel.load("models/dit.safetensors", { backend: createCpuBackend() });
 * const eps = await model.forward(x, [999, 999], [3, model.config.numClasses]);
 */
export class DiTModel {
  /** The validated config. */
  readonly config: DiTConfig;
  /** The backend holding the weights. */
  readonly backend: Backend;
  /** MACs per sample of each part of a forward. */
  readonly macs: DiTMacs;

  readonly #parameters: Tensor[];
  readonly #labelTable: Float32Array;
  readonly #embed: Executable;
  readonly #condition: Executable;
  readonly #blocks: BlockExecutables[];
  readonly #gatedResidual: Executable;
  readonly #modulatedNorm: Executable;
  readonly #final: Executable;
  #disposed = false;

  private constructor(weights: ReadonlyMap<string, HostArray>, config: DiTConfig, backend: Backend) {
    this.config = config;
    this.backend = backend;
    this.macs = ditMacs(config);
    this.#parameters = [];
    const d = config.hiddenSize;
    const param = (key: string, shape?: readonly number[]): Tensor => {
      const array = weights.get(key);
      if (array === undefined) throw new DitcacheError("MISSING_WEIGHT", `missing weight "${key}"`);
      // Copy: a backend may adopt the array, and callers keep theirs.
      const tensor = backend.tensor(array.data.slice(), shape ?? array.shape);
      this.#parameters.push(tensor);
      return tensor;
    };
    const position =
      weights.get("pos_embed")?.data.slice() ??
      sincosPositionEmbedding(d, config.inputSize / config.patchSize);
    const positionTensor = backend.tensor(position, [1, tokenCount(config), d]);
    this.#parameters.push(positionTensor);
    const patchInputs = config.inChannels * config.patchSize ** 2;
    this.#embed = backend.compile(
      embedUnit(config, {
        weight: param("x_embedder.proj.weight", [d, patchInputs]),
        bias: param("x_embedder.proj.bias"),
        position: positionTensor,
      }),
    );
    this.#condition = backend.compile(
      conditionUnit({
        weight0: param("t_embedder.mlp.0.weight"),
        bias0: param("t_embedder.mlp.0.bias"),
        weight2: param("t_embedder.mlp.2.weight"),
        bias2: param("t_embedder.mlp.2.bias"),
      }),
    );
    this.#labelTable = weights.get("y_embedder.embedding_table.weight")!.data;
    this.#blocks = Array.from({ length: config.depth }, (_, i) => {
      const b = `blocks.${i}`;
      return {
        modulation: backend.compile(
          modulationUnit(`block${i}.adaLN`, 6, {
            weight: param(`${b}.adaLN_modulation.1.weight`),
            bias: param(`${b}.adaLN_modulation.1.bias`),
          }),
        ),
        attention: backend.compile(
          attentionUnit(`block${i}.attn`, config, {
            qkvWeight: param(`${b}.attn.qkv.weight`),
            qkvBias: param(`${b}.attn.qkv.bias`),
            projWeight: param(`${b}.attn.proj.weight`),
            projBias: param(`${b}.attn.proj.bias`),
          }),
        ),
        mlp: backend.compile(
          mlpUnit(`block${i}.mlp`, {
            fc1Weight: param(`${b}.mlp.fc1.weight`),
            fc1Bias: param(`${b}.mlp.fc1.bias`),
            fc2Weight: param(`${b}.mlp.fc2.weight`),
            fc2Bias: param(`${b}.mlp.fc2.bias`),
          }),
        ),
      };
    });
    this.#gatedResidual = backend.compile(gatedResidualUnit);
    this.#modulatedNorm = backend.compile(modulatedNormUnit);
    this.#final = backend.compile(
      finalUnit(config, {
        modulationWeight: param("final_layer.adaLN_modulation.1.weight"),
        modulationBias: param("final_layer.adaLN_modulation.1.bias"),
        linearWeight: param("final_layer.linear.weight"),
        linearBias: param("final_layer.linear.bias"),
      }),
    );
  }

  /**
   * Builds a model from host tensors in a checkpoint layout (official DiT keys by default). Every
   * expected key must be present with its exact shape and no other key may appear; a missing
   * `pos_embed` is computed (the fixed sin-cos embedding).
   *
   * @throws DitcacheError INVALID_ARGUMENT for a bad config; MISSING_WEIGHT / UNEXPECTED_WEIGHT /
   *   SHAPE_MISMATCH naming the key; NUMERIC_FAULT for a NaN or infinite weight (unless
   *   `options.checkFinite` is false).
   */
  static fromWeights(
    tensors: ReadonlyMap<string, HostArray>,
    config: DiTConfig,
    backend: Backend,
    options: { layout?: WeightLayout; source?: string; checkFinite?: boolean } = {},
  ): DiTModel {
    const checked = validateConfig(config);
    const layout = options.layout ?? WEIGHT_LAYOUTS.official;
    checkWeights(tensors, checked, layout, options.source);
    if (options.checkFinite ?? true) checkWeightsFinite(tensors, options.source);
    return new DiTModel(layout.toOfficial(tensors, checked), checked, backend);
  }

  /**
   * Loads a safetensors checkpoint. The config comes from `options.config`, else the file's
   * `__metadata__.config` JSON, else a sibling `.json` file (same name), in that order.
   *
   * @throws DitcacheError NOT_FOUND (file or config), BAD_FILE (malformed file), and the errors of
   *   {@link DiTModel.fromWeights}.
   * @example
   * const model = await DiTModel.load("DiT-XL-2-256x256.safetensors", { backend });
   */
  static async load(path: string, options: LoadOptions): Promise<DiTModel> {
    if (typeof options?.backend?.compile !== "function") {
      throw new DitcacheError("INVALID_ARGUMENT", "options.backend: expected a Backend");
    }
    const layoutName = options.layout ?? "official";
    const layout: WeightLayout | undefined = WEIGHT_LAYOUTS[layoutName];
    if (layout === undefined) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `options.layout: expected one of ${Object.keys(WEIGHT_LAYOUTS).join(", ")}, got ${JSON.stringify(layoutName)}`,
      );
    }
    const { tensors, config } = await readDiTFile(path, options.config);
    return DiTModel.fromWeights(tensors, config, options.backend, {
      layout,
      source: path,
      ...(options.checkFinite === undefined ? {} : { checkFinite: options.checkFinite }),
    });
  }

  /** Every cacheable site of this model, in call order: per block its attn and mlp branches. */
  sites(): SiteId[] {
    const out: SiteId[] = [];
    for (let i = 0; i < this.config.depth; i++) out.push(siteId("attn", i), siteId("mlp", i));
    return out;
  }

  /** MACs of one call of a site for a batch of `batch` rows. */
  siteMacs(site: SiteId, batch = 1): number {
    return siteMacs(this.macs, site) * batch;
  }

  /**
   * Runs the DiT: x (N, C, H, W) at per-row ORIGINAL timesteps with per-row labels (label
   * `numClasses` is the null class) -> (N, outC, H, W): eps, then v when `learnSigma`.
   *
   * @throws DitcacheError INVALID_ARGUMENT / SHAPE_MISMATCH for bad inputs.
   */
  async forward(
    x: Tensor,
    timesteps: readonly number[],
    labels: readonly number[],
    options: ForwardOptions = {},
  ): Promise<Tensor> {
    const n = this.#checkInputs(x, timesteps, labels);
    const step: StepInfo = options.step ?? {
      index: 0,
      count: 1,
      timestep: timesteps[0]!,
      rows: labels.map(() => "cond"),
    };
    if (step.rows.length !== n) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `options.step.rows: expected ${n} entries (one per row), got ${step.rows.length}`,
      );
    }
    const hook = options.hook ?? computeHook;
    const backend = this.backend;
    const d = this.config.hiddenSize;
    const scratch: Tensor[] = []; // model-made tensors released at the end of the forward

    await hook.beginForward?.(step, backend);
    try {
      const timeFeatures = backend.tensor(timestepEmbedding(timesteps), [n, TIMESTEP_FREQUENCY_SIZE]);
      const labelRows = new Float32Array(n * d);
      for (const [row, label] of labels.entries()) {
        labelRows.set(this.#labelTable.subarray(label * d, (label + 1) * d), row * d); // (N, D)
      }
      const labelEmbedding = backend.tensor(labelRows, [n, d]);
      const [c] = await this.#condition.run([timeFeatures, labelEmbedding]); // (N, D)
      disposeAll(backend, [timeFeatures, labelEmbedding]);
      scratch.push(c!);
      const [embedded] = await this.#embed.run([x]); // (N, T, D)
      scratch.push(embedded!);

      // Modulations are computed on first use: a hook that reuses whole blocks skips them.
      const modulations: Promise<Modulation>[] = [];
      const modulation = (i: number): Promise<Modulation> => {
        modulations[i] ??= this.#blocks[i]!.modulation.run([c!]).then((chunks) => {
          scratch.push(...chunks);
          const chunk = (j: number): Tensor => chunks[j]!; // chunk(6, dim=1) order
          return {
            shiftAttention: chunk(0),
            scaleAttention: chunk(1),
            gateAttention: chunk(2),
            shiftMlp: chunk(3),
            scaleMlp: chunk(4),
            gateMlp: chunk(5),
          };
        });
        return modulations[i]!;
      };

      const runBlock = async (i: number, input: Tensor): Promise<Tensor> => {
        const block = this.#blocks[i]!;
        const mod = await modulation(i);
        const attention = await hook.run(
          this.#call(
            siteId("attn", i),
            step,
            input,
            n,
            async () => {
              const [out] = await block.attention.run([input, mod.shiftAttention, mod.scaleAttention]);
              return out!;
            },
            mod.gateAttention,
          ),
        );
        const [afterAttention] = await this.#gatedResidual.run([input, attention, mod.gateAttention]);
        if (attention !== input) backend.dispose(attention);
        const mlp = await hook.run(
          this.#call(
            siteId("mlp", i),
            step,
            afterAttention!,
            n,
            async () => {
              const [out] = await block.mlp.run([afterAttention!, mod.shiftMlp, mod.scaleMlp]);
              return out!;
            },
            mod.gateMlp,
          ),
        );
        const [output] = await this.#gatedResidual.run([afterAttention!, mlp, mod.gateMlp]);
        if (mlp !== afterAttention) backend.dispose(mlp);
        backend.dispose(afterAttention!);
        return output!;
      };

      const depth = this.config.depth;
      const hidden = await hook.run({
        ...this.#call(siteId("blocks", 0, depth - 1), step, embedded!, n, async () => {
          let h = embedded!;
          for (let i = 0; i < depth; i++) {
            const input = h;
            h = await hook.run(this.#call(siteId("block", i), step, input, n, () => runBlock(i, input)));
            if (input !== embedded && input !== h) backend.dispose(input);
          }
          return h;
        }),
        indicator: async () => {
          const mod = await modulation(0);
          const [out] = await this.#modulatedNorm.run([embedded!, mod.shiftAttention, mod.scaleAttention]);
          return out!;
        },
      });
      const [output] = await this.#final.run([hidden, c!]); // (N, outC, H, W)
      if (hidden !== embedded) backend.dispose(hidden);
      await hook.endForward?.(step);
      return output!;
    } finally {
      disposeAll(backend, scratch);
    }
  }

  /** Releases the weights and compiled units. The model is unusable afterwards. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const executables = [this.#embed, this.#condition, this.#gatedResidual, this.#modulatedNorm, this.#final];
    for (const block of this.#blocks) executables.push(block.modulation, block.attention, block.mlp);
    for (const executable of executables) executable.dispose();
    disposeAll(this.backend, this.#parameters);
  }

  #call(
    site: SiteId,
    step: StepInfo,
    input: Tensor,
    batch: number,
    compute: () => Promise<Tensor>,
    gate?: Tensor,
  ): SiteCall {
    return { site, step, input, compute, macs: this.siteMacs(site, batch), ...(gate ? { gate } : {}) };
  }

  #checkInputs(x: Tensor, timesteps: readonly number[], labels: readonly number[]): number {
    if (this.#disposed)
      throw new DitcacheError("INVALID_ARGUMENT", "DiTModel.forward: the model was disposed");
    const { inChannels, inputSize, numClasses } = this.config;
    const shape = x.shape;
    if (
      shape.length !== 4 ||
      shape[1] !== inChannels ||
      shape[2] !== inputSize ||
      shape[3] !== inputSize ||
      !(shape[0]! > 0)
    ) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `x: expected shape [N, ${inChannels}, ${inputSize}, ${inputSize}] with N >= 1, got ${formatShape(shape)}`,
      );
    }
    const n = shape[0]!;
    if (timesteps.length !== n || !timesteps.every((t) => Number.isFinite(t) && t >= 0)) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `timesteps: expected ${n} finite non-negative numbers (one per row), got [${timesteps.slice(0, 8).join(", ")}]`,
      );
    }
    const maxLabel = hasNullClass(this.config) ? numClasses : numClasses - 1;
    if (labels.length !== n || !labels.every((y) => Number.isInteger(y) && y >= 0 && y <= maxLabel)) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `labels: expected ${n} integers in [0, ${maxLabel}]${hasNullClass(this.config) ? ` (${numClasses} = null class)` : ""}, got [${labels.slice(0, 8).join(", ")}]`,
      );
    }
    return n;
  }
}

// ================================================================================================
// Presets (official DiT_models)
// ================================================================================================

/** Name of an official DiT preset. */
export type DiTPresetName =
  | "DiT-XL/2"
  | "DiT-XL/4"
  | "DiT-XL/8"
  | "DiT-L/2"
  | "DiT-L/4"
  | "DiT-L/8"
  | "DiT-B/2"
  | "DiT-B/4"
  | "DiT-B/8"
  | "DiT-S/2"
  | "DiT-S/4"
  | "DiT-S/8";

const SIZES = {
  XL: { depth: 28, hiddenSize: 1152, numHeads: 16 },
  L: { depth: 24, hiddenSize: 1024, numHeads: 16 },
  B: { depth: 12, hiddenSize: 768, numHeads: 12 },
  S: { depth: 12, hiddenSize: 384, numHeads: 6 },
} as const;

/** The official presets at 256px (inputSize 32 latents, 4 channels, 1000 classes, learned sigma). */
export const DIT_PRESETS: Readonly<Record<DiTPresetName, DiTConfig>> = Object.freeze(
  Object.fromEntries(
    (Object.keys(SIZES) as (keyof typeof SIZES)[]).flatMap((size) =>
      [2, 4, 8].map((patchSize) => [
        `DiT-${size}/${patchSize}`,
        Object.freeze({
          ...SIZES[size],
          patchSize,
          inputSize: 32,
          inChannels: 4,
          mlpRatio: 4,
          numClasses: 1000,
          learnSigma: true,
          classDropoutProb: 0.1,
        }),
      ]),
    ),
  ) as Record<DiTPresetName, DiTConfig>,
);

/**
 * A preset config with overrides, e.g. `ditPreset("DiT-XL/2", { inputSize: 64 })` for 512px.
 *
 * @throws DitcacheError INVALID_ARGUMENT for an unknown name or a bad override.
 */
export function ditPreset(name: DiTPresetName, overrides: Partial<DiTConfig> = {}): DiTConfig {
  const preset = DIT_PRESETS[name];
  if (preset === undefined) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `preset: expected one of ${Object.keys(DIT_PRESETS).join(", ")}, got ${JSON.stringify(name)}`,
    );
  }
  return validateConfig({ ...preset, ...overrides });
}
