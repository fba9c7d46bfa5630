import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readSafetensors, writeSafetensors } from "@ditcache/core";
import { randomDiTWeights, TINY_DIT_CONFIG } from "@ditcache/dit/testing";
import { beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../../..", import.meta.url));
const main = join(root, "apps/cli/src/main.ts");
const fixture = join(root, "packages/dit/src/__fixtures__/tiny-dit.safetensors");

/** Runs the real CLI in a child process; returns exit code and output. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ["--conditions=source", "--import", "tsx", main, ...args],
      {
        cwd: root,
        timeout: 110_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failure.code ?? -1, stdout: failure.stdout ?? "", stderr: failure.stderr ?? "" };
  }
}

/** The error line: exactly one line starting "ditcache: error:" and no stack trace. */
function errorLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines.filter((line) => line.startsWith("ditcache: error:"))).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  return lines.find((line) => line.startsWith("ditcache: error:"))!;
}

let dir: string;
let grayModel: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ditcache-cli-"));
  // A 1-channel pixel-space model (like the demo model) so `sample` can write a PNG.
  const config = { ...TINY_DIT_CONFIG, inChannels: 1 };
  const weights = Object.fromEntries(randomDiTWeights(config, 7, 0.5));
  grayModel = join(dir, "gray.safetensors");
  await writeFile(
    grayModel,
    writeSafetensors(weights, {
      metadata: {
        config: JSON.stringify({
          input_size: 8,
          patch_size: 2,
          in_channels: 1,
          hidden_size: 32,
          depth: 2,
          num_heads: 4,
          mlp_ratio: 4,
          num_classes: 10,
          learn_sigma: true,
          class_dropout_prob: 0.1,
        }),
      },
    }),
  );
});

