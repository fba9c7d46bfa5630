import { createCpuBackend } from "@ditcache/backend-cpu";
import { type Corrector, createCacheEngine, parsePolicy, taylorCorrector } from "@ditcache/cache";
import { DitcacheError } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { noise, type Returned, trajectoryModel } from "./__fixtures__/trajectory.js";
import { calibrate } from "./calibrate.js";
import { eoc, eocCorrector } from "./corrector.js";
import { fixedTrendPriorCoefficient } from "./fit.js";
import type { PriorsDescriptor } from "./header.js";

const descriptor: PriorsDescriptor = {
  modelHash: "test-model",
  sampler: { respacing: "ddim6", sampler: "ddim", cfgScale: 1, guideChannels: 3 },
  calibration: { seeds: [1, 2], labels: [0, 1], description: "synthetic" },
};
const tokens = 3;
const channels = 4;
const rowSize = tokens * channels;
const dot = (x: Float32Array, y: Float32Array) => x.reduce((total, value, i) => total + value * y[i]!, 0);
const sub = (x: Float32Array, y: Float32Array) => x.map((value, i) => value - y[i]!);

describe("calibrate on a linear trajectory F = A + step·B + noise (FORA 50%)", () => {
  const backend = createCpuBackend();
  const A = (s: number) => noise(100 + s, rowSize);
  const B = (s: number) => noise(200 + s, rowSize).map((v) => v * 0.5);
  const model = trajectoryModel(backend, {
    depth: 2,
    steps: 6,
    rows: ["cond", "uncond"],
    tokens,
    channels,
    feature: (s, step, sample, row) => {
      const n = noise(1000 * sample + 10 * row + 100000 * step + s, rowSize);
      return A(s).map((a, i) => a + step * B(s)[i]! + 0.2 * n[i]!);
    },
  });
  const policy = parsePolicy("fora:interval=2");
  const samples = 4;
  const priorsPromise = calibrate({
    runSample: (hook, i) => model.run(hook, i),
    basePolicy: policy,
    steps: 6,
    depth: 2,
    descriptor,
    samples,
    granularity: "token-channel",
    dtype: "F32",
  });

  it("stores P, D = P[step] - P[src] and e = ||D||/||P|| at every reused cell", async () => {
    const priors = await priorsPromise;
    expect(priors.cellCount).toBe(4 * 3); // 4 sites x steps 1, 3, 5
    for (const cell of priors.cells()) {
      expect(cell.sourceStep).toBe(cell.step - 1);
      const s = priors.sites.indexOf(cell.site);
      const expected = new Float32Array(rowSize);
      for (let i = 0; i < samples; i++) {
        for (let r = 0; r < 2; r++) {
          const now = model.batch(s, cell.step, i).subarray(r * rowSize, (r + 1) * rowSize);
          const then = model.batch(s, cell.sourceStep, i).subarray(r * rowSize, (r + 1) * rowSize);
          for (let k = 0; k < rowSize; k++) expected[k]! += (now[k]! - then[k]!) / (samples * 2);
        }
      }
      for (let k = 0; k < rowSize; k++) expect(cell.difference[k]).toBeCloseTo(expected[k]!, 5);
      const p = priors.mean(cell.site, cell.step)!;
      expect(cell.relativeError).toBeCloseTo(Math.sqrt(dot(cell.difference, cell.difference) / dot(p, p)), 5);
    }
  });

  it("fits gamma = Σ<err, D> / Σ<D, D> and correction (a) removes exactly the predicted error", async () => {
    const priors = await priorsPromise;
    const { policy: basePolicy, corrector } = eoc(policy, priors, { mode: "prior", judgment: false });
    const returned: Returned = new Map();
    const engine = createCacheEngine({ policy: basePolicy, corrector });
    const heldOut = 77;
    await model.run(engine, heldOut, returned);
    engine.dispose();
    corrector.dispose();
    let checked = 0;
    for (const cell of priors.cells()) {
      const s = priors.sites.indexOf(cell.site);
      // Calibration fit, recomputed by hand.
      let numerator = 0;
      let denominator = 0;
      for (let i = 0; i < samples; i++) {
        const err = sub(model.batch(s, cell.step, i), model.batch(s, cell.sourceStep, i));
        for (let r = 0; r < 2; r++) {
          const e = err.subarray(r * rowSize, (r + 1) * rowSize);
          numerator += dot(e, cell.difference);
          denominator += dot(cell.difference, cell.difference);
        }
      }
      const gamma = Math.min(2, Math.max(0, numerator / denominator));
      expect(cell.gamma).toBeCloseTo(gamma, 5);
      // At run time: F_hat = F_cached + gamma·D, so the error drops by 2γ<err,D> - γ²||D||².
      const truth = model.batch(s, cell.step, heldOut);
      const cached = model.batch(s, cell.sourceStep, heldOut);
      const got = returned.get(`${cell.site}@${cell.step}`)!;
      for (let r = 0; r < 2; r++) {
        const at = (x: Float32Array) => x.subarray(r * rowSize, (r + 1) * rowSize);
        const err = sub(at(truth), at(cached));
        const before = dot(err, err);
        const residual = sub(at(truth), at(got));
        const after = dot(residual, residual);
        const predicted =
          2 * cell.gamma * dot(err, cell.difference) -
          cell.gamma ** 2 * dot(cell.difference, cell.difference);
        expect(before - after).toBeCloseTo(predicted, 4);
        for (let k = 0; k < rowSize; k++)
          expect(at(got)[k]).toBeCloseTo(at(cached)[k]! + cell.gamma * cell.difference[k]!, 5);
        checked++;
      }
    }
    expect(checked).toBe(24);
    expect(corrector.counts.corrected).toBe(12);
  });

  it("judgment leaves cells with e <= tau as plain reuse and corrects the others", async () => {
    const priors = await priorsPromise;
    const errors = priors
      .cells()
      .map((cell) => cell.relativeError)
      .sort((x, y) => x - y);
    const tau = errors[Math.floor(errors.length / 2)]!;
    const { corrector } = eoc(policy, priors, { mode: "prior", tau });
    const returned: Returned = new Map();
    const engine = createCacheEngine({ policy, corrector });
    await model.run(engine, 55, returned);
    engine.dispose();
    corrector.dispose();
    let skipped = 0;
    for (const cell of priors.cells()) {
      const s = priors.sites.indexOf(cell.site);
      const cached = model.batch(s, cell.sourceStep, 55);
      const got = returned.get(`${cell.site}@${cell.step}`)!;
      const plain = got.every((value, k) => value === cached[k]);
      expect(plain).toBe(cell.relativeError <= tau);
      if (plain) skipped++;
    }
    expect(skipped).toBeGreaterThan(0);
    expect(skipped).toBeLessThan(priors.cellCount);
    expect(corrector.counts.judged).toBe(skipped);
  });

  it("agreement check: kappa = 1 rejects every trend, kappa = -1 none", async () => {
    const priors = await priorsPromise;
    const counts = [];
    for (const kappa of [1, -1]) {
      const { corrector } = eoc(policy, priors, { judgment: false, agreement: true, kappa });
      const engine = createCacheEngine({ policy, corrector });
      await model.run(engine, 31);
      engine.dispose();
      corrector.dispose();
      counts.push({ ...corrector.counts });
    }
    // Steps 3 and 5 have a trend (4 sites each); step 1 has none and is corrected with gamma·D.
    expect(counts[0]).toEqual({ corrected: 4, judged: 0, disagreed: 8, noPrior: 0 });
    expect(counts[1]).toEqual({ corrected: 12, judged: 0, disagreed: 0, noPrior: 0 });
  });

  it("memory does not grow with the number of samples: same tensors, same bytes", async () => {
    const run = (count: number) =>
      calibrate({
        runSample: (hook, i) => model.run(hook, i),
        basePolicy: policy,
        steps: 6,
        depth: 2,
        descriptor,
        samples: count,
      });
    const [few, many] = await Promise.all([run(2), run(5)]);
    const layout = (tensors: ReturnType<typeof few.tensors>) =>
      Object.entries(tensors).map(([name, tensor]) => [name, tensor.shape, tensor.data.byteLength]);
    expect(layout(many.tensors())).toEqual(layout(few.tensors()));
    expect(many.header.calibration.rows).toBe(10);
    expect(few.header.calibration.rows).toBe(4);
  });

  it("channel granularity stores D averaged over tokens and broadcasts it", async () => {
    const priors = await calibrate({
      runSample: (hook, i) => model.run(hook, i),
      basePolicy: policy,
      steps: 6,
      depth: 2,
      descriptor,
      samples: 2,
      granularity: "channel",
      dtype: "F32",
    });
    const full = await calibrate({
      runSample: (hook, i) => model.run(hook, i),
      basePolicy: policy,
      steps: 6,
      depth: 2,
      descriptor,
      samples: 2,
      granularity: "token-channel",
      dtype: "F32",
    });
    expect(priors.valueShape).toEqual([channels]);
    const cell = priors.cell("block1.mlp", 3)!;
    const token = full.cell("block1.mlp", 3)!.difference;
    for (let c = 0; c < channels; c++) {
      let mean = 0;
      for (let t = 0; t < tokens; t++) mean += token[t * channels + c]! / tokens;
      expect(cell.difference[c]).toBeCloseTo(mean, 5);
    }
    const { corrector } = eoc(policy, priors, { mode: "prior", judgment: false });
    const returned: Returned = new Map();
    const engine = createCacheEngine({ policy, corrector });
    await model.run(engine, 9, returned);
    engine.dispose();
    corrector.dispose();
    const cached = model.batch(3, 2, 9);
    const got = returned.get("block1.mlp@3")!;
    for (let k = 0; k < got.length; k++)
      expect(got[k]).toBeCloseTo(cached[k]! + cell.gamma * cell.difference[k % channels]!, 5);
  });
});

