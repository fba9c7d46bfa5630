import type { DiTConfig } from "@ditcache/dit";
import { tokenCount } from "@ditcache/dit";
import { quantile } from "../stats.js";
import type { TorchResult } from "./child.js";
import type { CacheResult, CacheVariantResult, ForwardResult } from "./tasks.js";

/**
 * Quartiles of the per-round overhead b / a - 1 in percent: rounds are paired (one round runs
 * every row once, in alternating order), so a slow patch of the machine cancels out of each ratio.
 */
export function pairedOverhead(
  a: readonly number[],
  b: readonly number[],
): { median: number; lower: number; upper: number } {
  const ratios = a.map((value, i) => (100 * (b[i]! - value)) / value);
  return { median: quantile(ratios, 0.5), lower: quantile(ratios, 0.25), upper: quantile(ratios, 0.75) };
}

/** "median (lower to upper)" of {@link pairedOverhead}. */
function describePaired(a: readonly number[], b: readonly number[]): string {
  const { median, lower, upper } = pairedOverhead(a, b);
  return `**${fixed(median, 2)}** (${fixed(lower, 2)} to ${fixed(upper, 2)})`;
}

/** Everything one `ditcache bench` run measured, as written to bench.json. */
export interface BenchReport {
  readonly date: string;
  readonly host: { readonly cpus: number; readonly model: string; readonly loadAverage: readonly number[] };
  readonly options: Readonly<Record<string, unknown>>;
  readonly backend: readonly BackendRow[];
  readonly cache: readonly CacheResult[];
  readonly notes: readonly string[];
}

/** One preset's backend rows: ONNX, the PyTorch reference and tfjs-wasm (forward only). */
export interface BackendRow {
  readonly preset: string;
  readonly onnx?: ForwardResult;
  readonly torch?: TorchResult;
  readonly tfjs?: ForwardResult;
  readonly errors: readonly string[];
}

const fixed = (value: number | null | undefined, digits: number): string =>
  value === null || value === undefined || !Number.isFinite(value) ? "—" : value.toFixed(digits);

/**
 * EOC priors size (F16) for FORA 50% at both granularities, from the file layout in
 * packages/eoc/README.md (the same arithmetic as packages/eoc/scripts/priors-size.mjs).
 */
export function priorsSizes(
  config: DiTConfig,
  steps: number,
): { granularity: string; bytes: number; withMeanBytes: number }[] {
  const sites = 2 * config.depth;
  let reusedSteps = 0;
  for (let step = 0; step < steps; step++) if (step % 2 !== 0) reusedSteps++;
  const cells = sites * reusedSteps;
  return [
    ["channel", config.hiddenSize],
    ["token-channel", tokenCount(config) * config.hiddenSize],
  ].map(([granularity, row]) => {
    const values = row as number;
    const bytes = cells * (values + 5) * 2;
    return { granularity: granularity as string, bytes, withMeanBytes: bytes + sites * steps * values * 2 };
  });
}