describe("ditcache CLI", () => {
  it("samples the fixture model to a valid safetensors file", async () => {
    const out = join(dir, "latents.safetensors");
    const { code, stdout } = await cli(
      "sample",
      "--model",
      fixture,
      "--backend",
      "cpu",
      "--labels",
      "1,2",
      "--steps",
      "4",
      "--out",
      out,
    );
    expect(code).toBe(0);
    expect(stdout).toContain("wrote");
    const { tensors } = readSafetensors(new Uint8Array(await readFile(out)));
    expect(tensors.get("samples")?.shape).toEqual([2, 4, 8, 8]);
    expect(tensors.get("samples")!.data.every(Number.isFinite)).toBe(true);
  });

  it("samples a pixel-space model to a valid PNG, cached", async () => {
    const out = join(dir, "grid.png");
    const { code, stdout } = await cli(
      "sample",
      "--model",
      grayModel,
      "--backend",
      "cpu",
      "--labels",
      "0-3",
      "--steps",
      "4",
      "--cache",
      "fora:interval=2",
      "--corrector",
      "taylor:order=1",
      "--out",
      out,
    );
    expect(code).toBe(0);
    expect(stdout).toMatch(/caching level/);
    const png = await readFile(out);
    expect([...png.subarray(0, 8)]).toEqual([137, 80, 78, 71, 13, 10, 26, 10]);
    expect(png.subarray(12, 16).toString("latin1")).toBe("IHDR");
  });

  it("samples a latent model from a diffusers folder and decodes it with a VAE folder to a PNG", async () => {
    const out = join(dir, "latent.png");
    const { code, stdout } = await cli(
      "sample",
      "--model",
      join(root, "packages/dit/src/__fixtures__/diffusers"),
      "--backend",
      "cpu",
      "--labels",
      "1,2",
      "--steps",
      "4",
      "--cache",
      "fora:interval=2",
      "--vae",
      join(root, "packages/vae/src/__fixtures__/tiny-vae"),
      "--offline",
      "--out",
      out,
    );
    expect(code).toBe(0);
    expect(stdout).toContain("wrote");
    const png = await readFile(out);
    expect(png.subarray(12, 16).toString("latin1")).toBe("IHDR");
  });

  it("a hub model missing offline is a one-line error saying what to download and where", async () => {
    const { code, stderr } = await cli(
      "sample",
      "--model",
      "facebook/DiT-XL-2-256",
      "--backend",
      "cpu",
      "--offline",
      "--cache-dir",
      join(dir, "hub"),
    );
    expect(code).not.toBe(0);
    expect(errorLine(stderr)).toMatch(
      /https:\/\/huggingface\.co\/facebook\/DiT-XL-2-256\/resolve\/main\/.* save it as .*hub/,
    );
  });

  it("info describes a weights file", async () => {
    const { code, stdout } = await cli("info", fixture);
    expect(code).toBe(0);
    expect(stdout).toMatch(/parameters\s+183200/);
    expect(stdout).toMatch(/"depth":2/);
  });

  it("info describes a priors file: what it is for and what its closed loop chose", async () => {
    const priors = join(root, "models/priors/mnist-dit-fora2-ddim20.safetensors");
    const { code, stdout } = await cli("info", priors);
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /EOC priors \(format version 2\) for model [0-9a-f]{16}, base policy fora:interval=2/,
    );
    expect(stdout).toMatch(/ddim 20 steps \(ddim20\), cfg 4/);
    expect(stdout).toMatch(/12 sites, 120 reused cells, channel granularity, F16/);
    expect(stdout.match(/<- chosen/g)).toHaveLength(1);
    expect(stdout).not.toMatch(/ditcache-eoc-priors/); // the header is described, not dumped
    const json = JSON.parse((await cli("info", "--json", priors)).stdout);
    expect(json.priors.basePolicy).toBe("fora:interval=2");
  });

  it("a truncated file is a one-line error", async () => {
    const bytes = await readFile(fixture);
    const truncated = join(dir, "truncated.safetensors");
    await writeFile(truncated, bytes.subarray(0, bytes.length - 100));
    const { code, stderr } = await cli(
      "sample",
      "--model",
      truncated,
      "--backend",
      "cpu",
      "--out",
      join(dir, "x.safetensors"),
    );
    expect(code).not.toBe(0);
    expect(errorLine(stderr)).toMatch(/truncated\.safetensors/);
  });

  it("a corrupted header is a one-line error", async () => {
    const bytes = new Uint8Array(await readFile(fixture));
    bytes[10] = 0x7b; // breaks the JSON header
    bytes[11] = 0x7b;
    const corrupted = join(dir, "corrupted.safetensors");
    await writeFile(corrupted, bytes);
    const { code, stderr } = await cli("info", corrupted);
    expect(code).not.toBe(0);
    expect(errorLine(stderr)).toMatch(/corrupted\.safetensors/);
  });

  it("a wrong key set and a shape mismatch name the key", async () => {
    const { tensors, metadata } = readSafetensors(new Uint8Array(await readFile(fixture)));
    const entries = Object.fromEntries(
      [...tensors].map(([key, tensor]) => [key, { shape: tensor.shape, data: tensor.data }]),
    );
    const renamed = { ...entries, "blocks.0.attn.qkv.weightX": entries["blocks.0.attn.qkv.weight"]! };
    delete (renamed as Record<string, unknown>)["blocks.0.attn.qkv.weight"];
    const wrongKeys = join(dir, "wrong-keys.safetensors");
    await writeFile(wrongKeys, writeSafetensors(renamed, { metadata }));
    const missing = await cli(
      "sample",
      "--model",
      wrongKeys,
      "--backend",
      "cpu",
      "--out",
      join(dir, "y.safetensors"),
    );
    expect(missing.code).not.toBe(0);
    expect(errorLine(missing.stderr)).toMatch(/blocks\.0\.attn\.qkv\.weight/);

    const bias = entries["final_layer.linear.bias"]!;
    const reshaped = {
      ...entries,
      "final_layer.linear.bias": { shape: [bias.data.length - 1], data: bias.data.subarray(1) },
    };
    const wrongShape = join(dir, "wrong-shape.safetensors");
    await writeFile(wrongShape, writeSafetensors(reshaped, { metadata }));
    const mismatch = await cli(
      "sample",
      "--model",
      wrongShape,
      "--backend",
      "cpu",
      "--out",
      join(dir, "z.safetensors"),
    );
    expect(mismatch.code).not.toBe(0);
    expect(errorLine(mismatch.stderr)).toMatch(/final_layer\.linear\.bias/);
  });

  it("--eoc alone corrects the base policy its priors were made for; one it does not fit is refused", async () => {
    const priors = join(root, "models/priors/mnist-dit-fora2-ddim20.safetensors");
    const out = join(dir, "eoc.png");
    const inferred = await cli("sample", "--labels", "3,4", "--eoc", priors, "--out", out);
    expect(inferred.code).toBe(0);
    expect(inferred.stdout).toMatch(/cache fora:interval=2 \+ eoc:mode=trend.*caching level 50\.0%/);
    const other = await cli("sample", "--labels", "3", "--cache", "fora:interval=3", "--eoc", priors);
    expect(errorLine(other.stderr)).toMatch(
      /base policy differs: the priors were made for "fora:interval=2"/,
    );
    const off = await cli("sample", "--labels", "3", "--cache", "none", "--eoc", priors);
    expect(errorLine(off.stderr)).toMatch(/--eoc needs a cache policy to correct/);
  });

  it("a negative step count, an unknown policy and an unknown command are one-line errors", async () => {
    const steps = await cli("sample", "--model", fixture, "--backend", "cpu", "--steps", "-3");
    expect(steps.code).not.toBe(0);
    expect(errorLine(steps.stderr)).toMatch(/--steps: expected an integer in \[1, 1000\], got "-3"/);
    const policy = await cli("sample", "--model", fixture, "--backend", "cpu", "--cache", "fora:intervall=2");
    expect(policy.code).not.toBe(0);
    expect(errorLine(policy.stderr)).toMatch(/interval/);
    const unknown = await cli("smaple");
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown command "smaple"/);
  });
});
