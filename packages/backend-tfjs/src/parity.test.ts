// The tiny DiT of packages/dit against its PyTorch fixtures (tools/reference/make_fixtures.py),
// run on tfjs: one forward, a 10-step DDIM run with CFG, and the memory of a whole sampling run.
import { fileURLToPath } from "node:url";
import { type HostTensor, readSafetensorsFile, type Tensor } from "@ditcache/core";
import { relativeError } from "@ditcache/core/testing";
import { ddimSample, type ModelFn } from "@ditcache/diffusion";
import { DiTModel } from "@ditcache/dit";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTfjsBackend, type TfjsBackend } from "./index.js";

const fixture = (name: string) =>
  fileURLToPath(new URL(`../../dit/src/__fixtures__/${name}`, import.meta.url));

describe.each(["cpu", "wasm"] as const)("tiny DiT on tfjs-%s vs the PyTorch reference", (engine) => {
  let backend: TfjsBackend;
  let model: DiTModel;
  let io: Map<string, HostTensor>;
  const get = (key: string): HostTensor => {
    const tensor = io.get(key);
    if (tensor === undefined) throw new Error(`fixture key ${key} missing`);
    return tensor;
  };

  beforeAll(async () => {
    backend = await createTfjsBackend({ engine });
    model = await DiTModel.load(fixture("tiny-dit.safetensors"), { backend });
    io = (await readSafetensorsFile(fixture("tiny-dit-io.safetensors"))).tensors;
  });
  afterAll(async () => {
    model.dispose();
    await backend.close();
  });

  it("forward within 1e-4", async () => {
    const x = get("x");
    const input = backend.tensor(x.data.slice(), x.shape);
    const out = await model.forward(input, Array.from(get("t").data), Array.from(get("y").data));
    expect(relativeError(await backend.read(out), get("out").data)).toBeLessThan(1e-4);
    backend.dispose(input);
    backend.dispose(out);
  });

  const ddim = (onStep?: (x: Float32Array) => void) => {
    const modelFn: ModelFn = (x: Tensor, timesteps, labels, step) =>
      model.forward(x, timesteps, labels, { step });
    return ddimSample(modelFn, {
      backend,
      shape: [2, 4, 8, 8],
      labels: Array.from(get("ddim.labels").data),
      respacing: "ddim10",
      cfgScale: 4,
      nullLabel: 10,
      guideChannels: 3,
      noise: get("ddim.noise").data.slice(),
      onStep: (event) => onStep?.(event.x),
    });
  };

  it("10-step DDIM with CFG within 1e-3 at every step", async () => {
    const trajectory: Float32Array[] = [];
    const { sample } = await ddim((x) => trajectory.push(x));
    expect(trajectory.length).toBe(10);
    for (const [k, x] of trajectory.entries()) {
      expect(relativeError(x, get(`ddim.x.${k}`).data), `step ${k}`).toBeLessThan(1e-3);
    }
    expect(relativeError(await backend.read(sample), get("ddim.samples").data)).toBeLessThan(1e-3);
    backend.dispose(sample);
  });

  it("leaves no tfjs tensor behind after a whole sampling run", async () => {
    // No warm-up: the backend keeps nothing per param across runs (wasm included).
    const before = tf.memory().numTensors;
    backend.dispose((await ddim()).sample);
    expect(tf.memory().numTensors).toBe(before);
  });
});
