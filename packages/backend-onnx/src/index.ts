export { createOnnxBackend, OnnxBackend } from "./backend.js";
export type { OnnxLowering } from "./lowering.js";
export { DEFAULT_LOWERING } from "./lowering.js";
export type { OnnxBackendOptions, OnnxExecutionProvider } from "./options.js";
export { OnnxTensor } from "./tensor.js";
