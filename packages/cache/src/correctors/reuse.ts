import type { Corrector } from "../corrector.js";

/** Parameters of {@link reuseCorrector}: none. */
export const reuseCorrectorParams = {} as const;

/** Plain reuse: the cached value as is (FORA, Learning-to-Cache, Δ-DiT, FBCache, TeaCache). */
export function reuseCorrector(): Corrector {
  return { name: "reuse", spec: "reuse", historyLength: 1, correct: async (context) => context.cached };
}
