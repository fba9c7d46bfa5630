import { createCpuBackend } from "@ditcache/backend-cpu";
import { type Backend, type StepInfo, siteId, type Tensor } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import type { ComputedValue, CorrectionContext } from "../corrector.js";
import { TensorMath } from "../math.js";
import { parseCorrector } from "../registry.js";
import { gocCorrector } from "./goc.js";
import { reuseCorrector } from "./reuse.js";
import { interpolationWeights, taylorCorrector } from "./taylor.js";

const backend: Backend = createCpuBackend();
const math = new TensorMath(backend);

/** A trajectory F(s) = f(s) elementwise over a few channels, computed at `computed` steps. */
function context(f: (s: number, c: number) => number, computed: number[], at: number): CorrectionContext {
  const history: ComputedValue[] = computed
    .slice()
    .reverse()
    .map((step) => ({
      step,
      value: backend.tensor(
        Float32Array.from({ length: 4 }, (_, c) => f(step, c)),
        [1, 4],
      ),
    }));
  const step: StepInfo = { index: at, count: 20, timestep: 0, rows: ["cond"] };
  return {
    site: siteId("attn", 0),
    key: "block0.attn",
    half: undefined,
    step,
    sourceStep: history[0]!.step,
    distance: at - history[0]!.step,
    cached: history[0]!.value,
    history,
    valueKind: "branch",
    backend,
    math,
  };
}

async function values(tensor: Tensor): Promise<number[]> {
  return [...(await backend.read(tensor))];
}

describe("correctors", () => {
  const linear = (s: number, c: number) => 0.5 + c - 0.25 * s;
  const quadratic = (s: number, c: number) => c + 0.1 * s - 0.05 * s * s;

  it("reuse returns the cached tensor itself", async () => {
    const ctx = context(linear, [2], 3);
    expect(await reuseCorrector().correct(ctx)).toBe(ctx.cached);
  });

  it("taylor order 1 is exact on a linear trajectory (uneven steps)", async () => {
    const out = await taylorCorrector({ order: 1 }).correct(context(linear, [1, 4], 6));
    const expected = [0, 1, 2, 3].map((c) => linear(6, c));
    (await values(out)).forEach((v, i) => {
      expect(v).toBeCloseTo(expected[i]!, 5);
    });
  });

  it("taylor order 2 is exact on a quadratic, order 1 is not", async () => {
    const ctx = context(quadratic, [2, 4, 6], 7);
    const expected = [0, 1, 2, 3].map((c) => quadratic(7, c));
    for (const [i, v] of (await values(await taylorCorrector({ order: 2 }).correct(ctx))).entries()) {
      expect(v).toBeCloseTo(expected[i]!, 5);
    }
    const first = await values(await taylorCorrector({ order: 1 }).correct(ctx));
    expect(Math.abs(first[0]! - expected[0]!)).toBeGreaterThan(1e-3);
  });

  it("taylor falls back to the order its history allows", async () => {
    const ctx = context(linear, [3], 4);
    expect(await taylorCorrector({ order: 2 }).correct(ctx)).toBe(ctx.cached);
    expect(taylorCorrector({ order: 3 }).historyLength).toBe(4);
  });

  it("interpolation weights sum to one", () => {
    const weights = interpolationWeights([0, 2, 5], 7);
    expect(weights.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  it("goc is F + k (F - F_older)", async () => {
    const ctx = context(linear, [2, 4], 5);
    const out = await values(await gocCorrector({ k: 0.5 }).correct(ctx));
    out.forEach((v, c) => {
      expect(v).toBeCloseTo(linear(4, c) + 0.5 * (linear(4, c) - linear(2, c)), 5);
    });
    const scaled = await values(await gocCorrector({ k: 1, scaleByDistance: true }).correct(ctx));
    scaled.forEach((v, c) => {
      expect(v).toBeCloseTo(linear(5, c), 5);
    });
  });

  it("parses specs and rejects bad ones with the valid choices", () => {
    expect(parseCorrector("taylor:order=2").historyLength).toBe(3);
    expect(parseCorrector("goc").spec).toBe("goc:k=0.5");
    expect(() => parseCorrector("taylor:order=9")).toThrow(
      /order: expected an integer >= 0 and <= 4, got "9"|got 9/,
    );
    expect(() => parseCorrector("tailor")).toThrow(
      /unknown cache corrector "tailor": expected one of reuse .*taylor/,
    );
    expect(() => parseCorrector("goc:kk=1")).toThrow(/unknown parameter "kk": expected one of k \(a number/);
  });
});
