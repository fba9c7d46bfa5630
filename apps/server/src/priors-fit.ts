import { type Corrector, parseCorrector, parsePolicy } from "@ditcache/cache";
import { DitcacheError } from "@ditcache/core";
import { checkPriorsCompatible, type EocCorrector } from "@ditcache/eoc";
import type { JobRequest, ModelInfo } from "./protocol.js";

/** The sampling setting a corrector's priors were calibrated for (what the page must send). */
export interface CorrectorRequirements {
  /** Base policy spec. */
  readonly policy: string;
  /** Denoising steps. */
  readonly steps: number;
  /** Sampler. */
  readonly sampler: string;
  /** Classifier-free guidance scale. */
  readonly cfgScale: number;
}

function priorsOf(corrector: Corrector): EocCorrector["priors"] | undefined {
  return (corrector as Partial<EocCorrector>).priors;
}

/** What a corrector with priors (EOC) needs; undefined for correctors without priors. */
export function correctorRequirements(correctorSpec: string): CorrectorRequirements | undefined {
  const priors = priorsOf(parseCorrector(correctorSpec));
  if (priors === undefined) return undefined;
  const { header } = priors;
  return {
    policy: header.basePolicy,
    steps: header.steps,
    sampler: header.sampler.sampler,
    cfgScale: header.sampler.cfgScale,
  };
}

/**
 * Checks that a corrector's priors (EOC) were made for this request: model depth, steps,
 * sampler, guidance and base policy, so a mismatch is a 400 now rather than a failed job.
 *
 * @throws DitcacheError INCOMPATIBLE_FILE naming what differs.
 */
export function checkCorrectorFits(
  correctorSpec: string,
  policySpec: string,
  request: JobRequest,
  model: ModelInfo,
): void {
  const priors = priorsOf(parseCorrector(correctorSpec));
  if (priors === undefined) return;
  try {
    checkPriorsCompatible(
      priors.header,
      {
        depth: model.depth,
        steps: request.steps,
        sampler: {
          sampler: request.sampler,
          respacing: request.sampler === "ddpm" ? String(request.steps) : `ddim${request.steps}`,
          cfgScale: request.cfgScale,
          guideChannels: "all",
        },
        basePolicy: parsePolicy(policySpec),
      },
      "the corrector's priors",
    );
  } catch (error) {
    if (!DitcacheError.isInstance(error)) throw error;
    throw new DitcacheError(
      "INCOMPATIBLE_FILE",
      `${error.message}; they were calibrated for ${describe(correctorRequirements(correctorSpec)!)}`,
    );
  }
}

function describe(requirements: CorrectorRequirements): string {
  return `${requirements.policy}, ${requirements.sampler} ${requirements.steps} steps, cfg ${requirements.cfgScale}`;
}
