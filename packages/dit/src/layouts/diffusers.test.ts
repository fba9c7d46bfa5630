// The diffusers layout (facebook/DiT-XL-2-256/transformer) on a tiny random DiT: the fixture is the
// official-layout tiny-dit.safetensors converted by tools/reference/make_xl_fixtures.py, so its
// forward must equal the PyTorch reference output stored in tiny-dit-io.safetensors.
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { readSafetensorsFile, writeSafetensors } from "@ditcache/core";
import { relativeError } from "@ditcache/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfigJson } from "../config.js";
import { DiTModel } from "../model.js";
import { WEIGHT_LAYOUTS } from "../weights.js";
import { DIFFUSERS_LAYOUT, parseDiffusersDiTConfig, readDiffusersDiT } from "./diffusers.js";
import { loadDiTFromDiffusers } from "./diffusers-load.js";

const fixture = (name: string) => fileURLToPath(new URL(`../__fixtures__/${name}`, import.meta.url));
const backend = createCpuBackend();
const folder = fixture("diffusers");
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "ditcache-diffusers-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("diffusers DiT layout", () => {
  it("reads config.json into the same config as the official twin", async () => {
    const official = parseConfigJson(await readFile(fixture("tiny-dit.json"), "utf8"));
    const parsed = parseDiffusersDiTConfig(
      await readFile(join(folder, "transformer", "config.json"), "utf8"),
    );
    expect(parsed).toEqual(official);
    expect(WEIGHT_LAYOUTS.diffusers).toBe(DIFFUSERS_LAYOUT);
  });

  it("reproduces the PyTorch reference forward from the model folder, the transformer folder and the file", async () => {
    const io = (await readSafetensorsFile(fixture("tiny-dit-io.safetensors"))).tensors;
    const x = io.get("x")!;
    for (const path of [
      folder,
      join(folder, "transformer"),
      join(folder, "transformer", "diffusion_pytorch_model.safetensors"),
    ]) {
      const model = await loadDiTFromDiffusers(path, { backend });
      const out = await model.forward(
        backend.tensor(x.data.slice(), x.shape),
        Array.from(io.get("t")!.data),
        Array.from(io.get("y")!.data),
      );
      expect(relativeError(await backend.read(out), io.get("out")!.data)).toBeLessThan(1e-5);
      backend.dispose(out);
      model.dispose();
    }
  });

  it("maps every tensor onto the official one (q/k/v fused in order)", async () => {
    const { tensors, config } = await readDiffusersDiT(folder);
    const official = (await readSafetensorsFile(fixture("tiny-dit.safetensors"))).tensors;
    const mapped = DIFFUSERS_LAYOUT.toOfficial(tensors, config);
    for (const [key, value] of official) {
      if (key === "pos_embed") continue;
      expect(mapped.get(key)?.shape, key).toEqual(value.shape);
      expect(Array.from(mapped.get(key)!.data), key).toEqual(Array.from(value.data));
    }
    expect(mapped.size).toBe(official.size - 1);
  });

  it("loads through DiTModel.load with layout 'diffusers' and an explicit config", async () => {
    const { config } = await readDiffusersDiT(folder);
    const model = await DiTModel.load(join(folder, "transformer", "diffusion_pytorch_model.safetensors"), {
      backend,
      layout: "diffusers",
      config,
    });
    expect(model.config.depth).toBe(2);
    model.dispose();
  });

  it("rejects per-block embedder copies that differ, naming the key", async () => {
    const { tensors } = await readDiffusersDiT(folder);
    const key = "transformer_blocks.1.norm1.emb.timestep_embedder.linear_2.bias";
    const changed = new Map(tensors);
    const data = tensors.get(key)!.data.slice();
    data[3] = data[3]! + 1e-3;
    changed.set(key, { shape: tensors.get(key)!.shape, data });
    const dir = join(scratch, "diverged");
    await cp(join(folder, "transformer"), dir, { recursive: true });
    await writeFile(
      join(dir, "diffusion_pytorch_model.safetensors"),
      writeSafetensors(
        Object.fromEntries([...changed].map(([k, v]) => [k, { shape: [...v.shape], data: v.data }])),
      ),
    );
    await expect(loadDiTFromDiffusers(dir, { backend })).rejects.toThrow(
      /transformer_blocks\.1\.norm1\.emb\.timestep_embedder\.linear_2\.bias" differs from block 0's copy at index 3/,
    );
  });

  it("rejects configs that are not a class-conditional adaLN-Zero DiT, and missing files", async () => {
    const base = JSON.parse(await readFile(join(folder, "transformer", "config.json"), "utf8"));
    expect(() => parseDiffusersDiTConfig({ ...base, norm_type: "ada_norm_single" })).toThrow(
      /norm_type "ada_norm_single"/,
    );
    expect(() => parseDiffusersDiTConfig({ ...base, cross_attention_dim: 768 })).toThrow(
      /cross_attention_dim 768/,
    );
    expect(() => parseDiffusersDiTConfig({ ...base, num_layers: undefined })).toThrow(/"num_layers"/);
    expect(() => parseDiffusersDiTConfig("{")).toThrow(/invalid JSON/);
    expect(parseDiffusersDiTConfig({ ...base, out_channels: 4 }).learnSigma).toBe(false);
    await expect(loadDiTFromDiffusers(join(scratch, "nothing-here"), { backend })).rejects.toThrow(
      /no such file or folder/,
    );
    await expect(loadDiTFromDiffusers(scratch, { backend })).rejects.toThrow(
      /diffusion_pytorch_model\.safetensors: missing \(a diffusers DiT folder/,
    );
  });

  it("describes DiT-XL/2 256 from the hub's config.json", () => {
    const config = parseDiffusersDiTConfig({
      _class_name: "Transformer2DModel",
      activation_fn: "gelu-approximate",
      attention_bias: true,
      attention_head_dim: 72,
      in_channels: 4,
      norm_elementwise_affine: false,
      norm_type: "ada_norm_zero",
      num_attention_heads: 16,
      num_embeds_ada_norm: 1000,
      num_layers: 28,
      out_channels: 8,
      patch_size: 2,
      sample_size: 32,
    });
    expect(config).toMatchObject({
      inputSize: 32,
      patchSize: 2,
      hiddenSize: 1152,
      depth: 28,
      numHeads: 16,
      numClasses: 1000,
      learnSigma: true,
    });
  });
});
