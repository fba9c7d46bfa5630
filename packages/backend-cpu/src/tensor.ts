import { DitcacheError, type Tensor } from "@ditcache/core";

/** A tensor of the cpu backend: a float32 array on the JavaScript heap. */
export class CpuTensor implements Tensor {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Always float32. */
  readonly dtype = "float32" as const;
  /** Always "cpu". */
  readonly backend = "cpu";
  #data: Float32Array | undefined;

  /** Wraps data (adopted, never mutated afterwards) with its shape; the caller checks sizes. */
  constructor(data: Float32Array, shape: readonly number[]) {
    this.#data = data;
    this.shape = Object.freeze([...shape]);
  }

  /** The values; throws once the tensor is disposed. Never mutate them: arrays are shared. */
  get data(): Float32Array {
    if (this.#data === undefined) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `tensor of shape [${this.shape.join(", ")}] was used after dispose()`,
      );
    }
    return this.#data;
  }

  /** True once disposed. */
  get disposed(): boolean {
    return this.#data === undefined;
  }

  /** Drops the data reference; idempotent. */
  dispose(): void {
    this.#data = undefined;
  }
}
