import type { Backend, Executable, Ops, Tensor, Unit } from "@ditcache/core";
import { DitcacheError, formatShape, invalidArgument, sizeOf } from "@ditcache/core";
import * as tf from "@tensorflow/tfjs-core";
import type { TfjsEngine } from "./engines.js";
import { createTfjsOps } from "./ops.js";

/** A {@link Backend} running on one tfjs engine. */
export interface TfjsBackend extends Backend {
  /** The tfjs engine this backend's tensors live on. */
  readonly engine: TfjsEngine;
  /**
   * Bytes of the engine's WebAssembly memory on 'wasm': it grows on demand up to its 4 GiB cap
   * and never shrinks, so this is the peak so far (of every tfjs-wasm user in the process).
   * `undefined` on the other engines.
   */
  wasmMemoryBytes(): number | undefined;
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

/** The part of tfjs-wasm's Emscripten module used here (`BackendWasm.wasm`, a public field). */
interface WasmModule {
  readonly HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
}

/** tfjs-wasm 4.22's cap on its WebAssembly memory (4 GiB less one 64 KiB page). */
const WASM_MEMORY_CAP = 4 * 2 ** 30 - 2 ** 16;

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
  private readonly ops: Ops<tf.Tensor>;
  private closed = false;

  constructor(
    readonly engine: TfjsEngine,
    /** The name tfjs registers the engine under ("cpu", "wasm", "tensorflow"). */
    private readonly tfjsName: string,
  ) {
    this.name = `tfjs-${engine}`;
    const wasm = engine === "wasm";
    // On wasm: XNNPACK for linear without a second copy of any weight, and for attention.
    this.ops = createTfjsOps({ weightFirstLinear: wasm, perHeadAttention: wasm });
  }

  wasmMemoryBytes(): number | undefined {
    return this.wasmModule()?.HEAPU8.length;
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
    this.reserveWasmMemory(data.byteLength);
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
    this.live.clear();
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
    // tidy disposes every tensor the unit made except the returned ones, even when build throws.
    const outputs = tf.tidy(() => {
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

  /** tfjs-wasm's Emscripten module, on the wasm engine. */
  private wasmModule(): WasmModule | undefined {
    if (this.engine !== "wasm") return undefined;
    return (tf.findBackend(this.tfjsName) as unknown as { wasm?: WasmModule } | undefined)?.wasm;
  }

  /**
   * Throws when wasm memory cannot take `bytes` more. tfjs-wasm 4.22 does not check its own
   * allocations: when its memory cannot grow, malloc returns address 0 and the tensor's data is
   * written there, over the engine's state. A probe of the same size, freed at once, is what
   * the allocation that follows gets back.
   */
  private reserveWasmMemory(bytes: number): void {
    const module = this.wasmModule();
    if (module === undefined || bytes === 0) return;
    // Sizes this close to 4 GiB never fit (the module's own data lies below the heap), and the
    // allocator's 32-bit size arithmetic wraps on them: they must not reach malloc.
    let pointer = bytes > WASM_MEMORY_CAP - 2 ** 16 ? 0 : module._malloc(bytes) >>> 0;
    if (pointer !== 0 && pointer + bytes > module.HEAPU8.length) {
      module._free(pointer); // a wrapped size: not the block asked for
      pointer = 0;
    }
    if (pointer === 0) {
      throw new DitcacheError(
        "UNSUPPORTED",
        `${this.name}: out of WebAssembly memory at ${(module.HEAPU8.length / 1e9).toFixed(2)} GB (tfjs-wasm caps it at 4 GiB): no room for a tensor of ${(bytes / 1e6).toFixed(1)} MB; use a smaller model or another engine`,
      );
    }
    module._free(pointer);
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
