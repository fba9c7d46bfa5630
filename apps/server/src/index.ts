export type { CacheChoices, ServerParams, SpecChoice, SpecKind } from "./cache-choices.js";
export type { JobEvent, JobStatus, QueueLimits } from "./jobs.js";
export type { JobRequest, JobResult, ModelInfo, ModelSource, RunPhase, RunReport } from "./protocol.js";
export { LIMITS, REQUEST_DEFAULTS } from "./schemas.js";
export type { RunningServer, ServerOptions } from "./server.js";
export { startServer } from "./server.js";
