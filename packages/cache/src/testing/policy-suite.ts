import type { Backend, BatchHalf } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import type { Corrector } from "../corrector.js";
import { createCacheEngine } from "../engine.js";
import type { CachePolicy } from "../policy.js";
import { listPolicies, parsePolicy } from "../registry.js";
import { createSyntheticModel, type SpyRecord, type SyntheticModel } from "./synthetic-model.js";
import { trackTensors } from "./tracking-backend.js";

/** Options of {@link describePolicySuite}. */
export interface PolicySuiteOptions {
  /** Label of the describe block. */
  name: string;
  /** Creates the policy under test (it must reuse something on the synthetic model). */
  create: () => CachePolicy;
  /** Creates the same policy configured to cache nothing (level 0), if it has such a setting. */
  disabled?: () => CachePolicy;
  /** Creates a fresh backend (e.g. `createCpuBackend` from @ditcache/backend-cpu). */
  createBackend: () => Backend;
  /** Corrector to combine with. @defaultValue plain reuse */
  corrector?: () => Corrector;
  /** Steps per run. @defaultValue 10 */
  steps?: number;
  /** Synthetic model depth. @defaultValue 4 */
  depth?: number;
  /** Batch rows. @defaultValue ["cond", "cond", "uncond", "uncond"] */
  rows?: readonly BatchHalf[];
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.every((value, i) => value === y[i]);
}

/**
 * The suite every cache policy passes: disabled / level 0 is bit-identical to uncached; runs are
 * deterministic; the declared caching level is achieved; no state leaks between runs or between
 * engines side by side; reused branch values are pre-gate (re-gated with the current gate by the
 * model) and reused residuals are added to the current input; disposing frees every tensor.
 * Call it inside a vitest test file.
 */
