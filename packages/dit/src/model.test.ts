import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCpuBackend } from "@ditcache/backend-cpu";
import {
  type Backend,
  computeHook,
  disposeAll,
  gaussianNoise,
  type SiteCall,
  type SiteHook,
  type StepInfo,
  type Tensor,
  writeSafetensors,
} from "@ditcache/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiTModel } from "./model.js";
import { randomDiTWeights, TINY_DIT_CONFIG } from "./testing/index.js";
import type { HostArray } from "./weights.js";

const backend = createCpuBackend();
const config = TINY_DIT_CONFIG;
const weights = randomDiTWeights(config, 1);
const model = DiTModel.fromWeights(weights, config, backend);
const xShape = [2, 4, 8, 8];
const xData = gaussianNoise(5, xShape);

async function run(m: DiTModel, hook?: SiteHook, step?: StepInfo): Promise<Float32Array> {
  const x = backend.tensor(xData.slice(), xShape);
  const out = await m.forward(x, [999, 10], [3, 10], {
    ...(hook ? { hook } : {}),
    ...(step ? { step } : {}),
  });
  return backend.read(out);
}

describe("DiTModel.forward", () => {
  it("maps (N, C, H, W) to (N, 2C, H, W) deterministically", async () => {
    const x = backend.tensor(xData.slice(), xShape);
    const out = await model.forward(x, [999, 10], [3, 10]);
    expect(out.shape).toEqual([2, 8, 8, 8]);
    const values = await backend.read(out);
    expect(values.every(Number.isFinite)).toBe(true);
    expect(await run(model)).toEqual(values);
    expect(await run(model, computeHook)).toEqual(values);
  });

  it("calls the hook at blocks, block, attn and mlp sites in order, with MACs and the indicator", async () => {
    const calls: SiteCall[] = [];
    const events: string[] = [];
    let indicatorShape: readonly number[] = [];
    const gates = new Map<string, Float32Array>();
    const hook: SiteHook = {
      beginForward: (step) => void events.push(`begin ${step.index}`),
      run: async (call) => {
        calls.push(call);
        if (call.indicator) indicatorShape = (await call.indicator()).shape;
        // The gate is the model's, valid during the call only: read it now.
        if (call.gate) gates.set(call.site.key, await backend.read(call.gate));
        return call.compute();
      },
      endForward: (step) => void events.push(`end ${step.index}`),
    };
    const step: StepInfo = { index: 3, count: 10, timestep: 700, rows: ["cond", "uncond"] };
    await run(model, hook, step);
    expect(events).toEqual(["begin 3", "end 3"]);
    expect(calls.map((call) => call.site.key)).toEqual([
      "blocks0-1",
      "block0",
      "block0.attn",
      "block0.mlp",
      "block1",
      "block1.attn",
      "block1.mlp",
    ]);
    expect(calls.every((call) => call.step === step)).toBe(true);
    expect(calls[2]!.macs).toBe(2 * model.macs.attention);
    expect(calls[0]!.macs).toBe(2 * 2 * model.macs.block);
    expect(calls[0]!.indicator).toBeTypeOf("function");
    expect(calls[1]!.indicator).toBeUndefined();
    expect(indicatorShape).toEqual([2, 16, 32]);
    // Branch sites carry their adaLN gate, (N, 1, hidden), distinct per site; block sites none.
    expect([...gates.keys()]).toEqual(["block0.attn", "block0.mlp", "block1.attn", "block1.mlp"]);
    expect(calls.filter((call) => call.gate).map((call) => call.gate!.shape)).toEqual(
      Array(4).fill([2, 1, 32]),
    );
    expect(gates.get("block0.attn")).not.toEqual(gates.get("block0.mlp"));
  });

  it("re-applies the current gate to what the hook returns (a zero branch = zeroed fc2)", async () => {
    const zeroMlp: SiteHook = {
      run: async (call) =>
        call.site.key === "block1.mlp"
          ? backend.tensor(new Float32Array(2 * 16 * 32), [2, 16, 32])
          : call.compute(),
    };
    const zeroed = new Map<string, HostArray>(weights);
    for (const key of ["blocks.1.mlp.fc2.weight", "blocks.1.mlp.fc2.bias"]) {
      const { shape, data } = weights.get(key)!;
      zeroed.set(key, { shape, data: new Float32Array(data.length) });
    }
    const reference = DiTModel.fromWeights(zeroed, config, backend);
    expect(await run(model, zeroMlp)).toEqual(await run(reference));
    expect(await run(model, zeroMlp)).not.toEqual(await run(model));
  });

  it("owns what the hook returns: a hook keeps copies across forwards, handing out a kept tensor is caught", async () => {
    const copy = backend.compile({ name: "copy", build: (_ops, [x]) => [x!] });
    const kept = new Map<string, Tensor>();
    const reuse = (handOutCopies: boolean): SiteHook => ({
      run: async (call) => {
        if (call.site.kind !== "attn" && call.site.kind !== "mlp") return call.compute();
        const hit = kept.get(call.site.key);
        if (hit) return handOutCopies ? (await copy.run([hit]))[0]! : hit;
        const value = await call.compute();
        kept.set(call.site.key, (await copy.run([value]))[0]!);
        return value;
      },
    });
    const first = await run(model, reuse(true));
    const second = await run(model, reuse(true)); // same inputs: reusing every branch changes nothing
    expect(second).toEqual(first);
    expect(first).toEqual(await run(model));
    await expect(run(model, reuse(false))).resolves.toEqual(first); // first hand-out of each kept tensor...
    await expect(run(model, reuse(false))).rejects.toThrow(/used after dispose/); // ...which the model disposed
  });

  it("applies a weighted sum from runBranch in its gated residual, leaving the sum's tensors to the hook", async () => {
    const combine = backend.compile({
      name: "combine",
      build: (ops, [a, b, p]) => [
        ops.add(
          ops.add(ops.mul(a!, ops.constant(1.5)), ops.mul(b!, ops.constant(-0.5))),
          ops.mul(p!, ops.constant(0.25)),
        ),
      ],
    });
    const prior = backend.tensor(
      Float32Array.from({ length: 32 }, (_, c) => c / 32 - 0.5),
      [32],
    ); // (D,)
    const held: Tensor[] = [];
    const branch = (call: SiteCall) => call.site.kind === "attn" || call.site.kind === "mlp";
    // 1.5 F - 0.5 F + 0.25 P = F + 0.25 P, once as a sum the model applies, once as a tensor.
    const summed: SiteHook = {
      run: (call) => call.compute(),
      runBranch: async (call) => {
        if (!branch(call)) return call.compute();
        const value = await call.compute();
        held.push(value);
        return {
          terms: [
            { tensor: value, weight: 1.5 },
            { tensor: value, weight: -0.5 },
            { tensor: prior, weight: 0.25 },
          ],
        };
      },
    };
    const combined: SiteHook = {
      run: async (call) => {
        if (!branch(call)) return call.compute();
        const value = await call.compute();
        const [out] = await combine.run([value, value, prior]);
        backend.dispose(value);
        return out!;
      },
    };
    const expected = await run(model, combined);
    const actual = await run(model, summed);
    actual.forEach((value, i) => {
      expect(value).toBeCloseTo(expected[i]!, 5);
    });
    expect(held.length).toBe(2 * config.depth);
    for (const tensor of held) await expect(backend.read(tensor)).resolves.toBeInstanceOf(Float32Array);
    // One term of weight 1: the value itself, exactly.
    const plain: SiteHook = {
      run: (call) => call.compute(),
      runBranch: async (call) => {
        if (!branch(call)) return call.compute();
        const value = await call.compute();
        held.push(value);
        return { terms: [{ tensor: value, weight: 1 }] };
      },
    };
    expect(await run(model, plain)).toEqual(await run(model));
    disposeAll(backend, [...held, prior]);
    combine.dispose();
  });

  it("lets a hook skip the whole block stack (TeaCache-style residual reuse)", async () => {
    const identity: SiteHook = {
      run: async (call) => (call.site.kind === "blocks" ? call.input : call.compute()),
    };
    const values = await run(model, identity);
    expect(values.every(Number.isFinite)).toBe(true);
    // Skipping each block is the same as skipping the stack (a returned input is not disposed twice).
    const identityBlocks: SiteHook = {
      run: async (call) => (call.site.kind === "block" ? call.input : call.compute()),
    };
    expect(await run(model, identityBlocks)).toEqual(values);
  });

  it("releases every intermediate, with or without a hook", async () => {
    const live = new Set<Tensor>();
    const tracking: Backend = {
      ...backend,
      name: backend.name,
      tensor: (data, shape) => {
        const t = backend.tensor(data, shape);
        live.add(t);
        return t;
      },
      dispose: (t) => {
        live.delete(t);
        backend.dispose(t);
      },
      compile: (unit) => {
        const executable = backend.compile(unit);
        return {
          run: async (inputs) => {
            const outputs = await executable.run(inputs);
            for (const output of outputs) live.add(output);
            return outputs;
          },
          dispose: () => executable.dispose(),
        };
      },
    };
    const tracked = DiTModel.fromWeights(weights, config, tracking);
    const parameters = live.size;
    const x = tracking.tensor(xData.slice(), xShape);
    const out = await tracked.forward(x, [1, 2], [0, 1]);
    expect(live.size).toBe(parameters + 2); // x and the output
    const reference = await tracking.read(out);
    tracking.dispose(out);
    const indicatorHook: SiteHook = {
      run: async (call) => {
        if (call.indicator) tracking.dispose(await call.indicator());
        return call.compute();
      },
    };
    tracking.dispose(await tracked.forward(x, [1, 2], [0, 1], { hook: indicatorHook }));
    expect(live.size).toBe(parameters + 1); // x
    // A hook that computes a branch twice (a calibration's shadow compute) and answers with the
    // second value; one that keeps what it computed and hands it back as a one-term sum; one that
    // answers with a value of its own: the same output, nothing leaked.
    const branch = (call: { site: { kind: string } }) =>
      call.site.kind === "attn" || call.site.kind === "mlp";
    const twice: SiteHook = {
      run: async (call) => {
        if (!branch(call)) return call.compute();
        tracking.dispose(await call.compute());
        return call.compute();
      },
    };
    const kept: Tensor[] = [];
    const keeping: SiteHook = {
      run: (call) => call.compute(),
      runBranch: async (call) => {
        const value = await call.compute();
        kept.push(value);
        return { terms: [{ tensor: value, weight: 1 }] };
      },
    };
    const own: SiteHook = {
      run: async (call) => {
        if (!branch(call)) return call.compute();
        const value = await call.compute();
        const data = await tracking.read(value);
        tracking.dispose(value);
        return tracking.tensor(data, value.shape);
      },
    };
    for (const hook of [twice, keeping, own]) {
      const result = await tracked.forward(x, [1, 2], [0, 1], { hook });
      const values = await tracking.read(result);
      tracking.dispose(result);
      values.forEach((value, i) => {
        expect(value).toBeCloseTo(reference[i]!, 5);
      });
      for (const tensor of kept.splice(0)) tracking.dispose(tensor);
      expect(live.size).toBe(parameters + 1); // x
    }
    tracking.dispose(x);
    tracked.dispose();
    expect(live.size).toBe(0);
  });

  it("rejects bad inputs with one-line errors", async () => {
    const x = backend.tensor(xData.slice(), xShape);
    await expect(
      model.forward(backend.tensor(new Float32Array(4 * 64), [1, 4, 8, 8]), [1, 2], [0, 1]),
    ).rejects.toThrow(/timesteps: expected 1 finite non-negative numbers/);
    await expect(
      model.forward(backend.tensor(new Float32Array(3 * 64), [1, 3, 8, 8]), [1], [0]),
    ).rejects.toThrow(/x: expected shape \[N, 4, 8, 8\] with N >= 1, got \[1, 3, 8, 8\]/);
    await expect(model.forward(x, [1, 2], [0, 11])).rejects.toThrow(
      /labels: expected 2 integers in \[0, 10\] \(10 = null class\)/,
    );
    await expect(model.forward(x, [1, Number.NaN], [0, 1])).rejects.toThrow(/timesteps/);
    await expect(
      model.forward(x, [1, 2], [0, 1], { step: { index: 0, count: 1, timestep: 1, rows: ["cond"] } }),
    ).rejects.toThrow(/options.step.rows: expected 2 entries/);
  });

  it("lists its cacheable sites", () => {
    expect(model.sites().map((site) => site.key)).toEqual([
      "block0.attn",
      "block0.mlp",
      "block1.attn",
      "block1.mlp",
    ]);
  });
});