describe("calibrate recovers the coefficients of correction (b)", () => {
  // F_i(s) = A + u_i·s + B·s², u_i = ±U (mean 0): the true error at a reused step is exactly
  // 1·trend + kappa·D with kappa = 1 - (h3 - h0)(s - 3) / (3 (h_s - h3)), h = s².
  const backend = createCpuBackend();
  const A = noise(1, rowSize);
  const B = noise(2, rowSize).map((v) => v * 0.1);
  const model = trajectoryModel(backend, {
    depth: 1,
    steps: 9,
    rows: ["cond", "uncond"],
    tokens,
    channels,
    feature: (s, step, sample, row) => {
      const U = noise(10 + row + 5 * s, rowSize);
      const sign = sample % 2 === 0 ? 1 : -1;
      return A.map((a, i) => a + sign * U[i]! * step + B[i]! * step * step);
    },
  });

  // The model shows no block stack, so calibrate skips the closed-loop pass.
  const calibrateAt = (trendOrder: number) =>
    calibrate({
      runSample: (hook, i) => model.run(hook, i),
      basePolicy: parsePolicy("fora:interval=3"),
      steps: 9,
      depth: 1,
      descriptor,
      samples: 4,
      granularity: "token-channel",
      dtype: "F32",
      trendOrder,
    });
  const priorsPromise = calibrateAt(1);
  const h = (s: number) => s * s;
  const kappaOf = (cell: { step: number; sourceStep: number }) => {
    const last = cell.sourceStep;
    return 1 - ((h(last) - h(last - 3)) * (cell.step - last)) / (3 * (h(cell.step) - h(last)));
  };

  it("fits a = 1 and b = kappa where a trend exists", async () => {
    const priors = await priorsPromise;
    let checked = 0;
    for (const cell of priors.cells()) {
      if (cell.step < 4) continue; // no trend yet: (a, b) degrade to (0, gamma)
      expect(cell.trendCoefficient).toBeCloseTo(1, 3);
      expect(cell.priorCoefficient).toBeCloseTo(kappaOf(cell), 3);
      checked++;
    }
    expect(checked).toBe(8);
    expect(priors.header.report.heldOut).toBe(true);
    // Cells before step 4 have no trend, so only part of their (per-sample) error is explainable.
    const { terms } = priors.header.report;
    expect(terms["trend+prior"].heldOutReductionAll).toBeGreaterThan(terms.prior.heldOutReductionAll + 0.3);
    for (const cell of priors.cells().filter((c) => c.step < 3)) {
      expect(cell.trendCoefficient).toBeCloseTo(0, 6);
      expect(cell.priorCoefficient).toBeCloseTo(cell.gamma, 3);
    }
  });

  it("fixed trend gain: b(s) = priorGain - s·trendProjection is the fit on what s·trend leaves", async () => {
    const priors = await priorsPromise;
    const withTrend = priors.cells().filter((cell) => cell.step >= 4);
    for (const cell of withTrend) {
      const kappa = kappaOf(cell);
      // The true error is 1·t + kappa·D: at gain 1 the prior term is kappa; at gain 2 it must
      // also cancel the extra trend's component along D.
      expect(fixedTrendPriorCoefficient(cell, 1, 4)).toBeCloseTo(kappa, 3);
      expect(fixedTrendPriorCoefficient(cell, 2, 4)).toBeCloseTo(kappa - cell.trendProjection, 3);
    }
    // With gain 1 the corrector rebuilds every reused value that has a trend, as the fitted (a, b) do.
    const run = async (options: Parameters<typeof eoc>[2]) => {
      const basePolicy = parsePolicy("fora:interval=3");
      const { corrector } = eoc(basePolicy, priors, { judgment: false, ...options });
      const returned: Returned = new Map();
      const engine = createCacheEngine({ policy: basePolicy, corrector });
      await model.run(engine, 6, returned);
      engine.dispose();
      corrector.dispose();
      return { returned, counts: corrector.counts };
    };
    const fixed = await run({ trendGain: "fixed", trendScale: 1 });
    for (const cell of withTrend) {
      const truth = model.batch(priors.sites.indexOf(cell.site), cell.step, 6);
      const got = fixed.returned.get(`${cell.site}@${cell.step}`)!;
      for (let k = 0; k < got.length; k++) expect(got[k]).toBeCloseTo(truth[k]!, 3);
    }
    expect(fixed.counts.corrected).toBe(priors.cellCount);
    // Judgment on, with a fixed gain, gates only the prior term: the trend stays everywhere.
    const judged = (await run({ trendGain: "fixed", trendScale: 1, judgment: true, tau: 1e9 })).counts;
    expect(judged).toEqual({
      corrected: withTrend.length,
      judged: priors.cellCount,
      disagreed: 0,
      noPrior: 0,
    });
    expect(priors.header.report.fixedTrend.heldOutReductionAll).toBeGreaterThan(0);
  });

  it("trend order 2: the quadratic forecast explains the whole error once three values exist", async () => {
    const basePolicy = parsePolicy("fora:interval=3");
    const priors = await calibrateAt(2);
    expect(priors.header.trendOrder).toBe(2);
    const firstOrder = await priorsPromise;
    for (const cell of priors.cells()) {
      if (cell.step >= 7) {
        // Computed at 0, 3, 6: F_i is quadratic in the step, so e = t exactly, whatever D is.
        expect(cell.trendGain).toBeCloseTo(1, 3);
        expect(cell.trendCoefficient).toBeCloseTo(1, 3);
        expect(cell.priorCoefficient).toBeCloseTo(0, 3);
      } else {
        // Two computed values: the order-1 trend, so the order-1 fits.
        const same = firstOrder.cell(cell.site, cell.step)!;
        expect(cell.trendCoefficient).toBeCloseTo(same.trendCoefficient, 4);
        expect(cell.priorCoefficient).toBeCloseTo(same.priorCoefficient, 4);
      }
    }
    // Fixed gain 1 + prior term rebuilds every reused value that has a trend, from three values.
    const { corrector } = eoc(basePolicy, priors, { judgment: false, trendGain: "fixed", trendScale: 1 });
    expect(corrector.historyLength).toBe(3);
    const returned: Returned = new Map();
    const engine = createCacheEngine({ policy: basePolicy, corrector });
    await model.run(engine, 6, returned);
    engine.dispose();
    corrector.dispose();
    for (const cell of priors.cells().filter((c) => c.step >= 4)) {
      const truth = model.batch(priors.sites.indexOf(cell.site), cell.step, 6);
      const got = returned.get(`${cell.site}@${cell.step}`)!;
      for (let k = 0; k < got.length; k++) expect(got[k]).toBeCloseTo(truth[k]!, 3);
    }
    expect(priors.header.report.terms.trend.heldOutReductionAll).toBeGreaterThan(
      firstOrder.header.report.terms.trend.heldOutReductionAll,
    );
  });

  it("curvature gain: s·t1 + c·(t2 - t1); c = 0 is the first-order forecast, c = s the plain order 2", async () => {
    const basePolicy = parsePolicy("fora:interval=3");
    const priors = await calibrateAt(2);
    const run = async (corrector: Corrector) => {
      const returned: Returned = new Map();
      const engine = createCacheEngine({ policy: basePolicy, corrector });
      await model.run(engine, 5, returned);
      engine.dispose();
      return returned;
    };
    const fixed = { judgment: false, trendGain: "fixed", prior: false } as const;
    const withGain = (trendScale: number, curvatureGain?: number) => {
      const { corrector } = eoc(basePolicy, priors, {
        ...fixed,
        trendScale,
        ...(curvatureGain === undefined ? {} : { curvatureGain }),
      });
      return corrector;
    };
    const [zero, linear] = [await run(withGain(0.9, 0)), await run(taylorWithGain(0.9))];
    const [same, plain] = [await run(withGain(0.9, 0.9)), await run(withGain(0.9))];
    const mixed = await run(withGain(0.9, 1.2));
    for (const cell of priors.cells().filter((c) => c.step >= 7)) {
      const key = `${cell.site}@${cell.step}`;
      const [f0, f1, fs, fp, fm] = [zero, linear, same, plain, mixed].map((r) => r.get(key)!);
      for (let k = 0; k < f0!.length; k++) {
        expect(f0![k]).toBeCloseTo(f1![k]!, 5);
        expect(fs![k]).toBeCloseTo(fp![k]!, 5);
        // Linear in c: F(1.2) = F(0) + (1.2 / 0.9)·(F(0.9) - F(0)).
        expect(fm![k]).toBeCloseTo(f0![k]! + (1.2 / 0.9) * (fs![k]! - f0![k]!), 4);
      }
    }
    // Only where it is defined: a fixed gain without the prior term, on priors of order >= 2.
    expect(() => eoc(basePolicy, priors, { ...fixed, trendScale: 1, prior: true, curvatureGain: 1 })).toThrow(
      /options.curvatureGain.*fixed trend gain without the prior term/,
    );
    expect(() => eoc(basePolicy, priors, { trendGain: "fitted", curvatureGain: 1 })).toThrow(/curvatureGain/);
    const orderOne = await priorsPromise;
    expect(() => eoc(basePolicy, orderOne, { ...fixed, trendScale: 1, curvatureGain: 1 })).toThrow(
      /trend order 1/,
    );
  });
});

