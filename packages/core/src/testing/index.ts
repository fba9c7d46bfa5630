export type { InputKind, InputSpec, OpCase } from "./cases.js";
export { OP_CASES } from "./cases.js";
export { relativeError } from "./compare.js";
export type { OpConformanceOptions } from "./conformance.js";
export { describeOpConformance } from "./conformance.js";
export {
  corruptedBytesArbitrary,
  FUZZ_RUNS,
  fuzz,
  parsesOrFailsTyped,
  parsesOrFailsTypedAsync,
  safetensorsFileArbitrary,
  safetensorsHeaderArbitrary,
  withMetadataEntry,
} from "./fuzz.js";
export type { RefTensor } from "./reference.js";
export { reference, referenceErf } from "./reference.js";
