import type { Ops } from "@ditcache/core";
import { OP_NAMES } from "@ditcache/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOnnxBackend, type OnnxBackend } from "./index.js";

/** Each op of the ONNX backend against a naive JS computation on small inputs. */

let backend: OnnxBackend;
let unitCounter = 0;
beforeAll(async () => {
  backend = await createOnnxBackend({ intraOpNumThreads: 1 });
});
afterAll(async () => {
  await backend.close();
});

interface Value {
  data: Float32Array;
  shape: number[];
}

let seed = 7;
function random(...shape: number[]): Value {
  const size = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    data[i] = (seed / 2 ** 31) * 4 - 2;
  }
  return { data, shape };
}

async function run(inputs: Value[], build: <T>(ops: Ops<T>, xs: readonly T[]) => T[]): Promise<Value[]> {
  const tensors = inputs.map((input) => backend.tensor(input.data.slice(), input.shape));
  const executable = backend.compile({
    name: `op-test-${unitCounter++}`,
    build: (ops, xs) => build(ops, xs),
  });
  const outputs = await executable.run(tensors);
  const values = await Promise.all(
    outputs.map(async (output) => ({ data: await backend.read(output), shape: [...output.shape] })),
  );
  executable.dispose();
  return values;
}

function expectClose(got: Value, shape: number[], expected: ArrayLike<number>, tolerance = 1e-5): void {
  expect(got.shape).toEqual(shape);
  expect(got.data.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const scale = Math.max(1, Math.abs(expected[i]!));
    if (!(Math.abs(got.data[i]! - expected[i]!) <= tolerance * scale)) {
      throw new Error(`element ${i}: got ${got.data[i]}, expected ${expected[i]}`);
    }
  }
}

const strides = (shape: number[]) => shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
const map = (x: Value, f: (v: number) => number) => Array.from(x.data, f);
const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead (|x| <= 2 here).
  let sum = 0;
  let term = x;
  for (let n = 0; n < 60; n++) {
    sum += term / (2 * n + 1);
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function matmul2d(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  m: number,
  k: number,
  n: number,
  offA = 0,
  offB = 0,
) {
  const out = new Array<number>(m * n).fill(0);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[offA + i * k + p]! * b[offB + p * n + j]!;
      out[i * n + j] = s;
    }
  return out;
}

