import { mkdir } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "@ditcache/core";
import { DIT_PRESETS, type DiTConfig, type DiTPresetName, ditPreset } from "@ditcache/dit";
import { type Command, intOption } from "../args.js";
import {
  printTaskResult,
  runTaskInChild,
  runTorch,
  TASK_ENV,
  TORCH_SETUP_HINT,
  torchPython,
} from "../bench/child.js";
import { type BackendRow, type BenchReport, markdownReport } from "../bench/report.js";
import {
  type BenchTask,
  type CacheResult,
  type ForwardResult,
  runTask,
  tfjsForwardRuns,
} from "../bench/tasks.js";
import { fail } from "../output.js";

const ROWS = ["backend", "cache", "eoc"] as const;
type RowKind = (typeof ROWS)[number];

/** `ditcache bench`: backend, cache and EOC speed tables, measured side by side in one run. */
export const benchCommand: Command = {
  name: "bench",
  summary:
    "benchmark tables: backend speed vs PyTorch, cache speed-ups vs ideal, EOC overhead (Markdown + JSON)",
  options: {
    preset: { type: "string", help: "models of the backend rows (default DiT-S/2,DiT-B/2,DiT-XL/2)" },
    "cache-preset": {
      type: "string",
      help: 'model of the cache and EOC rows: a preset (random weights) or "demo" (the embedded model, 10 images a run; default DiT-XL/2)',
    },
    steps: { type: "string", help: "DDIM steps of the DDIM, cache and EOC runs (default 20)" },
    threads: { type: "string", help: "intra-op threads of every engine (default 2)" },
    rows: { type: "string", help: "which tables: some of backend,cache,eoc (default all)" },
    runs: { type: "string", help: "timed forwards per backend row, after one compiling forward (default 3)" },
    rounds: {
      type: "string",
      help: "interleaved rounds of the cache/EOC runs, best one reported (default 1)",
    },
    "eoc-samples": { type: "string", help: "calibration samples of the EOC priors (default 2)" },
    quick: {
      type: "boolean",
      help: "smoke test: DiT-S/2 only, 4 steps, 1 run, 2 rounds (overridable by the options above)",
    },
    out: { type: "string", default: "out/bench", help: "directory for bench.md and bench.json" },
  },
  async run(values) {
    const taskJson = process.env[TASK_ENV];
    if (taskJson !== undefined) {
      // A child started by the parent below: one measurement, result on stdout.
      printTaskResult(await runTask(JSON.parse(taskJson) as BenchTask));
      return;
    }
    const quick = values.quick === true;
    const defaults = {
      preset: quick ? "DiT-S/2" : "DiT-S/2,DiT-B/2,DiT-XL/2",
      "cache-preset": quick ? "DiT-S/2" : "DiT-XL/2",
      steps: quick ? "4" : "20",
      threads: "2",
      rows: ROWS.join(","),
      runs: quick ? "1" : "3",
      // Two rounds in quick mode: at 4 steps the first round's compiles of the small cache/EOC
      // units (tens of ms) would show; at 20 DiT-XL/2 steps they are lost in the noise.
      rounds: quick ? "2" : "1",
      "eoc-samples": "2",
    };
    const read = {
      ...defaults,
      ...Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined)),
    };
    const presets = presetList(read.preset, "preset");
    const cachePreset =
      read["cache-preset"] === "demo"
        ? ("demo" as const)
        : presetList(read["cache-preset"], "cache-preset")[0]!;
    const steps = intOption(read, "steps", 1, 1000);
    const threads = intOption(read, "threads", 1, 256);
    const runs = intOption(read, "runs", 1, 100);
    const rounds = intOption(read, "rounds", 1, 20);
    const eocSamples = intOption(read, "eoc-samples", 1, 64);
    const rows = rowList(read.rows);
    const outDir = String(values.out);
    await mkdir(outDir, { recursive: true });
    const log = (message: string): void => console.error(`bench: ${message}`);

    const notes: string[] = [];
    const backendRows: BackendRow[] = [];
    if (rows.has("backend")) {
      const python = torchPython();
      const tfjsOneRun: string[] = [];
      if (python === undefined) notes.push(TORCH_SETUP_HINT);
      for (const preset of presets) {
        const row: {
          preset: string;
          onnx?: ForwardResult;
          torch?: BackendRow["torch"];
          tfjs?: ForwardResult;
          errors: string[];
        } = {
          preset,
          errors: [],
        };
        const forwardTask = (backend: string, ddimSteps: number, forwardRuns = runs): BenchTask => ({
          kind: "forward",
          preset,
          backend,
          threads,
          runs: forwardRuns,
          ddimSteps,
        });
        log(`${preset}: onnx forward x${runs} + DDIM ${steps}`);
        row.onnx = await attempt(row.errors, "onnx", () =>
          runTaskInChild<ForwardResult>(forwardTask("onnx", steps)),
        );
        if (python !== undefined) {
          log(`${preset}: PyTorch eager forward x${runs}${steps === 20 ? " + DDIM 20" : ""}`);
          row.torch = await attempt(row.errors, "PyTorch", () =>
            runTorch(python, { preset, threads, runs, ddim20: steps === 20 }),
          );
        }
        // Forward only: at ~10 GFLOP/s (one thread) a 20-step DDIM of DiT-XL/2 on tfjs-wasm would
        // take ~10 minutes.
        const tfjsRuns = tfjsForwardRuns(preset, runs);
        if (tfjsRuns < runs) tfjsOneRun.push(preset);
        log(`${preset}: tfjs-wasm forward x${tfjsRuns}`);
        row.tfjs = await attempt(row.errors, "tfjs:wasm", () =>
          runTaskInChild<ForwardResult>(forwardTask("tfjs:wasm", 0, tfjsRuns)),
        );
        backendRows.push(row);
      }
      if (tfjsOneRun.length > 0)
        notes.push(
          `tfjs-wasm rows of ${tfjsOneRun.join(", ")}: one timed forward after the compiling one (each takes tens of seconds there).`,
        );
      if (steps !== 20)
        notes.push(
          `PyTorch's DDIM column needs --steps 20 (tools/reference/bench_torch.py times ddim20 only).`,
        );
    }
    const cacheResults: CacheResult[] = [];
    if (rows.has("cache") || rows.has("eoc")) {
      log(
        `${cachePreset}: cache rows (${[...rows].filter((row) => row !== "backend").join(", ")}), DDIM ${steps}, ${rounds} round(s)`,
      );
      const errors: string[] = [];
      const result = await attempt(errors, `${cachePreset} cache rows`, () =>
        runTaskInChild<CacheResult>({
          kind: "cache",
          preset: cachePreset,
          threads,
          steps,
          rounds,
          cache: rows.has("cache"),
          eoc: rows.has("eoc"),
          eocSamples,
          outDir,
        }),
      );
      if (result !== undefined) cacheResults.push(result);
      notes.push(...errors);
    }
    const report: BenchReport = {
      date: new Date().toISOString(),
      host: { cpus: cpus().length, model: cpus()[0]?.model ?? "unknown", loadAverage: loadavg() },
      options: { presets, cachePreset, steps, threads, runs, rounds, eocSamples, rows: [...rows], quick },
      backend: backendRows,
      cache: cacheResults,
      notes,
    };
    const configs = new Map<string, DiTConfig>(
      [...presets, ...(cachePreset === "demo" ? [] : [cachePreset])].map((name) => [name, ditPreset(name)]),
    );
    const markdown = markdownReport(report, configs);
    await writeFileAtomic(join(outDir, "bench.json"), `${JSON.stringify(report, null, 2)}\n`);
    await writeFileAtomic(join(outDir, "bench.md"), markdown);
    console.log(markdown);
    console.log(`wrote ${join(outDir, "bench.md")} and ${join(outDir, "bench.json")}`);
  },
};

