export type { RunConditioning, RunConditioningOptions } from "./conditioning.js";
export type { DiTConfig } from "./config.js";
export {
  hasNullClass,
  mlpHiddenSize,
  outChannels,
  parseConfigJson,
  tokenCount,
  validateConfig,
} from "./config.js";
export type { DiTMacs } from "./cost.js";
export { ditMacs } from "./cost.js";
export { sincosPositionEmbedding, timestepEmbedding } from "./embeddings.js";
export {
  DIFFUSERS_DIT_FILES,
  DIFFUSERS_LAYOUT,
  locateDiffusersDiT,
  parseDiffusersDiTConfig,
  readDiffusersDiT,
} from "./layouts/diffusers.js";
export type { DiffusersLoadOptions } from "./layouts/diffusers-load.js";
export { loadDiTFromDiffusers } from "./layouts/diffusers-load.js";
export { TIMESTEP_FREQUENCY_SIZE } from "./layouts/official.js";
export type { DiTPresetName, ForwardOptions, LoadOptions } from "./model.js";
export { DIT_PRESETS, DiTModel, ditPreset } from "./model.js";
export type { HostArray, WeightLayout, WeightLayoutName } from "./weights.js";
export { checkWeights, checkWeightsFinite, parameterCount, WEIGHT_LAYOUTS } from "./weights.js";
