import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { parseCorrector, parsePolicy, schedulePolicy, scheduleToJson } from "@ditcache/cache";
import { DitcacheError, float16ToFloat32Array, float32ToFloat16Array, readSafetensors } from "@ditcache/core";
import { afterAll, describe, expect, it } from "vitest";
import { noise, trajectoryModel } from "./__fixtures__/trajectory.js";
import { calibrate } from "./calibrate.js";
import { type EocCorrector, eoc } from "./corrector.js";
import type { PriorsDescriptor } from "./header.js";
import { checkPriorsCompatible, loadPriors, priorsFromBytes } from "./priors.js";
import "./register.js";

const descriptor: PriorsDescriptor = {
  modelHash: "sha256:abc",
  sampler: { respacing: "ddim5", sampler: "ddim", cfgScale: 4, guideChannels: 3 },
  calibration: { seeds: [0, 1, 2], labels: [3, 4, 5], description: "three seeds" },
};
const backend = createCpuBackend();
const model = trajectoryModel(backend, {
  depth: 2,
  steps: 5,
  rows: ["cond", "uncond"],
  tokens: 2,
  channels: 3,
  feature: (s, step, sample, row) =>
    noise(7 + s, 6).map(
      (v, i) => v + 0.3 * step * noise(s, 6)[i]! + 0.01 * noise(sample * 31 + row + step * 7, 6)[i]!,
    ),
});
const policy = parsePolicy("fora:interval=2");
const make = (dtype: "F16" | "F32") =>
  calibrate({
    runSample: (hook, i) => model.run(hook, i),
    basePolicy: policy,
    steps: 5,
    depth: 2,
    descriptor,
    samples: 3,
    dtype,
  });
const folder = mkdtempSync(join(tmpdir(), "ditcache-eoc-"));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

async function failure(promise: Promise<unknown>): Promise<DitcacheError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!DitcacheError.isInstance(error)) throw new Error(`expected a DitcacheError, got ${String(error)}`);
  return error;
}