function presetList(value: unknown, option: string): DiTPresetName[] {
  const names = String(value)
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  const known = Object.keys(DIT_PRESETS);
  for (const name of names) {
    if (!known.includes(name))
      fail(`--${option}: unknown preset ${JSON.stringify(name)}; expected some of ${known.join(", ")}`);
  }
  if (names.length === 0) fail(`--${option}: expected at least one preset, e.g. DiT-S/2`);
  return names as DiTPresetName[];
}

function rowList(value: unknown): Set<RowKind> {
  const names = String(value)
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  for (const name of names) {
    if (!(ROWS as readonly string[]).includes(name))
      fail(`--rows: unknown row ${JSON.stringify(name)}; expected some of ${ROWS.join(",")}`);
  }
  if (names.length === 0) fail(`--rows: expected some of ${ROWS.join(",")}`);
  return new Set(names as RowKind[]);
}

/** Runs one measurement; a failure becomes a line of its row instead of ending the whole run. */
async function attempt<T>(errors: string[], what: string, measure: () => Promise<T>): Promise<T | undefined> {
  try {
    return await measure();
  } catch (error) {
    const message = error instanceof Error ? error.message.split("\n")[0]! : String(error);
    errors.push(`${what} failed: ${message}`);
    console.error(`bench: ${what} failed: ${message}`);
    return undefined;
  }
}
