import { createCpuBackend } from "@ditcache/backend-cpu";
import type { Backend } from "@ditcache/core";
import { createRng } from "@ditcache/core";
import { type DiTConfig, DiTModel, type HostArray, WEIGHT_LAYOUTS } from "@ditcache/dit";
import { describe, expect, it } from "vitest";
import { createOnnxBackend } from "./index.js";

// A whole (tiny) DiT forward on the ONNX backend against the reference CPU backend: every unit
// the model compiles, with its params, runs through traced ONNX graphs.
const config: DiTConfig = {
  inputSize: 8,
  patchSize: 2,
  inChannels: 4,
  hiddenSize: 64,
  depth: 2,
  numHeads: 4,
  mlpRatio: 4,
  numClasses: 10,
  learnSigma: true,
  classDropoutProb: 0.1,
};

async function forward(backend: Backend, weights: ReadonlyMap<string, HostArray>, latent: Float32Array) {
  const model = DiTModel.fromWeights(weights, config, backend);
  const x = backend.tensor(latent.slice(), [2, 4, 8, 8]);
  const out = await model.forward(x, [500, 500], [3, config.numClasses]);
  const data = await backend.read(out);
  model.dispose();
  return { shape: [...out.shape], data };
}

describe("DiT forward parity", () => {
  it("matches backend-cpu on a tiny DiT", async () => {
    const rng = createRng(3);
    const weights = new Map<string, HostArray>();
    for (const [key, shape] of WEIGHT_LAYOUTS.official.expectedShapes(config)) {
      if (WEIGHT_LAYOUTS.official.optionalKeys.has(key)) continue;
      const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
      // Non-zero everywhere (the official init zeroes adaLN and the final layer, hiding bugs).
      for (let i = 0; i < data.length; i++) data[i] = rng.normal() * 0.1;
      weights.set(key, { shape, data });
    }
    const latent = Float32Array.from({ length: 2 * 4 * 8 * 8 }, () => rng.normal());
    const onnx = await createOnnxBackend({ intraOpNumThreads: 1 });
    const expected = await forward(createCpuBackend(), weights, latent);
    const got = await forward(onnx, weights, latent);
    await onnx.close();
    expect(got.shape).toEqual([2, 8, 8, 8]);
    expect(got.shape).toEqual(expected.shape);
    let scale = 0;
    let worst = 0;
    for (let i = 0; i < got.data.length; i++) {
      scale = Math.max(scale, Math.abs(expected.data[i]!));
      worst = Math.max(worst, Math.abs(got.data[i]! - expected.data[i]!));
    }
    expect(scale).toBeGreaterThan(0.1);
    expect(worst).toBeLessThan(1e-4 * scale);
  });
});
