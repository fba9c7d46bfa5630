import type { Backend } from "./backend.js";
import { DitcacheError } from "./errors.js";
import { computeHook, type SiteHook } from "./site.js";

/**
 * Index of the first NaN or ±Infinity in `values`, or -1 when every value is finite. One
 * subtraction per element (x - x is 0 for finite x and NaN otherwise), so checking a whole
 * checkpoint costs about as much as copying it once.
 */
export function firstNonFinite(values: ArrayLike<number>): number {
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (value - value !== 0) return i;
  }
  return -1;
}

/**
 * A {@link SiteHook} that runs `inner` (plain computation by default, or a cache engine) and then
 * reads every site's output back to the host: the first NaN or infinity stops the run with an
 * error naming the site, the step and the timestep where it appeared. Opt-in: the read costs one
 * device-to-host copy per site call, and nothing at all when the hook is not used.
 *
 * The backend comes from `beginForward`, which every model forward calls first.
 *
 * @throws DitcacheError NUMERIC_FAULT, e.g. "non-finite value (NaN) in block3.attn at step 7 of 20 (timestep 650)".
 * @example
 * await model.forward(x, timesteps, labels, { hook: checkFiniteHook(engine) });
 */
export function checkFiniteHook(inner: SiteHook = computeHook): SiteHook {
  let backend: Backend | undefined;
  const hook: SiteHook = {
    async beginForward(step, forwardBackend) {
      backend = forwardBackend;
      await inner.beginForward?.(step, forwardBackend);
    },
    async run(call) {
      const out = await inner.run(call);
      if (backend === undefined) {
        throw new DitcacheError(
          "INVALID_ARGUMENT",
          "checkFiniteHook: beginForward was not called; the model must pass its backend before running sites",
        );
      }
      const values = await backend.read(out);
      const index = firstNonFinite(values);
      if (index >= 0) {
        const { step, site } = call;
        throw new DitcacheError(
          "NUMERIC_FAULT",
          `non-finite value (${values[index]}) in ${site.key} at step ${step.index} of ${step.count} (timestep ${step.timestep})`,
        );
      }
      return out;
    },
  };
  if (inner.endForward !== undefined) hook.endForward = (step) => inner.endForward!(step);
  return hook;
}