describe("priors file", () => {
  it("round-trips through bytes and through an atomic save", async () => {
    const priors = await make("F16");
    const again = priorsFromBytes(priors.toBytes());
    expect(again.header).toEqual(priors.header);
    expect(again.tensors()).toEqual(priors.tensors());
    const path = join(folder, "priors.safetensors");
    await priors.save(path);
    const loaded = await loadPriors(path, {
      modelHash: "sha256:abc",
      steps: 5,
      basePolicy: policy,
      depth: 2,
      sampler: descriptor.sampler,
    });
    expect(loaded.tensors()).toEqual(priors.tensors());
    expect(loaded.cell("block1.mlp", 3)).toEqual(priors.cell("block1.mlp", 3));
    expect(loaded.header.calibration).toEqual({
      samples: 3,
      rows: 6,
      seeds: [0, 1, 2],
      labels: [3, 4, 5],
      description: "three seeds",
      fitSpace: "guided",
      gateWeighted: false, // the synthetic model passes no gates
      fitTrajectory: "trend-corrected",
    });
  });

  it("stores every tensor as float16, rounded in memory exactly as in the file", async () => {
    const half = await make("F16");
    const full = await make("F32");
    const bytes = half.toBytes();
    const { tensors, metadata } = readSafetensors(bytes);
    expect([...tensors.values()].every((tensor) => tensor.dtype === "F16")).toBe(true);
    expect(JSON.parse(metadata["ditcache.eoc"]!).dtype).toBe("F16");
    const d32 = full.tensors().difference!.data;
    expect(half.tensors().difference!.data).toEqual(float16ToFloat32Array(float32ToFloat16Array(d32)));
    expect(bytes.length).toBeLessThan(full.toBytes().length);
  });

  it("names the field that differs when loaded for another configuration", async () => {
    const bytes = (await make("F16")).toBytes();
    const cases: [Parameters<typeof loadPriors>[1], RegExp][] = [
      [
        { modelHash: "sha256:other" },
        /model hash differs: the priors were made for "sha256:abc", expected "sha256:other"/,
      ],
      [{ steps: 20 }, /steps differs: the priors were made for 5, expected 20/],
      [{ sampler: { respacing: "ddim20" } }, /sampler respacing differs/],
      [{ sampler: { sampler: "ddpm" } }, /sampler differs/],
      [{ sampler: { cfgScale: 1.5 } }, /cfg scale differs/],
      [{ sampler: { guideChannels: "all" } }, /guide channels differs/],
      [{ basePolicy: "fora:interval=4" }, /base policy differs: the priors were made for "fora:interval=2"/],
      [{ depth: 28 }, /model depth differs/],
    ];
    for (const [expected, message] of cases) {
      const error = await failure(loadPriors(bytes, expected));
      expect(error.code).toBe("INCOMPATIBLE_FILE");
      expect(error.message).toMatch(message);
    }
    const priors = priorsFromBytes(bytes);
    expect(() => eoc(parsePolicy("fora:interval=3"), priors)).toThrow(/base policy differs/);
  });

  it("ties priors to a schedule's table, not to the path it was read from", async () => {
    const sites = ["block0.attn", "block0.mlp", "block1.attn", "block1.mlp"];
    const row = (reuse: boolean) => sites.map(() => reuse);
    const table = { version: 1 as const, steps: 5, sites, reuse: [false, true, false, true, false].map(row) };
    const original = join(folder, "schedule.json");
    const moved = join(folder, "moved", "schedule.json");
    writeFileSync(original, scheduleToJson(table));
    const base = schedulePolicy({ file: original });
    const priors = priorsFromBytes(
      (
        await calibrate({
          runSample: (hook, i) => model.run(hook, i),
          basePolicy: base,
          steps: 5,
          depth: 2,
          descriptor,
          samples: 2,
        })
      ).toBytes(),
    );
    expect(priors.header.basePolicy).toBe(`schedule:file=${original}`);
    expect(priors.header.basePolicyIdentity).toBe(base.identity);
    // The same table under another path (an eval folder copied elsewhere) fits.
    mkdirSync(join(folder, "moved"), { recursive: true });
    writeFileSync(moved, JSON.stringify(table, null, 1));
    expect(() => eoc(schedulePolicy({ file: moved }), priors)).not.toThrow();
    // The file rewritten with another table, under the very path the priors name, does not.
    writeFileSync(original, scheduleToJson({ ...table, reuse: [false, true, true, false, false].map(row) }));
    expect(() => eoc(schedulePolicy({ file: original }), priors)).toThrow(
      /base policy differs: the priors were made for "schedule:file=.*schedule.json \(table:[0-9a-f]{16}\)", expected ".*\(table:[0-9a-f]{16}\)"/,
    );
    // A spec string is compared as a spec.
    expect(() => checkPriorsCompatible(priors.header, { basePolicy: `schedule:file=${moved}` })).toThrow(
      /base policy differs/,
    );
  });

  it("rejects files that are not priors, other versions, and missing files", async () => {
    const priors = await make("F16");
    const header = { ...priors.header, version: 1 };
    const bytes = (await import("@ditcache/core")).writeSafetensors(priors.tensors(), {
      dtype: "F16",
      metadata: { "ditcache.eoc": JSON.stringify(header) },
    });
    expect((await failure(loadPriors(bytes))).message).toMatch(
      /format version differs: the file has 1, this ditcache reads 2 \(run calibrate again/,
    );
    const plain = (await import("@ditcache/core")).writeSafetensors({
      w: { shape: [1], data: Float32Array.of(1) },
    });
    expect((await failure(loadPriors(plain))).message).toMatch(/not an EOC priors file/);
    expect((await failure(loadPriors(join(folder, "missing.safetensors")))).code).toBe("NOT_FOUND");
  });

  it("reads the trend order, 1 when a file has none, and rejects a bad one", async () => {
    const priors = await make("F16");
    expect(priors.trendOrder).toBe(1);
    const { writeSafetensors } = await import("@ditcache/core");
    const withHeader = (header: object) =>
      writeSafetensors(priors.tensors(), {
        dtype: "F16",
        metadata: { "ditcache.eoc": JSON.stringify(header) },
      });
    const { trendOrder: _, ...older } = priors.header;
    expect((await loadPriors(withHeader(older))).trendOrder).toBe(1);
    expect((await loadPriors(withHeader({ ...priors.header, trendOrder: 2 }))).trendOrder).toBe(2);
    for (const bad of [0, 1.5, 4, "2"]) {
      const error = await failure(loadPriors(withHeader({ ...priors.header, trendOrder: bad })));
      expect(error.code).toBe("BAD_FILE");
      expect(error.message).toMatch(/trendOrder: expected an integer in \[1, 3\]/);
    }
  });

  it("stays small without the mean", async () => {
    const withMean = await make("F16");
    const without = await calibrate({
      runSample: (hook, i) => model.run(hook, i),
      basePolicy: policy,
      steps: 5,
      depth: 2,
      descriptor,
      samples: 1,
      storeMean: false,
    });
    expect(without.tensors().mean).toBeUndefined();
    expect(priorsFromBytes(without.toBytes()).mean("block0.attn", 1)).toBeUndefined();
    expect(without.toBytes().length).toBeLessThan(withMean.toBytes().length);
  });
});

describe("registry", () => {
  it("parseCorrector builds the eoc corrector from a priors path, shared per spec", async () => {
    const path = join(folder, "registry.safetensors");
    await (await make("F16")).save(path);
    const corrector = parseCorrector(`eoc:priors=${path},mode=prior,tau=0.01`) as EocCorrector;
    expect(corrector.name).toBe("eoc");
    expect(corrector.terms).toBe("prior");
    expect(corrector.tau).toBe(0.01);
    expect(corrector.historyLength).toBe(1);
    expect(parseCorrector(corrector.spec)).toBe(corrector);
    const trend = parseCorrector(`eoc:priors=${path}`) as EocCorrector;
    expect(trend.terms).toBe("trend+prior");
    expect(trend.historyLength).toBe(2);
    const ablation = parseCorrector(
      `eoc:priors=${path},prior=false,judgment=false,gamma=global`,
    ) as EocCorrector;
    expect(ablation.terms).toBe("trend");
    expect(ablation.tau).toBeUndefined();
    expect(() => parseCorrector("eoc:mode=trend")).toThrow(/parameter priors/);
    expect(() => parseCorrector(`eoc:priors=${path},gamma=abc`)).toThrow(/gamma/);
    expect(() => parseCorrector(`eoc:priors=${path},mode=fast`)).toThrow(/mode/);
    expect(() => parseCorrector(`eoc:priors=${join(folder, "nope")}`)).toThrow(/cannot read/);
    corrector.dispose();
    trend.dispose();
    ablation.dispose();
  });
});