/** F_last + s·t1: the first-order forecast at gain s, as a corrector of its own. */
function taylorWithGain(s: number): Corrector {
  const taylor = taylorCorrector({ order: 1 });
  return {
    name: "taylor-gain",
    spec: "taylor-gain",
    historyLength: 2,
    async correct(context) {
      const [last, previous] = context.history;
      if (last === undefined || previous === undefined) return taylor.correct(context);
      const a = (s * (context.step.index - last.step)) / (last.step - previous.step);
      return context.math.combine([
        { tensor: last.value, weight: 1 + a },
        { tensor: previous.value, weight: -a },
      ]);
    },
  };
}

describe("calibrate rejects what it cannot calibrate", () => {
  const backend = createCpuBackend();
  const model = trajectoryModel(backend, {
    depth: 1,
    steps: 4,
    rows: ["cond"],
    tokens: 1,
    channels: 2,
    feature: (_, step) => Float32Array.of(step, 1),
  });
  const base = {
    runSample: (hook: Parameters<typeof model.run>[0], i: number) => model.run(hook, i),
    steps: 4,
    depth: 1,
    descriptor,
    samples: 1,
  };

  it("dynamic and block-level policies", async () => {
    await expect(calibrate({ ...base, basePolicy: parsePolicy("teacache:threshold=0.1") })).rejects.toThrow(
      /dynamic/,
    );
    await expect(calibrate({ ...base, basePolicy: parsePolicy("delta-dit") })).rejects.toThrow(/attn\/mlp/);
  });

  it("bad arguments and a run with other steps", async () => {
    const policy = parsePolicy("fora:interval=2");
    await expect(calibrate({ ...base, basePolicy: policy, samples: 0 })).rejects.toThrow(/options.samples/);
    await expect(calibrate({ ...base, basePolicy: policy, granularity: "pixel" as never })).rejects.toThrow(
      /granularity/,
    );
    await expect(calibrate({ ...base, basePolicy: policy, steps: 5 })).rejects.toThrow(
      /ran 4 steps, expected options.steps = 5/,
    );
    for (const trendOrder of [0, 4, 1.5])
      await expect(calibrate({ ...base, basePolicy: policy, trendOrder })).rejects.toThrow(
        /options.trendOrder.*an integer in \[1, 3\]/,
      );
    await expect(
      calibrate({
        ...base,
        basePolicy: policy,
        closedLoop: { candidates: [{ trendOrder: 5, trendGain: "fixed", trendScale: 1 }] },
      }),
    ).rejects.toThrow(/options.closedLoop.candidates.*trendOrder\?: 1..3/);
    const error = await calibrate({ ...base, basePolicy: policy, depth: 2 }).catch((e: unknown) => e);
    expect(DitcacheError.isInstance(error) && error.message).toMatch(/never ran site block1.attn/);
  });

  it("uses the corrector with both terms off as plain reuse", async () => {
    const policy = parsePolicy("fora:interval=2");
    const priors = await calibrate({ ...base, basePolicy: policy });
    const corrector = eocCorrector(priors, { trend: false, prior: false });
    expect(corrector.terms).toBe("none");
  });
});

