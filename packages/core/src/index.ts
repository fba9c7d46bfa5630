export type { Backend, Executable, Unit } from "./backend.js";
export { contentDigest, fileDigest } from "./digest.js";
export { disposeAll } from "./dispose.js";
export type { DitcacheErrorCode } from "./errors.js";
export { DitcacheError, invalidArgument } from "./errors.js";
export { checkFiniteHook, firstNonFinite } from "./finite.js";
export { writeFileAtomic } from "./fs.js";
export {
  bfloat16BitsToFloat32,
  bfloat16ToFloat32Array,
  float16BitsToFloat32,
  float16ToFloat32Array,
  float32ToBfloat16Array,
  float32ToBfloat16Bits,
  float32ToFloat16Array,
  float32ToFloat16Bits,
} from "./half.js";
export { parseJsonObject } from "./json.js";
export type { Conv2dOptions, Ops, Pool2dOptions } from "./ops.js";
export { OP_NAMES } from "./ops.js";
export type { PngImage } from "./png.js";
export { crc32, encodePng } from "./png.js";
export type { Rng } from "./rng.js";
export { createRng, gaussianNoise } from "./rng.js";
export type {
  HostTensor,
  ReadSafetensorsOptions,
  SafetensorsContents,
  SafetensorsDType,
  WriteSafetensorsOptions,
} from "./safetensors.js";
export { readSafetensors, readSafetensorsFile, writeSafetensors } from "./safetensors.js";
export { assertShape, broadcastShapes, formatShape, normalizeAxis, sizeOf } from "./shape.js";
export type {
  BatchHalf,
  SiteCall,
  SiteHook,
  SiteId,
  SiteKind,
  StepInfo,
  WeightedSum,
  WeightedTerm,
} from "./site.js";
export { computeHook, isWeightedSum, siteId } from "./site.js";
export type { DType, Tensor } from "./tensor.js";
