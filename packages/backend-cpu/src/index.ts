export type { CpuBackend, CpuBackendOptions } from "./backend.js";
export { createCpuBackend } from "./backend.js";
export { erf } from "./erf.js";
export { cpuOps } from "./ops.js";
export { CpuTensor } from "./tensor.js";