describe("fit space: the CFG-guided combination of each pair, or each row", () => {
  // cond and uncond rows drift differently, so the error of the guided output w·c + (1-w)·u is
  // not the mean of the rows' errors: the two fit spaces must give different, hand-checkable gammas.
  const backend = createCpuBackend();
  const modelOptions = {
    depth: 1,
    steps: 4,
    rows: ["cond", "uncond"] as const,
    tokens,
    channels,
    feature: (s: number, step: number, sample: number, row: number) => {
      const drift = noise(300 + row, rowSize).map((v) => v * (row === 0 ? 1 : 0.2));
      const n = noise(1000 * sample + 10 * row + 100000 * step + s, rowSize);
      return drift.map((d, i) => d * step * step + 0.3 * n[i]!);
    },
  };
  const model = trajectoryModel(backend, modelOptions);
  const w = 4;
  const guidedDescriptor: PriorsDescriptor = {
    ...descriptor,
    sampler: { ...descriptor.sampler, cfgScale: w },
  };
  const run = (fitSpace: "guided" | "rows", source = model) =>
    calibrate({
      runSample: (hook, i) => source.run(hook, i),
      basePolicy: parsePolicy("fora:interval=2"),
      steps: 4,
      depth: 1,
      descriptor: guidedDescriptor,
      samples: 3,
      granularity: "token-channel",
      dtype: "F32",
      gammaMax: 100,
      fitSpace,
    });

  it("gamma = Σ<w·e_c + (1-w)·e_u, D> / Σ<D, D> over pairs (guided) vs Σ<e_r, D> / Σ<D, D> over rows", async () => {
    const [guided, rows] = [await run("guided"), await run("rows")];
    expect(guided.header.calibration.fitSpace).toBe("guided");
    expect(rows.header.calibration.fitSpace).toBe("rows");
    let checked = 0;
    for (const cell of guided.cells()) {
      const s = guided.sites.indexOf(cell.site);
      const D = cell.difference;
      let pairNumerator = 0;
      let rowNumerator = 0;
      for (let i = 0; i < 3; i++) {
        const err = sub(model.batch(s, cell.step, i), model.batch(s, cell.sourceStep, i));
        const [c, u] = [err.subarray(0, rowSize), err.subarray(rowSize)];
        pairNumerator += dot(
          c.map((value, k) => w * value + (1 - w) * u[k]!),
          D,
        );
        rowNumerator += dot(c, D) + dot(u, D);
      }
      const guidedGamma = Math.max(0, pairNumerator / (3 * dot(D, D)));
      const rowGamma = Math.max(0, rowNumerator / (6 * dot(D, D)));
      expect(cell.gamma).toBeCloseTo(guidedGamma, 4);
      expect(rows.cell(cell.site, cell.step)!.gamma).toBeCloseTo(rowGamma, 4);
      expect(Math.abs(guidedGamma - rowGamma)).toBeGreaterThan(0.05);
      checked++;
    }
    expect(checked).toBe(4); // 2 sites x steps 1, 3
  });

  it("gate-weighted: the error and the terms are fitted as they enter the residual stream (g ⊙ F)", async () => {
    const gate = (_s: number, _step: number, row: number) =>
      Float32Array.from({ length: channels }, (_, c) => (row === 0 ? 1 + c : 0.5 / (1 + c)));
    const gatedModel = trajectoryModel(backend, { ...modelOptions, gate });
    const priors = await run("guided", gatedModel);
    expect(priors.header.calibration.gateWeighted).toBe(true);
    const times = (x: Float32Array, row: number) => x.map((v, i) => v * gate(0, 0, row)[i % channels]!);
    let checked = 0;
    for (const cell of priors.cells()) {
      const s = priors.sites.indexOf(cell.site);
      const D = cell.difference;
      const gatedD = times(D, 0).map((v, i) => w * v + (1 - w) * times(D, 1)[i]!);
      let numerator = 0;
      for (let i = 0; i < 3; i++) {
        const err = sub(gatedModel.batch(s, cell.step, i), gatedModel.batch(s, cell.sourceStep, i));
        const [c, u] = [times(err.subarray(0, rowSize), 0), times(err.subarray(rowSize), 1)];
        numerator += dot(
          c.map((value, k) => w * value + (1 - w) * u[k]!),
          gatedD,
        );
      }
      expect(cell.gamma).toBeCloseTo(Math.max(0, numerator / (3 * dot(gatedD, gatedD))), 4);
      checked++;
    }
    expect(checked).toBe(4);
  });

  it("fits on the trend-corrected run by default (reused branches get F_last + trend), or on plain reuse", async () => {
    for (const fitTrajectory of ["trend-corrected", "reuse"] as const) {
      const returned: Returned = new Map();
      const priors = await calibrate({
        runSample: (hook, i) => model.run(hook, i, returned),
        basePolicy: parsePolicy("fora:interval=2"),
        steps: 4,
        depth: 1,
        descriptor: guidedDescriptor,
        samples: 1,
        ...(fitTrajectory === "reuse" ? { fitTrajectory } : {}),
      });
      expect(priors.header.calibration.fitTrajectory).toBe(fitTrajectory);
      // Pass 2 (the last run) at step 3 reuses step 2 with step 0 before it: scale 1/2.
      const [f2, f0] = [model.batch(0, 2, 0), model.batch(0, 0, 0)];
      const expected = fitTrajectory === "reuse" ? f2 : f2.map((v, k) => 1.5 * v - 0.5 * f0[k]!);
      const got = returned.get("block0.attn@3")!;
      for (let k = 0; k < got.length; k++) expect(got[k]).toBeCloseTo(expected[k]!, 5);
      // Step 1 has no trend yet: plain reuse in both.
      const f1 = returned.get("block0.attn@1")!;
      for (let k = 0; k < f1.length; k++) expect(f1[k]).toBeCloseTo(model.batch(0, 0, 0)[k]!, 6);
    }
  });

  it("rejects an unknown fit space", async () => {
    await expect(
      calibrate({
        runSample: (hook, i) => model.run(hook, i),
        basePolicy: parsePolicy("fora:interval=2"),
        steps: 4,
        depth: 1,
        descriptor: guidedDescriptor,
        samples: 1,
        fitSpace: "pairs" as never,
      }),
    ).rejects.toThrow(/fitSpace.*"guided" or "rows"/);
  });
});
