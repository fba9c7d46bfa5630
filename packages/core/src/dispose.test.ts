import { describe, expect, it } from "vitest";
import type { Backend } from "./backend.js";
import { disposeAll } from "./dispose.js";
import type { Tensor } from "./tensor.js";

const tensor = (id: number): Tensor => ({ shape: [id], dtype: "float32", backend: "fake" });

describe("disposeAll", () => {
  it("disposes every tensor, skips holes, and rethrows the first failure after trying all", () => {
    const disposed: Tensor[] = [];
    const failing = tensor(2);
    const backend = {
      dispose(t: Tensor) {
        disposed.push(t);
        if (t === failing) throw new Error("boom");
      },
    } as unknown as Backend;
    const all = [tensor(1), undefined, failing, tensor(3)];
    expect(() => disposeAll(backend, all)).toThrow("boom");
    expect(disposed).toEqual([all[0], failing, all[3]]);
  });
});
