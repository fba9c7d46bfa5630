import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { DiTModel } from "@ditcache/dit";
import { randomDiTWeights } from "@ditcache/dit/testing";
import { DigitClassifier } from "@ditcache/metrics";
import { afterAll, describe, expect, it } from "vitest";
import { mnistReference } from "../commands/eval.js";
import { renderScatterPlot, ticks } from "./plot.js";
import { writeReports } from "./report.js";
import { allRows, selectRows } from "./rows.js";
import { type EvaluationOptions, type RowResult, runEvaluation } from "./run.js";

const CLASSIFIER = fileURLToPath(
  new URL("../../../../packages/metrics/src/__fixtures__/tiny-classifier.safetensors", import.meta.url),
);
const CONFIG = {
  inputSize: 32,
  patchSize: 8,
  inChannels: 1,
  hiddenSize: 32,
  depth: 2,
  numHeads: 2,
  mlpRatio: 2,
  numClasses: 10,
  learnSigma: true,
  classDropoutProb: 0.1,
};

function pngSize(bytes: Uint8Array): { width: number; height: number } {
  expect([...bytes.subarray(0, 8)]).toEqual([137, 80, 78, 71, 13, 10, 26, 10]);
  expect(new TextDecoder().decode(bytes.subarray(12, 16))).toBe("IHDR");
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

describe("ditcache eval, quick mode on a tiny random DiT and the tiny classifier", async () => {
  const backend = createCpuBackend();
  const model = DiTModel.fromWeights(randomDiTWeights(CONFIG, 3, 0.5), CONFIG, backend);
  const classifier = await DigitClassifier.load(CLASSIFIER, backend);
  const out = await mkdtemp(join(tmpdir(), "ditcache-eval-"));
  afterAll(() => rm(out, { recursive: true, force: true }));
  const specs = allRows();
  const computed: string[] = [];
  const options: EvaluationOptions = {
    model,
    modelHash: "tiny-random-dit",
    classifier,
    realImages: mnistReference("heldout"),
    sampler: { steps: 8, sampler: "ddim", cfgScale: 4, guideChannels: "all" },
    samples: 20,
    calibrationSamples: 8,
    batchSize: 10,
    rows: specs,
    out,
    log: () => {},
    onRowComputed: (id) => computed.push(id),
  };
  const info = {
    command: "test",
    machine: "test",
    backend: "cpu",
    model: "tiny",
    date: "2026-01-01",
    settings: {},
  };

  it("computes every applicable row, with EOC rows, and writes the tables and plots", async () => {
    const result = await runEvaluation(options);
    const runnable = specs.filter((spec) => spec.notApplicable === undefined).map((spec) => spec.id);
    expect(result.rows.map((row) => row.id)).toEqual(runnable);
    expect(computed).toEqual(runnable);
    expect(runnable).toContain("fora50+eoc-trend");
    expect(runnable).toContain("learned+eoc-prior");
    expect(specs.find((spec) => spec.id === "fbcache+eoc-trend")?.notApplicable).toMatch(/static/);
    for (const row of result.rows) {
      expect(Number.isFinite(row.fid), row.id).toBe(true);
      expect(row.samples).toBe(20);
      if (row.id === "none") {
        expect(row.cachingLevel).toBe(0);
        expect(row.mse).toBe(0);
      } else {
        expect(row.macsRatio, row.id).toBeLessThan(1);
        expect(row.mse, row.id).toBeGreaterThan(0);
      }
      if (row.corrector.startsWith("eoc")) expect(row.eocCounts, row.id).toBeDefined();
    }
    const level = (id: string) => result.rows.find((row) => row.id === id)!.cachingLevel;
    expect([level("fora25+reuse"), level("fora50+reuse"), level("fora75+goc")]).toEqual([0.25, 0.5, 0.75]);
    const fora50 = result.rows.find((row) => row.id === "fora50+reuse")!;
    const learned = result.rows.find((row) => row.id === "learned+reuse")!;
    expect(learned.cachingLevel).toBeGreaterThan(0.1);
    expect(learned.cachingLevel).toBeLessThanOrEqual(0.22);
    // EOC changes the images relative to plain reuse on the same base policy.
    expect(result.rows.find((row) => row.id === "fora50+eoc-prior")!.mse).not.toBe(fora50.mse);

    const files = await writeReports(out, result, specs, info);
    const markdown = await readFile(join(out, "results.md"), "utf8");
    for (const label of [
      "FORA 25%",
      "FORA 50%",
      "FORA 75%",
      "learned ~22%",
      "FBCache",
      "TeaCache",
      "EOC (mode trend, closed-loop settings)",
      "TaylorSeer (order 2)",
      "n/a",
    ]) {
      expect(markdown).toContain(label);
    }
    expect(markdown).toMatch(/\*\*/);
    const ablation = await readFile(join(out, "eoc-ablation.md"), "utf8");
    expect(ablation).toContain("judgment off");
    expect(ablation).toContain("token-channel");
    expect(ablation).toContain("forecast order 1 only");
    expect(existsSync(join(out, "calibration", "priors-fora50-channel-order1.safetensors"))).toBe(true);
    const json = JSON.parse(await readFile(join(out, "results.json"), "utf8"));
    expect(json.rows).toHaveLength(runnable.length);
    expect(json.notApplicable).toHaveLength(4);
    expect(pngSize(new Uint8Array(await readFile(join(out, "plot.png"))))).toEqual({
      width: 720,
      height: 480,
    });
    expect(files).toContain(join(out, "psnr-plot.png"));
    expect(existsSync(join(out, "calibration", "learned-schedule.json"))).toBe(true);
    expect(existsSync(join(out, "calibration", "priors-fora50-token-channel.safetensors"))).toBe(true);
  });

  it("resumes: finished rows are read back, only missing ones are computed", async () => {
    computed.length = 0;
    const again = await runEvaluation(options);
    expect(computed).toEqual([]);
    expect(again.rows.length).toBeGreaterThan(30);
    await rm(join(out, "rows", "fora75+goc.json"));
    await rm(join(out, "rows", "fora50+eoc-trend.json"));
    const third = await runEvaluation(options);
    expect(computed).toEqual(["fora50+eoc-trend", "fora75+goc"]);
    expect(third.rows.find((row) => row.id === "fora75+goc")!.fid).toBeCloseTo(
      again.rows.find((row) => row.id === "fora75+goc")!.fid,
      9,
    );
  });

  it("re-times rows read back (retime): new speed fields, the same images and scores", async () => {
    computed.length = 0;
    const file = join(out, "rows", "fora50+reuse.json");
    const before = JSON.parse(await readFile(file, "utf8")) as RowResult;
    const rows = specs.filter((spec) => spec.id === "none" || spec.id === "fora50+reuse");
    const again = await runEvaluation({ ...options, rows, retime: true });
    expect(computed).toEqual([]);
    const row = again.rows.find((candidate) => candidate.id === "fora50+reuse")!;
    expect(row.timedAt).toBeDefined();
    expect(row.speedup).toBeCloseTo(row.uncachedMsPerImage / row.msPerImage, 0);
    expect({ ...row, msPerImage: 0, uncachedMsPerImage: 0, speedup: 0, timedAt: undefined }).toEqual({
      ...before,
      msPerImage: 0,
      uncachedMsPerImage: 0,
      speedup: 0,
      timedAt: undefined,
    });
    expect(JSON.parse(await readFile(file, "utf8"))).toEqual(row);
  });

  it("refuses an output folder made with other settings", async () => {
    await expect(runEvaluation({ ...options, samples: 30 })).rejects.toThrow(/another samples/);
  });
});

describe("eval helpers", () => {
  it("selects rows by id, base or corrector, always keeping the uncached row", () => {
    const ids = selectRows(allRows(), "fora50,goc").map((row) => row.id);
    expect(ids[0]).toBe("none");
    expect(ids).toContain("fora50+eoc-token");
    expect(ids).toContain("teacache+goc");
    expect(ids).not.toContain("fora25+reuse");
  });

  it("plots: round ticks that cover the data; a valid image", () => {
    expect(ticks([1.13, 2.71])).toEqual([1, 1.5, 2, 2.5, 3]);
    expect(ticks([0.05, 0.31])).toEqual([0, 0.1, 0.2, 0.3, 0.4]);
    const flat = ticks([7, 7]);
    expect(flat[0]).toBeLessThan(7);
    expect(flat[flat.length - 1]).toBeGreaterThan(7);
    const image = renderScatterPlot({
      title: "T",
      xLabel: "X",
      yLabel: "Y",
      series: [{ name: "A", color: [255, 0, 0], points: [{ x: 1, y: 2 }] }],
    });
    expect(image.data.length).toBe(image.width * image.height * 3);
    expect(image.data.some((value, i) => i % 3 === 0 && value === 255 && image.data[i + 1] === 0)).toBe(true);
  });
});
