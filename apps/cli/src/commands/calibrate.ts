import { stat } from "node:fs/promises";
import { parsePolicy } from "@ditcache/cache";
import { calibrateModel, createBackend } from "@ditcache/pipeline";
import { type Command, intOption } from "../args.js";
import { interruptSignal } from "../interrupt.js";
import { loadModel, modelHash } from "../model-source.js";
import { fail, formatMs } from "../output.js";
import { closedLoopTable } from "../priors-report.js";
import { ProgressBar } from "../progress.js";
import { samplerSetting, samplingOptions } from "./sample.js";

/** `ditcache calibrate`: EOC prior extraction for a model, a sampler setting and a base policy. */
export const calibrateCommand: Command = {
  name: "calibrate",
  summary:
    "extract EOC priors (uncached + shadow-computed cached runs on calibration seeds) into a priors file",
  options: {
    model: samplingOptions.model,
    backend: samplingOptions.backend,
    threads: samplingOptions.threads,
    steps: samplingOptions.steps,
    sampler: samplingOptions.sampler,
    cfg: samplingOptions.cfg,
    "guide-channels": samplingOptions["guide-channels"],
    cache: { type: "string", default: "fora:interval=2", help: "the base cache policy EOC will correct" },
    samples: {
      type: "string",
      default: "100",
      help: "calibration samples (label i mod classes, seed first-seed + i)",
    },
    "first-seed": {
      type: "string",
      default: "0",
      help: "seed of the first calibration sample (keep apart from evaluation seeds)",
    },
    granularity: { type: "string", default: "channel", help: "channel | token-channel" },
    "fit-space": {
      type: "string",
      default: "guided",
      help: "guided (fit on each CFG pair's guided combination) | rows (each batch row alone)",
    },
    "fit-trajectory": {
      type: "string",
      default: "trend-corrected",
      help: "run the fits are measured on: trend-corrected (reused branches forecast F_last + trend) | reuse (plain reuse)",
    },
    "no-gate-weights": {
      type: "boolean",
      help: "fit the pre-gate values as they are, not weighted by the model's adaLN gates",
    },
    "no-closed-loop": {
      type: "boolean",
      help: "skip pass 3 (the trend scale chosen on the calibration samples' final outputs); scale 1",
    },
    out: { type: "string", default: "out/priors.safetensors", help: "priors file to write" },
  },
  async run(values) {
    const signal = interruptSignal();
    const granularity = values.granularity;
    if (granularity !== "channel" && granularity !== "token-channel") {
      fail(`--granularity: expected channel or token-channel, got ${JSON.stringify(granularity)}`);
    }
    const fitSpace = values["fit-space"];
    if (fitSpace !== "guided" && fitSpace !== "rows") {
      fail(`--fit-space: expected guided or rows, got ${JSON.stringify(fitSpace)}`);
    }
    const fitTrajectory = values["fit-trajectory"];
    if (fitTrajectory !== "trend-corrected" && fitTrajectory !== "reuse") {
      fail(`--fit-trajectory: expected trend-corrected or reuse, got ${JSON.stringify(fitTrajectory)}`);
    }
    const sampler = samplerSetting(values);
    const samples = intOption(values, "samples", 1, 100_000);
    const basePolicy = parsePolicy(String(values.cache));
    const backend = await createBackend(
      String(values.backend),
      values.threads ? { threads: intOption(values, "threads", 1, 256) } : {},
    );
    const loaded = await loadModel(String(values.model), backend);
    const { model } = loaded;
    try {
      const started = performance.now();
      const closedLoop = values["no-closed-loop"] !== true;
      const passes = closedLoop ? 3 : 2;
      const bars: Partial<Record<"mean" | "fit" | "closed-loop", ProgressBar>> = {};
      const titles = {
        mean: `pass 1/${passes} (uncached: P, D)`,
        fit: `pass 2/${passes} (cached + shadow)`,
        "closed-loop": "pass 3/3 (trend scale, closed loop)",
      };
      const priors = await calibrateModel({
        model,
        modelHash: await modelHash(loaded.weightsPath),
        basePolicy,
        ...sampler,
        samples,
        firstSeed: intOption(values, "first-seed", 0, 2 ** 31 - 1),
        granularity,
        fitSpace,
        gateWeighted: values["no-gate-weights"] !== true,
        fitTrajectory,
        ...(closedLoop ? {} : { closedLoop: false }),
        signal,
        onProgress: (event) => {
          if (event.status === "done") return;
          bars[event.status] ??= new ProgressBar(titles[event.status], event.samples);
          bars[event.status]!.update(event.sample);
        },
      });
      const out = String(values.out);
      await priors.save(out);
      const bytes = (await stat(out)).size;
      console.log(
        `wrote ${out} (${(bytes / 1e6).toFixed(3)} MB, ${granularity}, base ${basePolicy.spec}, ${samples} samples, ${formatMs(performance.now() - started)})`,
      );
      const loop = priors.header.report.closedLoop;
      if (loop) console.log(closedLoopTable(loop, priors.trendOrder, priors.header.defaults).join("\n"));
    } finally {
      model.dispose();
      await backend.close?.();
    }
  },
};
