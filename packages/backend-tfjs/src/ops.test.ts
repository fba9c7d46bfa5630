import type { Ops, Tensor } from "@ditcache/core";
import { DitcacheError, OP_NAMES } from "@ditcache/core";
import { reference } from "@ditcache/core/testing";
import { beforeAll, describe, expect, it } from "vitest";
import { createTfjsBackend, type TfjsBackend } from "./index.js";
import { createTfjsOps } from "./ops.js";

// What the shared conformance suite does not reach: places where tfjs's own semantics differ
// from the op contract, and the argument errors.

function ramp(shape: number[]): Float32Array {
  const size = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.7) * 2);
}

describe.each(["cpu", "wasm"] as const)("tfjs-%s ops beyond the conformance suite", (engine) => {
  let backend: TfjsBackend;
  beforeAll(async () => {
    backend = await createTfjsBackend({ engine });
  });

  async function run(build: (ops: Ops<unknown>, xs: unknown[]) => unknown, ...shapes: number[][]) {
    const tensors = shapes.map((shape) => backend.tensor(ramp(shape), shape));
    try {
      const [out] = (await backend
        .compile({ name: "test", build: (ops, xs) => [build(ops as Ops<unknown>, [...xs]) as never] })
        .run(tensors)) as [Tensor];
      const data = await backend.read(out);
      backend.dispose(out);
      return { shape: [...out.shape], data };
    } finally {
      for (const t of tensors) backend.dispose(t);
    }
  }

  it("implements every op of the table", () => {
    expect(Object.keys(createTfjsOps()).sort()).toEqual([...OP_NAMES].sort());
  });

  it("matmul broadcasts batch dims from both sides (tfjs alone only broadcasts a batch of 1)", async () => {
    const got = await run((o, [a, b]) => o.matmul(a, b), [3, 1, 4, 5], [2, 5, 6]);
    const toRef = (shape: number[]) => ({ shape, data: Float64Array.from(ramp(shape)) });
    const want = reference.matmul(toRef([3, 1, 4, 5]), toRef([2, 5, 6]));
    expect(got.shape).toEqual([3, 2, 4, 6]);
    for (let i = 0; i < want.data.length; i++) expect(got.data[i]).toBeCloseTo(want.data[i]!, 4);
  });

  it("transposes of rank 5 and 6 (done in rank-4 steps) move every element right", async () => {
    const toRef = (shape: number[]) => ({ shape, data: Float64Array.from(ramp(shape)) });
    for (const [shape, perm] of [
      [
        [2, 5, 3, 4, 6],
        [2, 0, 3, 1, 4],
      ],
      [
        [2, 1, 3, 4, 5],
        [4, 3, 2, 1, 0],
      ],
      [
        [3, 2, 1, 2, 4, 2],
        [5, 1, 3, 0, 4, 2],
      ],
    ] as const) {
      const got = await run((o, [x]) => o.transpose(x, perm), [...shape]);
      const want = reference.transpose(toRef([...shape]), perm);
      expect(got).toEqual({ shape: [...want.shape], data: Float32Array.from(want.data) });
    }
  });

  it("strided slices of rank 5 (done as a gather of rows) pick the right elements", async () => {
    const shape = [2, 3, 4, 2, 3];
    const toRef = { shape, data: Float64Array.from(ramp(shape)) };
    for (const [axis, start, end] of [
      [2, 1, 3],
      [-1, 0, 2],
      [1, 2, 3],
    ] as const) {
      const got = await run((o, [x]) => o.slice(x, axis, start, end), shape);
      const want = reference.slice(toRef, axis, start, end);
      expect(got).toEqual({ shape: [...want.shape], data: Float32Array.from(want.data) });
    }
  });

  it("sum and mean over no axes are the identity, as in NumPy", async () => {
    for (const reduce of ["sum", "mean"] as const) {
      const got = await run((o, [x]) => o[reduce](x, [], false), [2, 3]);
      expect(got).toEqual({ shape: [2, 3], data: ramp([2, 3]) });
    }
  });

  it("rejects bad arguments with a DitcacheError", async () => {
    const bad: ((o: Ops<unknown>, x: unknown) => unknown)[] = [
      (o, x) => o.reshape(x, [5, -1]),
      (o, x) => o.slice(x, 1, 2, 4),
      (o, x) => o.softmax(x, 2),
      (o, x) => o.transpose(x, [0, 0]),
      (o, x) => o.matmul(x, o.constant(0, [4, 2])),
      (o, x) => o.linear(x, o.constant(0, [4, 2])),
      (o, x) => o.groupNorm(x, 2, 1e-5),
      (o, x) => o.gelu(x, "fast" as "tanh"),
      (o, x) => o.sum(x, [1, -1], false),
      (o, x) => o.maxPool2d(o.reshape(x, [1, 1, 2, 3]), { kernel: 2, padding: 2 }),
      (o, x) => o.conv2d(o.reshape(x, [1, 1, 2, 3]), o.constant(0, [1, 2, 1, 1]), undefined, {}),
    ];
    for (const build of bad) {
      const error = await run((o, [x]) => build(o, x), [2, 3]).catch((e: unknown) => e);
      expect(DitcacheError.isInstance(error), `${build}: ${error}`).toBe(true);
    }
  });
});
