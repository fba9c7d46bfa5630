import { readFileSync, statSync } from "node:fs";
import { listCorrectors, type ParamSchema, registerCorrector } from "@ditcache/cache";
import { DitcacheError, invalidArgument } from "@ditcache/core";
import { type EocCorrector, type EocOptions, eocCorrector } from "./corrector.js";
import { priorsFromBytes } from "./priors.js";

/** Parameters of the "eoc" corrector spec, e.g. `eoc:priors=priors.safetensors,mode=trend`. */
export const eocCorrectorParams: ParamSchema = {
  priors: { type: "string", description: "path of a priors file made by calibrate (required)" },
  mode: { type: "string", choices: ["trend", "prior"], description: "trend: a·trend + b·D; prior: gamma·D" },
  trend: { type: "boolean", description: "use the sample's own trend term" },
  prior: { type: "boolean", description: "use the prior mean caching difference D" },
  judgment: { type: "boolean", description: "correct only cells with e > tau" },
  tau: { type: "number", min: 0, description: "judgment threshold on e = ||D||/||P||" },
  agreement: { type: "boolean", description: "also require cos(trend, D) > kappa" },
  kappa: { type: "number", min: -1, max: 1, description: "agreement threshold" },
  gamma: { type: "string", description: 'gamma of the prior term: "site", "global" or a number' },
  trendGain: {
    type: "string",
    choices: ["fitted", "fixed"],
    description:
      "fitted: per-cell trend coefficients x trendScale; fixed: trend coefficient = trendScale (file default)",
  },
  trendScale: {
    type: "number",
    min: 0,
    description: "multiplier of the fitted trend coefficients, or the fixed one (file default)",
  },
  curvatureGain: {
    type: "number",
    min: 0,
    description:
      "fixed gain, prior off, order >= 2: gain of the forecast's part beyond the first-order trend (file default)",
  },
};

const shared = new Map<string, { stamp: string; corrector: EocCorrector }>();

function readPriors(path: string) {
  let bytes: Uint8Array;
  let stamp: string;
  try {
    const stat = statSync(path);
    stamp = `${stat.size}:${stat.mtimeMs}`;
    bytes = new Uint8Array(readFileSync(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new DitcacheError(
      code === "ENOENT" ? "NOT_FOUND" : "BAD_FILE",
      `eoc: parameter priors: cannot read ${path} (${code ?? (error as Error).message})`,
      { cause: error },
    );
  }
  return { stamp, priors: () => priorsFromBytes(bytes, {}, path) };
}

/**
 * Builds the corrector of an "eoc" spec. One corrector (and one upload of its prior tensors per
 * backend) is shared by every identical spec while the file is unchanged, so building an engine
 * per run through `parseCorrector` does not upload the priors again.
 */
function eocFactory(params: Readonly<Record<string, unknown>>): EocCorrector {
  const path = params.priors;
  if (typeof path !== "string" || path === "")
    invalidArgument(
      "eoc: parameter priors",
      path,
      "the path of a priors file (ditcache calibrate makes one)",
    );
  const gammaText = params.gamma as string | undefined;
  let gamma: EocOptions["gamma"];
  if (gammaText !== undefined) {
    gamma = gammaText === "site" || gammaText === "global" ? gammaText : Number(gammaText);
    if (typeof gamma === "number" && (gammaText.trim() === "" || !Number.isFinite(gamma)))
      invalidArgument("eoc: parameter gamma", gammaText, '"site", "global" or a number');
  }
  const options: EocOptions = {
    source: path,
    ...(params.mode !== undefined ? { mode: params.mode as "trend" | "prior" } : {}),
    ...(params.trend !== undefined ? { trend: params.trend as boolean } : {}),
    ...(params.prior !== undefined ? { prior: params.prior as boolean } : {}),
    ...(params.judgment !== undefined ? { judgment: params.judgment as boolean } : {}),
    ...(params.tau !== undefined ? { tau: params.tau as number } : {}),
    ...(params.agreement !== undefined ? { agreement: params.agreement as boolean } : {}),
    ...(params.kappa !== undefined ? { kappa: params.kappa as number } : {}),
    ...(gamma !== undefined ? { gamma } : {}),
    ...(params.trendGain !== undefined ? { trendGain: params.trendGain as "fitted" | "fixed" } : {}),
    ...(params.trendScale !== undefined ? { trendScale: params.trendScale as number } : {}),
    ...(params.curvatureGain !== undefined ? { curvatureGain: params.curvatureGain as number } : {}),
  };
  const key = JSON.stringify(options);
  const file = readPriors(path);
  const known = shared.get(key);
  if (known !== undefined && known.stamp === file.stamp) return known.corrector;
  known?.corrector.dispose();
  const corrector = eocCorrector(file.priors(), options);
  shared.set(key, { stamp: file.stamp, corrector });
  return corrector;
}

/**
 * Registers the "eoc" corrector with the cache registry (idempotent; done on import of this
 * package), so `parseCorrector("eoc:priors=priors.safetensors,mode=trend,tau=0.05")` works.
 */
export function registerEocCorrector(): void {
  if (listCorrectors().some((entry) => entry.name === "eoc")) return;
  registerCorrector("eoc", eocFactory, eocCorrectorParams);
}

registerEocCorrector();
