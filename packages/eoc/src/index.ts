export type { CalibrateOptions, CalibrationProgress, ClosedLoopCandidate } from "./calibrate.js";
export { CLOSED_LOOP_CANDIDATES, CLOSED_LOOP_SCREEN, calibrate } from "./calibrate.js";
export type { EocCorrector, EocOptions } from "./corrector.js";
export { eoc, eocCorrector } from "./corrector.js";
export type { FitSpace, FitTrajectory } from "./fit.js";
export type {
  CalibrationReport,
  CalibrationSetDescriptor,
  CellEntry,
  ClosedLoopReport,
  Granularity,
  PriorsDefaults,
  PriorsDescriptor,
  PriorsHeader,
  SamplerDescriptor,
  TermsKey,
  TermsReport,
  TrendGain,
} from "./header.js";
export { MAX_TREND_ORDER, METADATA_KEY, PRIORS_FORMAT, PRIORS_VERSION } from "./header.js";
export type { ExpectedPriors, PriorCell, PriorsData } from "./priors.js";
export { checkPriorsCompatible, loadPriors, Priors, priorsFromBytes } from "./priors.js";
export { eocCorrectorParams, registerEocCorrector } from "./register.js";
