import { readFile, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  type Backend,
  DitcacheError,
  type Executable,
  formatShape,
  type HostTensor,
  invalidArgument,
  type Ops,
  readSafetensorsFile,
  type Tensor,
  type Unit,
} from "@ditcache/core";
import {
  decoderWeightShapes,
  parseVaeConfig,
  SD_VAE_CONFIG,
  type VaeConfig,
  validateVaeConfig,
} from "./config.js";

/** File names of a diffusers VAE folder (`stabilityai/sd-vae-ft-ema`, or `vae/` of a pipeline). */
export const VAE_FILES = { config: "config.json", weights: "diffusion_pytorch_model.safetensors" } as const;

/** Options of {@link VaeDecoder.load}. */
export interface VaeLoadOptions {
  /** Where the weights live and the decoder runs. */
  backend: Backend;
  /** Overrides the config. @defaultValue the folder's config.json, else {@link SD_VAE_CONFIG} */
  config?: VaeConfig;
}

/** Options of {@link VaeDecoder.decode}. */
export interface VaeDecodeOptions {
  /** Clamp the images to [-1, 1] (what DiT's `save_image(..., value_range=(-1, 1))` does). @defaultValue true */
  clamp?: boolean;
}

/**
 * Attention names of diffusers before 0.14 (the sd-vae-ft-* files on the hub still use them):
 * old suffix -> current suffix.
 */
const LEGACY_ATTENTION: readonly (readonly [string, string])[] = [
  ["query", "to_q"],
  ["key", "to_k"],
  ["value", "to_v"],
  ["proj_attn", "to_out.0"],
];

/** Makes unit names unique per instance: two decoders never share a compiled form. */
let instances = 0;

/**
 * The Stable Diffusion VAE decoder (diffusers `AutoencoderKL.decode`), written once against
 * {@link Ops}: latents (N, 4, h, w) on DiT's scale are divided by the scaling factor (0.18215),
 * run through post_quant_conv and the decoder, and come out as (N, 3, 8h, 8w) images in [-1, 1].
 * Only `post_quant_conv.*` and `decoder.*` are read; the encoder tensors of a full autoencoder
 * file are skipped.
 *
 * @example
 * const vae = await VaeDecoder.load("~/.cache/ditcache/stabilityai/sd-vae-ft-ema/main", { backend });
 * const images = await vae.decode(latents, [n, 4, 32, 32]); // (n, 3, 256, 256) in [-1, 1]
 */
export class VaeDecoder {
  /** The validated config. */
  readonly config: VaeConfig;
  /** The backend holding the weights. */
  readonly backend: Backend;
  readonly #params: Record<string, Tensor>;
  readonly #executables = new Map<boolean, Executable>();
  readonly #id = ++instances;
  #disposed = false;

  private constructor(weights: ReadonlyMap<string, HostTensor>, config: VaeConfig, backend: Backend) {
    this.config = config;
    this.backend = backend;
    this.#params = {};
    for (const [key, value] of weights) this.#params[key] = backend.tensor(value.data.slice(), value.shape);
  }

  /**
   * Builds a decoder from host tensors named as in diffusers (current or pre-0.14 attention names;
   * 1x1-conv shaped attention weights are accepted). Keys outside `decoder.*` and
   * `post_quant_conv.*` are ignored.
   *
   * @throws DitcacheError MISSING_WEIGHT / SHAPE_MISMATCH / UNEXPECTED_WEIGHT naming the key.
   */
  static fromWeights(
    tensors: ReadonlyMap<string, HostTensor>,
    config: VaeConfig,
    backend: Backend,
    source = "weights",
  ): VaeDecoder {
    if (typeof backend?.compile !== "function") invalidArgument("backend", backend, "a Backend");
    const checked = validateVaeConfig(config);
    return new VaeDecoder(decoderWeights(tensors, checked, source), checked, backend);
  }

  /**
   * Loads a diffusers VAE: a folder holding `diffusion_pytorch_model.safetensors` (and
   * `config.json`), a pipeline folder with a `vae/` subfolder, or the `.safetensors` file itself.
   *
   * @throws DitcacheError NOT_FOUND naming the missing path, BAD_FILE, and the errors of
   *   {@link VaeDecoder.fromWeights}.
   */
  static async load(path: string, options: VaeLoadOptions): Promise<VaeDecoder> {
    if (typeof options?.backend?.compile !== "function") {
      invalidArgument("options.backend", options?.backend, "a Backend");
    }
    const { weights, config } = await locate(path);
    const parsed =
      options.config ??
      (config === undefined ? SD_VAE_CONFIG : parseVaeConfig(await readFile(config, "utf8"), config));
    const contents = await readSafetensorsFile(weights);
    return VaeDecoder.fromWeights(contents.tensors, parsed, options.backend, weights);
  }

