import { join } from "node:path";
import { encodePng, writeFileAtomic } from "@ditcache/core";
import { type PlotSeries, renderScatterPlot } from "./plot.js";
import { ABLATION_BASES, ABLATIONS, CORRECTORS, type RowSpec } from "./rows.js";
import type { EvaluationResult, RowResult } from "./run.js";

/** Where and how a run was made, printed under every table. */
export interface RunInfo {
  readonly command: string;
  readonly machine: string;
  readonly backend: string;
  readonly model: string;
  readonly date: string;
  readonly settings: Record<string, unknown>;
}

interface Column {
  readonly title: string;
  readonly value: (row: RowResult) => number | null;
  readonly digits: number;
  /** Which way is better (bolded per group); undefined: not ranked. */
  readonly better?: "high" | "low";
  readonly percent?: boolean;
}

const COLUMNS: readonly Column[] = [
  { title: "caching level", value: (r) => r.cachingLevel, digits: 1, percent: true },
  { title: "MACs ratio", value: (r) => r.macsRatio, digits: 3 },
  { title: "speed-up (measured)", value: (r) => r.speedup, digits: 2, better: "high" },
  { title: "FID", value: (r) => r.fid, digits: 2, better: "low" },
  { title: "IS", value: (r) => r.isMean, digits: 3, better: "high" },
  { title: "precision", value: (r) => r.precision, digits: 3, better: "high" },
  { title: "recall", value: (r) => r.recall, digits: 3, better: "high" },
  { title: "PSNR dB", value: (r) => r.psnr, digits: 2, better: "high" },
  { title: "SSIM", value: (r) => r.ssim, digits: 4, better: "high" },
  { title: "MSE", value: (r) => r.mse, digits: 6, better: "low" },
  { title: "label agreement", value: (r) => r.agreement, digits: 3, better: "high" },
];

function format(column: Column, value: number | null): string {
  if (value === null) return "∞";
  return column.percent ? `${(100 * value).toFixed(column.digits)}%` : value.toFixed(column.digits);
}

/** A Markdown table of rows; with `bold`, the best value of each ranked column is bold. */
function table(rows: readonly RowResult[], label: (row: RowResult) => string, bold: boolean): string[] {
  const best = COLUMNS.map((column) => {
    if (!bold || column.better === undefined || rows.length < 2) return undefined;
    const values = rows
      .map((row) => column.value(row))
      .filter((value): value is number => value !== null && Number.isFinite(value));
    // No bold where the column does not separate the rows.
    if (values.length === 0 || values.every((value) => format(column, value) === format(column, values[0]!)))
      return undefined;
    return column.better === "high" ? Math.max(...values) : Math.min(...values);
  });
  const lines = [
    `| corrector | ${COLUMNS.map((c) => c.title).join(" | ")} |`,
    `|---|${COLUMNS.map(() => "---:").join("|")}|`,
  ];
  for (const row of rows) {
    const cells = COLUMNS.map((column, i) => {
      const value = column.value(row);
      const text = format(column, value);
      return best[i] !== undefined && value !== null && format(column, best[i]!) === text
        ? `**${text}**`
        : text;
    });
    lines.push(`| ${label(row)} | ${cells.join(" | ")} |`);
  }
  return lines;
}

function footer(info: RunInfo): string[] {
  return [
    "",
    `Command: \`${info.command}\``,
    "",
    `Machine: ${info.machine}; backend ${info.backend}; model ${info.model}; ${info.date}.`,
    "",
    "Settings: " +
      Object.entries(info.settings)
        .map(([key, value]) => `${key} ${typeof value === "string" ? value : JSON.stringify(value)}`)
        .join("; ") +
      ".",
  ];
}

const NOTES = [
  "",
  "Speed-up = median over 3 rounds of uncached ms / this row's ms on one batch of the first 10 evaluation",
  "images, both timed in each round (alternating which goes first) after an untimed run of each: a",
  "paired measurement, still a few percent either way on a shared machine (docs/benchmarks.md has",
  "longer ones). The plots use the ideal speed-up, 1 / MACs ratio, which is exact.",
  "FID / precision / recall use the digit classifier's 128-d features against the real digits named in",
  "the settings; PSNR / SSIM / MSE compare each image with the uncached image of the same seed and label",
  "(∞ = identical). Bold: best value of its column within the base policy's group.",
];

