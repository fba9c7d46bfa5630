// Parity with the PyTorch reference decoder (tools/reference/sd_vae.py) on random weights written by
// tools/reference/make_xl_fixtures.py in the diffusers AutoencoderKL layout.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { type HostTensor, readSafetensorsFile, writeSafetensors } from "@ditcache/core";
import { relativeError } from "@ditcache/core/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decoderWeightShapes, parseVaeConfig, SD_VAE_CONFIG } from "./config.js";
import { VaeDecoder } from "./decoder.js";

const fixture = (name: string) => fileURLToPath(new URL(`./__fixtures__/${name}`, import.meta.url));
const backend = createCpuBackend();
let io: Map<string, HostTensor>;
let weights: Map<string, HostTensor>;
let scratch: string;

beforeAll(async () => {
  io = (await readSafetensorsFile(fixture("tiny-vae-io.safetensors"))).tensors;
  weights = (await readSafetensorsFile(fixture("tiny-vae/diffusion_pytorch_model.safetensors"))).tensors;
  scratch = await mkdtemp(join(tmpdir(), "ditcache-vae-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function decodeWith(decoder: VaeDecoder, clamp: boolean): Promise<Float32Array> {
  const latents = io.get("latents")!;
  const out = await decoder.decode(latents.data, latents.shape, { clamp });
  try {
    expect(out.shape).toEqual(io.get("decoded")!.shape);
    return await backend.read(out);
  } finally {
    backend.dispose(out);
  }
}

function toEntries(map: ReadonlyMap<string, HostTensor>) {
  return Object.fromEntries([...map].map(([k, v]) => [k, { shape: [...v.shape], data: v.data }]));
}

describe("VaeDecoder vs the PyTorch reference", () => {
  it("decodes within 1e-4 of PyTorch, raw and clamped to [-1, 1]", async () => {
    const decoder = await VaeDecoder.load(fixture("tiny-vae"), { backend });
    expect(decoder.config.blockOutChannels).toEqual([32, 64]);
    const raw = await decodeWith(decoder, false);
    expect(relativeError(raw, io.get("decoded")!.data)).toBeLessThan(1e-4);
    const images = await decodeWith(decoder, true);
    expect(relativeError(images, io.get("images")!.data)).toBeLessThan(1e-4);
    expect(Math.max(...images)).toBeLessThanOrEqual(1);
    expect(Math.min(...images)).toBeGreaterThanOrEqual(-1);
    // the fixture reaches past [-1, 1], so the clamp is exercised
    expect(io.get("decoded")!.data.some((v) => Math.abs(v) > 1)).toBe(true);
    decoder.dispose();
  });

  it("loads pre-0.14 attention names (query/key/value/proj_attn) as 1x1 convs, from the file path", async () => {
    const legacy = new Map<string, HostTensor>();
    for (const [key, value] of weights) {
      const renamed = key
        .replace(/attentions\.0\.to_q\./, "attentions.0.query.")
        .replace(/attentions\.0\.to_k\./, "attentions.0.key.")
        .replace(/attentions\.0\.to_v\./, "attentions.0.value.")
        .replace(/attentions\.0\.to_out\.0\./, "attentions.0.proj_attn.");
      const conv =
        renamed !== key && value.shape.length === 2 ? { ...value, shape: [...value.shape, 1, 1] } : value;
      legacy.set(renamed, conv);
    }
    const file = join(scratch, "legacy.safetensors");
    await writeFile(file, writeSafetensors(toEntries(legacy)));
    const config = parseVaeConfig(await readFile(fixture("tiny-vae/config.json"), "utf8"));
    const decoder = await VaeDecoder.load(file, { backend, config });
    expect(relativeError(await decodeWith(decoder, false), io.get("decoded")!.data)).toBeLessThan(1e-4);
    decoder.dispose();
  });

  it("names missing, unexpected and mis-shaped weights, and bad inputs", async () => {
    const config = parseVaeConfig({ block_out_channels: [32, 64], layers_per_block: 1, norm_num_groups: 8 });
    const without = new Map(weights);
    without.delete("decoder.up_blocks.1.resnets.1.conv2.bias");
    expect(() => VaeDecoder.fromWeights(without, config, backend)).toThrow(
      /missing weight "decoder\.up_blocks\.1\.resnets\.1\.conv2\.bias"/,
    );
    const extra = new Map(weights);
    extra.set("decoder.up_blocks.1.resnets.2.conv1.bias", {
      shape: [32],
      data: new Float32Array(32),
      dtype: "F32",
    } as HostTensor);
    expect(() => VaeDecoder.fromWeights(extra, config, backend)).toThrow(
      /unexpected weight "decoder\.up_blocks\.1\.resnets\.2\.conv1\.bias"/,
    );
    expect(() => VaeDecoder.fromWeights(weights, SD_VAE_CONFIG, backend)).toThrow(/has shape .* expected/);
    const decoder = VaeDecoder.fromWeights(weights, config, backend);
    await expect(decoder.decode(new Float32Array(3 * 8 * 8), [1, 3, 8, 8])).rejects.toThrow(
      /shape: expected \[N, 4, h, w\]/,
    );
    await expect(decoder.decode(new Float32Array(5), [1, 4, 8, 8])).rejects.toThrow(/latents\.length/);
    decoder.dispose();
    await expect(decoder.decode(new Float32Array(256), [1, 4, 8, 8])).rejects.toThrow(/after dispose/);
    await expect(VaeDecoder.load(join(scratch, "missing"), { backend })).rejects.toThrow(
      /no such file or folder/,
    );
    await expect(VaeDecoder.load(scratch, { backend })).rejects.toThrow(
      /diffusion_pytorch_model\.safetensors: missing/,
    );
  });

  it("knows the SD VAE's decoder tensors (sd-vae-ft-ema: 138 decoder + 2 post_quant_conv)", () => {
    const shapes = decoderWeightShapes(SD_VAE_CONFIG);
    expect(shapes.get("decoder.conv_in.weight")).toEqual([512, 4, 3, 3]);
    expect(shapes.get("decoder.up_blocks.2.resnets.0.conv_shortcut.weight")).toEqual([256, 512, 1, 1]);
    expect(shapes.get("decoder.up_blocks.3.resnets.0.conv_shortcut.weight")).toEqual([128, 256, 1, 1]);
    expect(shapes.has("decoder.up_blocks.3.upsamplers.0.conv.weight")).toBe(false);
    expect(shapes.get("decoder.conv_out.weight")).toEqual([3, 128, 3, 3]);
    let count = 0;
    for (const shape of shapes.values()) count += shape.reduce((a, b) => a * b, 1);
    // counted on tools/reference/sd_vae.py's VaeDecoderModel with the SD config (post_quant_conv included)
    expect(count).toBe(49_490_199);
    expect(shapes.size).toBe(140);
  });

  it("parses diffusers configs, falling back to the SD VAE's values", () => {
    expect(parseVaeConfig({ _class_name: "AutoencoderKL" })).toEqual(SD_VAE_CONFIG);
    expect(() => parseVaeConfig({ _class_name: "UNet2DModel" })).toThrow(/expected "AutoencoderKL"/);
    expect(() => parseVaeConfig({ block_out_channels: [30] })).toThrow(/normGroups/);
    expect(() => parseVaeConfig("nope")).toThrow(/invalid JSON/);
  });
});
