import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { encodePng, writeFileAtomic } from "@ditcache/core";
import type { DiTModel } from "@ditcache/dit";
import { meanSquaredError, psnr } from "@ditcache/metrics";
import {
  DEMO_SAMPLER,
  demoModelPath,
  demoPriorsPath,
  loadDemoClassifier,
  loadDemoModel,
} from "@ditcache/models";
import {
  type CacheSetting,
  createBackend,
  eocSetting,
  type GenerateOptions,
  generate,
  imageGrid,
  sideBySide,
} from "@ditcache/pipeline";
import { type Command, intOption } from "../args.js";
import { cacheSetting, modelHash } from "../model-source.js";
import { formatMs } from "../output.js";
import { ProgressBar } from "../progress.js";

/** `ditcache demo` (the README's first command): the embedded model, uncached vs cached, side by side. */
export const demoCommand: Command = {
  name: "demo",
  summary:
    "sample every digit uncached and cached with the embedded model; write PNGs and print speed and quality",
  options: {
    backend: { type: "string", default: "onnx", help: "cpu | onnx[:cpu|:webgpu|:cuda] | tfjs[:cpu|:wasm]" },
    threads: { type: "string", help: "intra-op threads (onnx)" },
    rows: { type: "string", default: "2", help: "seeds per digit (grid rows)" },
    cache: { type: "string", default: "fora:interval=2", help: "cache policy spec" },
    corrector: {
      type: "string",
      default: "eoc",
      help: '"eoc" (EOC with the shipped priors for the default cache) or a corrector spec such as "reuse", "goc:k=0.5"',
    },
    out: { type: "string", default: "out", help: "output folder" },
  },
  async run(values) {
    const backend = await createBackend(
      String(values.backend),
      values.threads ? { threads: intOption(values, "threads", 1, 256) } : {},
    );
    const [model, classifier] = await Promise.all([loadDemoModel(backend), loadDemoClassifier(backend)]);
    try {
      const rows = intOption(values, "rows", 1, 20);
      const labels = Array.from({ length: rows * 10 }, (_, i) => i % 10);
      const seeds = labels.map((_, i) => 1000 + i); // seeds the priors were not calibrated on
      const cache = await demoCache(values, model);
      const base: GenerateOptions = { model, labels, seeds, ...DEMO_SAMPLER };

      // Warm-up (compiles every unit for this batch shape) so neither timed run pays for it.
      await generate({ ...base, steps: 2 });
      if (cache) await generate({ ...base, steps: 2, cache: { policy: cache.policy } }); // priors are per step count: warm up without the corrector

      const barU = new ProgressBar("uncached", DEMO_SAMPLER.steps);
      const uncached = await generate({ ...base, onStep: (e) => barU.update(e.index + 1) });
      const barC = new ProgressBar("cached  ", DEMO_SAMPLER.steps);
      const cached = await generate({
        ...base,
        ...(cache ? { cache } : {}),
        onStep: (e) => barC.update(e.index + 1),
      });

      const agreement = async (images: Float32Array) => {
        const { logits } = await classifier.extract(images, [labels.length, 1, 32, 32]);
        let hits = 0;
        labels.forEach((label, i) => {
          const row = logits!.subarray(i * 10, i * 10 + 10);
          if (row.indexOf(Math.max(...row)) === label) hits++;
        });
        return hits / labels.length;
      };
      const [accU, accC] = [await agreement(uncached.images), await agreement(cached.images)];
      const shape = uncached.shape;

      const out = String(values.out);
      await mkdir(out, { recursive: true });
      const gridU = imageGrid(uncached.images, shape, { columns: 10, scale: 3 });
      const gridC = imageGrid(cached.images, shape, { columns: 10, scale: 3 });
      await writeFileAtomic(join(out, "uncached.png"), encodePng(gridU));
      await writeFileAtomic(join(out, "cached.png"), encodePng(gridC));
      await writeFileAtomic(join(out, "side-by-side.png"), encodePng(sideBySide([gridU, gridC], 16)));

      const summary = cached.summary;
      const lines = [
        "",
        `ditcache demo — embedded MNIST DiT (${model.config.depth} blocks, hidden ${model.config.hiddenSize}), backend ${backend.name}`,
        `${labels.length} images (digits 0-9 x ${rows} seeds), DDIM ${DEMO_SAMPLER.steps} steps, CFG ${DEMO_SAMPLER.cfgScale}`,
        `cache: ${summary ? `${summary.policy} + ${summary.corrector}` : "none"}`,
        "",
        `                       uncached      cached`,
        `latency             ${formatMs(uncached.milliseconds).padStart(10)}  ${formatMs(cached.milliseconds).padStart(10)}`,
        `classifier agrees   ${(100 * accU).toFixed(1).padStart(9)}%  ${(100 * accC).toFixed(1).padStart(9)}%`,
        "",
        `speed-up (measured)     ${(uncached.milliseconds / cached.milliseconds).toFixed(2)}x`,
        `MACs ratio (cached/uncached) ${summary ? summary.macs.ratio.toFixed(3) : "1.000"}  (caching level ${summary ? (100 * summary.cachingLevel).toFixed(0) : 0}%)`,
        `PSNR vs uncached        ${psnr(cached.images, uncached.images, shape, { dataRange: 2 }).mean.toFixed(2)} dB  (MSE ${meanSquaredError(cached.images, uncached.images, shape).mean.toExponential(2)})`,
        "",
        `wrote ${join(out, "uncached.png")}, ${join(out, "cached.png")}, ${join(out, "side-by-side.png")}`,
      ];
      console.log(lines.join("\n"));
    } finally {
      model.dispose();
      classifier.dispose?.();
      await backend.close?.();
    }
  },
};

/** --cache with --corrector; "eoc" pairs the base policy with the shipped priors (checked against the model). */
async function demoCache(
  values: Record<string, unknown>,
  model: DiTModel,
): Promise<CacheSetting | undefined> {
  if (values.corrector !== "eoc") return cacheSetting(values);
  const base = cacheSetting({ cache: values.cache });
  if (base === undefined) return undefined;
  return eocSetting({
    priorsPath: demoPriorsPath(),
    model,
    modelHash: await modelHash(demoModelPath()),
    basePolicy: base.policy,
    sampler: DEMO_SAMPLER,
  });
}
