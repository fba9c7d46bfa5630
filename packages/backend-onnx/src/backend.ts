import type { Backend, Executable, Tensor, Unit } from "@ditcache/core";
import { DitcacheError, formatShape, invalidArgument, sizeOf } from "@ditcache/core";
import * as ort from "onnxruntime-node";
import { type CompiledSession, OnnxExecutable, type SessionSource } from "./executable.js";
import { type OnnxBackendOptions, type ResolvedOnnxOptions, resolveOptions } from "./options.js";
import { assertProviderInstalled, providerError } from "./providers.js";
import { asOnnxTensor, ONNX_BACKEND_NAME, OnnxTensor } from "./tensor.js";
import { encodeModel, traceUnit } from "./trace.js";

interface CacheEntry {
  readonly promise: Promise<CompiledSession>;
  readonly users: Set<object>;
}

/**
 * The ONNX Runtime backend. Each unit becomes one ONNX graph per input-shape signature, with
 * its params as initializers so ORT can fold and pre-pack them; sessions are cached by unit
 * name, input shapes and param identity.
 */
export class OnnxBackend implements Backend, SessionSource {
  readonly name = ONNX_BACKEND_NAME;
  private readonly sessions = new Map<string, CacheEntry>();
  private readonly tensorIds = new WeakMap<object, number>();
  /**
   * Params compiled into a session so far, whose host copies {@link OnnxBackend.releaseHostParams}
   * may drop; weakly held, so a model dropped without dispose() is not kept alive by this list.
   */
  private compiledParams: WeakRef<OnnxTensor>[] = [];
  private readonly compiledParamSet = new WeakSet<OnnxTensor>();
  private nextTensorId = 0;
  private closed = false;

  /** @internal Use {@link createOnnxBackend}, which checks the provider first. */
  constructor(private readonly options: ResolvedOnnxOptions) {}

  /** Number of live ORT sessions (one per unit and input-shape signature). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  tensor(data: Float32Array, shape: readonly number[]): Tensor {
    if (!(data instanceof Float32Array)) invalidArgument("data", data, "a Float32Array");
    if (!Array.isArray(shape as unknown) || shape.some((dim) => !Number.isInteger(dim) || dim < 0)) {
      invalidArgument("shape", shape, "an array of non-negative integers");
    }
    if (sizeOf(shape) !== data.length) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `tensor: ${data.length} values do not fill shape ${formatShape(shape)} (expected ${sizeOf(shape)})`,
      );
    }
    return new OnnxTensor(new ort.Tensor("float32", data, [...shape]));
  }

  async read(tensor: Tensor): Promise<Float32Array> {
    const value = asOnnxTensor(tensor, "tensor").ort;
    const data = value.location === "cpu" ? value.data : await value.getData();
    return (data as Float32Array).slice();
  }

  dispose(tensor: Tensor): void {
    asOnnxTensor(tensor, "tensor").release();
  }

  compile(unit: Unit): Executable {
    this.assertOpen();
    if (typeof unit !== "object" || unit === null || typeof unit.build !== "function") {
      invalidArgument("unit", unit, "a Unit with a name and a build function");
    }
    if (typeof unit.name !== "string" || unit.name === "")
      invalidArgument("unit.name", unit.name, "a non-empty string");
    return new OnnxExecutable(this, unit);
  }

  /**
   * Drops the host (JS) copy of every param already compiled into a session: ONNX Runtime holds
   * its own (pre-packed) copy, so after the first run at the shapes an app uses, the host copy
   * only doubles the weights' memory. Sessions that exist keep running; compiling a unit with a
   * released param for new input shapes (another batch size), or reading it, then throws
   * UNSUPPORTED — call this only once every shape the app runs has been run once.
   *
   * @returns the bytes of host data released.
   * @example
   * await model.forward(x, timesteps, labels); // compiles every unit at this batch size
   * backend.releaseHostParams();              // ~1x the weights' size less resident memory
   */
  releaseHostParams(): number {
    let bytes = 0;
    for (const reference of this.compiledParams) bytes += reference.deref()?.releaseHostData() ?? 0;
    this.compiledParams = [];
    return bytes;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.compiledParams = [];
    const entries = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(entries.map((entry) => releaseEntry(entry)));
  }