/** results.md: the grid grouped by base policy, with n/a rows and the run's provenance. */
export function resultsMarkdown(
  rows: readonly RowResult[],
  specs: readonly RowSpec[],
  info: RunInfo,
  calibration: string[],
): string {
  const main = rows.filter((row) => !row.ablation);
  const lines = ["# ditcache eval: cache policies x correctors", ""];
  const groups = [...new Set(specs.filter((s) => !s.ablation).map((s) => s.base.id))];
  for (const group of groups) {
    const spec = specs.find((s) => s.base.id === group)!;
    const members = main.filter((row) => row.base === group);
    const policy = members.find((row) => row.policySpec)?.policySpec;
    lines.push(`## ${spec.base.label}${policy ? ` (\`${policy}\`)` : ""}`, "");
    if (members.length > 0) lines.push(...table(members, (row) => row.correctorLabel, true));
    for (const missing of specs.filter((s) => s.base.id === group && !s.ablation && s.notApplicable)) {
      lines.push(`| ${missing.corrector.label} | ${COLUMNS.map(() => "n/a").join(" | ")} |`);
    }
    const reasons = [
      ...new Set(specs.filter((s) => s.base.id === group && s.notApplicable).map((s) => s.notApplicable)),
    ];
    for (const reason of reasons) lines.push("", `n/a: ${reason}.`);
    lines.push("");
  }
  if (calibration.length > 0)
    lines.push("## Calibrated settings", "", ...calibration.map((line) => `- ${line}`), "");
  lines.push(...NOTES.slice(1), ...footer(info), "");
  return lines.join("\n");
}

/** eoc-ablation.md: EOC with each part off, and each granularity, at the ablation bases. */
export function ablationMarkdown(
  rows: readonly RowResult[],
  bases: readonly string[],
  info: RunInfo,
): string {
  const variants: [string, string][] = [
    ["reuse", "plain reuse (no correction)"],
    [
      "eoc-trend",
      "EOC default: judgment, trend order, gain and prior term as the closed loop chose, channel",
    ],
    ["eoc-prior", "trend term off (prior only, gamma D)"],
    ...ABLATIONS.map((variant): [string, string] => [variant.id, variant.label]),
  ];
  const lines = ["# ditcache eval: EOC ablation", ""];
  for (const base of bases) {
    const members = variants
      .map(([id, label]) => ({ row: rows.find((row) => row.base === base && row.corrector === id), label }))
      .filter((entry): entry is { row: RowResult; label: string } => entry.row !== undefined);
    if (members.length === 0) continue;
    lines.push(`## ${members[0]!.row.baseLabel}`, "");
    const labels = new Map(members.map((m) => [m.row, m.label]));
    lines.push(
      ...table(
        members.map((m) => m.row),
        (row) => labels.get(row)!,
        true,
      ),
    );
    const counted = members.filter((m) => m.row.eocCounts);
    if (counted.length > 0) {
      lines.push("", "| variant | corrected | skipped by judgment | no prior |", "|---|---:|---:|---:|");
      for (const m of counted) {
        const c = m.row.eocCounts!;
        lines.push(`| ${m.label} | ${c.corrected} | ${c.judged} | ${c.noPrior} |`);
      }
    }
    lines.push("");
  }
  lines.push(...NOTES.slice(1), ...footer(info), "");
  return lines.join("\n");
}

const COLORS: Readonly<Record<string, readonly [number, number, number]>> = {
  none: [0, 0, 0],
  reuse: [120, 120, 120],
  taylor2: [148, 103, 189],
  taylor: [31, 119, 180],
  goc: [44, 160, 44],
  "eoc-trend": [214, 39, 40],
  "eoc-prior": [255, 127, 14],
};

/** The bases the plots draw, in order of caching level: one curve per corrector across them. */
const PLOTTED_BASES: readonly string[] = ["none", "fora25", "fora50", "fora75"];

/**
 * One series per corrector over the FORA levels (and the uncached point), at x = ideal speed-up
 * (1 / MACs ratio): exact, where the measured speed-up of a single run is noisy.
 */
function plotSeries(rows: readonly RowResult[], y: (row: RowResult) => number | null): PlotSeries[] {
  const main = rows.filter((row) => !row.ablation && PLOTTED_BASES.includes(row.base));
  const point = (row: RowResult) => ({ x: 1 / row.macsRatio, y: y(row) ?? Number.NaN });
  const series: PlotSeries[] = CORRECTORS.map((corrector) => ({
    name: corrector.id,
    color: COLORS[corrector.id] ?? [0, 0, 0],
    points: main.filter((row) => row.corrector === corrector.id).map(point),
  }));
  const none = main.filter((row) => row.base === "none");
  if (none.length > 0 && y(none[0]!) !== null)
    series.unshift({ name: "no cache", color: COLORS.none!, points: none.map(point) });
  return series.filter((s) => s.points.length > 0);
}

/**
 * Writes results.json, results.md, eoc-ablation.md, plot.png (FID against the ideal speed-up at
 * FORA 25/50/75%, one series per corrector) and psnr-plot.png (PSNR vs uncached, the same way)
 * into `out`.
 */
export async function writeReports(
  out: string,
  result: EvaluationResult,
  specs: readonly RowSpec[],
  info: RunInfo,
): Promise<string[]> {
  const calibration = Object.entries(result.calibration).map(([key, value]) =>
    key.endsWith(".policy")
      ? `${key}: \`${value}\``
      : `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`,
  );
  const notApplicable = specs
    .filter((s) => s.notApplicable)
    .map((s) => ({ id: s.id, reason: s.notApplicable }));
  const files = {
    "results.json": `${JSON.stringify({ info, calibration: result.calibration, rows: result.rows, notApplicable }, null, 2)}\n`,
    "results.md": resultsMarkdown(result.rows, specs, info, calibration),
    "eoc-ablation.md": ablationMarkdown(result.rows, ABLATION_BASES, info),
  };
  for (const [name, text] of Object.entries(files)) await writeFileAtomic(join(out, name), text);
  const plots: [string, ScatterInput][] = [
    ["plot.png", { title: "FID at FORA 25/50/75%", yLabel: "FID", y: (row) => row.fid }],
    [
      "psnr-plot.png",
      {
        title: "PSNR vs uncached at FORA 25/50/75%",
        yLabel: "PSNR DB",
        y: (row) => (row.base === "none" ? null : row.psnr),
      },
    ],
  ];
  for (const [name, input] of plots) {
    const series = plotSeries(result.rows, input.y);
    if (series.every((s) => s.points.every((p) => !Number.isFinite(p.y)))) continue;
    await writeFileAtomic(
      join(out, name),
      encodePng(
        renderScatterPlot({
          title: input.title,
          xLabel: "IDEAL SPEED-UP (1 / MACS RATIO)",
          yLabel: input.yLabel,
          series,
        }),
      ),
    );
  }
  return [...Object.keys(files), ...plots.map(([name]) => name)].map((name) => join(out, name));
}

interface ScatterInput {
  readonly title: string;
  readonly yLabel: string;
  readonly y: (row: RowResult) => number | null;
}
