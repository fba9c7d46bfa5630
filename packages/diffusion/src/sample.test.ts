import { createCpuBackend } from "@ditcache/backend-cpu";
import { DitcacheError, type StepInfo, type Tensor } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { ddimSample, ddimSteps, ddpmSample, type ModelFn } from "./sample.js";
import { createSchedule } from "./schedule.js";

const backend = createCpuBackend();
const shape = [2, 1, 2, 2] as const;

/** An eps-model that knows the answer: x_0 = target, so eps = (x - sqrt(ab) x_0) / sqrt(1 - ab). */
function oracle(target: Float32Array, learnSigma: boolean): ModelFn {
  const base = createSchedule();
  return async (x, timesteps) => {
    const values = await backend.read(x);
    const rows = x.shape[0]!;
    const plane = values.length / rows;
    const out = new Float32Array(values.length * (learnSigma ? 2 : 1));
    for (let row = 0; row < rows; row++) {
      const alphaBar = base.alphasCumprod[timesteps[row]!]!;
      for (let i = 0; i < plane; i++) {
        const x0 = target[(row % shape[0]) * plane + i]!;
        const outRow = row * plane * (learnSigma ? 2 : 1);
        out[outRow + i] = (values[row * plane + i]! - Math.sqrt(alphaBar) * x0) / Math.sqrt(1 - alphaBar);
      }
    }
    return backend.tensor(out, [rows, learnSigma ? 2 : 1, 2, 2]);
  };
}

const target = Float32Array.from([0.5, -0.25, 0.75, 0.1, -0.6, 0.3, 0.2, -0.9]);

