import { readFileSync } from "node:fs";
import { readSafetensors } from "@ditcache/core";

/** Fixtures written by tools/metrics/make_fixtures.py (numpy + scipy reference values). */
const here = new URL(".", import.meta.url);

export const fixtureInputs = readSafetensors(new Uint8Array(readFileSync(new URL("metrics-inputs.safetensors", here))), {
  name: "metrics-inputs.safetensors",
}).tensors;

export function input(name: string): { shape: number[]; data: Float32Array } {
  const tensor = fixtureInputs.get(name);
  if (tensor === undefined) throw new Error(`fixture tensor ${name} missing`);
  return tensor;
}

export const reference = JSON.parse(readFileSync(new URL("metrics-reference.json", here), "utf8")) as {
  fid: Record<string, { dim: number; pytorchFid: number; eigh: number; conditionA: number; traceCovA: number; meanA: number[] | null }>;
  inceptionScore: Record<string, { mean: number; std: number }>;
  precisionRecall: Record<string, { precision: number; recall: number }>;
  images: Record<string, { dataRange: number; mse: number[]; psnr: number[]; ssim: number[] }>;
  classifier: { features: number[]; logits: number[]; batch: number };
};

export const tinyClassifierBytes = new Uint8Array(readFileSync(new URL("tiny-classifier.safetensors", here)));
