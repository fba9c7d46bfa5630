import {
  type Backend,
  type BatchHalf,
  computeHook,
  createRng,
  type SiteHook,
  type StepInfo,
  siteId,
  type Tensor,
  type Unit,
} from "@ditcache/core";

/** Options of {@link createSyntheticModel}. */
export interface SyntheticModelOptions {
  /** Blocks. @defaultValue 4 */
  depth?: number;
  /** Tokens per sample. @defaultValue 3 */
  tokens?: number;
  /** Hidden width. @defaultValue 8 */
  hidden?: number;
  /** Weight seed. @defaultValue 7 */
  seed?: number;
}

/** What a spied forward saw at one site. */
export interface SpyRecord {
  /** Site key. */
  readonly key: string;
  /** Step index. */
  readonly step: number;
  /** The site's input. */
  readonly input: Float32Array;
  /** What compute() returned, when it ran. */
  readonly computed: Float32Array | undefined;
  /** What the hook returned. */
  readonly returned: Float32Array;
}

/** Options of {@link SyntheticModel.sample}. */
export interface SyntheticSampleOptions {
  /** Backend to run on. */
  backend: Backend;
  /** The hook (a cache engine). @defaultValue computeHook (uncached) */
  hook?: SiteHook;
  /** Denoising steps. @defaultValue 8 */
  steps?: number;
  /** Batch rows. @defaultValue ["cond", "uncond"] */
  rows?: readonly BatchHalf[];
  /** Noise seed; row r gets seed `seed + r` (so a row's data does not depend on the batch). @defaultValue 1 */
  seed?: number;
  /** Collects what every site saw (slow: reads tensors to host). */
  spy?: SpyRecord[];
}

/** A run that advances one step per call, so two runs can interleave. */
export interface SyntheticRun {
  /** Runs the next step; false when finished. */
  step(): Promise<boolean>;
  /** The final sample, once finished (and frees it). */
  result(): Promise<Float32Array>;
}

/**
 * A tiny DiT stand-in that calls a {@link SiteHook} exactly like the DiT does: `beginForward`,
 * then a `blocks` site over the whole stack (with an indicator), a `block` site per block and,
 * inside it, `attn` and `mlp` sites whose pre-gate outputs the model gates with the CURRENT
 * step's gate; then `endForward`. It disposes every intermediate it owns, so an engine that
 * hands out a tensor it keeps is caught.
 */
export interface SyntheticModel {
  /** Number of blocks. */
  readonly depth: number;
  /** Multiply-accumulates of one branch call (per the whole batch of `rows` rows). */
  branchMacs(rows: number): number;
  /** The gate the model applies to a branch output at a timestep. */
  gate(block: number, branch: "attn" | "mlp", timestep: number): number;
  /** Starts a sampling run. */
  start(options: SyntheticSampleOptions): SyntheticRun;
  /** Runs a whole sampling run and returns the final sample (N x tokens x hidden). */
  sample(options: SyntheticSampleOptions): Promise<Float32Array>;
}

function randomMatrix(
  rng: ReturnType<typeof createRng>,
  rows: number,
  cols: number,
  scale: number,
): Float32Array {
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = (rng.uniform() * 2 - 1) * scale;
  return data;
}

