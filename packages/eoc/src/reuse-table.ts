import { type CachePolicy, guardForcesCompute } from "@ditcache/cache";
import { DitcacheError, type SiteId, type StepInfo, siteId } from "@ditcache/core";

/**
 * The branch sites a policy decides on, in model order (block 0 attn, block 0 mlp, ...).
 * @throws DitcacheError UNSUPPORTED for dynamic policies (their reuse source depends on the
 *   sample) and for policies that decide on no branch site.
 */
export function policyBranchSites(policy: CachePolicy, depth: number): SiteId[] {
  if (policy.dynamic) {
    throw new DitcacheError(
      "UNSUPPORTED",
      `EOC: base policy "${policy.spec}" is dynamic: its reuse source depends on the sample, so calibrate needs a static policy (fora, learned, schedule)`,
    );
  }
  const sites: SiteId[] = [];
  for (let block = 0; block < depth; block++) {
    for (const kind of ["attn", "mlp"] as const)
      if (policy.sites.includes(kind)) sites.push(siteId(kind, block));
  }
  if (sites.length === 0) {
    throw new DitcacheError(
      "UNSUPPORTED",
      `EOC: base policy "${policy.spec}" decides on ${policy.sites.join(", ") || "no"} sites; EOC priors are per attn/mlp branch (use a branch policy such as fora or learned)`,
    );
  }
  return sites;
}

/**
 * The base policy's static reuse table: `sources[site][step]` is the step whose value is reused
 * at that step (src(step)), or -1 where the site computes. Replays the engine's rules: the
 * policy's decision, its guard rails, and "nothing cached yet computes". Timesteps are given as
 * an even spacing of 0..999 (built-in static policies read only the step index).
 */
export function staticReuseSources(
  policy: CachePolicy,
  sites: readonly SiteId[],
  steps: number,
  depth: number,
): number[][] {
  return sites.map((site) => {
    const sources: number[] = [];
    let lastComputed: number | undefined;
    let consecutive = 0;
    for (let index = 0; index < steps; index++) {
      const step: StepInfo = {
        index,
        count: steps,
        timestep: Math.round(999 - (index * 1000) / steps),
        rows: ["cond"],
      };
      let decision = policy.decide({
        site,
        step,
        half: undefined,
        depth,
        lastComputedStep: lastComputed,
        consecutiveReuses: consecutive,
        signal: () => undefined,
      });
      if (
        decision === "reuse" &&
        (lastComputed === undefined ||
          (policy.guards && guardForcesCompute(policy.guards, step, consecutive)))
      )
        decision = "compute";
      if (decision === "reuse") {
        sources.push(lastComputed!);
        consecutive++;
      } else {
        sources.push(-1);
        lastComputed = index;
        consecutive = 0;
      }
    }
    return sources;
  });
}
