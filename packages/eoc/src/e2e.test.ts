import { createCpuBackend } from "@ditcache/backend-cpu";
import { type CachePolicy, type Corrector, createCacheEngine, parsePolicy } from "@ditcache/cache";
import { createSyntheticModel, trackTensors } from "@ditcache/cache/testing";
import type { SiteHook } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { loadTinyDit } from "./__fixtures__/tiny-dit.js";
import { calibrate } from "./calibrate.js";
import { type EocOptions, eoc } from "./corrector.js";
import type { Priors } from "./priors.js";

type Sampler = (hook: SiteHook | undefined, seed: number) => Promise<Float32Array>;

const mse = (x: Float32Array, y: Float32Array) =>
  x.reduce((total, value, i) => total + (value - y[i]!) ** 2, 0) / x.length;

/** Mean squared distance to the uncached samples over evaluation seeds, per corrector. */
async function fidelity(
  sample: Sampler,
  policy: CachePolicy,
  priors: Priors,
  seeds: readonly number[],
  variants: Record<string, EocOptions | "reuse">,
): Promise<Record<string, number>> {
  const references = [];
  for (const seed of seeds) references.push(await sample(undefined, seed));
  const out: Record<string, number> = {};
  for (const [name, options] of Object.entries(variants)) {
    let total = 0;
    const { corrector } = options === "reuse" ? { corrector: undefined } : eoc(policy, priors, options);
    for (const [k, seed] of seeds.entries()) {
      const engine = createCacheEngine({
        policy,
        ...(corrector ? { corrector: corrector as Corrector } : {}),
      });
      total += mse(await sample(engine, seed), references[k]!);
      engine.dispose();
    }
    corrector?.dispose();
    out[name] = total / seeds.length;
  }
  return out;
}

const variants = {
  reuse: "reuse",
  prior: { mode: "prior" },
  trend: { mode: "trend" },
  trendOnly: { mode: "trend", prior: false },
} as const;

describe("end to end on the cache package's synthetic model (FORA 50%)", () => {
  const backend = createCpuBackend();
  const model = createSyntheticModel({ depth: 4 });
  const policy = parsePolicy("fora:interval=2");
  const steps = 10;
  const sample: Sampler = (hook, seed) =>
    model.sample({ backend, steps, rows: ["cond", "uncond"], seed, ...(hook ? { hook } : {}) });

  it("EOC output is closer to uncached than plain reuse on calibration-disjoint seeds", async () => {
    const priors = await calibrate({
      runSample: async (hook, i) => void (await sample(hook, 100 + 7 * i)),
      basePolicy: policy,
      steps,
      depth: 4,
      descriptor: {
        modelHash: "synthetic",
        sampler: { respacing: "10", sampler: "euler", cfgScale: 1, guideChannels: "all" },
      },
      samples: 8,
    });
    const result = await fidelity(sample, policy, priors, [900, 913, 927], variants);
    console.log("synthetic FORA 50% MSE vs uncached", JSON.stringify(result));
    expect(result.trend!).toBeLessThan(result.reuse!);
    expect(result.trendOnly!).toBeLessThan(result.reuse!);
  });

  it("uploads each prior once per backend and frees it on dispose", async () => {
    const priors = await calibrate({
      runSample: async (hook, i) => void (await sample(hook, i)),
      basePolicy: policy,
      steps,
      depth: 4,
      descriptor: {
        modelHash: "synthetic",
        sampler: { respacing: "10", sampler: "euler", cfgScale: 1, guideChannels: "all" },
      },
      samples: 2,
    });
    const tracked = trackTensors(backend);
    const { corrector } = eoc(policy, priors, { mode: "prior", judgment: false });
    const live: number[] = [];
    for (let run = 0; run < 2; run++) {
      const engine = createCacheEngine({ policy, corrector });
      await model.sample({ backend: tracked, hook: engine, steps, rows: ["cond", "uncond"] });
      engine.dispose();
      live.push(tracked.live);
    }
    // One upload per cell whose gamma is not 0 (a zero term is left out of the sum).
    expect(live[0]).toBe(priors.cells().filter((cell) => cell.gamma !== 0).length);
    expect(live[0]).toBeGreaterThan(0);
    expect(live[1]).toBe(live[0]);
    corrector.dispose();
    expect(tracked.live).toBe(0);
  });
});

describe("end to end on the tiny DiT fixture (DDIM 6 steps, CFG 4, FORA 50%)", () => {
  const policy = parsePolicy("fora:interval=2");

  it("EOC output is closer to uncached than plain reuse on calibration-disjoint seeds", async () => {
    const backend = createCpuBackend();
    const { model, sample, calibration } = await loadTinyDit(backend);
    const priors = await calibrate(calibration(8));
    const result = await fidelity(sample, policy, priors, [500, 511, 523, 537], variants);
    console.log(
      "tiny DiT FORA 50% MSE vs uncached",
      JSON.stringify(result),
      JSON.stringify(priors.header.report.terms),
    );
    expect(result.trend!).toBeLessThan(result.reuse!);
    model.dispose();
  });

  it("the DiT applies EOC's terms inside its gated residual: the samples of combine then re-gate", async () => {
    const backend = createCpuBackend();
    const { model, sample, calibration } = await loadTinyDit(backend);
    const priors = await calibrate(calibration(2));
    const { corrector } = eoc(policy, priors, { tau: 0 });
    const fusedEngine = createCacheEngine({ policy, corrector });
    const fused = await sample(fusedEngine, 500);
    const corrected = corrector.counts.corrected;
    expect(corrected).toBeGreaterThan(0);
    // Without runBranch the model gets EOC's combined tensor from run, as before.
    const engine = createCacheEngine({ policy, corrector });
    const unfused = await sample(
      {
        beginForward: (step, b) => engine.beginForward(step, b),
        endForward: () => engine.endForward(),
        run: (call) => engine.run(call),
      },
      500,
    );
    expect(corrector.counts.corrected).toBe(2 * corrected);
    // Equal up to float32 rounding (the fused unit sums the terms in another order), which six
    // sampler steps amplify: within 1e-5 of the samples' largest magnitude.
    const scale = Math.max(...unfused.map(Math.abs));
    const worst = Math.max(...unfused.map((value, i) => Math.abs(fused[i]! - value)));
    expect(worst).toBeLessThanOrEqual(1e-5 * scale);
    for (const used of [fusedEngine, engine]) used.dispose();
    corrector.dispose();
    model.dispose();
  });
});
