import type { Executable, Tensor, Unit } from "@ditcache/core";
import { DitcacheError, invalidArgument } from "@ditcache/core";
import type * as ort from "onnxruntime-node";
import { asOnnxTensor, OnnxTensor } from "./tensor.js";

/** One ORT session for one unit at one input-shape signature. */
export interface CompiledSession {
  readonly session: ort.InferenceSession;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
}

/** What an executable needs from its backend: the shared session cache. */
export interface SessionSource {
  /** Cache key of a unit at these input shapes. */
  sessionKey(unit: Unit, params: Readonly<Record<string, OnnxTensor>>, inputs: readonly OnnxTensor[]): string;
  /** The session for a key, created once; concurrent callers await the same promise. */
  acquire(key: string, user: object, create: () => Promise<CompiledSession>): Promise<CompiledSession>;
  /** Drops a user's hold on sessions; sessions nobody holds are released. */
  releaseUser(user: object): void;
  /** Traces and compiles a unit for these inputs. */
  createSession(
    unit: Unit,
    params: Readonly<Record<string, OnnxTensor>>,
    inputs: readonly OnnxTensor[],
  ): Promise<CompiledSession>;
}

/** A compiled unit: sessions are made lazily per input-shape signature and shared through the backend. */
export class OnnxExecutable implements Executable {
  private readonly params: Readonly<Record<string, OnnxTensor>>;
  private disposed = false;

  constructor(
    private readonly source: SessionSource,
    private readonly unit: Unit,
  ) {
    const params: Record<string, OnnxTensor> = {};
    for (const [name, tensor] of Object.entries(unit.params ?? {}))
      params[name] = asOnnxTensor(tensor, `unit "${unit.name}" param "${name}"`);
    this.params = params;
  }

  async run(inputs: readonly Tensor[]): Promise<Tensor[]> {
    if (this.disposed)
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `unit "${this.unit.name}": run after dispose (expected a live executable)`,
      );
    if (!Array.isArray(inputs as unknown)) invalidArgument("inputs", inputs, "an array of tensors");
    const tensors = inputs.map((input, i) => asOnnxTensor(input, `unit "${this.unit.name}" inputs[${i}]`));
    const key = this.source.sessionKey(this.unit, this.params, tensors);
    const compiled = await this.source.acquire(key, this, () =>
      this.source.createSession(this.unit, this.params, tensors),
    );
    const feeds: Record<string, ort.Tensor> = {};
    compiled.inputNames.forEach((name, i) => {
      feeds[name] = tensors[i]!.ort;
    });
    const results = await compiled.session.run(feeds);
    return compiled.outputNames.map((name) => new OnnxTensor(results[name] as ort.Tensor));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.source.releaseUser(this);
  }
}
