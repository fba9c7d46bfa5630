// Memory of the wasm engine (capped at 4 GiB): each linear weight sits in it once, and a tensor
// that does not fit is refused before tfjs-wasm writes it over its own state.
import type { Unit } from "@ditcache/core";
import { DitcacheError } from "@ditcache/core";
import { DiTModel } from "@ditcache/dit";
import { randomDiTWeights, TINY_DIT_CONFIG } from "@ditcache/dit/testing";
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { createTfjsBackend } from "./index.js";

const ramp = (size: number) => Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.37) * 0.02);

describe("tfjs-wasm memory", () => {
  it("holds each DiT weight once: forwards leave tfjs's tensor bytes where loading put them", async () => {
    const backend = await createTfjsBackend({ engine: "wasm" });
    const config = TINY_DIT_CONFIG;
    const weights = randomDiTWeights(config, 0);
    let weightBytes = 0;
    for (const { data } of weights.values()) weightBytes += data.byteLength;
    const before = tf.memory().numBytes;
    const model = DiTModel.fromWeights(weights, config, backend);
    const loaded = tf.memory().numBytes;
    // The weights (and the position table the model adds) sit there once...
    expect(loaded - before).toBeGreaterThanOrEqual(weightBytes);
    expect(loaded - before).toBeLessThan(1.5 * weightBytes);
    const side = config.inputSize;
    const x = backend.tensor(ramp(2 * config.inChannels * side * side), [2, config.inChannels, side, side]);
    for (let run = 0; run < 2; run++) {
      backend.dispose(await model.forward(x, [500, 500], [1, config.numClasses]));
    }
    backend.dispose(x);
    // ...and no forward adds a copy of any (a transposed copy per linear weight used to).
    expect(tf.memory().numBytes).toBe(loaded);
    model.dispose();
    await backend.close();
    expect(tf.memory().numBytes).toBe(before);
  });

  it("keeps no copy of a linear weight in wasm memory outside tfjs's tensors either", async () => {
    const backend = await createTfjsBackend({ engine: "wasm" });
    const [outFeatures, inFeatures] = [4096, 2048];
    const weightBytes = outFeatures * inFeatures * 4; // 32 MB
    const weight = backend.tensor(ramp(outFeatures * inFeatures), [outFeatures, inFeatures]);
    const x = backend.tensor(ramp(4 * inFeatures), [4, inFeatures]);
    const linear = backend.compile({
      name: "linear",
      params: { weight },
      build: (ops, [v], p) => [ops.linear(v!, p.weight!)],
    } satisfies Unit);
    const before = backend.wasmMemoryBytes()!;
    for (let run = 0; run < 3; run++) backend.dispose((await linear.run([x]))[0]!);
    // XNNPACK keeps a packed copy of its right operand until that tensor is disposed: were the
    // weight (or a transpose of it) on the right, wasm memory would have to grow by ~32 MB.
    expect(backend.wasmMemoryBytes()! - before).toBeLessThan(weightBytes / 2);
    await backend.close();
  });

  it("refuses a tensor wasm memory cannot hold, before tfjs-wasm writes it, and stays usable", async () => {
    const backend = await createTfjsBackend({ engine: "wasm" });
    const held = backend.tensor(new Float32Array(2 ** 24), [2 ** 24]); // 64 MB
    // 32 MB less than the 4 GiB cap (the allocator says no: 64 MB are held), the cap, and 4 GiB.
    // Zero-filled lazily by the OS, these arrays cost address space, not memory.
    for (const bytes of [2 ** 32 - 2 ** 25, 2 ** 32 - 2 ** 16, 2 ** 32]) {
      let error: unknown;
      try {
        backend.tensor(new Float32Array(bytes / 4), [bytes / 4]);
      } catch (thrown) {
        error = thrown;
      }
      expect(DitcacheError.isInstance(error) && error.code).toBe("UNSUPPORTED");
      expect((error as Error).message).toMatch(
        /^tfjs-wasm: out of WebAssembly memory at \d+\.\d\d GB \(tfjs-wasm caps it at 4 GiB\): no room for a tensor of \d+\.\d MB; use a smaller model or another engine$/,
      );
      expect((error as Error).message).toContain(`a tensor of ${(bytes / 1e6).toFixed(1)} MB`);
    }
    expect(backend.wasmMemoryBytes()).toBeLessThan(2 ** 30);
    const small = backend.tensor(new Float32Array([1, 2, 3]), [3]);
    const double = backend.compile({ name: "double", build: (ops, [v]) => [ops.add(v!, v!)] });
    const [doubled] = await double.run([small]);
    expect(Array.from(await backend.read(doubled!))).toEqual([2, 4, 6]);
    expect((await backend.read(held)).length).toBe(2 ** 24);
    await backend.close();
  });

  it("reports wasm memory only on the wasm engine", async () => {
    const cpu = await createTfjsBackend({ engine: "cpu" });
    expect(cpu.wasmMemoryBytes()).toBeUndefined();
    await cpu.close();
  });
});
