import { readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DitcacheError, parseJsonObject, readSafetensorsFile } from "@ditcache/core";
import {
  type DiTConfig,
  hasNullClass,
  mlpHiddenSize,
  outChannels,
  tokenCount,
  validateConfig,
} from "../config.js";
import type { HostArray, WeightLayout } from "../weights.js";
import { TIMESTEP_FREQUENCY_SIZE } from "./official.js";

/** File names of a diffusers DiT transformer folder (`facebook/DiT-XL-2-256/transformer`). */
export const DIFFUSERS_DIT_FILES = {
  config: "config.json",
  weights: "diffusion_pytorch_model.safetensors",
} as const;

/**
 * Embedder tensors diffusers copies into every block (`transformer_blocks.{i}.norm1.emb.*`), with
 * the official name each copy stands for.
 */
const EMBEDDER_KEYS: readonly (readonly [string, string])[] = [
  ["timestep_embedder.linear_1.weight", "t_embedder.mlp.0.weight"],
  ["timestep_embedder.linear_1.bias", "t_embedder.mlp.0.bias"],
  ["timestep_embedder.linear_2.weight", "t_embedder.mlp.2.weight"],
  ["timestep_embedder.linear_2.bias", "t_embedder.mlp.2.bias"],
  ["class_embedder.embedding_table.weight", "y_embedder.embedding_table.weight"],
];

/** diffusers' name of a block tensor -> the official name (q/k/v are handled apart: they are fused). */
const BLOCK_KEYS: readonly (readonly [string, string])[] = [
  ["norm1.linear.weight", "adaLN_modulation.1.weight"],
  ["norm1.linear.bias", "adaLN_modulation.1.bias"],
  ["attn1.to_out.0.weight", "attn.proj.weight"],
  ["attn1.to_out.0.bias", "attn.proj.bias"],
  ["ff.net.0.proj.weight", "mlp.fc1.weight"],
  ["ff.net.0.proj.bias", "mlp.fc1.bias"],
  ["ff.net.2.weight", "mlp.fc2.weight"],
  ["ff.net.2.bias", "mlp.fc2.bias"],
];

/** Top-level renames: diffusers -> official. */
const TOP_KEYS: readonly (readonly [string, string])[] = [
  ["pos_embed.proj.weight", "x_embedder.proj.weight"],
  ["pos_embed.proj.bias", "x_embedder.proj.bias"],
  ["proj_out_1.weight", "final_layer.adaLN_modulation.1.weight"],
  ["proj_out_1.bias", "final_layer.adaLN_modulation.1.bias"],
  ["proj_out_2.weight", "final_layer.linear.weight"],
  ["proj_out_2.bias", "final_layer.linear.bias"],
];

/**
 * The diffusers layout of DiT (`Transformer2DModel` / `DiTTransformer2DModel` with
 * `norm_type: "ada_norm_zero"`, as in `facebook/DiT-XL-2-256/transformer`): separate q/k/v, the
 * patch embedding under `pos_embed.proj`, the final layer as `proj_out_1` / `proj_out_2`, and the
 * timestep and class embedders copied into every block's AdaLayerNormZero (`norm1.emb`).
 *
 * The official DiT has one shared embedder. The converted checkpoints hold identical copies, so
 * this layout uses block 0's copy (the one diffusers itself feeds to the final layer) and
 * requires every other copy to be bit-identical; a file whose copies diverged (a fine-tune that
 * trained them apart) cannot be represented by the shared-embedder model and is rejected.
 * `pos_embed.pos_embed` (the fixed sin-cos table) is optional: diffusers recomputes it.
 *
 * Semantics note: diffusers' own pipeline feeds the timestep embedder sin-cos features with
 * `downscale_freq_shift=1` (frequencies exp(-ln(1e4) i / 127)), the official DiT with 0
 * (exp(-ln(1e4) i / 128)). The weights are the official ones, so this model keeps the official
 * features: it reproduces facebookresearch/DiT, and differs slightly from `DiTPipeline`.
 */