describe("weight checks", () => {
  const without = (key: string) => new Map([...weights].filter(([k]) => k !== key));

  it("names a missing weight with its expected shape", () => {
    expect(() => DiTModel.fromWeights(without("blocks.1.attn.proj.bias"), config, backend)).toThrow(
      /^weights: missing weight "blocks.1.attn.proj.bias" \(expected shape \[32\], official layout\)$/,
    );
  });

  it("names an unexpected weight", () => {
    const extra = new Map(weights).set("blocks.2.attn.qkv.weight", {
      shape: [96, 32],
      data: new Float32Array(96 * 32),
    });
    expect(() => DiTModel.fromWeights(extra, config, backend)).toThrow(
      /unexpected weight "blocks.2.attn.qkv.weight"/,
    );
  });

  it("names a shape mismatch with both shapes", () => {
    const bad = new Map(weights).set("final_layer.linear.weight", {
      shape: [16, 32],
      data: new Float32Array(16 * 32),
    });
    expect(() => DiTModel.fromWeights(bad, config, backend)).toThrow(
      /weight "final_layer.linear.weight" has shape \[16, 32\], expected \[32, 32\] for this config/,
    );
    const table = new Map(weights).set("y_embedder.embedding_table.weight", {
      shape: [10, 32],
      data: new Float32Array(320),
    });
    expect(() => DiTModel.fromWeights(table, config, backend)).toThrow(/expected \[11, 32\]/);
  });

  it("computes pos_embed when absent and uses it when present", async () => {
    const withPositions = new Map(weights).set("pos_embed", {
      shape: [1, 16, 32],
      data: new Float32Array(16 * 32),
    });
    const zeroPositions = DiTModel.fromWeights(withPositions, config, backend);
    expect(await run(zeroPositions)).not.toEqual(await run(model));
  });
});

