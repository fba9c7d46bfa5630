import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { describe, expect, it } from "vitest";
import { createCacheEngine } from "../engine.js";
import { createSyntheticModel } from "../testing/index.js";
import { convertL2CRouter, createReuseErrorRecorder, learnedPolicy, learnSchedule } from "./learned.js";
import { parseSchedule, scheduleCachingLevel, schedulePolicy, scheduleToJson } from "./schedule.js";
import { evaluatePolynomial, fitTeaCachePolynomial } from "./teacache.js";

const model = createSyntheticModel({ depth: 4 });

describe("schedule", () => {
  const table = {
    version: 1 as const,
    steps: 4,
    depth: 4,
    sites: ["block0.attn", "block1", "blocks2-3"],
    reuse: [
      [false, false, false],
      [true, true, false],
      [true, false, true],
      [false, false, false],
    ],
  };

  it("round-trips JSON and computes its caching level", () => {
    expect(parseSchedule(scheduleToJson(table))).toEqual(table);
    // step 1: 0.5 + 2 units, step 2: 0.5 + 4 units → (1 + 2 + 1 + 4) / 32
    expect(scheduleCachingLevel(table)).toBeCloseTo(8 / 32, 12);
  });

  it("rejects malformed tables with the reason", () => {
    expect(() => parseSchedule("{")).toThrow(/schedule: expected JSON/);
    expect(() => parseSchedule(JSON.stringify({ ...table, reuse: table.reuse.slice(1) }))).toThrow(/4 rows/);
    expect(() =>
      parseSchedule(JSON.stringify({ ...table, sites: ["block0.attn", "blockX", "block2"] })),
    ).toThrow(/site key/);
    expect(() =>
      parseSchedule(JSON.stringify({ ...table, reuse: [[true, false, false], ...table.reuse.slice(1)] })),
    ).toThrow(/step 0/);
  });

  it("has an identity that follows the table, not the path or the JSON's layout", () => {
    const folder = mkdtempSync(join(tmpdir(), "ditcache-schedule-"));
    try {
      const a = join(folder, "a.json");
      const b = join(folder, "b.json");
      writeFileSync(a, scheduleToJson(table));
      // Same decisions: another path, other key order and whitespace, the implied depth left out.
      const { depth: _, ...implied } = table;
      writeFileSync(
        b,
        JSON.stringify({ reuse: implied.reuse, sites: implied.sites, steps: 4, version: 1 }, null, 2),
      );
      const fromA = schedulePolicy({ file: a });
      expect(fromA.spec).toBe(`schedule:file=${a}`);
      expect(fromA.identity).toMatch(/^table:[0-9a-f]{16}$/);
      expect(schedulePolicy({ file: b }).identity).toBe(fromA.identity);
      expect(schedulePolicy({ table }).identity).toBe(fromA.identity);
      expect(learnedPolicy({ file: b }).identity).toBe(fromA.identity);
      // One cell more: another identity under the same path.
      writeFileSync(
        a,
        scheduleToJson({ ...table, reuse: [...table.reuse.slice(0, 3), [false, true, false]] }),
      );
      expect(schedulePolicy({ file: a }).identity).not.toBe(fromA.identity);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it("drives the engine to exactly the table", async () => {
    const engine = createCacheEngine({ policy: schedulePolicy({ table }) });
    await model.sample({ backend: createCpuBackend(), hook: engine, steps: 4 });
    const summary = engine.summary();
    engine.dispose();
    expect(summary.cachingLevel).toBeCloseTo(scheduleCachingLevel(table), 12);
  });
});

describe("learned", () => {
  it("learns a schedule under a budget from measured errors", async () => {
    const recorder = createReuseErrorRecorder();
    const backend = createCpuBackend();
    const learned = await learnSchedule(async () => {
      await model.sample({ backend, hook: recorder, steps: 8, seed: 3 });
      return recorder.table();
    }, 0.25);
    recorder.dispose();
    expect(learned.sites).toHaveLength(8);
    expect(scheduleCachingLevel(learned)).toBeCloseTo(0.25, 12);
    expect(learned.reuse[0]!.some(Boolean)).toBe(false);
    const engine = createCacheEngine({ policy: learnedPolicy({ table: learned }) });
    await model.sample({ backend, hook: engine, steps: 8 });
    expect(engine.summary().cachingLevel).toBeCloseTo(0.25, 12);
    engine.dispose();
  });

  it("prefers the cheapest reuses and spreads chains", async () => {
    const table = await learnSchedule(
      async () => ({
        steps: 4,
        depth: 1,
        sites: ["block0.attn", "block0.mlp"],
        error: [
          [0, 0],
          [0.1, 0.5],
          [0.1, 0.5],
          [0.1, 0.5],
        ],
      }),
      2 / 8,
    );
    expect(table.reuse.map((row) => row[0])).toEqual([false, true, false, true]);
  });

  it("converts an official Learning-to-Cache router", () => {
    const logit = (p: number) => Math.log(p / (1 - p));
    // 3 steps, depth 1: routers in ascending-timestep order (router 2 = sampling step 0).
    const router = {
      "routers.0.prob": [logit(0.05), logit(0.9)],
      "routers.1.prob": [logit(0.5), logit(0.01)],
      "routers.2.prob": [logit(0.01), logit(0.01)],
    };
    const table = convertL2CRouter(router, { threshold: 0.1 });
    expect(table.sites).toEqual(["block0.attn", "block0.mlp"]);
    expect(table.reuse).toEqual([
      [false, false],
      [false, true],
      [true, false],
    ]);
    expect(() => convertL2CRouter({ foo: 1 })).toThrow(/Learning-to-Cache router/);
  });
});

describe("fitTeaCachePolynomial", () => {
  it("recovers a polynomial by least squares", () => {
    const truth = [3, -2, 0.5, 0.01];
    const samples = Array.from({ length: 30 }, (_, i) => {
      const input = 0.01 + i * 0.02;
      return { input, output: evaluatePolynomial(truth, input) };
    });
    fitTeaCachePolynomial(samples, 3).forEach((c, i) => {
      expect(c).toBeCloseTo(truth[i]!, 6);
    });
    expect(() => fitTeaCachePolynomial(samples.slice(0, 2), 3)).toThrow(/at least degree \+ 1 = 4/);
  });
});