export const DIFFUSERS_LAYOUT: WeightLayout = {
  name: "diffusers",
  optionalKeys: new Set(["pos_embed.pos_embed"]),
  expectedShapes(config: DiTConfig): Map<string, readonly number[]> {
    const d = config.hiddenSize;
    const p = config.patchSize;
    const m = mlpHiddenSize(config);
    const labels = config.numClasses + (hasNullClass(config) ? 1 : 0);
    const embedderShapes: Record<string, readonly number[]> = {
      "timestep_embedder.linear_1.weight": [d, TIMESTEP_FREQUENCY_SIZE],
      "timestep_embedder.linear_1.bias": [d],
      "timestep_embedder.linear_2.weight": [d, d],
      "timestep_embedder.linear_2.bias": [d],
      "class_embedder.embedding_table.weight": [labels, d],
    };
    const shapes = new Map<string, readonly number[]>([
      ["pos_embed.proj.weight", [d, config.inChannels, p, p]],
      ["pos_embed.proj.bias", [d]],
      ["pos_embed.pos_embed", [1, tokenCount(config), d]],
    ]);
    for (let i = 0; i < config.depth; i++) {
      const b = `transformer_blocks.${i}`;
      for (const [key, shape] of Object.entries(embedderShapes)) shapes.set(`${b}.norm1.emb.${key}`, shape);
      shapes.set(`${b}.norm1.linear.weight`, [6 * d, d]);
      shapes.set(`${b}.norm1.linear.bias`, [6 * d]);
      for (const name of ["to_q", "to_k", "to_v", "to_out.0"]) {
        shapes.set(`${b}.attn1.${name}.weight`, [d, d]);
        shapes.set(`${b}.attn1.${name}.bias`, [d]);
      }
      shapes.set(`${b}.ff.net.0.proj.weight`, [m, d]);
      shapes.set(`${b}.ff.net.0.proj.bias`, [m]);
      shapes.set(`${b}.ff.net.2.weight`, [d, m]);
      shapes.set(`${b}.ff.net.2.bias`, [d]);
    }
    shapes.set("proj_out_1.weight", [2 * d, d]);
    shapes.set("proj_out_1.bias", [2 * d]);
    shapes.set("proj_out_2.weight", [p * p * outChannels(config), d]);
    shapes.set("proj_out_2.bias", [p * p * outChannels(config)]);
    return shapes;
  },
  toOfficial(tensors: ReadonlyMap<string, HostArray>, config: DiTConfig): Map<string, HostArray> {
    const get = (key: string): HostArray => {
      const tensor = tensors.get(key);
      if (tensor === undefined) throw new DitcacheError("MISSING_WEIGHT", `missing weight "${key}"`);
      return tensor;
    };
    const out = new Map<string, HostArray>();
    for (const [from, to] of TOP_KEYS) out.set(to, get(from));
    const position = tensors.get("pos_embed.pos_embed");
    if (position !== undefined) out.set("pos_embed", position);
    for (const [suffix, official] of EMBEDDER_KEYS) {
      const first = get(`transformer_blocks.0.norm1.emb.${suffix}`);
      for (let i = 1; i < config.depth; i++) {
        const key = `transformer_blocks.${i}.norm1.emb.${suffix}`;
        const index = firstDifference(first.data, get(key).data);
        if (index >= 0) {
          throw new DitcacheError(
            "INCOMPATIBLE_FILE",
            `weight "${key}" differs from block 0's copy at index ${index} (${get(key).data[index]} vs ${first.data[index]}): ` +
              "this model shares one timestep/class embedder across blocks as the official DiT, so per-block copies must be identical",
          );
        }
      }
      out.set(official, first);
    }
    const d = config.hiddenSize;
    for (let i = 0; i < config.depth; i++) {
      const b = `transformer_blocks.${i}`;
      const o = `blocks.${i}`;
      for (const [from, to] of BLOCK_KEYS) out.set(`${o}.${to}`, get(`${b}.${from}`));
      const weight = new Float32Array(3 * d * d);
      const bias = new Float32Array(3 * d);
      ["to_q", "to_k", "to_v"].forEach((name, index) => {
        weight.set(get(`${b}.attn1.${name}.weight`).data, index * d * d);
        bias.set(get(`${b}.attn1.${name}.bias`).data, index * d);
      });
      out.set(`${o}.attn.qkv.weight`, { shape: [3 * d, d], data: weight });
      out.set(`${o}.attn.qkv.bias`, { shape: [3 * d], data: bias });
    }
    return out;
  },
};

function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 0;
  for (let i = 0; i < a.length; i++) {
    // Object.is: NaN equals NaN (a bit-identical copy), and -0 differs from 0.
    if (!Object.is(a[i], b[i])) return i;
  }
  return -1;
}

/**
 * Reads a diffusers DiT `config.json` (`Transformer2DModel` / `DiTTransformer2DModel`) into a
 * {@link DiTConfig}: `sample_size` -> inputSize, `patch_size`, `in_channels`, `num_layers` ->
 * depth, `num_attention_heads` -> numHeads, `num_attention_heads * attention_head_dim` ->
 * hiddenSize, `num_embeds_ada_norm` -> numClasses, `out_channels == 2 * in_channels` ->
 * learnSigma. The MLP ratio is diffusers' FeedForward default (4) and the label table always has
 * the null row (diffusers' LabelEmbedding uses dropout 0.1).
 *
 * @param source - JSON text or a parsed object.
 * @param name - What to call the source in errors (a path).
 * @throws DitcacheError BAD_FILE for invalid JSON or a missing field; UNSUPPORTED for a
 *   transformer that is not an adaLN-Zero class-conditional DiT (other norm_type, cross-attention).
 */
