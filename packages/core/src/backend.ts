import type { Ops } from "./ops.js";
import type { Tensor } from "./tensor.js";

/**
 * A straight-line piece of model code: a DiT site, a glue step, a corrector's arithmetic.
 * `build` is written once against {@link Ops}; a backend either runs it eagerly or compiles it
 * into one executable (an ONNX graph for backend-onnx), specialised per input shapes.
 *
 * @example
 * const axpy: Unit = { name: "axpy", build: (ops, [x, y]) => [ops.add(ops.mul(x, ops.constant(2)), y)] };
 */
export interface Unit {
  /** Cache key of the compiled form: two units with one name must build the same graph. */
  readonly name: string;
  /** Constants the unit captures (weights); a graph backend stores them as initializers. */
  readonly params?: Readonly<Record<string, Tensor>>;
  /** Builds the outputs from the inputs and params. */
  build<T>(ops: Ops<T>, inputs: readonly T[], params: Readonly<Record<string, T>>): T[];
}

/** A compiled {@link Unit}. */
export interface Executable {
  /** Runs the unit. Input tensors stay owned by the caller; outputs are new tensors. */
  run(inputs: readonly Tensor[]): Promise<Tensor[]>;
  /** Releases compiled sessions. */
  dispose(): void;
}

/**
 * A tensor backend: owns tensor memory and runs units. Every backend passes the shared op
 * conformance suite (`@ditcache/core/testing`) against backend-cpu.
 */
export interface Backend {
  /** Registered name, e.g. "cpu", "onnx", "tfjs". */
  readonly name: string;
  /** Creates a tensor from host data. The array may be adopted: do not mutate it afterwards. */
  tensor(data: Float32Array, shape: readonly number[]): Tensor;
  /** Copies a tensor's data to the host. */
  read(tensor: Tensor): Promise<Float32Array>;
  /** Releases a tensor's memory. Disposing twice is a no-op. */
  dispose(tensor: Tensor): void;
  /** Compiles a unit; compiled forms are cached by unit name and input shapes. */
  compile(unit: Unit): Executable;
  /** Releases everything the backend holds. */
  close?(): Promise<void>;
}
