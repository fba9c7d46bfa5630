import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { checkFiniteHook, DitcacheError, writeSafetensors } from "@ditcache/core";
import { afterAll, describe, expect, it } from "vitest";
import { DiTModel } from "./model.js";
import { randomDiTWeights, TINY_DIT_CONFIG } from "./testing/index.js";

const backend = createCpuBackend();
const folder = mkdtempSync(join(tmpdir(), "ditcache-dit-finite-"));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

/** Random tiny weights with one NaN in block 1's MLP output projection. */
function weightsWithNaN() {
  const weights = randomDiTWeights(TINY_DIT_CONFIG, 1);
  weights.get("blocks.1.mlp.fc2.weight")!.data[5] = Number.NaN;
  return weights;
}

async function failure(run: () => unknown): Promise<DitcacheError> {
  try {
    await run();
  } catch (error) {
    if (DitcacheError.isInstance(error)) return error;
    throw error;
  }
  throw new Error("expected a DitcacheError, got none");
}

describe("non-finite weights and features", () => {
  it("fromWeights refuses a NaN weight, naming the key and index", async () => {
    const error = await failure(() => DiTModel.fromWeights(weightsWithNaN(), TINY_DIT_CONFIG, backend));
    expect(error.code).toBe("NUMERIC_FAULT");
    expect(error.message).toBe(
      'weights: weight "blocks.1.mlp.fc2.weight" holds a non-finite value (NaN) at index 5; pass checkFinite: false to load it anyway',
    );
  });

  it("load refuses a checkpoint file with an infinite weight, and loads it with checkFinite: false", async () => {
    const weights = randomDiTWeights(TINY_DIT_CONFIG, 2);
    weights.get("final_layer.linear.bias")!.data[0] = Number.POSITIVE_INFINITY;
    const path = join(folder, "inf.safetensors");
    writeFileSync(path, writeSafetensors(Object.fromEntries(weights)));
    const error = await failure(() => DiTModel.load(path, { backend, config: TINY_DIT_CONFIG }));
    expect(error.code).toBe("NUMERIC_FAULT");
    expect(error.message).toMatch(
      /inf\.safetensors: weight "final_layer\.linear\.bias" holds a non-finite value \(Infinity\) at index 0/,
    );
    const model = await DiTModel.load(path, { backend, config: TINY_DIT_CONFIG, checkFinite: false });
    model.dispose();
  });

  it("checkFiniteHook stops a forward at the first site whose output is non-finite", async () => {
    const model = DiTModel.fromWeights(weightsWithNaN(), TINY_DIT_CONFIG, backend, { checkFinite: false });
    const x = backend.tensor(new Float32Array(2 * 4 * 8 * 8).fill(0.1), [2, 4, 8, 8]);
    const step = { index: 3, count: 10, timestep: 700, rows: ["cond", "cond"] as const };
    // Without the check the NaN flows silently to the output.
    const eps = await model.forward(x, [700, 700], [1, 2], { step: { ...step, rows: [...step.rows] } });
    expect((await backend.read(eps)).some(Number.isNaN)).toBe(true);
    backend.dispose(eps);
    const error = await failure(() =>
      model.forward(x, [700, 700], [1, 2], {
        step: { ...step, rows: [...step.rows] },
        hook: checkFiniteHook(),
      }),
    );
    expect(error.code).toBe("NUMERIC_FAULT");
    expect(error.message).toBe("non-finite value (NaN) in block1.mlp at step 3 of 10 (timestep 700)");
    backend.dispose(x);
    model.dispose();
  });
});
