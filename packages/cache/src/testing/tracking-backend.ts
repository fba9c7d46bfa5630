import type { Backend, Tensor } from "@ditcache/core";

/** A backend wrapper that counts live tensors, to catch leaks, and unit runs. */
export interface TrackingBackend extends Backend {
  /** Tensors created and not yet disposed. */
  readonly live: number;
  /** Runs per unit name so far. */
  readonly runs: ReadonlyMap<string, number>;
}

/**
 * Wraps a backend so every tensor it creates (by `tensor` or as a unit output) is counted until
 * disposed. The wrapped backend does the work; only the bookkeeping is added.
 */
export function trackTensors(backend: Backend): TrackingBackend {
  const alive = new Set<Tensor>();
  const runs = new Map<string, number>();
  return {
    name: backend.name,
    get live() {
      return alive.size;
    },
    runs,
    tensor(data, shape) {
      const tensor = backend.tensor(data, shape);
      alive.add(tensor);
      return tensor;
    },
    read: (tensor) => backend.read(tensor),
    dispose(tensor) {
      alive.delete(tensor);
      backend.dispose(tensor);
    },
    compile(unit) {
      const executable = backend.compile(unit);
      return {
        async run(inputs) {
          runs.set(unit.name, (runs.get(unit.name) ?? 0) + 1);
          const outputs = await executable.run(inputs);
          for (const output of outputs) alive.add(output);
          return outputs;
        },
        dispose: () => executable.dispose(),
      };
    },
  };
}