describe("onnx backend ops vs naive JS", () => {
  it("covers every op of OP_NAMES in this file", async () => {
    const source = await import("node:fs").then((fs) => fs.readFileSync(new URL(import.meta.url), "utf8"));
    for (const name of OP_NAMES) expect(source).toContain(`ops.${name}(`);
  });

  it("add / sub / mul / div broadcast like NumPy", async () => {
    const a = random(2, 3, 4);
    const b = random(3, 1);
    const outs = await run([a, b], (ops, [x, y]) => [
      ops.add(x!, y!),
      ops.sub(x!, y!),
      ops.mul(x!, y!),
      ops.div(x!, y!),
    ]);
    const at = (i: number) => b.data[Math.floor(i / 4) % 3]!;
    const fs = [
      (p: number, q: number) => p + q,
      (p: number, q: number) => p - q,
      (p: number, q: number) => p * q,
      (p: number, q: number) => p / q,
    ];
    for (const [k, f] of fs.entries())
      expectClose(
        outs[k]!,
        [2, 3, 4],
        Array.from(a.data, (v, i) => f(v, at(i))),
        1e-5,
      );
  });

  it("unary ops: exp, sqrt, sin, cos, relu, silu, gelu", async () => {
    const a = random(3, 5);
    const outs = await run([a], (ops, [x]) => [
      ops.exp(x!),
      ops.sqrt(ops.mul(x!, x!)),
      ops.sin(x!),
      ops.cos(x!),
      ops.relu(x!),
      ops.silu(x!),
      ops.gelu(x!, "tanh"),
      ops.gelu(x!, "none"),
    ]);
    const expected = [
      map(a, Math.exp),
      map(a, Math.abs),
      map(a, Math.sin),
      map(a, Math.cos),
      map(a, (v) => Math.max(v, 0)),
      map(a, (v) => v / (1 + Math.exp(-v))),
      map(a, gelu),
      map(a, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))),
    ];
    for (const [k, values] of expected.entries()) expectClose(outs[k]!, [3, 5], values, 1e-5);
  });

  it("constant: scalars, filled shapes and arrays", async () => {
    const [filled, array, scalar] = await run([], (ops) => [
      ops.constant(1.5, [2, 2]),
      ops.constant(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]),
      ops.constant(3),
    ]);
    expectClose(filled!, [2, 2], [1.5, 1.5, 1.5, 1.5]);
    expectClose(array!, [2, 3], [1, 2, 3, 4, 5, 6]);
    expectClose(scalar!, [], [3]);
  });

  it("matmul with broadcast batch dims, and linear with and without bias", async () => {
    const a = random(2, 3, 4);
    const b = random(4, 5);
    const w = random(5, 4);
    const bias = random(5);
    const [mm, lin, linNoBias] = await run([a, b, w, bias], (ops, [x, y, weight, c]) => [
      ops.matmul(x!, y!),
      ops.linear(x!, weight!, c!),
      ops.linear(x!, weight!),
    ]);
    expectClose(
      mm!,
      [2, 3, 5],
      [...matmul2d(a.data, b.data, 3, 4, 5), ...matmul2d(a.data, b.data, 3, 4, 5, 12)],
    );
    const wt = Array.from({ length: 20 }, (_, i) => w.data[(i % 5) * 4 + Math.floor(i / 5)]!);
    const plain = matmul2d(a.data, wt, 6, 4, 5);
    expectClose(linNoBias!, [2, 3, 5], plain);
    expectClose(
      lin!,
      [2, 3, 5],
      plain.map((v, i) => v + bias.data[i % 5]!),
    );
  });

  it("linear with params stored as initializers (both lowerings)", async () => {
    for (const linear of ["matmul", "gemm"] as const) {
      const local = await createOnnxBackend({ intraOpNumThreads: 1, lowering: { linear } });
      const w = random(3, 2);
      const bias = random(3);
      const x = random(4, 2);
      const executable = local.compile({
        name: "linear",
        params: { w: local.tensor(w.data, w.shape), b: local.tensor(bias.data, bias.shape) },
        build: (ops, [input], p) => [ops.linear(input!, p.w!, p.b!)],
      });
      const [y] = await executable.run([local.tensor(x.data, x.shape)]);
      const expected = Array.from({ length: 12 }, (_, i) => {
        const [r, o] = [Math.floor(i / 3), i % 3];
        return x.data[r * 2]! * w.data[o * 2]! + x.data[r * 2 + 1]! * w.data[o * 2 + 1]! + bias.data[o]!;
      });
      expectClose({ data: await local.read(y!), shape: [...y!.shape] }, [4, 3], expected);
      await local.close();
    }
  });

  it("attention = softmax(q k^T * scale) v", async () => {
    const [q, k, v] = [random(1, 2, 3, 4), random(1, 2, 5, 4), random(1, 2, 5, 2)];
    const [out] = await run([q, k, v], (ops, [a, b, c]) => [ops.attention(a!, b!, c!, 0.7)]);
    const expected: number[] = [];
    for (let h = 0; h < 2; h++)
      for (let i = 0; i < 3; i++) {
        const scores = Array.from({ length: 5 }, (_, j) => {
          let s = 0;
          for (let d = 0; d < 4; d++) s += q.data[h * 12 + i * 4 + d]! * k.data[h * 20 + j * 4 + d]!;
          return s * 0.7;
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const total = e.reduce((x, y) => x + y, 0);
        for (let d = 0; d < 2; d++)
          expected.push(e.reduce((acc, p, j) => acc + (p / total) * v.data[h * 10 + j * 2 + d]!, 0));
      }
    expectClose(out!, [1, 2, 3, 2], expected);
  });

  it("layerNorm with and without affine; softmax on an inner axis", async () => {
    const [x, w, b] = [random(2, 3, 4), random(4), random(4)];
    const [plain, affine, soft] = await run([x, w, b], (ops, [a, weight, bias]) => [
      ops.layerNorm(a!, 1e-5),
      ops.layerNorm(a!, 1e-5, weight!, bias!),
      ops.softmax(a!, 1),
    ]);
    const normed: number[] = [];
    for (let r = 0; r < 6; r++) {
      const row = Array.from(x.data.subarray(r * 4, r * 4 + 4));
      const mean = row.reduce((p, q) => p + q, 0) / 4;
      const variance = row.reduce((p, q) => p + (q - mean) ** 2, 0) / 4;
      normed.push(...row.map((v) => (v - mean) / Math.sqrt(variance + 1e-5)));
    }
    expectClose(plain!, [2, 3, 4], normed, 1e-4);
    expectClose(
      affine!,
      [2, 3, 4],
      normed.map((v, i) => v * w.data[i % 4]! + b.data[i % 4]!),
      1e-4,
    );
    const expected = Array.from(x.data, (_, i) => {
      const [n, c, l] = [Math.floor(i / 12), Math.floor(i / 4) % 3, i % 4];
      const column = [0, 1, 2].map((j) => Math.exp(x.data[n * 12 + j * 4 + l]!));
      return column[c]! / column.reduce((p, q) => p + q, 0);
    });
    expectClose(soft!, [2, 3, 4], expected);
  });

  it("groupNorm over (N, C, H, W) with affine", async () => {
    const [x, w, b] = [random(2, 4, 2, 3), random(4), random(4)];
    const [out] = await run([x, w, b], (ops, [a, weight, bias]) => [
      ops.groupNorm(a!, 2, 1e-5, weight!, bias!),
    ]);
    const expected = new Array<number>(48);
    for (let n = 0; n < 2; n++)
      for (let g = 0; g < 2; g++) {
        const start = n * 24 + g * 12;
        const group = Array.from(x.data.subarray(start, start + 12));
        const mean = group.reduce((p, q) => p + q, 0) / 12;
        const variance = group.reduce((p, q) => p + (q - mean) ** 2, 0) / 12;
        group.forEach((v, i) => {
          const c = g * 2 + Math.floor(i / 6);
          expected[start + i] = ((v - mean) / Math.sqrt(variance + 1e-5)) * w.data[c]! + b.data[c]!;
        });
      }
    expectClose(out!, [2, 4, 2, 3], expected, 1e-4);
  });

  it("conv2d with stride, padding and bias", async () => {
    const [x, w, b] = [random(1, 2, 5, 4), random(3, 2, 3, 3), random(3)];
    const [out] = await run([x, w, b], (ops, [a, weight, bias]) => [
      ops.conv2d(a!, weight!, bias!, { stride: 2, padding: 1 }),
    ]);
    const expected: number[] = [];
    for (let o = 0; o < 3; o++)
      for (let i = 0; i < 3; i++)
        for (let j = 0; j < 2; j++) {
          let s = b.data[o]!;
          for (let c = 0; c < 2; c++)
            for (let p = 0; p < 3; p++)
              for (let q = 0; q < 3; q++) {
                const [y, z] = [i * 2 - 1 + p, j * 2 - 1 + q];
                if (y >= 0 && y < 5 && z >= 0 && z < 4)
                  s += x.data[c * 20 + y * 4 + z]! * w.data[o * 18 + c * 9 + p * 3 + q]!;
              }
          expected.push(s);
        }
    expectClose(out!, [1, 3, 3, 2], expected);
  });

  it("maxPool2d and avgPool2d (padding excluded from the average); upsampleNearest2d", async () => {
    const x = random(1, 1, 4, 4);
    const [max, avg, up] = await run([x], (ops, [a]) => [
      ops.maxPool2d(a!, { kernel: 2 }),
      ops.avgPool2d(a!, { kernel: 3, stride: 2, padding: 1 }),
      ops.upsampleNearest2d(a!, 2),
    ]);
    const at = (i: number, j: number) => x.data[i * 4 + j]!;
    const window = (i0: number, j0: number, size: number) => {
      const cells: number[] = [];
      for (let i = i0; i < i0 + size; i++)
        for (let j = j0; j < j0 + size; j++) if (i >= 0 && i < 4 && j >= 0 && j < 4) cells.push(at(i, j));
      return cells;
    };
    expectClose(
      max!,
      [1, 1, 2, 2],
      [0, 1, 2, 3].map((k) => Math.max(...window(Math.floor(k / 2) * 2, (k % 2) * 2, 2))),
    );
    const averages = [0, 1, 2, 3].map((k) => {
      const cells = window(Math.floor(k / 2) * 2 - 1, (k % 2) * 2 - 1, 3);
      return cells.reduce((p, q) => p + q, 0) / cells.length;
    });
    expectClose(avg!, [1, 1, 2, 2], averages);
    expectClose(
      up!,
      [1, 1, 8, 8],
      Array.from({ length: 64 }, (_, k) => at(Math.floor(k / 16), Math.floor((k % 8) / 2))),
    );
  });

  it("reshape, transpose, concat, slice", async () => {
    const x = random(2, 3, 4);
    const [reshaped, transposed, joined, sliced] = await run([x], (ops, [a]) => [
      ops.reshape(a!, [4, -1]),
      ops.transpose(a!, [2, 0, 1]),
      ops.concat([a!, ops.mul(a!, ops.constant(2))], 1),
      ops.slice(a!, -1, 1, -1),
    ]);
    expectClose(reshaped!, [4, 6], x.data);
    const s = strides([2, 3, 4]);
    const index = (i: number, j: number, k: number) => i * s[0]! + j * s[1]! + k;
    const t: number[] = [];
    for (let k = 0; k < 4; k++)
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) t.push(x.data[index(i, j, k)]!);
    expectClose(transposed!, [4, 2, 3], t);
    const c: number[] = [];
    for (let i = 0; i < 2; i++) {
      c.push(...x.data.subarray(i * 12, i * 12 + 12));
      c.push(...Array.from(x.data.subarray(i * 12, i * 12 + 12), (v) => v * 2));
    }
    expectClose(joined!, [2, 6, 4], c);
    const sl: number[] = [];
    for (let r = 0; r < 6; r++) sl.push(x.data[r * 4 + 1]!, x.data[r * 4 + 2]!);
    expectClose(sliced!, [2, 3, 2], sl);
  });

  it("sum and mean over axes, with and without keepDims", async () => {
    const x = random(2, 3, 4);
    const [sum, mean] = await run([x], (ops, [a]) => [ops.sum(a!, [0, 2], false), ops.mean(a!, [-1], true)]);
    const sums = [0, 1, 2].map((j) => {
      let total = 0;
      for (let i = 0; i < 2; i++) for (let k = 0; k < 4; k++) total += x.data[i * 12 + j * 4 + k]!;
      return total;
    });
    expectClose(sum!, [3], sums);
    const means = Array.from(
      { length: 6 },
      (_, r) => x.data.subarray(r * 4, r * 4 + 4).reduce((p, q) => p + q, 0) / 4,
    );
    expectClose(mean!, [2, 3, 1], means);
  });

  it("shape reports static shapes inside build, and inputs pass through as outputs", async () => {
    const x = random(2, 3);
    const [same, scaled] = await run([x], (ops, [a]) => {
      expect(ops.shape(a!)).toEqual([2, 3]);
      return [a!, ops.mul(a!, ops.constant(2))];
    });
    expectClose(same!, [2, 3], x.data);
    expectClose(
      scaled!,
      [2, 3],
      map(x, (v) => v * 2),
    );
  });
});