/** The Markdown tables of a report. */
export function markdownReport(report: BenchReport, configs: ReadonlyMap<string, DiTConfig>): string {
  const lines: string[] = [];
  lines.push(`# ditcache bench — ${report.date}`, "");
  lines.push(
    `Host: ${report.host.cpus} CPUs (${report.host.model}), load average at start ${report.host.loadAverage.map((x) => x.toFixed(2)).join(" ")}.`,
    `Options: \`${JSON.stringify(report.options)}\`. Random weights; batch 2 = one CFG pair; GFLOP = 2 x MACs of \`ditMacs\`.`,
    "",
  );
  if (report.backend.length > 0) {
    lines.push("## Backend speed (one process per row, same threads)", "");
    lines.push(
      "| model | engine | threads | first forward ms | forward ms (median) | GFLOP/s | GFLOP per CPU-s | DDIM ms | peak RSS GB (x weights); tfjs: wasm memory GB | forward / onnx | onnx / PyTorch forward | onnx / PyTorch DDIM |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const row of report.backend) {
      const torch = row.torch;
      const perOnnx = (ms: number) => (row.onnx ? fixed(ms / row.onnx.forwardMsMedian, 2) : "—");
      for (const result of [row.onnx, row.tfjs]) {
        if (result === undefined) continue;
        const isOnnx = result === row.onnx;
        const ddimLabel =
          result.ddimMs === null ? "—" : `${fixed(result.ddimMs, 0)} (${result.ddimSteps} steps)`;
        const wasm =
          result.wasmMemoryBytes === undefined ? "" : `; wasm ${fixed(result.wasmMemoryBytes / 1e9, 2)}`;
        lines.push(
          `| ${row.preset} | ${result.backend} | ${result.threads} | ${fixed(result.firstForwardMs, 0)} | ${fixed(result.forwardMsMedian, 1)} | ${fixed(result.gflopForward / (result.forwardMsMedian / 1000), 1)} | ${fixed(result.gflopForward / (result.forwardCpuMsMedian / 1000), 1)} | ${ddimLabel} | ${fixed(result.peakRssBytes / 1e9, 2)} (${fixed(result.peakRssBytes / result.weightBytes, 2)}x)${wasm} | ${perOnnx(result.forwardMsMedian)} | ${isOnnx && torch ? fixed(result.forwardMsMedian / torch.ms_forward_median, 2) : "—"} | ${isOnnx && torch?.ms_ddim20 && result.ddimSteps === 20 && result.ddimMs !== null ? fixed(result.ddimMs / torch.ms_ddim20, 2) : "—"} |`,
        );
      }
      if (torch) {
        const weights = row.onnx?.weightBytes;
        lines.push(
          `| ${row.preset} | PyTorch ${torch.torch} eager | ${torch.threads} | — | ${fixed(torch.ms_forward_median, 1)} | ${fixed(torch.gflops / (torch.ms_forward_median / 1000), 1)} | — | ${torch.ms_ddim20 === null ? "—" : `${fixed(torch.ms_ddim20, 0)} (20 steps)`} | ${fixed((torch.peak_rss_mb * 2 ** 20) / 1e9, 2)}${weights ? ` (${fixed((torch.peak_rss_mb * 2 ** 20) / weights, 2)}x)` : ""} | ${perOnnx(torch.ms_forward_median)} | 1 | 1 |`,
        );
      }
      for (const error of row.errors)
        lines.push(`| ${row.preset} | ${error.replaceAll("|", "/")} | | | | | | | | | | |`);
    }
    lines.push("");
  }
  for (const result of report.cache) {
    const uncached = result.variants.find((variant) => variant.name === "uncached");
    lines.push(
      `## Cache speed: ${result.preset === "demo" ? "the embedded demo model (trained weights, 10 images = 20 rows a run)" : result.preset}, DDIM ${result.steps} steps + CFG, onnx, ${result.threads} threads, best of ${result.rounds} interleaved round(s)`,
      "",
    );
    lines.push(
      "| variant | ms | measured speed-up | ideal speed-up (1 / MACs ratio) | measured / ideal | CPU s | CPU speed-up / ideal | extra cache memory MB |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const variant of result.variants) {
      const speedup = uncached ? uncached.ms / variant.ms : Number.NaN;
      const ideal = 1 / variant.macsRatio;
      const cpuSpeedup = uncached ? uncached.cpuMs / variant.cpuMs : Number.NaN;
      lines.push(
        `| ${variant.name} (\`${variant.spec}\`) | ${fixed(variant.ms, 0)} | ${fixed(speedup, 2)} | ${fixed(ideal, 2)} | ${fixed(speedup / ideal, 2)} | ${fixed(variant.cpuMs / 1000, 2)} | ${fixed(cpuSpeedup / ideal, 2)} | ${fixed(variant.cachePeakBytes / 1e6, 1)} |`,
      );
    }
    lines.push("");
    const plain = result.variants.find((variant) => variant.name === "FORA 50%");
    const withEoc = result.variants.find((variant) => variant.name === "FORA 50% + EOC");
    const forecast = result.variants.find((variant) => variant.name === "FORA 50% + TaylorSeer 2");
    const priorTerm = result.variants.find((variant) => variant.name === "FORA 50% + EOC prior term");
    if (plain && withEoc) {
      const config = configs.get(result.preset);
      lines.push(`### EOC on FORA 50% (${result.preset})`, "");
      const comparisons: [string, CacheVariantResult, CacheVariantResult][] = [
        ["EOC over plain reuse (target <= 2%)", plain, withEoc],
        ...(forecast
          ? [
              [
                "EOC over the order-2 forecast alone (TaylorSeer 2: the same full-size terms without D)",
                forecast,
                withEoc,
              ] as [string, CacheVariantResult, CacheVariantResult],
            ]
          : []),
        ...(priorTerm
          ? [
              [
                `the paper's correction alone (\`${priorTerm.corrector ?? "eoc:mode=prior"}\`: F_cached + gamma·D) over plain reuse`,
                plain,
                priorTerm,
              ] as [string, CacheVariantResult, CacheVariantResult],
            ]
          : []),
      ];
      const paired = result.rounds >= 3;
      lines.push(
        `Added time in percent. Best of rounds: each row's fastest round against the other's. Paired: the median over rounds of the ratio within one round (each round runs every row once, alternating the order), with the middle half of the rounds in brackets — the figure to trust on a shared machine${paired ? "" : " (needs --rounds 3 or more)"}.`,
        "",
        "| comparison | wall, best of rounds | CPU, best of rounds | wall, paired | CPU, paired |",
        "|---|---|---|---|---|",
        ...comparisons.map(
          ([label, base, row]) =>
            `| ${label} | ${fixed((100 * (row.ms - base.ms)) / base.ms, 2)} | ${fixed((100 * (row.cpuMs - base.cpuMs)) / base.cpuMs, 2)} | ${paired ? describePaired(base.roundMs, row.roundMs) : "—"} | ${paired ? describePaired(base.roundCpuMs, row.roundCpuMs) : "—"} |`,
        ),
        "",
        `Corrector counts: \`${JSON.stringify(withEoc.counts ?? {})}\` (tau 0: every reused branch corrected — the worst case). Priors calibrated on the same ${result.preset === "demo" ? "model" : "random model"} with ${result.eocSamples} samples in ${fixed((result.eocCalibrationMs ?? 0) / 1000, 1)} s; the saved channel priors file is ${fixed((result.priorsFileBytes ?? 0) / 1e6, 2)} MB.`,
        "",
      );
      if (config) {
        lines.push(`Priors size for ${result.preset}, ${result.steps} steps, FORA 50%, F16 (analytic):`, "");
        lines.push("| granularity | D + coefficients MB | with mean P MB |", "|---|---|---|");
        for (const size of priorsSizes(config, result.steps)) {
          lines.push(
            `| ${size.granularity} | ${fixed(size.bytes / 1e6, 2)} | ${fixed(size.withMeanBytes / 1e6, 2)} |`,
          );
        }
        lines.push("");
      }
    }
  }
  if (report.notes.length > 0) lines.push("## Notes", "", ...report.notes.map((note) => `- ${note}`), "");
  return `${lines.join("\n")}\n`;
}
