import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DitcacheError } from "@ditcache/core";
import { ditPreset } from "@ditcache/dit";
import { TINY_DIT_CONFIG } from "@ditcache/dit/testing";
import { describe, expect, it } from "vitest";
import { parseCommandArgs } from "../args.js";
import { benchCommand } from "../commands/bench.js";
import { type BenchReport, markdownReport, priorsSizes } from "./report.js";
import { type CacheResult, type ForwardResult, runTask, tfjsForwardRuns } from "./tasks.js";
import { lazyRandomWeights, weightBytes } from "./weights.js";

describe("bench helpers", () => {
  it("sizes EOC priors as packages/eoc/scripts/priors-size.mjs does (DiT-XL/2, 20 steps, FORA 50%)", () => {
    const sizes = priorsSizes(ditPreset("DiT-XL/2"), 20);
    // The script prints 1.30 / 3.88 MB (channel) and 330.31 / 990.91 MB (token-channel).
    expect(sizes.map((size) => size.granularity)).toEqual(["channel", "token-channel"]);
    expect((sizes[0]!.bytes / 1e6).toFixed(2)).toBe("1.30");
    expect((sizes[0]!.withMeanBytes / 1e6).toFixed(2)).toBe("3.88");
    expect((sizes[1]!.bytes / 1e6).toFixed(2)).toBe("330.31");
    expect((sizes[1]!.withMeanBytes / 1e6).toFixed(2)).toBe("990.91");
  });

  it("makes random weights on access, deterministic per key, covering the model's parameters", () => {
    const weights = lazyRandomWeights(TINY_DIT_CONFIG);
    const first = weights.get("blocks.0.mlp.fc1.weight")!;
    expect(first.data).not.toBe(first.data);
    expect(Array.from(first.data)).toEqual(Array.from(first.data));
    expect(first.data.some((value) => value !== 0)).toBe(true);
    let total = 0;
    for (const { shape } of weights.values()) total += shape.reduce((a, b) => a * b, 1) * 4;
    expect(total).toBe(weightBytes(TINY_DIT_CONFIG));
    expect(weights.has("pos_embed")).toBe(false);
  });

  it("computes speed-ups, ideal speed-ups and EOC's overhead into the tables", () => {
    const forward: ForwardResult = {
      preset: "DiT-S/2",
      backend: "onnx",
      threads: 2,
      weightBytes: 1e8,
      gflopForward: 12,
      runs: 3,
      firstForwardMs: 900,
      forwardMsMedian: 200,
      forwardMsMin: 190,
      forwardCpuMsMedian: 400,
      ddimSteps: 20,
      ddimMs: 4000,
      ddimCpuMs: 8000,
      peakRssBytes: 3e8,
    };
    const tfjs: ForwardResult = {
      ...forward,
      backend: "tfjs:wasm",
      firstForwardMs: 3000,
      forwardMsMedian: 2400,
      forwardCpuMsMedian: 2400,
      ddimSteps: 0,
      ddimMs: null,
      ddimCpuMs: null,
      peakRssBytes: 4e8,
      wasmMemoryBytes: 2.5e8,
    };
    // Three rounds: the best is `ms`, the others 10% and 20% slower (EOC's slow round the third).
    const variant = (name: string, ms: number, macsRatio: number, slow = [1.1, 1.2]) => ({
      name,
      spec: name === "uncached" ? "none" : "fora:interval=2",
      ms,
      cpuMs: 2 * ms,
      macsRatio,
      cachePeakBytes: name === "uncached" ? 0 : 2e7,
      roundMs: [ms, ms * slow[0]!, ms * slow[1]!],
      roundCpuMs: [2 * ms, 2 * ms * slow[0]!, 2 * ms * slow[1]!],
    });
    const cache: CacheResult = {
      preset: "DiT-S/2",
      threads: 2,
      steps: 20,
      rounds: 3,
      variants: [
        variant("uncached", 4000, 1),
        variant("FORA 50%", 2200, 0.5),
        { ...variant("FORA 50% + EOC prior term", 2211, 0.5), corrector: "eoc:mode=prior,tau=0" },
        variant("FORA 50% + EOC", 2244, 0.5, [1.1, 1.1]),
      ],
      eocCalibrationMs: 5000,
      eocSamples: 2,
      priorsFileBytes: 1e5,
      peakRssBytes: 4e8,
    };
    const report: BenchReport = {
      date: "2026-11-30",
      host: { cpus: 2, model: "test", loadAverage: [1, 1, 1] },
      options: {},
      backend: [
        {
          preset: "DiT-S/2",
          onnx: forward,
          tfjs,
          torch: {
            preset: "DiT-S/2",
            threads: 2,
            torch: "2.13",
            ms_forward_median: 400,
            ms_forward_min: 390,
            ms_ddim20: 8000,
            gflops: 12,
            peak_rss_mb: 500,
          },
          errors: ["tfjs:wasm failed: out of WebAssembly memory | somewhere"],
        },
      ],
      cache: [cache],
      notes: ["a note"],
    };
    const markdown = markdownReport(report, new Map([["DiT-S/2", ditPreset("DiT-S/2")]]));
    // onnx row: 12 GFLOP in 0.2 s = 60 GFLOP/s (30 per CPU-second), 3x the weights, half PyTorch's time.
    expect(markdown).toContain(
      "| DiT-S/2 | onnx | 2 | 900 | 200.0 | 60.0 | 30.0 | 4000 (20 steps) | 0.30 (3.00x) | 1.00 | 0.50 | 0.50 |",
    );
    // tfjs-wasm row: forward only, 12x onnx's time, its wasm memory next to the process's RSS.
    expect(markdown).toContain(
      "| DiT-S/2 | tfjs:wasm | 2 | 3000 | 2400.0 | 5.0 | 5.0 | — | 0.40 (4.00x); wasm 0.25 | 12.00 | — | — |",
    );
    expect(markdown).toContain(
      "| DiT-S/2 | PyTorch 2.13 eager | 2 | — | 400.0 | 30.0 | — | 8000 (20 steps) | 0.52 (5.24x) | 2.00 | 1 | 1 |",
    );
    // A failed row keeps the table's shape: one cell per column (12).
    const failed = markdown.split("\n").find((line) => line.includes("tfjs:wasm failed"))!;
    expect(failed).toBe(
      "| DiT-S/2 | tfjs:wasm failed: out of WebAssembly memory / somewhere | | | | | | | | | | |",
    );
    // FORA 50%: 4000 / 2200 = 1.82x measured, 2x ideal, 0.91 of ideal, 4.4 CPU-s, 20 MB.
    expect(markdown).toContain("| 2200 | 1.82 | 2.00 | 0.91 | 4.40 | 0.91 | 20.0 |");
    // Per round: 2244/2200, 2244·1.1/(2200·1.1), 2244·1.1/(2200·1.2) -> +2%, +2%, -6.5%; CPU alike.
    expect(markdown).toContain(
      "| EOC over plain reuse (target <= 2%) | 2.00 | 2.00 | **2.00** (-2.25 to 2.00) | **2.00** (-2.25 to 2.00) |",
    );
    // 2211 against 2200 in every round: +0.5% each way.
    expect(markdown).toContain(
      "| the paper's correction alone (`eoc:mode=prior,tau=0`: F_cached + gamma·D) over plain reuse | 0.50 | 0.50 | **0.50** (0.50 to 0.50) | **0.50** (0.50 to 0.50) |",
    );
    expect(markdown).toContain("- a note");
  });

  it("times one tfjs-wasm forward for models above DiT-S/2's work, as many as asked up to it", () => {
    expect(tfjsForwardRuns("DiT-S/2", 3)).toBe(3);
    expect(tfjsForwardRuns("DiT-S/8", 3)).toBe(3);
    expect(tfjsForwardRuns("DiT-B/2", 3)).toBe(1);
    expect(tfjsForwardRuns("DiT-XL/2", 3)).toBe(1);
  });

  it("runs the cache and EOC rows on the embedded demo model (trained weights, ten digits a run)", async () => {
    const outDir = await mkdtemp(join(tmpdir(), "ditcache-bench-"));
    try {
      const result = (await runTask({
        kind: "cache",
        preset: "demo",
        threads: 1,
        steps: 4,
        rounds: 1,
        eoc: true,
        cache: false,
        eocSamples: 1,
        outDir,
      })) as CacheResult;
      expect(result.variants.map((variant) => variant.name)).toEqual([
        "uncached",
        "FORA 50%",
        "FORA 50% + TaylorSeer 2",
        "FORA 50% + EOC prior term",
        "FORA 50% + EOC",
      ]);
      const eoc = result.variants.at(-1)!;
      expect(eoc.macsRatio).toBeLessThan(1);
      expect(eoc.counts?.corrected).toBeGreaterThan(0);
      expect(result.priorsFileBytes).toBeGreaterThan(0);
      for (const variant of result.variants) expect(variant.roundMs).toEqual([variant.ms]);
      // The prior-term row corrects with D alone: no trend, so no cached history beyond F_last.
      const prior = result.variants.find((variant) => variant.name === "FORA 50% + EOC prior term")!;
      expect(prior.corrector).toMatch(/^eoc:mode=prior/);
      expect(prior.counts?.corrected).toBeGreaterThan(0);
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  });

  it("rejects unknown presets and rows with one-line errors naming the option", async () => {
    const run = (argv: string[]) => {
      const { values, positionals } = parseCommandArgs(benchCommand, argv);
      return benchCommand.run(values, positionals);
    };
    await expect(run(["--preset", "DiT-Q/3", "--out", "/tmp/never"])).rejects.toThrow(
      /--preset: unknown preset "DiT-Q\/3"/,
    );
    await expect(run(["--rows", "backend,speed", "--out", "/tmp/never"])).rejects.toThrow(
      /--rows: unknown row "speed"/,
    );
    await expect(run(["--steps", "0", "--out", "/tmp/never"])).rejects.toSatisfy(
      (error: unknown) => DitcacheError.isInstance(error) && /--steps/.test((error as Error).message),
    );
  });
});
