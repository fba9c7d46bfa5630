import { type DiTConfig, hasNullClass, mlpHiddenSize, outChannels, tokenCount } from "../config.js";
import type { HostArray, WeightLayout } from "../weights.js";

/** Width of the sinusoidal timestep features fed to `t_embedder.mlp.0` (official: 256). */
export const TIMESTEP_FREQUENCY_SIZE = 256;

/** The facebookresearch/DiT state-dict layout (`DiT-XL-2-256x256.pt` converted to safetensors). */
export const OFFICIAL_LAYOUT: WeightLayout = {
  name: "official",
  optionalKeys: new Set(["pos_embed"]),
  expectedShapes(config: DiTConfig): Map<string, readonly number[]> {
    const d = config.hiddenSize;
    const p = config.patchSize;
    const m = mlpHiddenSize(config);
    const shapes = new Map<string, readonly number[]>([
      ["x_embedder.proj.weight", [d, config.inChannels, p, p]],
      ["x_embedder.proj.bias", [d]],
      ["t_embedder.mlp.0.weight", [d, TIMESTEP_FREQUENCY_SIZE]],
      ["t_embedder.mlp.0.bias", [d]],
      ["t_embedder.mlp.2.weight", [d, d]],
      ["t_embedder.mlp.2.bias", [d]],
      ["y_embedder.embedding_table.weight", [config.numClasses + (hasNullClass(config) ? 1 : 0), d]],
      ["pos_embed", [1, tokenCount(config), d]],
    ]);
    for (let i = 0; i < config.depth; i++) {
      const b = `blocks.${i}`;
      shapes.set(`${b}.attn.qkv.weight`, [3 * d, d]);
      shapes.set(`${b}.attn.qkv.bias`, [3 * d]);
      shapes.set(`${b}.attn.proj.weight`, [d, d]);
      shapes.set(`${b}.attn.proj.bias`, [d]);
      shapes.set(`${b}.mlp.fc1.weight`, [m, d]);
      shapes.set(`${b}.mlp.fc1.bias`, [m]);
      shapes.set(`${b}.mlp.fc2.weight`, [d, m]);
      shapes.set(`${b}.mlp.fc2.bias`, [d]);
      shapes.set(`${b}.adaLN_modulation.1.weight`, [6 * d, d]);
      shapes.set(`${b}.adaLN_modulation.1.bias`, [6 * d]);
    }
    shapes.set("final_layer.linear.weight", [p * p * outChannels(config), d]);
    shapes.set("final_layer.linear.bias", [p * p * outChannels(config)]);
    shapes.set("final_layer.adaLN_modulation.1.weight", [2 * d, d]);
    shapes.set("final_layer.adaLN_modulation.1.bias", [2 * d]);
    return shapes;
  },
  toOfficial(tensors: ReadonlyMap<string, HostArray>): Map<string, HostArray> {
    return new Map(tensors);
  },
};