/** Creates the synthetic model; see {@link SyntheticModel}. */
export function createSyntheticModel(options: SyntheticModelOptions = {}): SyntheticModel {
  const depth = options.depth ?? 4;
  const tokens = options.tokens ?? 3;
  const hidden = options.hidden ?? 8;
  const rng = createRng(options.seed ?? 7);
  const weights = Array.from({ length: depth }, () => ({
    attn: randomMatrix(rng, hidden, hidden, 0.6),
    mlp: randomMatrix(rng, hidden, hidden, 0.6),
  }));
  const gate = (block: number, branch: "attn" | "mlp", timestep: number): number =>
    0.5 + 0.4 * Math.sin(timestep / 150 + block + (branch === "mlp" ? 1 : 0));
  const scale = (block: number, timestep: number): number => 0.3 * Math.cos(timestep / 200 + block);

  // Branch: relu((h * (1 + scale)) @ W) — a timestep-modulated input through a tiny matmul.
  const branchUnit = (key: string): Unit => ({
    name: `synthetic.branch.${key}`,
    build: (ops, [h, w, s]) => [ops.relu(ops.matmul(ops.mul(h!, ops.add(ops.constant(1), s!)), w!))],
  });
  const gatedAdd: Unit = {
    name: "synthetic.gatedAdd",
    build: (ops, [h, b, g]) => [ops.add(h!, ops.mul(b!, g!))],
  };
  const modulate: Unit = {
    name: "synthetic.modulate",
    build: (ops, [h, s]) => [ops.mul(h!, ops.add(ops.constant(1), s!))],
  };
  const euler: Unit = {
    name: "synthetic.euler",
    build: (ops, [x, e]) => [ops.sub(x!, ops.mul(e!, ops.constant(0.15)))],
  };

  async function run(backend: Backend, unit: Unit, inputs: Tensor[]): Promise<Tensor> {
    const [out] = await backend.compile(unit).run(inputs);
    return out!;
  }

  async function withScalar<T>(
    backend: Backend,
    value: number,
    body: (scalar: Tensor) => Promise<T>,
  ): Promise<T> {
    const scalar = backend.tensor(Float32Array.of(value), []);
    try {
      return await body(scalar);
    } finally {
      backend.dispose(scalar);
    }
  }

  async function spied(
    backend: Backend,
    spy: SpyRecord[] | undefined,
    key: string,
    step: number,
    input: Tensor,
    invoke: (compute: () => Promise<Tensor>) => Promise<Tensor>,
    compute: () => Promise<Tensor>,
  ): Promise<Tensor> {
    if (spy === undefined) return invoke(compute);
    let computed: Float32Array | undefined;
    const inputData = await backend.read(input);
    const returned = await invoke(async () => {
      const out = await compute();
      computed = await backend.read(out);
      return out;
    });
    spy.push({ key, step, input: inputData, computed, returned: await backend.read(returned) });
    return returned;
  }

  async function forward(
    backend: Backend,
    hook: SiteHook,
    x: Tensor,
    step: StepInfo,
    spy?: SpyRecord[],
  ): Promise<Tensor> {
    await hook.beginForward?.(step, backend);
    const rows = step.rows.length;
    const t = step.timestep;
    const runBlock = async (block: number, h: Tensor): Promise<Tensor> => {
      let state = h;
      for (const branch of ["attn", "mlp"] as const) {
        const site = siteId(branch, block);
        const input = state;
        const compute = () =>
          withScalar(backend, scale(block, t), async (s) => {
            const w = backend.tensor(weights[block]![branch].slice(), [hidden, hidden]);
            try {
              return await run(backend, branchUnit(branch), [input, w, s]);
            } finally {
              backend.dispose(w);
            }
          });
        const value = await spied(
          backend,
          spy,
          site.key,
          step.index,
          input,
          (c) => hook.run({ site, step, input, compute: c, macs: rows * tokens * hidden * hidden }),
          compute,
        );
        const next = await withScalar(backend, gate(block, branch, t), (g) =>
          run(backend, gatedAdd, [input, value, g]),
        );
        backend.dispose(value);
        if (input !== h) backend.dispose(input);
        state = next;
      }
      return state;
    };
    const blockMacs = 2 * rows * tokens * hidden * hidden;
    const stack = siteId("blocks", 0, depth - 1);
    const indicator = () => withScalar(backend, scale(0, t), (s) => run(backend, modulate, [x, s]));
    const out = await spied(
      backend,
      spy,
      stack.key,
      step.index,
      x,
      (c) => hook.run({ site: stack, step, input: x, macs: depth * blockMacs, indicator, compute: c }),
      async () => {
        let h = x;
        for (let block = 0; block < depth; block++) {
          const site = siteId("block", block);
          const input = h;
          const next = await spied(
            backend,
            spy,
            site.key,
            step.index,
            input,
            (c) => hook.run({ site, step, input, compute: c, macs: blockMacs }),
            () => runBlock(block, input),
          );
          if (h !== x) backend.dispose(h);
          h = next;
        }
        return h;
      },
    );
    await hook.endForward?.(step);
    return out;
  }

  function start(sampleOptions: SyntheticSampleOptions): SyntheticRun {
    const { backend, spy } = sampleOptions;
    const hook = sampleOptions.hook ?? computeHook;
    const steps = sampleOptions.steps ?? 8;
    const rows = sampleOptions.rows ?? ["cond", "uncond"];
    const seed = sampleOptions.seed ?? 1;
    const data = new Float32Array(rows.length * tokens * hidden);
    rows.forEach((half, r) => {
      const rowRng = createRng(seed + r + (half === "uncond" ? 1000 : 0));
      for (let i = 0; i < tokens * hidden; i++) data[r * tokens * hidden + i] = rowRng.uniform() * 2 - 1;
    });
    let x = backend.tensor(data, [rows.length, tokens, hidden]);
    let index = 0;
    return {
      async step() {
        if (index >= steps) return false;
        const step: StepInfo = {
          index,
          count: steps,
          timestep: Math.round(999 - (index * 999) / steps),
          rows,
        };
        const eps = await forward(backend, hook, x, step, spy);
        const next = await run(backend, euler, [x, eps]);
        backend.dispose(eps);
        backend.dispose(x);
        x = next;
        index++;
        return true;
      },
      async result() {
        const values = await backend.read(x);
        backend.dispose(x);
        return values;
      },
    };
  }

  return {
    depth,
    branchMacs: (rows) => rows * tokens * hidden * hidden,
    gate,
    start,
    async sample(sampleOptions) {
      const sampling = start(sampleOptions);
      while (await sampling.step()) {}
      return sampling.result();
    },
  };
}
