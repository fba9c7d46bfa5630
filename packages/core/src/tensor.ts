/** Element types a tensor can hold in a backend. Weights in other types are converted on load. */
export type DType = "float32";

/**
 * A handle to an n-dimensional float32 array owned by one backend. Its data is read with
 * `backend.read(tensor)`; it holds native memory on some backends, so release it with
 * `backend.dispose(tensor)` when done.
 */
export interface Tensor {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Name of the backend that owns this tensor. */
  readonly backend: string;
}
