export type { PolicySuiteOptions } from "./policy-suite.js";
export { describePolicySuite, describeRegisteredPolicySuites } from "./policy-suite.js";
export type {
  SpyRecord,
  SyntheticModel,
  SyntheticModelOptions,
  SyntheticRun,
  SyntheticSampleOptions,
} from "./synthetic-model.js";
export { createSyntheticModel } from "./synthetic-model.js";
export type { TrackingBackend } from "./tracking-backend.js";
export { trackTensors } from "./tracking-backend.js";
