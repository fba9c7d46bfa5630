import { afterAll, describe, expect, it } from "vitest";
import type { Backend, Unit } from "../backend.js";
import { OP_NAMES } from "../ops.js";
import { createRng } from "../rng.js";
import type { Tensor } from "../tensor.js";
import { type InputSpec, OP_CASES } from "./cases.js";
import { type RefTensor, reference } from "./reference.js";

/** Options of {@link describeOpConformance}. */
export interface OpConformanceOptions {
  /**
   * Largest accepted |got - expected|, relative to the largest |expected| of each output.
   * @defaultValue 1e-5
   */
  tolerance?: number;
}

function randomInput(spec: InputSpec, seed: number): Float32Array {
  const rng = createRng(seed);
  const size = spec.shape.reduce((product, dim) => product * dim, 1);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    const kind = spec.kind ?? "normal";
    out[i] =
      kind === "positive" ? 0.5 + 2 * rng.uniform() : kind === "wide" ? 2 + 3 * rng.normal() : rng.normal();
  }
  return out;
}

function toReference(data: Float32Array, shape: readonly number[]): RefTensor {
  return { shape: [...shape], data: Float64Array.from(data) };
}

/** Checks an output against its reference: same shape, max error within tolerance x scale. */
function expectClose(
  label: string,
  shape: readonly number[],
  got: Float32Array,
  expected: RefTensor,
  tolerance: number,
): void {
  expect(shape, `${label}: shape`).toEqual([...expected.shape]);
  expect(got.length, `${label}: length`).toBe(expected.data.length);
  let scale = 0;
  for (const value of expected.data) scale = Math.max(scale, Math.abs(value));
  let worst = 0;
  let worstIndex = -1;
  for (let i = 0; i < got.length; i++) {
    const error = Math.abs(got[i]! - expected.data[i]!);
    if (!(error <= worst)) {
      worst = error;
      worstIndex = i;
    }
  }
  const allowed = tolerance * Math.max(scale, Number.MIN_VALUE);
  expect(
    worst,
    `${label}: max error ${worst} at index ${worstIndex} (got ${got[worstIndex]}, expected ${expected.data[worstIndex]}) exceeds ${allowed}`,
  ).toBeLessThanOrEqual(allowed);
}

/**
 * Defines the shared op conformance tests (vitest) for a backend: every op of `OP_NAMES` is run
 * through `backend.compile(unit).run(...)` on seeded random inputs and compared with plain
 * float64 reference implementations, plus the Backend contract (compile cache by name and
 * shape, params, fresh outputs, dispose, read copies). Call it at the top level of a test file.
 *
 * @param name - Suite name, e.g. the backend name.
 * @param makeBackend - Creates the backend once for the suite; `close()` is called afterwards.
 * @example
 * describeOpConformance("cpu", () => createCpuBackend());
 */
