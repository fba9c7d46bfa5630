import { type Backend, type BatchHalf, type SiteHook, type StepInfo, siteId } from "@ditcache/core";

/** A model whose branch outputs follow a given trajectory, independent of the cache (no feedback). */
export interface TrajectoryModelOptions {
  depth: number;
  steps: number;
  rows: readonly BatchHalf[];
  tokens: number;
  channels: number;
  /** The value of one row at a site (block*2 + branch) and step for a sample. */
  feature: (site: number, step: number, sample: number, row: number) => Float32Array;
  /** The adaLN gate of one row at a site and step (one value per channel); absent: no gate passed. */
  gate?: (site: number, step: number, row: number) => Float32Array;
}

/** Returned values per "key@step". */
export type Returned = Map<string, Float32Array>;

export function trajectoryModel(backend: Backend, options: TrajectoryModelOptions) {
  const { depth, steps, rows, tokens, channels } = options;
  const rowSize = tokens * channels;
  const batch = (site: number, step: number, sample: number): Float32Array => {
    const data = new Float32Array(rows.length * rowSize);
    rows.forEach((_, r) => data.set(options.feature(site, step, sample, r), r * rowSize));
    return data;
  };
  return {
    batch,
    async run(hook: SiteHook, sample: number, returned?: Returned): Promise<void> {
      for (let index = 0; index < steps; index++) {
        const step: StepInfo = { index, count: steps, timestep: 999 - index * 10, rows };
        await hook.beginForward?.(step, backend);
        for (let block = 0; block < depth; block++) {
          for (const [b, kind] of (["attn", "mlp"] as const).entries()) {
            const site = siteId(kind, block);
            const s = block * 2 + b;
            const input = backend.tensor(new Float32Array(rows.length * rowSize), [rows.length, tokens, channels]);
            const gateOf = options.gate;
            const gate = gateOf
              ? backend.tensor(
                  Float32Array.from({ length: rows.length * channels }, (_, i) =>
                    gateOf(s, index, Math.floor(i / channels)).at(i % channels)!,
                  ),
                  [rows.length, channels],
                )
              : undefined;
            const out = await hook.run({
              site,
              step,
              input,
              macs: 1,
              compute: async () => backend.tensor(batch(s, index, sample), [rows.length, tokens, channels]),
              ...(gate ? { gate } : {}),
            });
            returned?.set(`${site.key}@${index}`, await backend.read(out));
            backend.dispose(out);
            backend.dispose(input);
            if (gate) backend.dispose(gate);
          }
        }
        await hook.endForward?.(step);
      }
    },
  };
}

/** Deterministic pseudo-random values in [-1, 1). */
export function noise(seed: number, length: number): Float32Array {
  let state = (seed * 2654435761) >>> 0 || 1;
  return Float32Array.from({ length }, () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return (state / 2 ** 32) * 2 - 1;
  });
}
