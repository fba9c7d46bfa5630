export type { BackendSpec, CreateBackendOptions } from "./backends.js";
export { BACKEND_SPECS, createBackend } from "./backends.js";
export type { CalibrateModelOptions, SamplerSetting } from "./eoc.js";
export { calibrateModel, eocSetting, samplerDescriptor } from "./eoc.js";
export type { CacheSetting, GenerateOptions, GenerateResult } from "./generate.js";
export { generate, MAX_IMAGES } from "./generate.js";
export type { GridOptions } from "./images.js";
export { imageGrid, sideBySide } from "./images.js";