  /**
   * Decodes latents (N, C, h, w) into images (N, outChannels, s h, s w), s = 2^(blocks - 1)
   * (8 for the SD VAE). A Float32Array is read with `shape`; a Tensor must belong to the
   * decoder's backend. The returned tensor belongs to the caller.
   *
   * @throws DitcacheError INVALID_ARGUMENT for a bad shape or a disposed decoder.
   */
  async decode(
    latents: Tensor | Float32Array,
    shape?: readonly number[],
    options: VaeDecodeOptions = {},
  ): Promise<Tensor> {
    if (this.#disposed)
      throw new DitcacheError("INVALID_ARGUMENT", "VaeDecoder: decode() called after dispose()");
    const actualShape = latents instanceof Float32Array ? shape : (shape ?? latents.shape);
    const c = this.config.latentChannels;
    if (
      !Array.isArray(actualShape) ||
      actualShape.length !== 4 ||
      actualShape[1] !== c ||
      !actualShape.every((d) => Number.isSafeInteger(d) && d > 0)
    ) {
      invalidArgument("shape", actualShape, `[N, ${c}, h, w] positive integers`);
    }
    const owned = latents instanceof Float32Array;
    if (owned && latents.length !== actualShape.reduce((a, b) => a * b, 1)) {
      invalidArgument(
        "latents.length",
        latents.length,
        `${actualShape.reduce((a, b) => a * b, 1)} values for shape ${formatShape(actualShape)}`,
      );
    }
    if (!owned && (latents.shape.length !== 4 || latents.shape.some((d, i) => d !== actualShape[i]))) {
      invalidArgument("latents.shape", latents.shape, formatShape(actualShape));
    }
    const input = owned ? this.backend.tensor(latents.slice(), actualShape) : latents;
    try {
      const [images] = await this.#executable(options.clamp ?? true).run([input]);
      return images!;
    } finally {
      if (owned) this.backend.dispose(input);
    }
  }

  /** Releases the weights and compiled forms. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const executable of this.#executables.values()) executable.dispose();
    for (const tensor of Object.values(this.#params)) this.backend.dispose(tensor);
  }

  #executable(clamp: boolean): Executable {
    let executable = this.#executables.get(clamp);
    if (executable === undefined) {
      executable = this.backend.compile(
        decoderUnit(`vae-decoder:${this.#id}:${clamp ? "clamp" : "raw"}`, this.config, this.#params, clamp),
      );
      this.#executables.set(clamp, executable);
    }
    return executable;
  }
}

async function locate(path: string): Promise<{ weights: string; config: string | undefined }> {
  const kind = await stat(path).then(
    (s) => (s.isDirectory() ? "dir" : s.isFile() ? "file" : "other"),
    () => "missing",
  );
  const exists = (p: string): Promise<boolean> =>
    stat(p).then(
      (s) => s.isFile(),
      () => false,
    );
  if (kind === "missing" || kind === "other") {
    throw new DitcacheError(
      "NOT_FOUND",
      `${path}: no such file or folder (expected a diffusers VAE folder or .safetensors file)`,
    );
  }
  let folder = kind === "file" ? dirname(path) : path;
  if (
    kind === "dir" &&
    !(await exists(join(folder, VAE_FILES.weights))) &&
    (await exists(join(folder, "vae", VAE_FILES.weights)))
  ) {
    folder = join(folder, "vae");
  }
  const weights = kind === "file" ? path : join(folder, VAE_FILES.weights);
  if (!(await exists(weights))) {
    throw new DitcacheError(
      "NOT_FOUND",
      `${weights}: missing (a diffusers VAE folder holds ${VAE_FILES.weights} and ${VAE_FILES.config})`,
    );
  }
  const config = join(folder, VAE_FILES.config);
  return { weights, config: (await exists(config)) ? config : undefined };
}

/** Renames legacy attention keys, reshapes 1x1-conv attention weights, checks every shape. */
function decoderWeights(
  tensors: ReadonlyMap<string, HostTensor>,
  config: VaeConfig,
  source: string,
): Map<string, HostTensor> {
  const expected = decoderWeightShapes(config);
  const out = new Map<string, HostTensor>();
  for (const [rawKey, tensor] of tensors) {
    if (!rawKey.startsWith("decoder.") && !rawKey.startsWith("post_quant_conv.")) continue;
    let key = rawKey;
    const match = /^(decoder\.mid_block\.attentions\.\d+)\.(.+)\.(weight|bias)$/.exec(rawKey);
    const renamed = LEGACY_ATTENTION.find(([legacy]) => legacy === match?.[2]);
    if (match !== null && renamed !== undefined) key = `${match[1]}.${renamed[1]}.${match[3]}`;
    const shape = expected.get(key);
    if (shape === undefined) {
      throw new DitcacheError(
        "UNEXPECTED_WEIGHT",
        `${source}: unexpected weight "${rawKey}" (not part of a decoder with block_out_channels [${config.blockOutChannels.join(", ")}], layers_per_block ${config.layersPerBlock})`,
      );
    }
    if (out.has(key)) {
      throw new DitcacheError(
        "UNEXPECTED_WEIGHT",
        `${source}: weight "${rawKey}" is present under both its old and new name`,
      );
    }
    // Attention projections stored as 1x1 convolutions ([C, C, 1, 1]) are linear layers.
    const squeezed =
      tensor.shape.length === 4 && shape.length === 2 && tensor.shape[2] === 1 && tensor.shape[3] === 1
        ? tensor.shape.slice(0, 2)
        : tensor.shape;
    if (squeezed.length !== shape.length || squeezed.some((d, i) => d !== shape[i])) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `${source}: weight "${rawKey}" has shape ${formatShape(tensor.shape)}, expected ${formatShape(shape)} for this config`,
      );
    }
    out.set(key, { ...tensor, shape: [...shape] });
  }
  for (const [key, shape] of expected) {
    if (!out.has(key)) {
      throw new DitcacheError(
        "MISSING_WEIGHT",
        `${source}: missing weight "${key}" (expected shape ${formatShape(shape)}, diffusers AutoencoderKL layout)`,
      );
    }
  }
  return out;
}

