import { createCpuBackend } from "@ditcache/backend-cpu";
import { DitcacheError, isWeightedSum, type SiteHook } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { createCacheEngine } from "./engine.js";
import { TensorMath } from "./math.js";
import { parseCorrector, parsePolicy } from "./registry.js";
import { createSyntheticModel, trackTensors } from "./testing/index.js";

const model = createSyntheticModel({ depth: 4 });
const steps = 10;

async function run(
  spec: string,
  options: { rows?: ("cond" | "uncond")[]; budget?: number; corrector?: string } = {},
) {
  const backend = trackTensors(createCpuBackend());
  const engine = createCacheEngine({
    policy: parsePolicy(spec),
    ...(options.corrector ? { corrector: parseCorrector(options.corrector) } : {}),
    ...(options.budget !== undefined ? { memoryBudgetBytes: options.budget } : {}),
  });
  const sample = await model.sample({
    backend,
    hook: engine,
    steps,
    rows: options.rows ?? ["cond", "uncond"],
  });
  const summary = engine.summary();
  engine.dispose();
  expect(backend.live).toBe(0);
  return { sample, summary };
}

describe("CacheEngine", () => {
  it("summarises FORA 50%: decisions, level, MACs, reuse counts, memory", async () => {
    const { summary } = await run("fora:interval=2");
    expect(summary.sites).toEqual([
      "block0.attn",
      "block0.mlp",
      "block1.attn",
      "block1.mlp",
      "block2.attn",
      "block2.mlp",
      "block3.attn",
      "block3.mlp",
    ]);
    expect(summary.decisions[0]).toBe("CCCCCCCC");
    expect(summary.decisions[1]).toBe("RRRRRRRR");
    expect(summary.cachingLevel).toBe(0.5);
    // Branch MACs are all the synthetic model has, so half of them were skipped.
    expect(summary.macs.ratio).toBeCloseTo(0.5, 12);
    expect(summary.reuseCounts["block2.mlp"]).toBe(5);
    // One (2, 3, 8) float32 value per branch site.
    expect(summary.memory.peakBytes).toBe(8 * 2 * 3 * 8 * 4);
    expect(summary.memory.budgetBytes).toBeNull();
  });

  it("computes instead of caching past the memory budget, and reports it", async () => {
    const perSite = 2 * 3 * 8 * 4;
    const { summary } = await run("fora:interval=2", { budget: 3 * perSite });
    expect(summary.memory.peakBytes).toBeLessThanOrEqual(3 * perSite);
    expect(summary.memory.budgetRefusals).toBeGreaterThan(0);
    expect(summary.forcedComputes.budget).toBeGreaterThan(0);
    expect(summary.cachingLevel).toBeCloseTo((0.5 * 3) / 8, 12);
  });

  it("keeps the history the corrector declares", async () => {
    const { summary } = await run("fora:interval=2", { corrector: "taylor:order=2" });
    expect(summary.memory.peakBytes).toBe(3 * 8 * 2 * 3 * 8 * 4);
  });

  it("per-half decisions keep batch rows independent", async () => {
    const both = await run("fbcache:threshold=0.5,perHalf=true", { rows: ["cond", "uncond"] });
    const condOnly = await run("fbcache:threshold=0.5,perHalf=true", { rows: ["cond"] });
    const row = condOnly.sample.length;
    expect(both.summary.cachingLevel).toBeGreaterThan(0);
    const condRow = both.sample.slice(0, row);
    condRow.forEach((value, i) => {
      expect(value).toBeCloseTo(condOnly.sample[i]!, 6);
    });
  });

  it("FBCache reuses the blocks 1..depth-1 range and records diff statistics", async () => {
    const { summary } = await run("fbcache:threshold=0.5");
    expect(summary.sites).toEqual(["blocks1-3"]);
    expect(summary.signals.firstBlockResidual!.count).toBeGreaterThan(0);
    expect(summary.signals.firstBlockResidual!.p50).toBeGreaterThan(0);
    expect(summary.cachingLevel).toBeCloseTo((summary.reuseCounts["blocks1-3"]! * 3) / (4 * steps), 12);
  });

  it("TeaCache measures the indicator and honours the last-step mask", async () => {
    const { summary } = await run("teacache:threshold=0.5");
    expect(summary.sites).toEqual(["blocks0-3"]);
    expect(summary.signals.indicator!.count).toBe(steps - 1);
    expect(summary.decisions[steps - 1]).toBe("C");
    expect(summary.decisions.some((cells) => cells === "R")).toBe(true);
  });

  it("runBranch answers reused branches with the corrector's terms: the samples of run, nothing leaked", async () => {
    for (const corrector of ["reuse", "taylor:order=1", "goc"]) {
      const reference = await run("fora:interval=2", { corrector });
      const backend = trackTensors(createCpuBackend());
      const math = new TensorMath(backend);
      const engine = createCacheEngine({
        policy: parsePolicy("fora:interval=2"),
        corrector: parseCorrector(corrector),
      });
      const sums: number[] = [];
      // Evaluates each sum as a model would (the synthetic model only calls run).
      const hook: SiteHook = {
        beginForward: (step, b) => engine.beginForward(step, b),
        endForward: () => engine.endForward(),
        run: async (call) => {
          const value = await engine.runBranch(call);
          if (!isWeightedSum(value)) return value;
          sums.push(value.terms.length);
          return math.combine(value.terms);
        },
      };
      const sample = await model.sample({ backend, hook, steps, rows: ["cond", "uncond"] });
      expect(engine.summary().decisions).toEqual(reference.summary.decisions);
      engine.dispose();
      expect(backend.live).toBe(0);
      // 8 branch sites at 10 steps: at the 5 compute steps the computed value itself (kept as
      // history, so the engine copies nothing), at the 5 reuse steps the corrector's terms (the
      // first reuse has one computed value: plain reuse).
      expect(sums.length).toBe(80);
      expect(Math.max(...sums)).toBe(corrector === "reuse" ? 1 : 2);
      expect(backend.runs.get("ditcache.cache.copy") ?? 0).toBe(0);
      sample.forEach((value, i) => {
        expect(value).toBeCloseTo(reference.sample[i]!, 6);
      });
    }
  });

  it("rejects bad use with clear errors", async () => {
    const backend = createCpuBackend();
    expect(() => createCacheEngine({ policy: {} as never })).toThrow(
      /options.policy: expected a CachePolicy/,
    );
    expect(() => createCacheEngine({ policy: parsePolicy("none"), memoryBudgetBytes: -1 })).toThrow(
      DitcacheError,
    );
    const engine = createCacheEngine({ policy: parsePolicy("fora") });
    engine.beginForward({ index: 3, count: 10, timestep: 0, rows: ["cond"] }, backend);
    expect(() => engine.beginForward({ index: 1, count: 10, timestep: 0, rows: ["cond"] }, backend)).toThrow(
      /create a new engine per run/,
    );
    expect(() =>
      engine.beginForward({ index: 4, count: 10, timestep: 0, rows: ["cond"] }, createCpuBackend()),
    ).toThrow(/backend/);
    engine.dispose();
    expect(() => engine.beginForward({ index: 5, count: 10, timestep: 0, rows: ["cond"] }, backend)).toThrow(
      /after dispose/,
    );
  });
});
