import type { Backend } from "@ditcache/core";
import type { DiTConfig } from "../config.js";
import { DiTModel } from "../model.js";
import { DIFFUSERS_LAYOUT, readDiffusersDiT } from "./diffusers.js";

/** Options of {@link loadDiTFromDiffusers}. */
export interface DiffusersLoadOptions {
  /** Where the weights live and the units run. */
  backend: Backend;
  /** Overrides the config read from `config.json`. @defaultValue from config.json */
  config?: DiTConfig;
}

/**
 * Loads a DiT saved in the diffusers layout (`facebook/DiT-XL-2-256` / `-512`): a model folder
 * (holding `transformer/`), the `transformer/` folder, or its `diffusion_pytorch_model.safetensors`.
 * The config comes from `transformer/config.json`.
 *
 * @throws DitcacheError NOT_FOUND / BAD_FILE / UNSUPPORTED for the files, INCOMPATIBLE_FILE when
 *   the per-block embedder copies differ, and the weight errors of {@link DiTModel.fromWeights}.
 * @example
 * const model = await loadDiTFromDiffusers("~/.cache/ditcache/facebook/DiT-XL-2-256/main", { backend });
 */
export async function loadDiTFromDiffusers(path: string, options: DiffusersLoadOptions): Promise<DiTModel> {
  const { tensors, config, weights } = await readDiffusersDiT(path);
  return DiTModel.fromWeights(tensors, options.config ?? config, options.backend, {
    layout: DIFFUSERS_LAYOUT,
    source: weights,
  });
}
