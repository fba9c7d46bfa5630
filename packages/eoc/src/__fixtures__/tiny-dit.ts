import { fileURLToPath } from "node:url";
import { parsePolicy } from "@ditcache/cache";
import type { Backend, SiteHook } from "@ditcache/core";
import { ddimSample } from "@ditcache/diffusion";
import { DiTModel } from "@ditcache/dit";
import type { CalibrateOptions } from "../calibrate.js";

/** A sampling run of the tiny DiT with `hook` (none: uncached); the final sample's values. */
export type TinyDitSampler = (hook: SiteHook | undefined, seed: number) => Promise<Float32Array>;

/** Steps of {@link loadTinyDit}'s runs (DDIM, CFG 4, one CFG pair of labels seed % 10, (seed + 3) % 10). */
export const TINY_DIT_STEPS = 6;

/** The tiny DiT, its sampler, and calibrate's options for FORA 50% over that sampler. */
export interface TinyDit {
  readonly model: DiTModel;
  readonly sample: TinyDitSampler;
  /** `calibrate` options: FORA 50% (`fora:interval=2`) on `samples` runs of `sample`. */
  calibration(samples: number): CalibrateOptions;
}

/** The dit package's tiny DiT fixture on `backend`, with a sampler over it. */
export async function loadTinyDit(backend: Backend): Promise<TinyDit> {
  const fixture = fileURLToPath(new URL("../../../dit/src/__fixtures__/tiny-dit.safetensors", import.meta.url));
  const model = await DiTModel.load(fixture, { backend });
  const sample: TinyDitSampler = async (hook, seed) => {
    const result = await ddimSample(
      (x, t, y, step) => model.forward(x, t, y, { ...(hook ? { hook } : {}), step }),
      {
        backend,
        shape: [2, 4, 8, 8],
        labels: [seed % 10, (seed + 3) % 10],
        steps: TINY_DIT_STEPS,
        cfgScale: 4,
        nullLabel: 10,
        seed,
      },
    );
    const data = await backend.read(result.sample);
    backend.dispose(result.sample);
    return data;
  };
  const calibration = (samples: number): CalibrateOptions => ({
    runSample: async (hook, i) => void (await sample(hook, i)),
    basePolicy: parsePolicy("fora:interval=2"),
    steps: TINY_DIT_STEPS,
    depth: model.config.depth,
    descriptor: {
      modelHash: "tiny-dit",
      sampler: { respacing: "ddim6", sampler: "ddim", cfgScale: 4, guideChannels: 3 },
    },
    samples,
  });
  return { model, sample, calibration };
}