export function describeOpConformance(
  name: string,
  makeBackend: () => Backend | Promise<Backend>,
  options: OpConformanceOptions = {},
): void {
  const tolerance = options.tolerance ?? 1e-5;
  let created: Promise<Backend> | undefined;
  const backend = (): Promise<Backend> => {
    created ??= Promise.resolve(makeBackend());
    return created;
  };

  describe(`op conformance: ${name}`, () => {
    afterAll(async () => {
      if (created !== undefined) await (await created).close?.();
    });

    it("has a case for every op of OP_NAMES", () => {
      const covered = new Set(OP_CASES.map((c) => c.op));
      expect(OP_NAMES.filter((op) => !covered.has(op))).toEqual([]);
    });

    OP_CASES.forEach((testCase, caseIndex) => {
      it(`${testCase.op}: ${testCase.label}`, async () => {
        const b = await backend();
        const host = testCase.inputs.map((spec, i) => randomInput(spec, 1000 * caseIndex + i));
        const expected = testCase.reference(
          host.map((data, i) => toReference(data, testCase.inputs[i]!.shape)),
        );
        const inputs = host.map((data, i) => b.tensor(data.slice(), testCase.inputs[i]!.shape));
        const unit: Unit = {
          name: `conformance.${testCase.op}.${caseIndex}`,
          build: (ops, values) => testCase.build(ops, values),
        };
        const executable = b.compile(unit);
        const outputs = await executable.run(inputs);
        expect(outputs.length).toBe(expected.length);
        for (let i = 0; i < outputs.length; i++) {
          expectClose(`output ${i}`, outputs[i]!.shape, await b.read(outputs[i]!), expected[i]!, tolerance);
        }
        for (const tensor of [...inputs, ...outputs]) b.dispose(tensor);
        executable.dispose();
      });
    });

    const addOne: Unit = {
      name: "conformance.contract.addOne",
      build: (ops, [x]) => [ops.add(ops.mul(x!, ops.constant(2)), ops.constant(1))],
    };

    it("compile: one executable runs inputs of different shapes, and units of one name share a cache", async () => {
      const b = await backend();
      const executable = b.compile(addOne);
      for (const shape of [[2, 3], [4, 5, 1], [2, 3], [7]]) {
        const data = randomInput({ shape }, shape.length * 31 + shape[0]!);
        const x = b.tensor(data.slice(), shape);
        const [y] = await executable.run([x]);
        expectClose(
          `shape [${shape}]`,
          y!.shape,
          await b.read(y!),
          reference.unary(toReference(data, shape), (v) => 2 * v + 1),
          tolerance,
        );
        b.dispose(x);
        b.dispose(y!);
      }
      const again = b.compile({ ...addOne });
      const x = b.tensor(Float32Array.from([1, 2]), [2]);
      const [y] = await again.run([x]);
      expect(Array.from(await b.read(y!))).toEqual([3, 5]);
      executable.dispose();
      again.dispose();
    });

    it("compile: params are bound and used", async () => {
      const b = await backend();
      const weightData = randomInput({ shape: [4, 3] }, 7);
      const biasData = randomInput({ shape: [4] }, 8);
      const unit: Unit = {
        name: "conformance.contract.params",
        params: { weight: b.tensor(weightData.slice(), [4, 3]), bias: b.tensor(biasData.slice(), [4]) },
        build: (ops, [x], params) => [ops.linear(x!, params.weight!, params.bias)],
      };
      const data = randomInput({ shape: [5, 3] }, 9);
      const [y] = await b.compile(unit).run([b.tensor(data.slice(), [5, 3])]);
      const expected = reference.linear(
        toReference(data, [5, 3]),
        toReference(weightData, [4, 3]),
        toReference(biasData, [4]),
      );
      expectClose("linear with params", y!.shape, await b.read(y!), expected, tolerance);
    });

    it("run: outputs are new tensors, even when build returns an input", async () => {
      const b = await backend();
      const x = b.tensor(Float32Array.from([1, -2, 3]), [3]);
      const unit: Unit = {
        name: "conformance.contract.identity",
        build: (ops, [value]) => [value!, ops.relu(value!)],
      };
      const [same, relu] = await b.compile(unit).run([x]);
      expect(same).not.toBe(x);
      expect(relu).not.toBe(x);
      expect(same!.backend).toBe(b.name);
      expect(same!.dtype).toBe("float32");
      b.dispose(x);
      expect(Array.from(await b.read(same!))).toEqual([1, -2, 3]);
      expect(Array.from(await b.read(relu!))).toEqual([1, 0, 3]);
    });

    it("read returns a copy, tensor keeps its shape, dispose is idempotent", async () => {
      const b = await backend();
      const x = b.tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
      expect([...x.shape]).toEqual([2, 3]);
      expect(x.backend).toBe(b.name);
      const first = await b.read(x);
      first[0] = 100;
      expect(Array.from(await b.read(x))).toEqual([1, 2, 3, 4, 5, 6]);
      b.dispose(x);
      expect(() => b.dispose(x)).not.toThrow();
    });

    it("dispose: tensors made by a run can be released and the executable disposed", async () => {
      const b = await backend();
      const executable = b.compile(addOne);
      const inputs: Tensor[] = [b.tensor(Float32Array.from([0.5]), [1])];
      const outputs = await executable.run(inputs);
      expect(Array.from(await b.read(outputs[0]!))).toEqual([2]);
      for (const tensor of [...inputs, ...outputs]) b.dispose(tensor);
      expect(() => executable.dispose()).not.toThrow();
    });
  });
}
