import { describe, expect, it } from "vitest";
import type { Backend } from "./backend.js";
import { DitcacheError } from "./errors.js";
import { checkFiniteHook, firstNonFinite } from "./finite.js";
import { type SiteCall, type SiteHook, type StepInfo, siteId } from "./site.js";
import type { Tensor } from "./tensor.js";

interface HostTensor extends Tensor {
  readonly data: Float32Array;
}

const backend: Backend = {
  name: "host",
  tensor: (data, shape) => ({ shape, dtype: "float32", backend: "host", data }) as HostTensor,
  read: async (tensor) => (tensor as HostTensor).data,
  dispose: () => {},
  compile: () => {
    throw new Error("not used");
  },
};

const step: StepInfo = { index: 7, count: 20, timestep: 650, rows: ["cond"] };

function call(key: "attn" | "mlp", values: number[]): SiteCall {
  const input = backend.tensor(new Float32Array(values.length), [1, 1, values.length]);
  return {
    site: siteId(key, 3),
    step,
    input,
    macs: 0,
    compute: async () => backend.tensor(Float32Array.from(values), [1, 1, values.length]),
  };
}

async function failure(promise: Promise<unknown>): Promise<DitcacheError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!DitcacheError.isInstance(error)) throw new Error(`expected a DitcacheError, got ${String(error)}`);
  return error;
}

describe("firstNonFinite", () => {
  it("finds NaN and both infinities, and nothing in finite data", () => {
    expect(firstNonFinite(new Float32Array([1, -2, 3.4e38, 0]))).toBe(-1);
    expect(firstNonFinite([0, Number.NaN, 1])).toBe(1);
    expect(firstNonFinite(new Float32Array([0, 0, Number.NEGATIVE_INFINITY]))).toBe(2);
    expect(firstNonFinite(new Float64Array([Number.POSITIVE_INFINITY]))).toBe(0);
  });
});

describe("checkFiniteHook", () => {
  it("passes finite outputs through unchanged", async () => {
    const hook = checkFiniteHook();
    await hook.beginForward?.(step, backend);
    const out = (await hook.run(call("attn", [1, 2, 3]))) as HostTensor;
    expect([...out.data]).toEqual([1, 2, 3]);
  });

  it("names the site, step and timestep of the first non-finite output", async () => {
    const hook = checkFiniteHook();
    await hook.beginForward?.(step, backend);
    const error = await failure(hook.run(call("mlp", [1, Number.NaN])));
    expect(error.code).toBe("NUMERIC_FAULT");
    expect(error.message).toBe("non-finite value (NaN) in block3.mlp at step 7 of 20 (timestep 650)");
    const infinite = await failure(hook.run(call("attn", [Number.POSITIVE_INFINITY])));
    expect(infinite.message).toMatch(/\(Infinity\) in block3\.attn/);
  });

  it("wraps an inner hook: forwards begin/end and checks what the inner hook returns", async () => {
    const seen: string[] = [];
    const inner: SiteHook = {
      beginForward: () => void seen.push("begin"),
      run: async () => backend.tensor(new Float32Array([Number.NaN]), [1]),
      endForward: () => void seen.push("end"),
    };
    const hook = checkFiniteHook(inner);
    await hook.beginForward?.(step, backend);
    expect((await failure(hook.run(call("attn", [0])))).code).toBe("NUMERIC_FAULT");
    await hook.endForward?.(step);
    expect(seen).toEqual(["begin", "end"]);
  });

  it("refuses to run before beginForward told it the backend", async () => {
    expect((await failure(checkFiniteHook().run(call("attn", [0])))).message).toMatch(
      /beginForward was not called/,
    );
  });
});