describe("ddimSample", () => {
  it("recovers x_0 from an exact eps-model (timesteps mapped to the original scale)", async () => {
    const seen: number[] = [];
    const model = oracle(target, false);
    const { sample, stepMilliseconds } = await ddimSample(
      (x, t, y, step) => {
        seen.push(t[0]!);
        return model(x, t, y, step);
      },
      { backend, shape, labels: [1, 2], respacing: "ddim10", learnSigma: false, seed: 3 },
    );
    expect(seen).toEqual([900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    expect(stepMilliseconds).toHaveLength(10);
    const values = await backend.read(sample);
    for (const [i, v] of values.entries()) expect(v).toBeCloseTo(target[i]!, 4);
  });

  it("batches [x; x] with labels [y; null] and tags the rows explicitly under CFG", async () => {
    const calls: { rows: number; labels: number[]; step: StepInfo }[] = [];
    const model: ModelFn = async (x, _t, labels, step) => {
      calls.push({ rows: x.shape[0]!, labels, step });
      const values = await backend.read(x);
      expect(Array.from(values.subarray(0, 8))).toEqual(Array.from(values.subarray(8, 16)));
      // eps = 1 for cond rows, 0 for uncond rows; v = 0.
      const out = new Float32Array(32);
      for (let row = 0; row < 2; row++) out.fill(1, row * 8, row * 8 + 4);
      return backend.tensor(out, [4, 2, 2, 2]);
    };
    const events: number[] = [];
    const { sample } = await ddimSample(model, {
      backend,
      shape,
      labels: [3, 4],
      respacing: "1",
      cfgScale: 4,
      nullLabel: 10,
      noise: new Float32Array(8).fill(0.5),
      onStep: (event) => events.push(event.index),
    });
    expect(events).toEqual([0]);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.rows).toBe(4);
    expect(calls[0]!.labels).toEqual([3, 4, 10, 10]);
    expect(calls[0]!.step).toEqual({
      index: 0,
      count: 1,
      timestep: 0,
      rows: ["cond", "cond", "uncond", "uncond"],
      timesteps: [0],
    });
    // One step at t = 0: x_0 = sqrt(1/ab) x - sqrt(1/ab - 1) * (0 + 4 * (1 - 0)).
    const alphaBar = 0.9999;
    const expected = Math.sqrt(1 / alphaBar) * 0.5 - Math.sqrt(1 / alphaBar - 1) * 4;
    for (const v of await backend.read(sample)) expect(v).toBeCloseTo(expected, 6);
  });

  it("is bit-identical across two runs with one seed, and differs with another", async () => {
    const model = oracle(target, true);
    const options = { backend, shape, labels: [0, 1], steps: 5, seed: 11, eta: 1 };
    const a = await backend.read((await ddimSample(model, options)).sample);
    const b = await backend.read((await ddimSample(model, options)).sample);
    const c = await backend.read((await ddimSample(model, { ...options, seed: 12 })).sample);
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(Buffer.from(a.buffer).equals(Buffer.from(c.buffer))).toBe(false);
  });

  it("yields one event per step from the iterator", async () => {
    const timesteps: number[] = [];
    for await (const event of ddimSteps(oracle(target, true), {
      backend,
      shape,
      labels: [0, 0],
      respacing: "ddim4",
    })) {
      timesteps.push(event.timestep);
      expect(event.count).toBe(4);
    }
    expect(timesteps).toEqual([750, 500, 250, 0]);
  });

  it("stops with ABORTED when the signal fires", async () => {
    const controller = new AbortController();
    const run = ddimSample(oracle(target, true), {
      backend,
      shape,
      labels: [0, 0],
      steps: 10,
      onStep: (event) => {
        if (event.index === 2) controller.abort();
      },
      signal: controller.signal,
    });
    await expect(run).rejects.toThrow(/sampling aborted before step 3 of 10/);
    await run.catch((error) => expect(DitcacheError.isInstance(error) && error.code).toBe("ABORTED"));
  });

  it("rejects bad options with one-line errors", () => {
    const model = oracle(target, true);
    const base = { backend, shape, labels: [0, 0] };
    expect(() => ddimSteps(model, { ...base, steps: 0 })).toThrow(
      /options.steps: expected a positive integer, got 0/,
    );
    expect(() => ddimSteps(model, { ...base, steps: -3 })).toThrow(/options.steps/);
    expect(() => ddimSteps(model, { ...base, steps: 2.5 })).toThrow(/options.steps/);
    expect(() => ddimSteps(model, { ...base, respacing: "ddimx" })).toThrow(/respacing: expected "ddimN"/);
    expect(() => ddimSteps(model, { ...base, respacing: "1001" })).toThrow(
      /cannot divide a section of 1000 steps/,
    );
    expect(() => ddimSteps(model, { ...base, labels: [0] })).toThrow(
      /options.labels: expected 2 non-negative integers/,
    );
    expect(() => ddimSteps(model, { ...base, cfgScale: 4 })).toThrow(/options.nullLabel/);
    expect(() => ddimSteps(model, { ...base, shape: [2, 1, 2] })).toThrow(/options.shape/);
    expect(() => ddimSteps(model, { ...base, eta: -1 })).toThrow(/options.eta/);
    expect(() => ddimSteps(model, { ...base, noise: new Float32Array(3) })).toThrow(
      /options.noise: expected a Float32Array of 8 values/,
    );
    expect(() => ddimSteps(model, { ...base, guideChannels: 0 })).toThrow(/options.guideChannels/);
  });

  it("says what output shape it expected when learnSigma does not match the model", async () => {
    await expect(
      ddimSample(oracle(target, false), { backend, shape, labels: [0, 0], steps: 2 }),
    ).rejects.toThrow(/model output: expected shape \[2, 2, H, W\] \(learnSigma true/);
  });
});

describe("ddpmSample", () => {
  it("uses injected step noise and matches a float64 re-derivation of one step", async () => {
    const stepNoise = (k: number) => new Float32Array(8).fill(k === 0 ? 1 : 0.5);
    const model: ModelFn = async () => {
      const out = new Float32Array(16);
      for (let row = 0; row < 2; row++)
        out.fill(0.2, row * 8, row * 8 + 4).fill(-0.5, row * 8 + 4, row * 8 + 8);
      return backend.tensor(out, [2, 2, 2, 2]) as Tensor;
    };
    const noise = new Float32Array(8).fill(0.3);
    const x: number[] = [];
    await ddpmSample(model, {
      backend,
      shape,
      labels: [0, 0],
      respacing: "2",
      noise,
      stepNoise,
      onStep: (e) => x.push(e.x[0]!),
    });
    const s = createSchedule({ respacing: "2" });
    const stepOnce = (k: number, xt: number, n: number) => {
      const x0 = s.sqrtRecipAlphasCumprod[k]! * xt - s.sqrtRecipm1AlphasCumprod[k]! * 0.2;
      const mean = s.posteriorMeanCoef1[k]! * x0 + s.posteriorMeanCoef2[k]! * xt;
      const frac = (-0.5 + 1) / 2;
      const logVariance = frac * s.logBetas[k]! + (1 - frac) * s.posteriorLogVarianceClipped[k]!;
      return mean + (k !== 0 ? 1 : 0) * Math.exp(0.5 * logVariance) * n;
    };
    const first = stepOnce(1, 0.3, 1);
    expect(x[0]).toBeCloseTo(first, 5);
    expect(x[1]).toBeCloseTo(stepOnce(0, x[0]!, 0.5), 5);
  });

  it("needs at least two steps", async () => {
    await expect(
      ddpmSample(oracle(target, true), { backend, shape, labels: [0, 0], steps: 1 }),
    ).rejects.toThrow(/at least 2 steps for DDPM/);
  });
});
