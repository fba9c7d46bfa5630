import { createCpuBackend } from "@ditcache/backend-cpu";
import { parsePolicy } from "@ditcache/cache";
import { DitcacheError } from "@ditcache/core";
import { DiTModel } from "@ditcache/dit";
import { randomDiTWeights, TINY_DIT_CONFIG } from "@ditcache/dit/testing";
import { describe, expect, it } from "vitest";
import { generate } from "./generate.js";

const backend = createCpuBackend();

function modelWithNaN(): DiTModel {
  const weights = randomDiTWeights(TINY_DIT_CONFIG, 3);
  weights.get("blocks.0.attn.proj.weight")!.data[0] = Number.NaN;
  return DiTModel.fromWeights(weights, TINY_DIT_CONFIG, backend, { checkFinite: false });
}

async function failure(promise: Promise<unknown>): Promise<DitcacheError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!DitcacheError.isInstance(error)) throw new Error(`expected a DitcacheError, got ${String(error)}`);
  return error;
}

describe("generate with checkFinite", () => {
  it("stops at the first non-finite site, step 0, composing with a cache engine", async () => {
    const model = modelWithNaN();
    try {
      const cache = { policy: parsePolicy("fora:interval=2") };
      const error = await failure(
        generate({ model, labels: [1], steps: 4, cfgScale: 1, checkFinite: true, cache }),
      );
      expect(error.code).toBe("NUMERIC_FAULT");
      expect(error.message).toBe("non-finite value (NaN) in block0.attn at step 0 of 4 (timestep 750)");
    } finally {
      model.dispose();
    }
  });

  it("is off by default: the NaN reaches the images", async () => {
    const model = modelWithNaN();
    try {
      const { images } = await generate({ model, labels: [1], steps: 2, cfgScale: 1 });
      expect(images.some(Number.isNaN)).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it("changes nothing for a finite model", async () => {
    const model = DiTModel.fromWeights(randomDiTWeights(TINY_DIT_CONFIG, 4), TINY_DIT_CONFIG, backend);
    try {
      const plain = await generate({ model, labels: [2, 3], steps: 3 });
      const checked = await generate({ model, labels: [2, 3], steps: 3, checkFinite: true });
      expect(checked.images).toEqual(plain.images);
    } finally {
      model.dispose();
    }
  });
});
