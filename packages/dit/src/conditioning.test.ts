import { createCpuBackend } from "@ditcache/backend-cpu";
import { gaussianNoise, type StepInfo } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { DiTModel } from "./model.js";
import { randomDiTWeights, TINY_DIT_CONFIG } from "./testing/index.js";

const backend = createCpuBackend();
const model = DiTModel.fromWeights(randomDiTWeights(TINY_DIT_CONFIG, 3), TINY_DIT_CONFIG, backend);
const shape = [4, 4, 8, 8];
const labels = [3, 7, 10, 10]; // a CFG pair of two samples: [cond; uncond]
const run = [999, 749, 499, 249, 0];

/** Every step of a 5-step run, forwarded with or without a run conditioning; the outputs, in order. */
async function sample(
  conditioning?: ReturnType<DiTModel["runConditioning"]>,
  timesteps: readonly number[] | undefined = run,
) {
  const outputs: Float32Array[] = [];
  for (const [index, timestep] of run.entries()) {
    const step: StepInfo = {
      index,
      count: run.length,
      timestep,
      rows: ["cond", "cond", "uncond", "uncond"],
      ...(timesteps ? { timesteps } : {}),
    };
    const x = backend.tensor(gaussianNoise(index, shape), shape);
    const out = await model.forward(
      x,
      labels.map(() => timestep),
      labels,
      {
        step,
        ...(conditioning ? { conditioning } : {}),
      },
    );
    outputs.push(await backend.read(out));
    backend.dispose(x);
    backend.dispose(out);
  }
  return outputs;
}

describe("DiTModel.runConditioning", () => {
  it("gives the same outputs as per-step conditioning, in one pass or one step per pass", async () => {
    const plain = await sample();
    for (const passBytes of [undefined, 1]) {
      const conditioning = model.runConditioning(passBytes === undefined ? {} : { passBytes });
      const prepared = await sample(conditioning);
      conditioning.dispose();
      for (const [i, out] of prepared.entries()) {
        const max = Math.max(...out.map((v, j) => Math.abs(v - plain[i]![j]!)));
        expect(max, `step ${i}, passBytes ${passBytes}`).toBeLessThan(1e-6);
      }
    }
  });

  it("starts over for another run's labels and leaves rows at other timesteps to the forward", async () => {
    const conditioning = model.runConditioning();
    await sample(conditioning);
    const x = backend.tensor(gaussianNoise(9, shape), shape);
    const step: StepInfo = {
      index: 1,
      count: 5,
      timestep: 749,
      rows: ["cond", "cond", "uncond", "uncond"],
      timesteps: run,
    };
    const mixed = [749, 749, 500, 749]; // not one timestep: computed per forward
    const expected = await backend.read(await model.forward(x, mixed, [1, 2, 10, 10], { step }));
    const got = await backend.read(await model.forward(x, mixed, [1, 2, 10, 10], { step, conditioning }));
    expect(got).toEqual(expected);
    const same = [749, 749, 749, 749];
    const relabelled = await backend.read(
      await model.forward(x, same, [1, 2, 10, 10], { step, conditioning }),
    );
    const reference = await backend.read(await model.forward(x, same, [1, 2, 10, 10], { step }));
    expect(Math.max(...relabelled.map((v, j) => Math.abs(v - reference[j]!)))).toBeLessThan(1e-6);
    conditioning.dispose();
  });

  it("is unused without the run's timesteps, and refuses a bad pass size", async () => {
    const conditioning = model.runConditioning();
    const plain = await sample(undefined, undefined);
    expect(await sample(conditioning, undefined)).toEqual(plain);
    conditioning.dispose();
    expect(() => model.runConditioning({ passBytes: 0 })).toThrow(
      /passBytes: expected a number of bytes > 0, got 0/,
    );
  });
});