export function describePolicySuite(options: PolicySuiteOptions): void {
  const steps = options.steps ?? 10;
  const rows = options.rows ?? ["cond", "cond", "uncond", "uncond"];
  const model: SyntheticModel = createSyntheticModel({ depth: options.depth ?? 4 });

  async function cached(policy: CachePolicy, backend: Backend, spy?: SpyRecord[], withCorrector = true) {
    const corrector = withCorrector && options.corrector ? { corrector: options.corrector() } : {};
    const engine = createCacheEngine({ policy, ...corrector });
    const sample = await model.sample({ backend, hook: engine, steps, rows, ...(spy ? { spy } : {}) });
    const summary = engine.summary();
    engine.dispose();
    return { sample, summary };
  }

  describe(`cache policy suite: ${options.name}`, () => {
    it("is bit-identical to uncached when disabled (level 0)", async () => {
      const backend = options.createBackend();
      const reference = await model.sample({ backend, steps, rows });
      const none = await cached(parsePolicy("none"), backend);
      expect(bitsEqual(none.sample, reference)).toBe(true);
      if (options.disabled) {
        const disabled = await cached(options.disabled(), backend);
        expect(disabled.summary.cachingLevel).toBe(0);
        expect(bitsEqual(disabled.sample, reference)).toBe(true);
      }
    });

    it("reuses, changes the output, and is deterministic", async () => {
      const backend = options.createBackend();
      const reference = await model.sample({ backend, steps, rows });
      const first = await cached(options.create(), backend);
      const second = await cached(options.create(), createBackendAgain());
      expect(first.summary.cachingLevel).toBeGreaterThan(0);
      expect(first.summary.macs.computed).toBeLessThan(first.summary.macs.full);
      expect(bitsEqual(first.sample, reference)).toBe(false);
      expect(bitsEqual(first.sample, second.sample)).toBe(true);
      expect(second.summary).toEqual(first.summary);
      expect(JSON.parse(JSON.stringify(first.summary))).toEqual(first.summary);
    });

    it("achieves its declared caching level", async () => {
      const policy = options.create();
      const { summary } = await cached(policy, options.createBackend());
      const declared = policy.cachingLevel?.(steps, model.depth);
      if (declared !== undefined) expect(summary.cachingLevel).toBeCloseTo(declared, 12);
      else expect(policy.dynamic).toBe(true);
      expect(summary.cachingLevel).toBeGreaterThanOrEqual(0);
      expect(summary.cachingLevel).toBeLessThanOrEqual(1);
    });

    it("leaks no state: engines side by side match their solo runs", async () => {
      const backend = options.createBackend();
      const soloA = await cached(options.create(), backend);
      const soloB = await cached(parsePolicy("fora:interval=3"), backend, undefined, false);
      const engineA = createCacheEngine({
        policy: options.create(),
        ...(options.corrector ? { corrector: options.corrector() } : {}),
      });
      const engineB = createCacheEngine({ policy: parsePolicy("fora:interval=3") });
      const runA = model.start({ backend, hook: engineA, steps, rows });
      const runB = model.start({ backend, hook: engineB, steps, rows });
      while ((await runA.step()) && (await runB.step())) {}
      while (await runB.step()) {}
      expect(bitsEqual(await runA.result(), soloA.sample)).toBe(true);
      expect(bitsEqual(await runB.result(), soloB.sample)).toBe(true);
      expect(engineA.summary()).toEqual(soloA.summary);
      engineA.dispose();
      engineB.dispose();
    });

    it("returns pre-gate values for the model to re-gate, and input + residual for block sites", async () => {
      const spy: SpyRecord[] = [];
      const policy = options.create();
      const { summary } = await cached(policy, options.createBackend(), spy);
      if (options.corrector !== undefined || policy.perHalf) return; // values are corrected / merged per row
      const depth = model.depth;
      const decided = new Set(summary.sites);
      const at = (key: string, step: number) =>
        spy.find((record) => record.key === key && record.step === step);
      let checked = 0;
      summary.sites.forEach((key, column) => {
        let source: number | undefined;
        summary.decisions.forEach((row, step) => {
          const cell = row[column];
          if (cell === "C") source = step;
          if (cell !== "R" || source === undefined) return;
          checked++;
          const range = /^blocks(\d+)-(\d+)$/.exec(key);
          const first = range ? Number(range[1]) : -1;
          const last = range ? Number(range[2]) : -1;
          const direct = range === null || (first === 0 && last === depth - 1);
          const now = direct
            ? at(key, step)!
            : { input: at(`block${first}`, step)!.input, returned: at(`block${last}`, step)!.returned };
          const then = direct
            ? at(key, source)!
            : { input: at(`block${first}`, source)!.input, computed: at(`block${last}`, source)!.returned };
          if (key.endsWith(".attn") || key.endsWith(".mlp")) {
            // The source step's pre-gate output, bit for bit: the model applies the current gate.
            expect(bitsEqual(now.returned, then.computed!)).toBe(true);
          } else {
            for (let i = 0; i < now.returned.length; i++) {
              expect(now.returned[i]).toBeCloseTo(now.input[i]! + (then.computed![i]! - then.input[i]!), 5);
            }
          }
        });
      });
      expect(checked).toBe(Object.values(summary.reuseCounts).reduce((a, b) => a + b, 0));
      expect(decided.size).toBeGreaterThan(0);
    });

    it("frees every tensor it holds on dispose", async () => {
      const backend = trackTensors(options.createBackend());
      const engine = createCacheEngine({
        policy: options.create(),
        ...(options.corrector ? { corrector: options.corrector() } : {}),
      });
      await model.sample({ backend, hook: engine, steps, rows });
      expect(engine.summary().memory.currentBytes).toBeGreaterThan(0);
      engine.dispose();
      expect(backend.live).toBe(0);
      expect(engine.summary().memory.currentBytes).toBe(0);
    });
  });

  function createBackendAgain(): Backend {
    return options.createBackend();
  }
}

/**
 * Runs {@link describePolicySuite} for every example of every registered policy (the
 * registration's `examples` and `disabled` specs).
 */
export function describeRegisteredPolicySuites(createBackend: () => Backend): void {
  for (const registration of listPolicies()) {
    for (const example of registration.examples ?? []) {
      describePolicySuite({
        name: example,
        create: () => parsePolicy(example),
        ...(registration.disabled ? { disabled: () => parsePolicy(registration.disabled!) } : {}),
        createBackend,
      });
    }
  }
}
