import { registerEocCorrector } from "@ditcache/eoc";

/**
 * Registers the correctors that live outside @ditcache/cache (EOC) in this thread's registry.
 * Both the main thread (which validates specs) and the worker (which runs them) call it, so
 * the two registries agree.
 */
export function prepareRegistry(): void {
  registerEocCorrector();
}
