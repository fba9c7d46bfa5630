import { createCpuBackend } from "@ditcache/backend-cpu";
import { createCacheEngine } from "@ditcache/cache";
import type { SiteHook } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { loadTinyDit } from "./__fixtures__/tiny-dit.js";
import { trajectoryModel } from "./__fixtures__/trajectory.js";
import { type CalibrateOptions, calibrate } from "./calibrate.js";
import { eoc } from "./corrector.js";

const backend = createCpuBackend();
const { sample, calibration } = await loadTinyDit(backend);
const options: CalibrateOptions = calibration(4);
const policy = options.basePolicy;

describe("calibrate's closed-loop pass (trend setting)", () => {
  const gains = [
    { trendGain: "fitted", trendScale: 1 },
    { trendGain: "fitted", trendScale: 2 },
    { trendGain: "fixed", trendScale: 1 },
    { trendGain: "fixed", trendScale: 0 },
  ] as const;

  it("scores each candidate on the last step's stack input and keeps the best", async () => {
    const stages: string[] = [];
    const priors = await calibrate({
      ...options,
      closedLoop: { samples: 2, candidates: gains },
      onProgress: (event) => void stages.push(`${event.status} ${event.sample}/${event.samples}`),
    });
    const report = priors.header.report.closedLoop!;
    expect(report.samples).toBe(2);
    expect(report.candidates.map(({ trendGain, trendScale }) => ({ trendGain, trendScale }))).toEqual(gains);
    for (const candidate of report.candidates) {
      expect(candidate.relativeError).toBeGreaterThan(0);
      expect(Number.isFinite(candidate.relativeError)).toBe(true);
    }
    const best = Math.min(...report.candidates.map((candidate) => candidate.relativeError));
    const chosen = report.candidates.find((candidate) => candidate.relativeError === best)!;
    expect(priors.header.defaults.trendScale).toBe(chosen.trendScale);
    expect(priors.header.defaults.trendGain).toBe(chosen.trendGain);
    // Asked for the other gain, the corrector takes that gain's best candidate scale.
    const other = chosen.trendGain === "fitted" ? "fixed" : "fitted";
    const ofOther = report.candidates.filter((candidate) => candidate.trendGain === other);
    const bestOther = ofOther.reduce((a, b) => (b.relativeError < a.relativeError ? b : a));
    const { corrector } = eoc(policy, priors, { trendGain: other });
    const explicit = eoc(policy, priors, { trendGain: other, trendScale: bestOther.trendScale }).corrector;
    const engines = [corrector, explicit].map((c) => createCacheEngine({ policy, corrector: c }));
    const [byDefault, byScale] = [await sample(engines[0]!, 300), await sample(engines[1]!, 300)];
    expect(byDefault).toEqual(byScale);
    for (const engine of engines) engine.dispose();
    corrector.dispose();
    explicit.dispose();
    expect(stages).toContain("closed-loop 8/8");
    expect(stages.at(-1)).toBe("done 4/4");
  });

  it("races: every candidate runs the screen's samples, the best go on, the winner is theirs", async () => {
    const stages: string[] = [];
    const raced = await calibrate({
      ...options,
      closedLoop: { samples: 4, candidates: gains, screen: { samples: 1, keep: 2 } },
      onProgress: (event) => void stages.push(`${event.status} ${event.sample}/${event.samples}`),
    });
    const race = raced.header.report.closedLoop!;
    expect(race.screen).toEqual({ samples: 1, keep: 2 });
    expect(stages).toContain("closed-loop 10/10"); // 4 candidates x 1 sample + 2 x 3 more
    // The same runs without the race: each candidate's error on sample 0 alone, and on all four.
    const [first, full] = await Promise.all(
      [1, 4].map(async (samples) => {
        const priors = await calibrate({
          ...options,
          closedLoop: { samples, candidates: gains, screen: false },
        });
        return priors.header.report.closedLoop!.candidates.map((c) => c.relativeError);
      }),
    );
    const finalists = [0, 1, 2, 3].sort((a, b) => first![a]! - first![b]!).slice(0, 2);
    race.candidates.forEach((candidate, i) => {
      const wentOn = finalists.includes(i);
      expect(candidate.samples).toBe(wentOn ? 4 : 1);
      expect(candidate.relativeError).toBeCloseTo(wentOn ? full![i]! : first![i]!, 12);
      expect(candidate.screenError).toBeCloseTo(first![i]!, 12);
    });
    const winner = finalists.reduce((a, b) => (full![b]! < full![a]! ? b : a));
    expect(raced.header.defaults.trendGain).toBe(gains[winner]!.trendGain);
    expect(raced.header.defaults.trendScale).toBe(gains[winner]!.trendScale);
    // Asked for the other gain: its best finalist's scale, or its best on the screen if none went on.
    const other = gains[winner]!.trendGain === "fitted" ? "fixed" : "fitted";
    const ofOther = [0, 1, 2, 3].filter((i) => gains[i]!.trendGain === other);
    const pool = ofOther.some((i) => finalists.includes(i))
      ? ofOther.filter((i) => finalists.includes(i))
      : ofOther;
    const expected = pool.reduce((a, b) =>
      race.candidates[b]!.relativeError < race.candidates[a]!.relativeError ? b : a,
    );
    const implicit = eoc(policy, raced, { trendGain: other }).corrector;
    const explicit = eoc(policy, raced, {
      trendGain: other,
      trendScale: gains[expected]!.trendScale,
    }).corrector;
    const outputs = [];
    for (const corrector of [implicit, explicit]) {
      const engine = createCacheEngine({ policy, corrector });
      outputs.push(await sample(engine, 300));
      engine.dispose();
      corrector.dispose();
    }
    expect(outputs[0]).toEqual(outputs[1]);
    // A screen that would not drop anything is no race.
    const wide = await calibrate({
      ...options,
      closedLoop: { samples: 2, candidates: gains, screen: { samples: 1, keep: 4 } },
    });
    expect(wide.header.report.closedLoop!.screen).toBeUndefined();
    await expect(
      calibrate({ ...options, closedLoop: { samples: 2, candidates: gains, screen: { samples: 0 } } }),
    ).rejects.toThrow(/options.closedLoop.screen.samples: expected an integer >= 1/);
  });

  it("fits every order a candidate names and keeps the chosen order's fits", async () => {
    const tried = [
      { trendOrder: 1, trendGain: "fixed", trendScale: 1, prior: false },
      { trendOrder: 2, trendGain: "fixed", trendScale: 1, prior: false },
      { trendOrder: 2, trendGain: "fitted", trendScale: 1 },
    ] as const;
    const both = await calibrate({ ...options, closedLoop: { samples: 2, candidates: tried } });
    const report = both.header.report.closedLoop!;
    expect(report.candidates.map((c) => c.trendOrder)).toEqual([1, 2, 2]);
    const best = report.candidates.reduce((a, b) => (b.relativeError < a.relativeError ? b : a));
    expect(both.trendOrder).toBe(best.trendOrder);
    expect(both.header.defaults.trendGain).toBe(best.trendGain);
    // The fits of an order do not depend on which other orders pass 2 also fitted.
    const alone = await calibrate({
      ...options,
      closedLoop: { samples: 2, candidates: tried.filter((c) => c.trendOrder === best.trendOrder) },
    });
    expect(alone.trendOrder).toBe(both.trendOrder);
    expect(alone.cells()).toEqual(both.cells());
    expect(alone.header.defaults.tau).toEqual(both.header.defaults.tau);
    // The corrector keeps as many computed values as the order needs.
    const { corrector } = eoc(policy, both, {});
    expect(corrector.historyLength).toBe(both.trendOrder + 1);
    corrector.dispose();
  });

  it("the file's scale is the corrector's default, and an explicit trendScale overrides it", async () => {
    const priors = await calibrate({
      ...options,
      closedLoop: { samples: 1, candidates: [{ trendGain: "fitted", trendScale: 2 }] },
    });
    expect(priors.header.defaults.trendScale).toBe(2);
    const run = async (trendScale?: number) => {
      const { corrector } = eoc(policy, priors, trendScale === undefined ? {} : { trendScale });
      const engine = createCacheEngine({ policy, corrector });
      const out = await sample(engine, 500);
      engine.dispose();
      corrector.dispose();
      return { out, spec: corrector.spec };
    };
    const byDefault = await run();
    const explicit = await run(2);
    const unscaled = await run(1);
    expect(byDefault.out).toEqual(explicit.out);
    expect(unscaled.out).not.toEqual(byDefault.out);
    expect(byDefault.spec).not.toContain("trendScale");
    expect(unscaled.spec).toContain("trendScale=1");
    expect(() => eoc(policy, priors, { trendScale: -1 })).toThrow(
      /options.trendScale: expected a number >= 0/,
    );
  });

  it("a chosen curvature gain is the default of the file's own setting only", async () => {
    const candidate = {
      trendOrder: 2,
      trendGain: "fixed",
      trendScale: 1,
      prior: false,
      curvatureGain: 0,
    } as const;
    const priors = await calibrate({ ...options, closedLoop: { samples: 1, candidates: [candidate] } });
    expect(priors.header.defaults.curvatureGain).toBe(0);
    expect(priors.header.report.closedLoop!.candidates[0]!.curvatureGain).toBe(0);
    const samples = async (eocOptions: Parameters<typeof eoc>[2]) => {
      const { corrector } = eoc(policy, priors, eocOptions);
      const engine = createCacheEngine({ policy, corrector });
      const out = await sample(engine, 400);
      engine.dispose();
      corrector.dispose();
      return out;
    };
    const byDefault = await samples({});
    expect(byDefault).toEqual(await samples({ trendGain: "fixed", prior: false, curvatureGain: 0 }));
    // An explicit scale means the plain forecast at that scale: the order-2 curvature is back.
    expect(await samples({ trendScale: 1 })).not.toEqual(byDefault);
    await expect(
      calibrate({ ...options, closedLoop: { samples: 1, candidates: [{ ...candidate, prior: true }] } }),
    ).rejects.toThrow(/options.closedLoop.candidates/);
  });

  it("a candidate without the prior term, once chosen, is mode trend's default", async () => {
    const priors = await calibrate({
      ...options,
      closedLoop: { samples: 1, candidates: [{ trendGain: "fixed", trendScale: 1, prior: false }] },
    });
    expect(priors.header.defaults).toMatchObject({ trendGain: "fixed", trendScale: 1, prior: false });
    const terms = (eocOptions: Parameters<typeof eoc>[2]) => {
      const { corrector } = eoc(policy, priors, eocOptions);
      corrector.dispose();
      return corrector.terms;
    };
    expect(terms({})).toBe("trend");
    // No prior term, nothing for the judgment to gate: the spec names no tau (it parses back).
    const { corrector } = eoc(policy, priors, {});
    expect(corrector.tau).toBeUndefined();
    expect(corrector.spec).toBe("eoc:mode=trend,prior=false");
    corrector.dispose();
    expect(terms({ prior: true })).toBe("trend+prior");
    expect(terms({ mode: "prior" })).toBe("prior");
  });

  it("is skipped with closedLoop false, and by default for a model without a block-stack site", async () => {
    const off = await calibrate({ ...options, closedLoop: false });
    expect(off.header.defaults.trendScale).toBe(1);
    expect(off.header.defaults.trendGain).toBe("fitted");
    expect(off.header.defaults.prior).toBe(true);
    expect(off.header.report.closedLoop).toBeUndefined();
    const trajectory = trajectoryModel(backend, {
      depth: 1,
      steps: 4,
      rows: ["cond"],
      tokens: 2,
      channels: 2,
      feature: (s, step, i) => Float32Array.from([s, step, i, 1]),
    });
    const base = {
      ...options,
      runSample: (hook: SiteHook, i: number) => trajectory.run(hook, i),
      steps: 4,
      depth: 1,
      samples: 2,
    };
    expect((await calibrate(base)).header.report.closedLoop).toBeUndefined();
    await expect(calibrate({ ...base, closedLoop: {} })).rejects.toThrow(
      /needs a model that passes its block stack/,
    );
    await expect(calibrate({ ...options, closedLoop: { samples: 5 } })).rejects.toThrow(
      /options.closedLoop.samples: expected an integer in \[1, 4\]/,
    );
    await expect(calibrate({ ...options, closedLoop: { candidates: [] } })).rejects.toThrow(
      /options.closedLoop.candidates: expected a non-empty list/,
    );
    await expect(
      calibrate({
        ...options,
        closedLoop: { candidates: [{ trendGain: "learned" as "fixed", trendScale: 1 }] },
      }),
    ).rejects.toThrow(/trendGain: "fitted" \| "fixed"/);
  });
});