export function parseDiffusersDiTConfig(
  source: string | Record<string, unknown>,
  name = "config.json",
): DiTConfig {
  const raw = parseJsonObject(source, name, "a JSON object (a diffusers transformer config)");
  const record = raw;
  const required = (key: string): unknown => {
    const value = record[key];
    if (value === undefined || value === null) {
      throw new DitcacheError(
        "BAD_FILE",
        `${name}: missing required field "${key}" of a diffusers DiT config`,
      );
    }
    return value;
  };
  const normType = record.norm_type ?? "ada_norm_zero";
  if (normType !== "ada_norm_zero") {
    throw new DitcacheError(
      "UNSUPPORTED",
      `${name}: norm_type ${JSON.stringify(normType)} is not a DiT (expected "ada_norm_zero")`,
    );
  }
  if (record.cross_attention_dim !== undefined && record.cross_attention_dim !== null) {
    throw new DitcacheError(
      "UNSUPPORTED",
      `${name}: cross_attention_dim ${JSON.stringify(record.cross_attention_dim)} is not a class-conditional DiT (expected null)`,
    );
  }
  const activation = record.activation_fn ?? "gelu-approximate";
  if (activation !== "gelu-approximate") {
    throw new DitcacheError(
      "UNSUPPORTED",
      `${name}: activation_fn ${JSON.stringify(activation)}, expected "gelu-approximate" (DiT's tanh GELU)`,
    );
  }
  const heads = required("num_attention_heads") as number;
  const headDim = required("attention_head_dim") as number;
  const inChannels = (record.in_channels ?? 4) as number;
  const out = record.out_channels ?? inChannels;
  if (typeof heads !== "number" || typeof headDim !== "number") {
    throw new DitcacheError(
      "BAD_FILE",
      `${name}: num_attention_heads and attention_head_dim must be numbers, got ${JSON.stringify(heads)} and ${JSON.stringify(headDim)}`,
    );
  }
  if (out !== inChannels && out !== 2 * inChannels) {
    throw new DitcacheError(
      "UNSUPPORTED",
      `${name}: out_channels ${JSON.stringify(out)}, expected in_channels (${inChannels}) or twice it (learned sigma)`,
    );
  }
  return validateConfig({
    inputSize: required("sample_size") as number,
    patchSize: required("patch_size") as number,
    inChannels,
    hiddenSize: heads * headDim,
    depth: required("num_layers") as number,
    numHeads: heads,
    mlpRatio: 4,
    numClasses: required("num_embeds_ada_norm") as number,
    learnSigma: out === 2 * inChannels,
    classDropoutProb: 0.1,
  });
}

/**
 * Finds the weights and config of a diffusers DiT: a model folder (with `transformer/`), a
 * transformer folder, or the `.safetensors` file itself (its folder holds `config.json`).
 *
 * @throws DitcacheError NOT_FOUND naming the paths that were looked for.
 */
export async function locateDiffusersDiT(path: string): Promise<{ weights: string; config: string }> {
  const isDirectory = async (p: string): Promise<boolean> =>
    stat(p).then(
      (s) => s.isDirectory(),
      () => false,
    );
  const isFile = async (p: string): Promise<boolean> =>
    stat(p).then(
      (s) => s.isFile(),
      () => false,
    );
  let folder = path;
  if (await isFile(path)) folder = dirname(path);
  else if ((await isDirectory(path)) && (await isDirectory(join(path, "transformer"))))
    folder = join(path, "transformer");
  else if (!(await isDirectory(path))) {
    throw new DitcacheError("NOT_FOUND", `${path}: no such file or folder (expected a diffusers DiT folder)`);
  }
  const weights = (await isFile(path)) ? path : join(folder, DIFFUSERS_DIT_FILES.weights);
  const config = join(folder, DIFFUSERS_DIT_FILES.config);
  for (const needed of [weights, config]) {
    if (!(await isFile(needed))) {
      throw new DitcacheError(
        "NOT_FOUND",
        `${needed}: missing (a diffusers DiT folder holds ${DIFFUSERS_DIT_FILES.config} and ${DIFFUSERS_DIT_FILES.weights})`,
      );
    }
  }
  return { weights, config };
}

/**
 * Reads a diffusers DiT's tensors and config (see {@link locateDiffusersDiT} for `path`).
 *
 * @throws DitcacheError NOT_FOUND, BAD_FILE, UNSUPPORTED.
 */
export async function readDiffusersDiT(
  path: string,
): Promise<{ tensors: Map<string, HostArray>; config: DiTConfig; weights: string }> {
  const located = await locateDiffusersDiT(path);
  const config = parseDiffusersDiTConfig(await readFile(located.config, "utf8"), located.config);
  const contents = await readSafetensorsFile(located.weights);
  return { tensors: contents.tensors, config, weights: located.weights };
}
