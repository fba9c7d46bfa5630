import { writeFileAtomic } from "@ditcache/core";
import { createBackend, generate, type SamplerSetting } from "@ditcache/pipeline";
import { type Command, intListOption, intOption, numberOption } from "../args.js";
import { interruptSignal } from "../interrupt.js";
import { fetchOptions, loadModel, modelName, resolveCacheSetting } from "../model-source.js";
import { fail, formatMs, writeImages } from "../output.js";
import { ProgressBar } from "../progress.js";
import { decodeLatents } from "../vae.js";

/** Options shared by every command that samples. */
export const samplingOptions = {
  model: {
    type: "string",
    default: "demo",
    help: '"demo", a .safetensors file, a diffusers folder or a hub id (facebook/DiT-XL-2-256)',
  },
  offline: { type: "boolean", help: "never use the network: hub models must already be in the cache" },
  "cache-dir": { type: "string", help: "hub cache directory (default $DITCACHE_CACHE or ~/.cache/ditcache)" },
  backend: {
    type: "string",
    default: "onnx",
    help: "cpu | onnx[:cpu|:webgpu|:cuda] | tfjs[:cpu|:wasm|:node|:node-gpu]",
  },
  threads: { type: "string", help: "intra-op threads (onnx)" },
  steps: { type: "string", default: "20", help: "denoising steps" },
  sampler: { type: "string", default: "ddim", help: "ddim | ddpm" },
  eta: { type: "string", default: "0", help: "DDIM eta" },
  cfg: { type: "string", default: "4", help: "classifier-free guidance scale (1 = off)" },
  cache: {
    type: "string",
    help: 'cache policy spec, e.g. "fora:interval=2" (see --help of ditcache policies)',
  },
  corrector: { type: "string", help: 'corrector spec, e.g. "taylor:order=1", "goc:k=0.5"' },
  eoc: {
    type: "string",
    help: "EOC priors file (from ditcache calibrate): correct the reuse of --cache (default: the policy the priors were made for) with EOC",
  },
  "eoc-mode": { type: "string", help: "EOC correction: trend (a*trend + b*D) or prior (gamma*D)" },
  "guide-channels": {
    type: "string",
    default: "all",
    help: 'eps channels CFG guides: "all" or a number (official DiT: 3)',
  },
} as const;

/** Reads the sampler setting shared by sample, calibrate and eval. */
export function samplerSetting(values: Record<string, unknown>): SamplerSetting {
  const guide = values["guide-channels"];
  return {
    steps: intOption(values, "steps", 1, 1000),
    sampler: samplerOption(values),
    cfgScale: numberOption(values, "cfg", 1, 50),
    guideChannels: guide === "all" ? "all" : intOption(values, "guide-channels", 1, 64),
  };
}

/** `ditcache sample`: images for labels and seeds, optionally cached. */
export const sampleCommand: Command = {
  name: "sample",
  summary: "sample images (PNG grid for pixel models, .safetensors otherwise), optionally with a cache",
  options: {
    ...samplingOptions,
    labels: { type: "string", default: "0-9", help: 'class labels, e.g. "3,7" or "0-9"' },
    seed: { type: "string", default: "0", help: "seed of the first image; image i uses seed + i" },
    out: { type: "string", default: "out/samples.png", help: "output .png or .safetensors" },
    summary: { type: "string", help: "write the cache summary JSON here" },
    columns: { type: "string", help: "images per grid row" },
    scale: { type: "string", default: "4", help: "PNG upscaling factor" },
    "check-finite": {
      type: "boolean",
      help: "stop at the first NaN/Inf in a site's output, naming the site and step",
    },
    vae: {
      type: "string",
      default: "stabilityai/sd-vae-ft-ema",
      help: "VAE decoder for latent models (hub id or folder)",
    },
  },
  async run(values) {
    const signal = interruptSignal();
    const backend = await createBackend(
      String(values.backend),
      values.threads ? { threads: intOption(values, "threads", 1, 256) } : {},
    );
    const loaded = await loadModel(String(values.model), backend, fetchOptions(values));
    const { model } = loaded;
    try {
      const labels = intListOption(values, "labels", 0, model.config.numClasses - 1);
      const seed = intOption(values, "seed", 0, 2 ** 31 - 1);
      const sampler = samplerSetting(values);
      const steps = sampler.steps;
      const cache = await resolveCacheSetting(values, loaded, sampler);
      const bar = new ProgressBar(`sampling ${labels.length} image(s)`, steps);
      const result = await generate({
        model,
        labels,
        seeds: labels.map((_, i) => seed + i),
        ...sampler,
        eta: numberOption(values, "eta", 0, 1),
        ...(cache ? { cache } : {}),
        ...(values["check-finite"] === true ? { checkFinite: true } : {}),
        signal,
        onStep: (event) => bar.update(event.index + 1),
      });
      const out = String(values.out);
      const decoded =
        out.toLowerCase().endsWith(".png") && model.config.inChannels === 4
          ? await decodeLatents(
              result.images,
              result.shape,
              String(values.vae),
              backend,
              fetchOptions(values),
            )
          : result;
      await writeImages(out, decoded.images, decoded.shape, {
        scale: intOption(values, "scale", 1, 16),
        ...(values.columns ? { columns: intOption(values, "columns", 1, 1024) } : {}),
        metadata: {
          labels: labels.join(","),
          seed: String(seed),
          steps: String(steps),
          model: modelName(String(values.model)),
        },
      });
      console.log(
        `wrote ${out} (${labels.length} images, ${formatMs(result.milliseconds)} on ${backend.name})`,
      );
      if (result.summary) {
        console.log(
          `cache ${result.summary.policy} + ${result.summary.corrector}: caching level ${(100 * result.summary.cachingLevel).toFixed(1)}%, MACs ${(100 * result.summary.macs.ratio).toFixed(1)}% of uncached`,
        );
        if (typeof values.summary === "string") {
          await writeFileAtomic(values.summary, `${JSON.stringify(result.summary, null, 2)}\n`);
        }
      }
    } finally {
      model.dispose();
      await backend.close?.();
    }
  },
};

/** Reads --sampler. */
export function samplerOption(values: Record<string, unknown>): "ddim" | "ddpm" {
  if (values.sampler === "ddim" || values.sampler === "ddpm") return values.sampler;
  return fail(`--sampler: expected ddim or ddpm, got ${JSON.stringify(values.sampler)}`);
}
