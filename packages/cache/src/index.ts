export type { CacheMath, ComputedValue, CorrectionContext, Corrector } from "./corrector.js";
export type { GocCorrectorOptions } from "./correctors/goc.js";
export { gocCorrector } from "./correctors/goc.js";
export { reuseCorrector } from "./correctors/reuse.js";
export type { TaylorCorrectorOptions } from "./correctors/taylor.js";
export { interpolationWeights, taylorCorrector } from "./correctors/taylor.js";
export type { CacheEngineOptions } from "./engine.js";
export { CacheEngine, createCacheEngine } from "./engine.js";
export type { ParamSchema, ParamSpec, ParamValues } from "./params.js";
export { describeSchema, validateParams } from "./params.js";
export type { DeltaDitPolicyOptions } from "./policies/delta-dit.js";
export { deltaDitPolicy } from "./policies/delta-dit.js";
export type { FbcachePolicyOptions } from "./policies/fbcache.js";
export { fbcachePolicy } from "./policies/fbcache.js";
export type { ForaPolicyOptions } from "./policies/fora.js";
export { foraPolicy } from "./policies/fora.js";
export type { GuardOptions } from "./policies/guards.js";
export type {
  ConvertL2CRouterOptions,
  LearnedPolicyOptions,
  LearnScheduleOptions,
  ReuseErrorRecorder,
  ReuseErrorRecorderOptions,
  SiteErrorTable,
} from "./policies/learned.js";
export {
  convertL2CRouter,
  createReuseErrorRecorder,
  learnedPolicy,
  learnSchedule,
} from "./policies/learned.js";
export { nonePolicy } from "./policies/none.js";
export type { SchedulePolicyOptions, ScheduleTable } from "./policies/schedule.js";
export {
  parseSchedule,
  parseSiteKey,
  scheduleCachingLevel,
  schedulePolicy,
  scheduleToJson,
  validateSchedule,
} from "./policies/schedule.js";
export type { TeacachePolicyOptions } from "./policies/teacache.js";
export { evaluatePolynomial, fitTeaCachePolynomial, teacachePolicy } from "./policies/teacache.js";
export type {
  BlockRange,
  CachePolicy,
  Decision,
  DecisionQuery,
  GuardRails,
  SignalRequest,
} from "./policy.js";
export { DEFAULT_GUARDS, guardForcesCompute } from "./policy.js";
export type {
  CorrectorFactory,
  CorrectorRegistration,
  PolicyFactory,
  PolicyRegistration,
  PolicyRegistrationOptions,
} from "./registry.js";
export {
  createCorrector,
  createPolicy,
  listCorrectors,
  listPolicies,
  parseCorrector,
  parsePolicy,
  registerCorrector,
  registerPolicy,
} from "./registry.js";
export type { CacheSummary, ForcedComputes, SignalStatistics } from "./summary.js";
export { signalStatistics } from "./summary.js";
