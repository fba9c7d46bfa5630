import type { Backend } from "./backend.js";
import type { Tensor } from "./tensor.js";

/**
 * Disposes every tensor of a list, skipping `undefined` holes; every tensor is attempted even
 * when one dispose throws (the first error is rethrown afterwards).
 */
export function disposeAll(backend: Backend, tensors: Iterable<Tensor | undefined>): void {
  let failure: { error: unknown } | undefined;
  for (const tensor of tensors) {
    if (tensor === undefined) continue;
    try {
      backend.dispose(tensor);
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure !== undefined) throw failure.error;
}