describe("DiTModel.load", () => {
  let directory: string;
  const entries = Object.fromEntries(weights);
  const snake = {
    input_size: 8,
    patch_size: 2,
    in_channels: 4,
    hidden_size: 32,
    depth: 2,
    num_heads: 4,
    mlp_ratio: 4,
    num_classes: 10,
    learn_sigma: true,
    class_dropout_prob: 0.1,
  };
  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), "dit-load-"));
  });
  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it("reads the config from __metadata__.config", async () => {
    const path = join(directory, "meta.safetensors");
    await writeFile(path, writeSafetensors(entries, { metadata: { config: JSON.stringify(snake) } }));
    const loaded = await DiTModel.load(path, { backend });
    expect(loaded.config).toEqual(config);
    expect(await run(loaded)).toEqual(await run(model));
  });

  it("falls back to the sibling .json, and says where to put a config when there is none", async () => {
    const path = join(directory, "plain.safetensors");
    await writeFile(path, writeSafetensors(entries));
    await expect(DiTModel.load(path, { backend })).rejects.toThrow(/no DiT config \(pass options.config/);
    await writeFile(join(directory, "plain.json"), JSON.stringify(snake));
    expect((await DiTModel.load(path, { backend })).config).toEqual(config);
    expect((await DiTModel.load(path, { backend, config: { ...config } })).config).toEqual(config);
  });

  it("reports a truncated file and a missing file on one line", async () => {
    const path = join(directory, "meta.safetensors");
    const bytes = await readFile(path);
    const truncated = join(directory, "truncated.safetensors");
    await writeFile(truncated, bytes.subarray(0, bytes.length - 100));
    const error = await DiTModel.load(truncated, { backend }).catch((e: Error) => e);
    expect(error).toMatchObject({ code: "BAD_FILE" });
    expect((error as Error).message).not.toContain("\n");
    await expect(DiTModel.load(join(directory, "absent.safetensors"), { backend })).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    await expect(DiTModel.load(path, { backend, layout: "no-such-layout" as never })).rejects.toThrow(
      /options.layout: expected one of official, diffusers, got "no-such-layout"/,
    );
  });
});
