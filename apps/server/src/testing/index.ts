import type { ModelSource } from "../protocol.js";

/** Debian's Chromium (`apt-get install chromium`): the browser tests and screenshots drive, never one Playwright downloads. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/** Chromium flags for a headless run in a container, with no traffic of its own. */
export const CHROMIUM_ARGS: readonly string[] = Object.freeze([
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]);

/**
 * A model source for tests: the demo model's shape (32x32x1, patch 4, 10 classes) with 2 blocks
 * of width 64 and seeded random weights, so a request takes milliseconds on the cpu backend.
 */
export const TINY_MODEL_SOURCE: ModelSource = Object.freeze({
  kind: "random",
  name: "tiny random DiT (tests)",
  seed: 0,
  config: Object.freeze({
    inputSize: 32,
    patchSize: 4,
    inChannels: 1,
    hiddenSize: 64,
    depth: 2,
    numHeads: 4,
    mlpRatio: 4,
    numClasses: 10,
    learnSigma: true,
    classDropoutProb: 0.1,
  }),
});

/** The sampling setting {@link calibrateTinyPriors} calibrates for. */
export const TINY_PRIORS_SETTING = Object.freeze({
  policy: "fora:interval=2",
  steps: 6,
  sampler: "ddim",
  cfgScale: 4,
} as const);

/**
 * Calibrates EOC priors for {@link TINY_MODEL_SOURCE} at {@link TINY_PRIORS_SETTING} (a few
 * samples on the cpu backend) and writes them to `path`, so tests can offer EOC.
 */
export async function calibrateTinyPriors(path: string, samples = 2): Promise<void> {
  const { createCpuBackend } = await import("@ditcache/backend-cpu");
  const { parsePolicy } = await import("@ditcache/cache");
  const { calibrate } = await import("@ditcache/eoc");
  const { generate } = await import("@ditcache/pipeline");
  const { loadModel } = await import("../model-source.js");
  const model = await loadModel(TINY_MODEL_SOURCE, createCpuBackend());
  const { steps, sampler, cfgScale } = TINY_PRIORS_SETTING;
  try {
    const priors = await calibrate({
      runSample: async (hook, index) => {
        await generate({
          model,
          labels: [index % 10],
          seeds: [1000 + index],
          steps,
          sampler,
          cfgScale,
          hook,
        });
      },
      basePolicy: parsePolicy(TINY_PRIORS_SETTING.policy),
      steps,
      depth: model.config.depth,
      descriptor: {
        modelHash: "tiny-random",
        sampler: { respacing: `ddim${steps}`, sampler, cfgScale, guideChannels: "all" },
      },
      samples,
    });
    await priors.save(path);
  } finally {
    model.dispose();
  }
}