  /** @internal */
  sessionKey(
    unit: Unit,
    params: Readonly<Record<string, OnnxTensor>>,
    inputs: readonly OnnxTensor[],
  ): string {
    const shapes = inputs.map((input) => input.shape.join("x")).join(",");
    const paramIds = Object.keys(params)
      .sort()
      .map((name) => `${name}#${this.tensorId(params[name]!)}`)
      .join(",");
    return `${unit.name}|${shapes}|${paramIds}`;
  }

  /** @internal */
  acquire(key: string, user: object, create: () => Promise<CompiledSession>): Promise<CompiledSession> {
    this.assertOpen();
    let entry = this.sessions.get(key);
    if (entry === undefined) {
      entry = { promise: create(), users: new Set() };
      this.sessions.set(key, entry);
    }
    entry.users.add(user);
    return entry.promise;
  }

  /** @internal */
  releaseUser(user: object): void {
    for (const [key, entry] of this.sessions) {
      if (entry.users.delete(user) && entry.users.size === 0) {
        this.sessions.delete(key);
        void releaseEntry(entry);
      }
    }
  }

  /** @internal */
  async createSession(
    unit: Unit,
    params: Readonly<Record<string, OnnxTensor>>,
    inputs: readonly OnnxTensor[],
  ): Promise<CompiledSession> {
    const model = traceUnit(
      unit,
      inputs.map((input) => input.shape),
      params,
      this.options.lowering,
    );
    const session = await this.createInferenceSession(encodeModel(model));
    for (const param of Object.values(params)) {
      if (this.options.hostParams === "release") param.releaseHostData();
      else if (!this.compiledParamSet.has(param)) {
        this.compiledParamSet.add(param);
        this.compiledParams.push(new WeakRef(param));
      }
    }
    return {
      session,
      inputNames: model.inputs.map((input) => input.name),
      outputNames: model.outputs.map((output) => output.name),
    };
  }

  /** @internal Creates an ORT session with this backend's options; provider failures become BACKEND_UNAVAILABLE. */
  async createInferenceSession(bytes: Uint8Array): Promise<ort.InferenceSession> {
    try {
      return await ort.InferenceSession.create(bytes, this.options.session);
    } catch (cause) {
      if (this.options.executionProvider !== "cpu")
        throw providerError(this.options.executionProvider, cause);
      throw new DitcacheError(
        "UNSUPPORTED",
        `onnx backend: ONNX Runtime rejected a traced graph: ${firstLine(cause)}`,
        { cause },
      );
    }
  }

  private tensorId(tensor: OnnxTensor): number {
    let id = this.tensorIds.get(tensor);
    if (id === undefined) {
      id = this.nextTensorId++;
      this.tensorIds.set(tensor, id);
    }
    return id;
  }

  private assertOpen(): void {
    if (this.closed)
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        "onnx backend: used after close (expected an open backend)",
      );
  }
}

/**
 * Creates the ONNX Runtime backend. A provider other than 'cpu' is started once here, so a
 * missing driver or provider library fails now, as BACKEND_UNAVAILABLE, not on the first unit.
 *
 * @example
 * const backend = await createOnnxBackend({ intraOpNumThreads: 2 });
 */
export async function createOnnxBackend(options: OnnxBackendOptions = {}): Promise<OnnxBackend> {
  const resolved = resolveOptions(options);
  assertProviderInstalled(resolved.executionProvider);
  const backend = new OnnxBackend(resolved);
  if (resolved.executionProvider !== "cpu") await probe(backend);
  return backend;
}

/** Starts the provider with a one-op unit and releases it. */
async function probe(backend: OnnxBackend): Promise<void> {
  const unit: Unit = { name: "__probe", build: (ops, [x]) => [ops.relu(x!)] };
  const executable = backend.compile(unit);
  const input = backend.tensor(new Float32Array(1), [1]);
  try {
    const [output] = await executable.run([input]);
    if (output) backend.dispose(output);
  } finally {
    executable.dispose();
    backend.dispose(input);
  }
}

async function releaseEntry(entry: CacheEntry): Promise<void> {
  try {
    await (await entry.promise).session.release();
  } catch {
    // A session that failed to build has nothing to release.
  }
}

function firstLine(cause: unknown): string {
  const message = cause instanceof Error ? cause.message : String(cause);
  return (message.split("\n").find((line) => line.trim() !== "") ?? message).trim();
}
