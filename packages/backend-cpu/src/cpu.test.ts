import { createRng, DitcacheError, type Unit } from "@ditcache/core";
import { reference, referenceErf } from "@ditcache/core/testing";
import { describe, expect, it } from "vitest";
import { createCpuBackend, erf } from "./index.js";
import { cpuOps as ops } from "./ops.js";
import { CpuTensor } from "./tensor.js";

const random = (seed: number, ...shape: number[]) =>
  new CpuTensor(createRng(seed).normals(shape.reduce((p, d) => p * d, 1)), shape);
const toReference = (x: CpuTensor) => ({ shape: x.shape, data: Float64Array.from(x.data) });

function maxError(got: Float32Array, expected: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - expected[i]!));
  return worst;
}

describe("erf", () => {
  it("matches an independent series to 3e-15 across all branches", () => {
    for (let x = -7; x <= 7; x += 0.01) {
      expect(Math.abs(erf(x) - referenceErf(x)), `erf(${x})`).toBeLessThan(3e-15);
    }
    expect(erf(0)).toBe(0);
    expect(erf(Number.POSITIVE_INFINITY)).toBe(1);
    expect(Number.isNaN(erf(Number.NaN))).toBe(true);
  });
});

describe("gemm edges", () => {
  // k = 1024 gives 64-row panels of b: n = 70 crosses a panel; m = 7 leaves a 3-row tail.
  it.each([
    [7, 70, 1024],
    [4, 4, 1],
    [1, 1, 5],
    [9, 3, 2],
  ])("linear %i x %i x %i matches float64 within float32 rounding", (m, n, k) => {
    const x = random(1, m, k);
    const w = random(2, n, k);
    const b = random(3, n);
    const got = ops.linear(x, w, b);
    const expected = reference.linear(toReference(x), toReference(w), toReference(b));
    expect(got.shape).toEqual([m, n]);
    // float64 accumulation: error is the final float32 rounding only.
    expect(maxError(got.data, expected.data)).toBeLessThanOrEqual(
      Math.max(...expected.data.map(Math.abs)) * 2 ** -23,
    );
  });
});

describe("argument errors", () => {
  const x = random(1, 2, 3);
  it.each<[string, () => unknown, RegExp]>([
    ["add", () => ops.add(x, random(2, 4)), /cannot broadcast shapes \[2, 3\] and \[4\]/],
    ["matmul", () => ops.matmul(x, random(2, 4, 2)), /matmul: inner dimensions differ/],
    ["linear", () => ops.linear(x, random(2, 4, 5)), /linear: x \[2, 3\] last dimension must equal/],
    ["reshape", () => ops.reshape(x, [4, -1]), /reshape: cannot infer -1/],
    ["transpose", () => ops.transpose(x, [0, 0]), /perm: expected a permutation of 0..1/],
    ["slice", () => ops.slice(x, 1, 2, 5), /start\/end: expected integers with 0 <= start <= end <= 3/],
    ["softmax", () => ops.softmax(x, 2), /axis: expected an integer in \[-2, 2\)/],
    [
      "groupNorm",
      () => ops.groupNorm(random(1, 1, 6, 2), 4, 1e-5),
      /groups: expected a divisor of the 6 channels/,
    ],
    [
      "conv2d",
      () => ops.conv2d(random(1, 1, 2, 5, 5), random(2, 3, 3, 3, 3), undefined, {}),
      /expects 3 input channels/,
    ],
    ["maxPool2d", () => ops.maxPool2d(random(1, 1, 1, 4, 4), { kernel: 2, padding: 2 }), /options\.padding/],
    ["gelu", () => ops.gelu(x, "fast" as "tanh"), /approximate/],
    ["constant", () => ops.constant(new Float32Array(3), [2, 2]), /3 values do not fill shape \[2, 2\]/],
  ])("%s names the problem", (_, call, message) => {
    expect(call).toThrow(DitcacheError);
    expect(call).toThrow(message);
  });

  it("backend rejects foreign, mis-sized and disposed tensors", async () => {
    const backend = createCpuBackend();
    expect(() => backend.tensor(new Float32Array(5), [2, 3])).toThrow(/5 values do not fill shape \[2, 3\]/);
    const foreign = { shape: [1], dtype: "float32", backend: "onnx" } as const;
    await expect(backend.read(foreign)).rejects.toThrow(
      /tensor: expected a tensor of the "cpu" backend, got "onnx"/,
    );
    const t = backend.tensor(new Float32Array(2), [2]);
    backend.dispose(t);
    await expect(backend.read(t)).rejects.toThrow(/used after dispose/);
    const unit: Unit = { name: "u", build: (o, [v]) => [o.exp(v!)] };
    const executable = backend.compile(unit);
    executable.dispose();
    await expect(executable.run([])).rejects.toThrow(/run\(\) after dispose/);
  });
});
