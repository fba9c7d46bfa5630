// Where a cache correction's time goes on the ONNX backend (issue #11): at one reused branch site
// plain reuse runs one copy unit, EOC runs a 3-term combine (F_last, F_prev, a broadcast prior
// difference D), the model then runs its gated residual on either. Each case runs `--iterations`
// times, cases interleaved round by round in one process, so a shared machine's noise hits all
// of them; the calls cycle through `--sites` sets of inputs, so values come cold from memory as in
// a forward. Per call CPU time (process.cpuUsage, all threads) and wall time, best round.
//
//   pnpm exec tsx --conditions=source packages/backend-onnx/bench/correction.ts [--hidden 384,1152]
//     [--iterations 300] [--rounds 5] [--threads 2] [--sites 24]
//
// Benchmarks print numbers, never assert them.
import { parseArgs } from "node:util";
import type { Backend, Executable, Ops, Tensor, Unit } from "@ditcache/core";
import { createOnnxBackend } from "../src/index.js";

const { values } = parseArgs({
  options: {
    hidden: { type: "string", default: "384,1152" },
    iterations: { type: "string", default: "300" },
    rounds: { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    sites: { type: "string", default: "24" },
  },
});
const BATCH = 2;
const TOKENS = 256;
const iterations = Number(values.iterations);
const rounds = Number(values.rounds);

function fill(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let state = seed;
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out[i] = state / 2 ** 32 - 0.5;
  }
  return out;
}

/** Σ inputs[i] · weight_i, the weights either graph inputs (scalars) or baked constants. */
function weightedSum<T>(ops: Ops<T>, tensors: readonly T[], weights: readonly (T | number)[]): T {
  const term = (i: number): T => {
    const weight = weights[i]!;
    return ops.mul(tensors[i]!, typeof weight === "number" ? ops.constant(weight) : weight);
  };
  let acc = term(0);
  for (let i = 1; i < tensors.length; i++) acc = ops.add(acc, term(i));
  return acc;
}

const WEIGHTS = [1.37, -0.37, 0.8];

const units = {
  copy: { name: "copy", build: (ops, [x]) => [ops.mul(x!, ops.constant(1))] },
  combine3: {
    name: "combine3",
    build: (ops, inputs) => [weightedSum(ops, inputs.slice(0, 3), inputs.slice(3))],
  },
  gatedResidual: {
    name: "gated_residual",
    build: (ops, [x, branch, gate]) => [ops.add(x!, ops.mul(gate!, branch!))],
  },
  fusedResidual1: {
    name: "fused-residual1",
    build: (ops, [x, gate, value, weight]) => [ops.add(x!, ops.mul(gate!, ops.mul(value!, weight!)))],
  },
  fusedResidual3: {
    name: "fused-residual3",
    build: (ops, [x, gate, ...rest]) => [
      ops.add(x!, ops.mul(gate!, weightedSum(ops, rest.slice(0, 3), rest.slice(3)))),
    ],
  },
} satisfies Record<string, Unit>;

interface Case {
  readonly label: string;
  readonly run: (site: number) => Promise<void>;
  wall: number;
  cpu: number;
}

/** One site's tensors: its cached values, the residual stream and the gate. */
interface Site {
  readonly last: Tensor;
  readonly previous: Tensor;
  readonly x: Tensor;
  readonly gate: Tensor;
}

