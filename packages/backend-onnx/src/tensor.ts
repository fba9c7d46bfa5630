import type { Tensor } from "@ditcache/core";
import { DitcacheError } from "@ditcache/core";
import type * as ort from "onnxruntime-node";

/** Name under which the ONNX Runtime backend registers its tensors. */
export const ONNX_BACKEND_NAME = "onnx";

/**
 * A {@link Tensor} of the ONNX Runtime backend: a float32 `ort.Tensor` that is fed to the next
 * session as it is, so values flow between units without passing through JS copies.
 */
export class OnnxTensor implements Tensor {
  readonly dtype = "float32";
  readonly backend = ONNX_BACKEND_NAME;
  /** Dimensions, outermost first (still readable after dispose). */
  readonly shape: readonly number[];
  private value: ort.Tensor | undefined;
  private hostReleased = false;

  /** @internal Use `backend.tensor` or a unit's outputs. */
  constructor(value: ort.Tensor) {
    this.value = value;
    this.shape = value.dims;
  }

  /** The wrapped ORT tensor; throws once the tensor is disposed. */
  get ort(): ort.Tensor {
    if (this.value === undefined) {
      if (this.hostReleased) {
        throw new DitcacheError(
          "UNSUPPORTED",
          "onnx tensor: a param whose host copy was released (releaseHostParams) cannot be read or compiled into a new session; keep host params to run new input shapes",
        );
      }
      throw new DitcacheError("INVALID_ARGUMENT", "onnx tensor: used after dispose (expected a live tensor)");
    }
    return this.value;
  }

  /** Whether the host copy of this param was released after its sessions were built. */
  get hostDataReleased(): boolean {
    return this.hostReleased;
  }

  /** @internal Drops the host data of a param that live sessions already hold; returns the bytes dropped. */
  releaseHostData(): number {
    const value = this.value;
    if (value === undefined) return 0;
    const bytes = value.location === "cpu" ? (value.data as Float32Array).byteLength : 0;
    this.value = undefined;
    this.hostReleased = true;
    value.dispose();
    return bytes;
  }

  /** Whether {@link OnnxTensor.release} has run. */
  get disposed(): boolean {
    return this.value === undefined;
  }

  /** Frees the ORT tensor; a second call is a no-op. */
  release(): void {
    const value = this.value;
    this.value = undefined;
    value?.dispose();
  }
}

/** Narrows a core tensor to an {@link OnnxTensor}, naming the argument when it is not one. */
export function asOnnxTensor(tensor: Tensor, name: string): OnnxTensor {
  if (!(tensor instanceof OnnxTensor)) {
    const owner =
      typeof tensor === "object" && tensor !== null
        ? `a tensor of backend "${tensor.backend}"`
        : String(tensor);
    throw new DitcacheError("INVALID_ARGUMENT", `${name}: expected a tensor of backend "onnx", got ${owner}`);
  }
  return tensor;
}
