import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Tensor, Unit } from "@ditcache/core";
import { DitcacheError } from "@ditcache/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOnnxBackend, type OnnxBackend, type OnnxTensor } from "./index.js";

let backend: OnnxBackend;
beforeAll(async () => {
  backend = await createOnnxBackend({ intraOpNumThreads: 1 });
});
afterAll(async () => {
  await backend.close();
});

const double: Unit = { name: "double", build: (ops, [x]) => [ops.mul(x!, ops.constant(2))] };

async function expectError(promise: Promise<unknown> | (() => unknown), code: string, message: RegExp) {
  let error: unknown;
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (caught) {
    error = caught;
  }
  expect(DitcacheError.isInstance(error)).toBe(true);
  expect((error as DitcacheError).code).toBe(code);
  expect((error as Error).message).toMatch(message);
}

describe("onnx backend", () => {
  it("adopts data in tensor(), returns copies from read()", async () => {
    const data = Float32Array.of(1, 2, 3, 4);
    const tensor = backend.tensor(data, [2, 2]);
    expect(tensor.shape).toEqual([2, 2]);
    expect(tensor.backend).toBe("onnx");
    const copy = await backend.read(tensor);
    copy[0] = 99;
    expect((await backend.read(tensor))[0]).toBe(1);
    backend.dispose(tensor);
    backend.dispose(tensor);
    await expectError(backend.read(tensor), "INVALID_ARGUMENT", /used after dispose/);
  });

  it("caches one session per unit name and input shapes; concurrent callers share it", async () => {
    const local = await createOnnxBackend({ intraOpNumThreads: 1 });
    const executable = local.compile(double);
    const small = local.tensor(Float32Array.of(1, 2), [2]);
    const large = local.tensor(Float32Array.of(1, 2, 3), [3]);
    const results = await Promise.all([
      executable.run([small]),
      executable.run([small]),
      executable.run([small]),
    ]);
    expect(local.sessionCount).toBe(1);
    expect(Array.from(await local.read(results[2]![0]!))).toEqual([2, 4]);
    await executable.run([large]);
    expect(local.sessionCount).toBe(2);
    // A second compile of the same unit reuses the cached sessions.
    const again = local.compile(double);
    expect(Array.from(await local.read((await again.run([large]))[0]!))).toEqual([2, 4, 6]);
    expect(local.sessionCount).toBe(2);
    executable.dispose();
    expect(local.sessionCount).toBe(1);
    again.dispose();
    expect(local.sessionCount).toBe(0);
    await local.close();
  });

  it("keys sessions by param identity, so one name with other weights is not confused", async () => {
    const unit = (bias: number): Unit => ({
      name: "shift",
      params: { b: backend.tensor(Float32Array.of(bias), [1]) },
      build: (ops, [x], p) => [ops.add(x!, p.b!)],
    });
    const x = backend.tensor(Float32Array.of(0, 1), [2]);
    const [a] = await backend.compile(unit(1)).run([x]);
    const [b] = await backend.compile(unit(10)).run([x]);
    expect(Array.from(await backend.read(a!))).toEqual([1, 2]);
    expect(Array.from(await backend.read(b!))).toEqual([10, 11]);
  });

  it("chains units without reading back: outputs feed the next unit", async () => {
    const executable = backend.compile(double);
    let x: Tensor = backend.tensor(Float32Array.of(1, -1), [2]);
    for (let i = 0; i < 3; i++) [x] = (await executable.run([x])) as [Tensor];
    expect(Array.from(await backend.read(x))).toEqual([8, -8]);
  });

  it("rejects bad tensors, units and runs with DitcacheErrors", async () => {
    await expectError(
      () => backend.tensor(new Float32Array(3), [2, 2]),
      "SHAPE_MISMATCH",
      /3 values do not fill shape \[2, 2\]/,
    );
    await expectError(
      () => backend.tensor([1, 2] as unknown as Float32Array, [2]),
      "INVALID_ARGUMENT",
      /data: expected a Float32Array/,
    );
    const foreign = { shape: [2], dtype: "float32", backend: "cpu" } as Tensor;
    await expectError(
      backend.read(foreign),
      "INVALID_ARGUMENT",
      /expected a tensor of backend "onnx", got a tensor of backend "cpu"/,
    );
    await expectError(() => backend.compile({ name: "", build: () => [] }), "INVALID_ARGUMENT", /unit.name/);
    const bad: Unit = { name: "bad", build: () => [1 as never] };
    await expectError(
      backend.compile(bad).run([]),
      "INVALID_ARGUMENT",
      /build must return an array of values/,
    );
    const mismatch: Unit = { name: "mismatch", build: (ops, [x, y]) => [ops.matmul(x!, y!)] };
    const x = backend.tensor(new Float32Array(6), [2, 3]);
    await expectError(
      backend.compile(mismatch).run([x, x]),
      "SHAPE_MISMATCH",
      /matmul: inner dimensions differ/,
    );
    const executable = backend.compile(double);
    executable.dispose();
    await expectError(executable.run([x]), "INVALID_ARGUMENT", /run after dispose/);
  });

  it("validates options, naming the field", async () => {
    await expectError(
      createOnnxBackend({ intraOpNumThreads: 0 }),
      "INVALID_ARGUMENT",
      /options.intraOpNumThreads/,
    );
    await expectError(
      createOnnxBackend({ executionProvider: "tpu" as never }),
      "INVALID_ARGUMENT",
      /options.executionProvider/,
    );
    await expectError(
      createOnnxBackend({ lowering: { gelu: "x" as never } }),
      "INVALID_ARGUMENT",
      /options.lowering.gelu/,
    );
    await expectError(
      createOnnxBackend({ hostParams: "drop" as never }),
      "INVALID_ARGUMENT",
      /options.hostParams/,
    );
  });

  const scale = (local: OnnxBackend, factor: number): Unit => ({
    name: "scale",
    params: { w: local.tensor(Float32Array.of(factor), [1]) },
    build: (ops, [x], p) => [ops.mul(x!, p.w!)],
  });

  it("hostParams 'release' drops a param's host copy once its session exists; its shapes keep running", async () => {
    const local = await createOnnxBackend({ intraOpNumThreads: 1, hostParams: "release" });
    const unit = scale(local, 3);
    const executable = local.compile(unit);
    const x = local.tensor(Float32Array.of(1, 2), [2]);
    const [y] = await executable.run([x]);
    expect(Array.from(await local.read(y!))).toEqual([3, 6]);
    const param = unit.params!.w as OnnxTensor;
    expect(param.hostDataReleased).toBe(true);
    const [again] = await executable.run([x]);
    expect(Array.from(await local.read(again!))).toEqual([3, 6]);
    await expectError(
      executable.run([local.tensor(Float32Array.of(1, 2, 3), [3])]),
      "UNSUPPORTED",
      /host copy was released/,
    );
    await expectError(local.read(param), "UNSUPPORTED", /host copy was released/);
    local.dispose(param);
    await local.close();
  });

  it("releaseHostParams() drops the host copies of compiled params only, and says how many bytes", async () => {
    const local = await createOnnxBackend({ intraOpNumThreads: 1 });
    const compiled = scale(local, 2);
    const pending = scale(local, 5);
    const x = local.tensor(Float32Array.of(1, 2), [2]);
    const executable = local.compile(compiled);
    await executable.run([x]);
    expect(local.releaseHostParams()).toBe(4);
    expect((compiled.params!.w as OnnxTensor).hostDataReleased).toBe(true);
    expect((pending.params!.w as OnnxTensor).hostDataReleased).toBe(false);
    const [y] = await executable.run([x]);
    expect(Array.from(await local.read(y!))).toEqual([2, 4]);
    const [z] = await local.compile(pending).run([x]);
    expect(Array.from(await local.read(z!))).toEqual([5, 10]);
    expect(local.releaseHostParams()).toBe(4);
    expect(local.releaseHostParams()).toBe(0);
    await local.close();
  });

  it("fails cleanly with BACKEND_UNAVAILABLE when the CUDA provider files are absent", async () => {
    const directory = join(
      dirname(createRequire(import.meta.url).resolve("onnxruntime-node/package.json")),
      "bin",
    );
    const installed = existsSync(
      join(directory, "napi-v6", process.platform, process.arch, "libonnxruntime_providers_cuda.so"),
    );
    const created = createOnnxBackend({ executionProvider: "cuda" });
    if (installed) {
      // With the provider files present the backend starts, or fails cleanly for want of a GPU.
      await created
        .then((cuda) => cuda.close())
        .catch((error) => expect((error as DitcacheError).code).toBe("BACKEND_UNAVAILABLE"));
      return;
    }
    await expectError(
      created,
      "BACKEND_UNAVAILABLE",
      /CUDA execution provider is not installed .*ONNXRUNTIME_NODE_INSTALL=cuda12/,
    );
  });
});
