import type { Backend, Executable, Ops, Tensor, Unit } from "@ditcache/core";
import { DitcacheError, formatShape, invalidArgument, sizeOf } from "@ditcache/core";
import * as tf from "@tensorflow/tfjs-core";
import type { TfjsEngine } from "./engines.js";
import { createTfjsOps } from "./ops.js";

/** A {@link Backend} running on one tfjs engine. */
export interface TfjsBackend extends Backend {
  /** The tfjs engine this backend's tensors live on. */
  readonly engine: TfjsEngine;
  /** Disposes every tensor this backend created that is still alive; the backend is unusable after. */
  close(): Promise<void>;
}

/** A ditcache tensor holding a tfjs tensor. */
class TfjsTensor implements Tensor {
  readonly dtype = "float32";
  readonly shape: readonly number[];

  constructor(
    readonly value: tf.Tensor,
    readonly backend: string,
  ) {
    this.shape = value.shape;
  }
}

const NO_PARAMS: ReadonlySet<tf.Tensor> = new Set();

/**
 * The tfjs {@link Backend}. tfjs has ONE global engine with one current backend, so each entry
 * point first makes this backend's engine current (an already initialised tfjs backend switches
 * synchronously); tensors of another tfjs engine are refused rather than silently copied across.
 *
 * @internal Created through `createTfjsBackend`.
 */
export class TfjsBackendImpl implements TfjsBackend {
  readonly name: string;
  private readonly live = new Set<TfjsTensor>();
  // (in, out) copies of the params linear uses as weights, made on first use, freed with the param.
  private readonly transposedParams = new Map<tf.Tensor, tf.Tensor>();
  // Params of the unit being built: only these are long-lived enough to cache a transpose of.
  private currentParams: ReadonlySet<tf.Tensor> = NO_PARAMS;
  private readonly ops: Ops<tf.Tensor>;
  private closed = false;

  constructor(
    readonly engine: TfjsEngine,
    /** The name tfjs registers the engine under ("cpu", "wasm", "tensorflow"). */
    private readonly tfjsName: string,
  ) {
    this.name = `tfjs-${engine}`;
    const wasm = engine === "wasm";
    this.ops = createTfjsOps({
      // Costs a second copy of every linear weight; wasm needs it for its fast matmul path.
      ...(wasm && { transposedWeight: (weight: tf.Tensor) => this.transposedParam(weight) }),
      perHeadAttention: wasm,
    });
  }

  private transposedParam(weight: tf.Tensor): tf.Tensor | undefined {
    if (!this.currentParams.has(weight)) return undefined;
    let transposed = this.transposedParams.get(weight);
    if (transposed === undefined) {
      transposed = tf.keep(tf.transpose(weight)); // kept out of the enclosing tidy
      this.transposedParams.set(weight, transposed);
    }
    return transposed;
  }

