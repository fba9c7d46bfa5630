import type { SiteId } from "@ditcache/core";
import { type DiTConfig, mlpHiddenSize, outChannels, tokenCount } from "./config.js";
import { TIMESTEP_FREQUENCY_SIZE } from "./layouts/official.js";

/**
 * Multiply-accumulates of one forward of ONE sample, per part. Matmuls and linears only
 * (elementwise ops, norms and softmax are left out, as FLOP counters for DiT do); attention counts
 * q k^T and attn v. Multiply by the batch size for a batch.
 */
export interface DiTMacs {
  /** Patch embedding. */
  readonly embed: number;
  /** Timestep MLP. */
  readonly condition: number;
  /** One block's adaLN modulation linear. */
  readonly modulation: number;
  /** One block's attention branch: qkv, scores, weighted sum, proj. */
  readonly attention: number;
  /** One block's MLP branch. */
  readonly mlp: number;
  /** One whole block: modulation + attention + mlp. */
  readonly block: number;
  /** Final layer: modulation and linear. */
  readonly final: number;
  /** The whole forward. */
  readonly forward: number;
}

/** MACs per sample of a config; see {@link DiTMacs}. */
export function ditMacs(config: DiTConfig): DiTMacs {
  const d = config.hiddenSize;
  const t = tokenCount(config);
  const p = config.patchSize;
  const embed = t * d * config.inChannels * p * p;
  const condition = TIMESTEP_FREQUENCY_SIZE * d + d * d;
  const modulation = d * 6 * d;
  const attention = t * d * 3 * d + 2 * t * t * d + t * d * d;
  const mlp = 2 * t * d * mlpHiddenSize(config);
  const block = modulation + attention + mlp;
  const final = d * 2 * d + t * d * p * p * outChannels(config);
  return {
    embed,
    condition,
    modulation,
    attention,
    mlp,
    block,
    final,
    forward: embed + condition + config.depth * block + final,
  };
}

/** MACs per sample of one call of a site (what {@link SiteCall.macs} reports, divided by the batch). */
export function siteMacs(macs: DiTMacs, site: SiteId): number {
  switch (site.kind) {
    case "attn":
      return macs.attention;
    case "mlp":
      return macs.mlp;
    case "block":
      return macs.block;
    case "blocks":
      return (site.end - site.block + 1) * macs.block;
  }
}
