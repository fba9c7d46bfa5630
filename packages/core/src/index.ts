export type { DType, Tensor } from "./tensor.js";
export type { Ops, Conv2dOptions, Pool2dOptions } from "./ops.js";
export { OP_NAMES } from "./ops.js";
export type { Backend, Unit, Executable } from "./backend.js";
export type { SiteKind, SiteId, BatchHalf, StepInfo, SiteCall, SiteHook } from "./site.js";
export { siteId, computeHook } from "./site.js";
export { DitcacheError, invalidArgument } from "./errors.js";
export type { DitcacheErrorCode } from "./errors.js";