  tensor(data: Float32Array, shape: readonly number[]): Tensor {
    this.assertOpen();
    if (!(data instanceof Float32Array)) invalidArgument("data", data, "a Float32Array");
    if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
      invalidArgument("shape", shape, "an array of non-negative integers");
    }
    if (sizeOf(shape) !== data.length) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `tensor: ${data.length} values do not fill shape ${formatShape(shape)} (${sizeOf(shape)} elements)`,
      );
    }
    this.activate();
    return this.adopt(tf.tensor(data, [...shape], "float32"));
  }

  async read(tensor: Tensor): Promise<Float32Array> {
    const value = this.unwrap("tensor", tensor);
    // The cpu engine hands out its own backing array: copy so callers can keep and mutate it.
    return new Float32Array((await value.data()) as Float32Array);
  }

  dispose(tensor: Tensor): void {
    if (!(tensor instanceof TfjsTensor) || tensor.backend !== this.name) {
      invalidArgument("tensor", tensor, `a tensor of backend "${this.name}"`);
    }
    this.live.delete(tensor);
    this.transposedParams.get(tensor.value)?.dispose();
    this.transposedParams.delete(tensor.value);
    tensor.value.dispose(); // a no-op on an already disposed tfjs tensor
  }

  compile(unit: Unit): Executable {
    this.assertOpen();
    if (typeof unit !== "object" || unit === null || typeof unit.build !== "function") {
      invalidArgument("unit", unit, "a Unit with a build function");
    }
    if (typeof unit.name !== "string" || unit.name === "")
      invalidArgument("unit.name", unit.name, "a non-empty string");
    // Eager: nothing to compile, so no cache either; params are unwrapped at run time because
    // the caller may legitimately replace (dispose and recreate) them between runs.
    let disposed = false;
    return {
      run: async (inputs) => {
        if (disposed)
          throw new DitcacheError("INVALID_ARGUMENT", `run: executable of unit "${unit.name}" was disposed`);
        return this.run(unit, inputs);
      },
      dispose: () => {
        disposed = true;
      },
    };
  }

  async close(): Promise<void> {
    for (const tensor of this.live) tensor.value.dispose();
    for (const transposed of this.transposedParams.values()) transposed.dispose();
    this.live.clear();
    this.transposedParams.clear();
    this.closed = true;
  }

  private run(unit: Unit, inputs: readonly Tensor[]): Tensor[] {
    this.assertOpen();
    if (!Array.isArray(inputs)) invalidArgument("inputs", inputs, "an array of tensors");
    const xs = inputs.map((t, i) => this.unwrap(`inputs[${i}]`, t));
    const params: Record<string, tf.Tensor> = {};
    for (const [key, t] of Object.entries(unit.params ?? {}))
      params[key] = this.unwrap(`unit.params.${key}`, t);
    const owned = new Set<tf.Tensor>([...xs, ...Object.values(params)]);
    this.activate();
    this.currentParams = new Set(Object.values(params));
    let outputs: tf.Tensor[];
    try {
      // tidy disposes every tensor the unit made except the returned ones, even when build throws.
      outputs = tf.tidy(() => {
        const result = unit.build(this.ops, xs, params);
        if (!Array.isArray(result) || result.some((o) => !(o instanceof tf.Tensor))) {
          throw new DitcacheError(
            "INVALID_ARGUMENT",
            `unit "${unit.name}": build must return an array of tensors`,
          );
        }
        // Outputs are new tensors owned by the caller: never hand back an input, a param or the
        // same tensor twice (disposing one would free the other).
        const seen = new Set<tf.Tensor>();
        return result.map((o) => {
          const fresh = owned.has(o) || seen.has(o) ? tf.clone(o) : o;
          seen.add(fresh);
          return fresh;
        });
      });
    } finally {
      this.currentParams = NO_PARAMS;
    }
    return outputs.map((o) => this.adopt(o));
  }

  private adopt(value: tf.Tensor): TfjsTensor {
    const tensor = new TfjsTensor(value, this.name);
    this.live.add(tensor);
    return tensor;
  }

  private unwrap(name: string, tensor: Tensor): tf.Tensor {
    if (!(tensor instanceof TfjsTensor) || tensor.backend !== this.name) {
      const owner = typeof tensor === "object" && tensor !== null ? (tensor as Tensor).backend : undefined;
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `${name}: expected a tensor of backend "${this.name}", got ${owner === undefined ? typeof tensor : `one of "${owner}"`}`,
      );
    }
    if (tensor.value.isDisposed) throw new DitcacheError("INVALID_ARGUMENT", `${name}: tensor was disposed`);
    return tensor.value;
  }

  private assertOpen(): void {
    if (this.closed) throw new DitcacheError("INVALID_ARGUMENT", `backend "${this.name}" was closed`);
  }

  /** Makes this engine tfjs's current backend; a no-op unless another tfjs backend switched it. */
  private activate(): void {
    if (tf.getBackend() === this.tfjsName) return;
    // The engine is initialised (createTfjsBackend awaited it), so setBackend switches before
    // its first await; the check below proves it did.
    tf.setBackend(this.tfjsName).catch(() => undefined);
    if (tf.getBackend() !== this.tfjsName) {
      throw new DitcacheError(
        "BACKEND_UNAVAILABLE",
        `could not switch tfjs to its "${this.tfjsName}" backend for ${this.name} (current: "${tf.getBackend()}")`,
      );
    }
  }
}