async function casesFor(backend: Backend, hidden: number, siteCount: number): Promise<Case[]> {
  const shape = [BATCH, TOKENS, hidden];
  const size = BATCH * TOKENS * hidden;
  // Many sites, visited in turn, so inputs come cold from memory as in a forward.
  const sites: Site[] = Array.from({ length: siteCount }, (_, i) => ({
    last: backend.tensor(fill(size, 4 * i + 1), shape),
    previous: backend.tensor(fill(size, 4 * i + 2), shape),
    x: backend.tensor(fill(size, 4 * i + 3), shape),
    gate: backend.tensor(fill(BATCH * hidden, 4 * i + 4), [BATCH, 1, hidden]),
  }));
  const difference = backend.tensor(fill(hidden, 3), [hidden]); // "channel" priors: (D,)
  const compiled = new Map<string, Executable>();
  const runOnce = async (unit: Unit, inputs: readonly Tensor[]): Promise<Tensor> => {
    let executable = compiled.get(unit.name);
    if (executable === undefined) {
      executable = backend.compile(unit);
      compiled.set(unit.name, executable);
    }
    const [out] = await executable.run(inputs);
    return out!;
  };
  const upload = (weights: readonly number[]): Tensor[] =>
    weights.map((weight) => backend.tensor(Float32Array.of(weight), []));
  const release = (tensors: readonly Tensor[]): void => {
    for (const tensor of tensors) backend.dispose(tensor);
  };
  const cachedWeights = upload(WEIGHTS);
  const combine3 = async (site: Site, weights: readonly Tensor[]): Promise<Tensor> =>
    runOnce(units.combine3, [site.last, site.previous, difference, ...weights]);
  /** The model's gated residual after a site returned `value`, as forward does it. */
  const residual = async (site: Site, value: Tensor): Promise<void> => {
    const out = await runOnce(units.gatedResidual, [site.x, value, site.gate]);
    backend.dispose(value);
    backend.dispose(out);
  };
  const cases: [string, (site: Site) => Promise<void>][] = [
    ["scalar uploads x3 + dispose", async () => release(upload(WEIGHTS))],
    ["copy", async (site) => backend.dispose(await runOnce(units.copy, [site.last]))],
    [
      "combine3 (uploaded weights)",
      async (site) => {
        const weights = upload(WEIGHTS);
        backend.dispose(await combine3(site, weights));
        release(weights);
      },
    ],
    ["combine3 (cached weights)", async (site) => backend.dispose(await combine3(site, cachedWeights))],
    ["copy + gated residual", async (site) => residual(site, await runOnce(units.copy, [site.last]))],
    [
      "combine3 (uploaded) + gated residual",
      async (site) => {
        const weights = upload(WEIGHTS);
        const value = await combine3(site, weights);
        release(weights);
        await residual(site, value);
      },
    ],
    [
      "fused x + gate·(1·last) (uploaded)",
      async (site) => {
        const weights = upload([1]);
        backend.dispose(await runOnce(units.fusedResidual1, [site.x, site.gate, site.last, ...weights]));
        release(weights);
      },
    ],
    [
      "fused x + gate·combine3 (uploaded)",
      async (site) => {
        const weights = upload(WEIGHTS);
        const inputs = [site.x, site.gate, site.last, site.previous, difference, ...weights];
        backend.dispose(await runOnce(units.fusedResidual3, inputs));
        release(weights);
      },
    ],
  ];
  const prepared: Case[] = [];
  for (const [label, run] of cases) {
    await run(sites[0]!); // session creation
    prepared.push({
      label,
      run: (i) => run(sites[i % siteCount]!),
      wall: Number.POSITIVE_INFINITY,
      cpu: Number.POSITIVE_INFINITY,
    });
  }
  return prepared;
}

const backend = await createOnnxBackend({ intraOpNumThreads: Number(values.threads) });
try {
  for (const hidden of (values.hidden as string).split(",").map(Number)) {
    const cases = await casesFor(backend, hidden, Number(values.sites));
    for (let round = 0; round < rounds; round++) {
      for (const item of cases) {
        const wallStart = performance.now();
        const cpuStart = process.cpuUsage();
        for (let i = 0; i < iterations; i++) await item.run(i);
        const cpu = process.cpuUsage(cpuStart);
        item.wall = Math.min(item.wall, (performance.now() - wallStart) / iterations);
        item.cpu = Math.min(item.cpu, (cpu.user + cpu.system) / 1000 / iterations);
      }
    }
    const copy = cases.find((item) => item.label === "copy")!;
    console.log(
      `\n(${BATCH}, ${TOKENS}, ${hidden}), ${iterations} calls x ${rounds} rounds, best round, ms per call:`,
    );
    console.log("| case | wall | CPU | wall - copy | CPU - copy |");
    console.log("| --- | ---: | ---: | ---: | ---: |");
    for (const item of cases) {
      console.log(
        `| ${item.label} | ${item.wall.toFixed(3)} | ${item.cpu.toFixed(3)} | ${(item.wall - copy.wall).toFixed(3)} | ${(item.cpu - copy.cpu).toFixed(3)} |`,
      );
    }
  }
} finally {
  await backend.close();
}