function decoderUnit(name: string, config: VaeConfig, params: Record<string, Tensor>, clamp: boolean): Unit {
  const groups = config.normGroups;
  const eps = 1e-6;
  return {
    name,
    params,
    build<T>(ops: Ops<T>, inputs: readonly T[], p: Readonly<Record<string, T>>): T[] {
      const w = (key: string): T => p[key]!;
      const norm = (x: T, key: string): T =>
        ops.groupNorm(x, groups, eps, w(`${key}.weight`), w(`${key}.bias`));
      const conv = (x: T, key: string, padding: number): T =>
        ops.conv2d(x, w(`${key}.weight`), w(`${key}.bias`), { padding });
      const resnet = (x: T, key: string): T => {
        let h = conv(ops.silu(norm(x, `${key}.norm1`)), `${key}.conv1`, 1);
        h = conv(ops.silu(norm(h, `${key}.norm2`)), `${key}.conv2`, 1);
        const shortcut =
          p[`${key}.conv_shortcut.weight`] === undefined ? x : conv(x, `${key}.conv_shortcut`, 0);
        return ops.add(shortcut, h);
      };
      const attention = (x: T, key: string): T => {
        const [n, c, height, width] = ops.shape(x) as [number, number, number, number];
        const tokens = ops.transpose(
          ops.reshape(norm(x, `${key}.group_norm`), [n, c, height * width]),
          [0, 2, 1],
        );
        const project = (name: string): T =>
          ops.reshape(ops.linear(tokens, w(`${key}.${name}.weight`), w(`${key}.${name}.bias`)), [
            n,
            1,
            height * width,
            c,
          ]);
        const mixed = ops.attention(project("to_q"), project("to_k"), project("to_v"), 1 / Math.sqrt(c));
        const out = ops.linear(
          ops.reshape(mixed, [n, height * width, c]),
          w(`${key}.to_out.0.weight`),
          w(`${key}.to_out.0.bias`),
        );
        return ops.add(x, ops.reshape(ops.transpose(out, [0, 2, 1]), [n, c, height, width]));
      };
      let x = ops.mul(inputs[0]!, ops.constant(1 / config.scalingFactor));
      x = conv(x, "post_quant_conv", 0);
      x = conv(x, "decoder.conv_in", 1);
      x = resnet(x, "decoder.mid_block.resnets.0");
      x = attention(x, "decoder.mid_block.attentions.0");
      x = resnet(x, "decoder.mid_block.resnets.1");
      const blocks = config.blockOutChannels.length;
      for (let i = 0; i < blocks; i++) {
        for (let j = 0; j <= config.layersPerBlock; j++) x = resnet(x, `decoder.up_blocks.${i}.resnets.${j}`);
        if (i < blocks - 1)
          x = conv(ops.upsampleNearest2d(x, 2), `decoder.up_blocks.${i}.upsamplers.0.conv`, 1);
      }
      x = conv(ops.silu(norm(x, "decoder.conv_norm_out")), "decoder.conv_out", 1);
      if (clamp) {
        // clamp(x, -1, 1) = x - relu(x - 1) + relu(-x - 1), from ops every backend has.
        const one = ops.constant(1);
        x = ops.add(ops.sub(x, ops.relu(ops.sub(x, one))), ops.relu(ops.sub(ops.constant(-1), x)));
      }
      return [x];
    },
  };
}
