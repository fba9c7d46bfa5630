// The cache + EOC path runs unchanged on tfjs: FORA 50% corrected by EOC on the tiny DiT fixture,
// against the same run on backend-cpu, with no tensor left behind.
import { fileURLToPath } from "node:url";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { createCacheEngine, parsePolicy } from "@ditcache/cache";
import { type Backend, gaussianNoise, type SiteHook } from "@ditcache/core";
import { ddimSample } from "@ditcache/diffusion";
import { DiTModel } from "@ditcache/dit";
import { calibrate, eoc } from "@ditcache/eoc";
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { createTfjsBackend } from "./index.js";

const weights = fileURLToPath(new URL("../../dit/src/__fixtures__/tiny-dit.safetensors", import.meta.url));
const STEPS = 6;

/** FORA 50% + EOC (priors calibrated on 2 seeds) on one backend; returns the samples. */
async function foraEoc(backend: Backend): Promise<Float32Array> {
  const model = await DiTModel.load(weights, { backend });
  const sample = async (hook: SiteHook | undefined, labels: number[], seed: number) => {
    const noise = new Float32Array(labels.length * 256);
    for (const i of labels.keys()) noise.set(gaussianNoise(seed + i, [4, 8, 8]), i * 256);
    const result = await ddimSample(
      (x, t, y, step) => model.forward(x, t, y, { step, ...(hook ? { hook } : {}) }),
      {
        backend,
        shape: [labels.length, 4, 8, 8],
        labels,
        respacing: `ddim${STEPS}`,
        cfgScale: 4,
        nullLabel: 10,
        noise,
      },
    );
    const out = await backend.read(result.sample);
    backend.dispose(result.sample);
    return out;
  };
  const basePolicy = parsePolicy("fora:interval=2");
  const priors = await calibrate({
    runSample: async (hook, index) => void (await sample(hook, [index % 10], index)),
    basePolicy,
    steps: STEPS,
    depth: model.config.depth,
    samples: 2,
    descriptor: {
      modelHash: "tiny",
      sampler: { respacing: `ddim${STEPS}`, sampler: "ddim", cfgScale: 4, guideChannels: 3 },
    },
  });
  const setting = eoc(basePolicy, priors, { tau: 0 });
  const engine = createCacheEngine({ ...setting, backend });
  try {
    return await sample(engine, [3, 7], 100);
  } finally {
    engine.dispose();
    setting.corrector.dispose?.();
    model.dispose();
  }
}

describe("cache + EOC on tfjs", () => {
  it.each(["cpu", "wasm"] as const)(
    "FORA interval 2 + EOC on tfjs-%s matches backend-cpu and leaks nothing",
    async (engine) => {
      const reference = await foraEoc(createCpuBackend());
      const backend = await createTfjsBackend({ engine });
      const before = tf.memory().numTensors;
      const samples = await foraEoc(backend);
      expect(tf.memory().numTensors).toBe(before);
      let error = 0;
      let scale = 0;
      for (let i = 0; i < reference.length; i++) {
        error = Math.max(error, Math.abs(samples[i]! - reference[i]!));
        scale = Math.max(scale, Math.abs(reference[i]!));
      }
      expect(error / scale).toBeLessThan(1e-3);
      await backend.close();
    },
  );
});
