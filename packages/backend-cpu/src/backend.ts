import {
  type Backend,
  DitcacheError,
  type Executable,
  formatShape,
  invalidArgument,
  type Tensor,
  type Unit,
} from "@ditcache/core";
import { cpuOps } from "./ops.js";
import { CpuTensor } from "./tensor.js";

/** Options of {@link createCpuBackend}; none yet, the object keeps the signature stable. */
export type CpuBackendOptions = Record<string, never>;

/** The reference backend: eager ops in plain TypeScript over Float32Array. */
export interface CpuBackend extends Backend {
  /** Always "cpu". */
  readonly name: "cpu";
  /** The eager op table, for code that wants to call ops directly on cpu tensors. */
  readonly ops: typeof cpuOps;
}

function own(tensor: Tensor, argument: string): CpuTensor {
  if (!(tensor instanceof CpuTensor)) {
    invalidArgument(argument, (tensor as Tensor | undefined)?.backend, 'a tensor of the "cpu" backend');
  }
  return tensor;
}

/**
 * Creates the cpu backend. `compile` needs no compilation: the executable runs the unit's
 * `build` with the eager ops on every call, so nothing is cached and nothing can go stale.
 *
 * @example
 * const backend = createCpuBackend();
 * const [y] = await backend.compile(unit).run([backend.tensor(data, [2, 3])]);
 */
export function createCpuBackend(options: CpuBackendOptions = {}): CpuBackend {
  if (typeof options !== "object" || options === null) invalidArgument("options", options, "an object");
  return {
    name: "cpu",
    ops: cpuOps,
    tensor(data: Float32Array, shape: readonly number[]): Tensor {
      if (!(data instanceof Float32Array)) invalidArgument("data", data, "a Float32Array");
      if (!Array.isArray(shape) || !shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
        invalidArgument("shape", shape, "an array of non-negative integers");
      }
      const size = shape.reduce((product, dim) => product * dim, 1);
      if (size !== data.length) {
        throw new DitcacheError(
          "SHAPE_MISMATCH",
          `tensor: ${data.length} values do not fill shape ${formatShape(shape)}`,
        );
      }
      return new CpuTensor(data, shape);
    },
    async read(tensor: Tensor): Promise<Float32Array> {
      return own(tensor, "tensor").data.slice();
    },
    dispose(tensor: Tensor): void {
      own(tensor, "tensor").dispose();
    },
    compile(unit: Unit): Executable {
      if (typeof unit?.build !== "function") invalidArgument("unit", unit, "a Unit with a build function");
      let disposed = false;
      return {
        async run(inputs: readonly Tensor[]): Promise<Tensor[]> {
          if (disposed)
            throw new DitcacheError("INVALID_ARGUMENT", `unit "${unit.name}": run() after dispose()`);
          const values = inputs.map((input, i) => own(input, `inputs[${i}]`));
          const params: Record<string, CpuTensor> = {};
          for (const [name, value] of Object.entries(unit.params ?? {}))
            params[name] = own(value, `params.${name}`);
          const outputs = unit.build(cpuOps, values, params);
          const given = new Set<CpuTensor>([...values, ...Object.values(params)]);
          // Outputs are new tensors even when build returns an input or param unchanged.
          return outputs.map((output) =>
            given.has(output) ? new CpuTensor(output.data, output.shape) : output,
          );
        },
        dispose(): void {
          disposed = true;
        },
      };
    },
  };
}
