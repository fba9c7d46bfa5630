export type { DdimOptions, ModelFn, SampleOptions, SampleResult, SamplerStep } from "./sample.js";
export { ddimSample, ddimSteps, ddpmSample, ddpmSteps } from "./sample.js";
export type { DiffusionSchedule, ScheduleOptions } from "./schedule.js";
export { createSchedule, linearBetaSchedule, spaceTimesteps } from "./schedule.js";
export type { ModelPrediction, StepInput, StepOutput } from "./step.js";
export { ddimStep, ddpmStep } from "./step.js";
