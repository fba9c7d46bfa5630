import { createRequire } from "node:module";
import type { Ops, Tensor, Unit } from "@ditcache/core";
import { DitcacheError } from "@ditcache/core";
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { createTfjsBackend } from "./index.js";

function installed(specifier: string): boolean {
  try {
    createRequire(import.meta.url).resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

function filled(size: number, f: (i: number) => number): Float32Array {
  return Float32Array.from({ length: size }, (_, i) => f(i));
}

/** A DiT-block-shaped unit: adaLN modulate, attention, MLP with tanh GELU, gated residual. */
function blockUnit(dim: number, heads: number): Unit {
  return {
    name: "block",
    build<T>(ops: Ops<T>, [x, c]: readonly T[], p: Readonly<Record<string, T>>): T[] {
      const [n, l] = ops.shape(x!) as [number, number, number];
      const mod = ops.linear(ops.silu(c!), p.ada!, p.adaBias); // (N, 3D)
      const shift = ops.reshape(ops.slice(mod, 1, 0, dim), [n, 1, dim]);
      const scale = ops.reshape(ops.slice(mod, 1, dim, 2 * dim), [n, 1, dim]);
      const gate = ops.reshape(ops.slice(mod, 1, 2 * dim, 3 * dim), [n, 1, dim]);
      const h = ops.add(ops.mul(ops.layerNorm(x!, 1e-6), ops.add(scale, ops.constant(1))), shift);
      const qkv = ops.transpose(
        ops.reshape(ops.linear(h, p.qkv!), [n, l, 3, heads, dim / heads]),
        [2, 0, 3, 1, 4],
      );
      const pick = (i: number) => ops.reshape(ops.slice(qkv, 0, i, i + 1), [n, heads, l, dim / heads]);
      const attended = ops.attention(pick(0), pick(1), pick(2), (dim / heads) ** -0.5);
      const merged = ops.reshape(ops.transpose(attended, [0, 2, 1, 3]), [n, l, dim]);
      const mlp = ops.linear(ops.gelu(ops.linear(merged, p.fc1!), "tanh"), p.fc2!);
      return [ops.add(x!, ops.mul(gate, mlp))];
    },
  };
}

describe.each(["cpu", "wasm"] as const)("tfjs-%s backend", (engine) => {
  it("round-trips data and reads a copy", async () => {
    const backend = await createTfjsBackend({ engine });
    expect(backend.name).toBe(`tfjs-${engine}`);
    expect(backend.engine).toBe(engine);
    const t = backend.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe("float32");
    const first = await backend.read(t);
    first[0] = 99;
    expect(Array.from(await backend.read(t))).toEqual([1, 2, 3, 4, 5, 6]);
    backend.dispose(t);
    backend.dispose(t); // twice is a no-op
    await expect(backend.read(t)).rejects.toThrow(/disposed/);
    expect(() => backend.tensor(new Float32Array(5), [2, 3])).toThrow(DitcacheError);
  });

  it("returns fresh outputs even when a unit returns its input or a param", async () => {
    const backend = await createTfjsBackend({ engine });
    const w = backend.tensor(new Float32Array([7]), [1]);
    const x = backend.tensor(new Float32Array([1, 2]), [2]);
    const executable = backend.compile({ name: "echo", params: { w }, build: (_, [v], p) => [v!, v!, p.w!] });
    const outputs = await executable.run([x]);
    for (const out of outputs) backend.dispose(out);
    expect(Array.from(await backend.read(x))).toEqual([1, 2]);
    expect(Array.from(await backend.read(w))).toEqual([7]);
    executable.dispose();
    await expect(executable.run([x])).rejects.toThrow(/disposed/);
    await backend.close();
  });

  it("leaks no tensor over many runs, nor when a unit throws", async () => {
    const backend = await createTfjsBackend({ engine });
    const dim = 16;
    const rand = (shape: number[], seed: number) =>
      backend.tensor(
        filled(
          shape.reduce((a, b) => a * b, 1),
          (i) => Math.sin(i * 0.37 + seed) * 0.2,
        ),
        shape,
      );
    const params = {
      ada: rand([3 * dim, dim], 1),
      adaBias: rand([3 * dim], 2),
      qkv: rand([3 * dim, dim], 3),
      fc1: rand([4 * dim, dim], 4),
      fc2: rand([dim, 4 * dim], 5),
    };
    const block = backend.compile({ ...blockUnit(dim, 2), params });
    const x = rand([2, 9, dim], 6);
    const c = rand([2, dim], 7);
    const patch = rand([2, 3, 8, 8], 8);
    const kernel = rand([dim, 3, 2, 2], 9);
    const embed = backend.compile({
      name: "embed",
      build: (ops, [img, k]) => [ops.groupNorm(ops.conv2d(img!, k!, undefined, { stride: 2 }), 4, 1e-5)],
    });
    const failing = backend.compile({
      name: "failing",
      build: (ops, [v]) => [ops.reshape(ops.exp(ops.add(v!, ops.constant(1))), [7, 7])],
    });
    const warm = await block.run([x, c]); // first run may allocate kernel state
    backend.dispose(warm[0]!);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) {
      const [out] = await block.run([x, c]);
      const [features] = await embed.run([patch, kernel]);
      await expect(failing.run([x])).rejects.toThrow(DitcacheError);
      backend.dispose(out!);
      backend.dispose(features!);
    }
    expect(tf.memory().numTensors).toBe(before);
    await backend.close();
    expect(tf.memory().numTensors).toBeLessThan(before);
  });
});

describe("engine selection", () => {
  it("switches tfjs's one global backend to whichever backend runs, and refuses foreign tensors", async () => {
    const cpu = await createTfjsBackend({ engine: "cpu" });
    const wasm = await createTfjsBackend({ engine: "wasm" });
    const double: Unit = { name: "double", build: (ops, [v]) => [ops.mul(v!, ops.constant(2))] };
    const onCpu = cpu.tensor(new Float32Array([1, 2]), [2]);
    expect(tf.getBackend()).toBe("cpu");
    const onWasm = wasm.tensor(new Float32Array([3, 4]), [2]);
    expect(tf.getBackend()).toBe("wasm");
    const [a] = (await cpu.compile(double).run([onCpu])) as [Tensor];
    expect(tf.getBackend()).toBe("cpu");
    const [b] = (await wasm.compile(double).run([onWasm])) as [Tensor];
    expect(tf.getBackend()).toBe("wasm");
    expect(Array.from(await cpu.read(a))).toEqual([2, 4]);
    expect(Array.from(await wasm.read(b))).toEqual([6, 8]);
    await expect(cpu.compile(double).run([onWasm])).rejects.toThrow(
      /expected a tensor of backend "tfjs-cpu"/,
    );
    await cpu.close();
    await wasm.close();
  });

  it("rejects an unknown engine naming the choices", async () => {
    await expect(createTfjsBackend({ engine: "webgl" as "cpu" })).rejects.toThrow(
      /options\.engine: expected one of node-gpu, node, wasm, cpu, got "webgl"/,
    );
  });

  it.skipIf(installed("@tensorflow/tfjs-node") || installed("@tensorflow/tfjs-node-gpu"))(
    "explains how to install tfjs-node(-gpu) when missing, and defaults to wasm without them",
    async () => {
      for (const [engine, specifier] of [
        ["node", "@tensorflow/tfjs-node"],
        ["node-gpu", "@tensorflow/tfjs-node-gpu"],
      ] as const) {
        const error = await createTfjsBackend({ engine }).catch((e: unknown) => e);
        expect(DitcacheError.isInstance(error) && error.code).toBe("BACKEND_UNAVAILABLE");
        const message = (error as Error).message;
        expect(message).toContain(`tfjs engine "${engine}" is unavailable: ${specifier} is not installed`);
        expect(message).toContain(`npm install ${specifier}@${tf.version_core}`);
        expect(message).toContain("downloads the libtensorflow shared library");
        expect(message).not.toContain("\n");
      }
      const backend = await createTfjsBackend();
      expect(backend.engine).toBe("wasm");
    },
  );
});
