import type { Backend, Tensor } from "@ditcache/core";

/** A backend wrapper that counts live tensors, to catch leaks. */
export interface TrackingBackend extends Backend {
  /** Tensors created and not yet disposed. */
  readonly live: number;
}

/**
 * Wraps a backend so every tensor it creates (by `tensor` or as a unit output) is counted until
 * disposed. The wrapped backend does the work; only the bookkeeping is added.
 */
export function trackTensors(backend: Backend): TrackingBackend {
  const alive = new Set<Tensor>();
  return {
    name: backend.name,
    get live() {
      return alive.size;
    },
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
          const outputs = await executable.run(inputs);
          for (const output of outputs) alive.add(output);
          return outputs;
        },
        dispose: () => executable.dispose(),
      };
    },
  };
}
