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
  invalidArgument,
  isWeightedSum,
  type Ops,
  type SiteCall,
  type SiteHook,
  type SiteId,
  type StepInfo,
  siteId,
  type Tensor,
  type Unit,
  type WeightedSum,
} from "@ditcache/core";
import {
  type Modulation,
  modulationOf,
  RunConditioning,
  type RunConditioningOptions,
  releaseStep,
} from "./conditioning.js";
import { type DiTConfig, hasNullClass, outChannels, tokenCount, validateConfig } from "./config.js";
import { type DiTMacs, ditMacs, siteMacs } from "./cost.js";
import { sincosPositionEmbedding, timestepEmbedding } from "./embeddings.js";
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

/**
 * x + gate * Σ w_i T_i over `count` terms, inputs (x, gate, T_1..T_count, w_1..w_count), the
 * weights scalars: a hook's {@link WeightedSum} (a corrected reuse) applied in one unit. Evaluated
 * as x + Σ T_i * (gate * w_i): gate * w_i is one row per sample (the gate broadcasts over tokens),
 * so a full-size term costs one multiply and one add, and a term that itself broadcasts (EOC's
 * per-channel D) only its add; Σ first and then the gate would take two more full-size passes.
 */
function gatedSumUnit(count: number): Unit {
  return {
    name: `gated_residual_sum${count}`,
    build: (ops, [x, gate, ...rest]) => {
      let out = ops.add(x!, ops.mul(rest[0]!, ops.mul(gate!, rest[count]!)));
      for (let i = 1; i < count; i++) out = ops.add(out, ops.mul(rest[i]!, ops.mul(gate!, rest[count + i]!)));
      return [out];
    },
  };
}

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
  /**
   * The run's precomputed conditioning ({@link DiTModel.runConditioning}): used when `step`
   * carries the run's timesteps and every row is at the step's timestep; otherwise this forward
   * computes its own, with the same result.
   */
  conditioning?: RunConditioning;
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
  /** {@link gatedSumUnit} by term count, compiled on first use. */
  readonly #gatedSums = new Map<number, Executable>();
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
    const prepared = await options.conditioning?.take(step, timesteps, labels);
    try {
      let c: Tensor;
      if (prepared) c = prepared.c;
      else {
        const timeFeatures = backend.tensor(timestepEmbedding(timesteps), [n, TIMESTEP_FREQUENCY_SIZE]);
        const labelRows = new Float32Array(n * d);
        for (const [row, label] of labels.entries()) {
          labelRows.set(this.#labelTable.subarray(label * d, (label + 1) * d), row * d); // (N, D)
        }
        const labelEmbedding = backend.tensor(labelRows, [n, d]);
        [c] = (await this.#condition.run([timeFeatures, labelEmbedding])) as [Tensor]; // (N, D)
        disposeAll(backend, [timeFeatures, labelEmbedding]);
        scratch.push(c);
      }
      const [embedded] = await this.#embed.run([x]); // (N, T, D)
      scratch.push(embedded!);

      // Without a run's conditioning, modulations are computed on first use: a hook that reuses
      // whole blocks skips them.
      const modulations: Promise<Modulation>[] = [];
      const modulation = (i: number): Promise<Modulation> => {
        if (prepared) return Promise.resolve(prepared.blocks[i]!);
        modulations[i] ??= this.#blocks[i]!.modulation.run([c]).then((chunks) => {
          scratch.push(...chunks);
          return modulationOf(chunks);
        });
        return modulations[i]!;
      };

      // Branch sites may come back as weighted sums (a corrected reuse), applied by #gated.
      const runBranch = (call: SiteCall): Promise<Tensor | WeightedSum> =>
        hook.runBranch ? hook.runBranch(call) : hook.run(call);
      const runBlock = async (i: number, input: Tensor): Promise<Tensor> => {
        const block = this.#blocks[i]!;
        const mod = await modulation(i);
        const attention = await runBranch(
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
        const afterAttention = await this.#gated(input, attention, mod.gateAttention);
        const mlp = await runBranch(
          this.#call(
            siteId("mlp", i),
            step,
            afterAttention,
            n,
            async () => {
              const [out] = await block.mlp.run([afterAttention, mod.shiftMlp, mod.scaleMlp]);
              return out!;
            },
            mod.gateMlp,
          ),
        );
        const output = await this.#gated(afterAttention, mlp, mod.gateMlp);
        backend.dispose(afterAttention);
        return output;
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
      const [output] = await this.#final.run([hidden, c]); // (N, outC, H, W)
      if (hidden !== embedded) backend.dispose(hidden);
      await hook.endForward?.(step);
      return output!;
    } finally {
      disposeAll(backend, scratch);
      if (prepared) releaseStep(backend, prepared);
    }
  }

  /**
   * A fresh store for one sampling run's conditioning: pass it as `conditioning` to each forward
   * of the run (the sampler's `step.timesteps` says which steps to prepare), then dispose it. At
   * the first forward it computes c and every block's adaLN modulation for many steps in one
   * batched pass, so the modulation weights are read once per pass instead of once per step.
   *
   * @example
   * const conditioning = model.runConditioning();
   * try { await ddimSample((x, t, y, step) => model.forward(x, t, y, { step, conditioning }), options); }
   * finally { conditioning.dispose(); }
   */
  runConditioning(options: RunConditioningOptions = {}): RunConditioning {
    return new RunConditioning(
      {
        backend: this.backend,
        hiddenSize: this.config.hiddenSize,
        labelTable: this.#labelTable,
        condition: this.#condition,
        modulations: this.#blocks.map((block) => block.modulation),
      },
      options,
    );
  }

  /** Releases the weights and compiled units. The model is unusable afterwards. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const executables = [this.#embed, this.#condition, this.#gatedResidual, this.#modulatedNorm, this.#final];
    executables.push(...this.#gatedSums.values());
    for (const block of this.#blocks) executables.push(block.modulation, block.attention, block.mlp);
    for (const executable of executables) executable.dispose();
    disposeAll(this.backend, this.#parameters);
  }

  /**
   * x + gate * value: a branch site's tensor (disposed here, unless the hook handed back x) or a
   * hook's weighted sum, whose tensors stay the hook's, in one unit either way.
   */
  async #gated(x: Tensor, value: Tensor | WeightedSum, gate: Tensor): Promise<Tensor> {
    const backend = this.backend;
    if (!isWeightedSum(value)) {
      const [out] = await this.#gatedResidual.run([x, value, gate]);
      if (value !== x) backend.dispose(value);
      return out!;
    }
    const { terms } = value;
    if (terms.length === 0) invalidArgument("runBranch result", value, "a weighted sum of at least one term");
    if (terms.length === 1 && terms[0]!.weight === 1) {
      const [out] = await this.#gatedResidual.run([x, terms[0]!.tensor, gate]); // plain reuse
      return out!;
    }
    let unit = this.#gatedSums.get(terms.length);
    if (unit === undefined) {
      unit = backend.compile(gatedSumUnit(terms.length));
      this.#gatedSums.set(terms.length, unit);
    }
    const weights = terms.map((term) => backend.tensor(Float32Array.of(term.weight), []));
    try {
      const [out] = await unit.run([x, gate, ...terms.map((term) => term.tensor), ...weights]);
      return out!;
    } finally {
      disposeAll(backend, weights);
    }
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
