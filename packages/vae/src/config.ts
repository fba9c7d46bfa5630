import { DitcacheError, parseJsonObject } from "@ditcache/core";

/** Hyper-parameters of the decoder half of a diffusers `AutoencoderKL` (camelCase). */
export interface VaeConfig {
  /** Channels of the latent (4 for the SD VAE). */
  readonly latentChannels: number;
  /** Channels of the decoded image (3). */
  readonly outChannels: number;
  /** Encoder order, as `block_out_channels` (SD: [128, 256, 512, 512]); the decoder walks it reversed. */
  readonly blockOutChannels: readonly number[];
  /** ResNet layers per encoder block; decoder blocks have one more (SD: 2, so 3 per up block). */
  readonly layersPerBlock: number;
  /** GroupNorm groups (SD: 32). */
  readonly normGroups: number;
  /** Latents are divided by it before decoding (SD: 0.18215, what DiT's sample.py uses). */
  readonly scalingFactor: number;
}

/** The config of `stabilityai/sd-vae-ft-ema` and `-mse` (the VAE of DiT). */
export const SD_VAE_CONFIG: VaeConfig = Object.freeze({
  latentChannels: 4,
  outChannels: 3,
  blockOutChannels: Object.freeze([128, 256, 512, 512]),
  layersPerBlock: 2,
  normGroups: 32,
  scalingFactor: 0.18215,
});

const positive = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value > 0;

/**
 * Checks a config and returns it frozen.
 *
 * @throws DitcacheError INVALID_ARGUMENT naming the first bad field.
 */
export function validateVaeConfig(config: VaeConfig, name = "config"): VaeConfig {
  const bad = (fieldName: string, got: unknown, expected: string): never => {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `${name}.${fieldName}: expected ${expected}, got ${JSON.stringify(got) ?? String(got)}`,
    );
  };
  if (typeof config !== "object" || config === null) bad("", config, "an object");
  for (const key of ["latentChannels", "outChannels", "layersPerBlock", "normGroups"] as const) {
    if (!positive(config[key])) bad(key, config[key], "a positive integer");
  }
  const channels = config.blockOutChannels;
  if (!Array.isArray(channels) || channels.length === 0 || !channels.every(positive)) {
    bad("blockOutChannels", channels, "a non-empty array of positive integers");
  }
  for (const c of channels) {
    if (c % config.normGroups !== 0)
      bad("normGroups", config.normGroups, `a divisor of every block width (${c})`);
  }
  if (
    typeof config.scalingFactor !== "number" ||
    !(config.scalingFactor > 0) ||
    !Number.isFinite(config.scalingFactor)
  ) {
    bad("scalingFactor", config.scalingFactor, "a positive number");
  }
  return Object.freeze({
    latentChannels: config.latentChannels,
    outChannels: config.outChannels,
    blockOutChannels: Object.freeze([...channels]),
    layersPerBlock: config.layersPerBlock,
    normGroups: config.normGroups,
    scalingFactor: config.scalingFactor,
  });
}

/**
 * Parses a diffusers `AutoencoderKL` `config.json` (`latent_channels`, `out_channels`,
 * `block_out_channels`, `layers_per_block`, `norm_num_groups`, `scaling_factor`). Missing fields
 * take the SD VAE's values ({@link SD_VAE_CONFIG}): old sd-vae-ft-* configs have no
 * `scaling_factor`.
 *
 * @throws DitcacheError BAD_FILE for invalid JSON or another model class; INVALID_ARGUMENT for a bad field.
 */
export function parseVaeConfig(source: string | Record<string, unknown>, name = "config.json"): VaeConfig {
  const raw = parseJsonObject(source, name, "a JSON object (a diffusers AutoencoderKL config)");
  const record = raw;
  if (record._class_name !== undefined && record._class_name !== "AutoencoderKL") {
    throw new DitcacheError(
      "BAD_FILE",
      `${name}: _class_name ${JSON.stringify(record._class_name)}, expected "AutoencoderKL"`,
    );
  }
  if (record.act_fn !== undefined && record.act_fn !== "silu") {
    throw new DitcacheError(
      "UNSUPPORTED",
      `${name}: act_fn ${JSON.stringify(record.act_fn)}, expected "silu"`,
    );
  }
  const pick = <T>(key: string, fallback: T): T => (record[key] ?? fallback) as T;
  return validateVaeConfig(
    {
      latentChannels: pick("latent_channels", SD_VAE_CONFIG.latentChannels),
      outChannels: pick("out_channels", SD_VAE_CONFIG.outChannels),
      blockOutChannels: pick("block_out_channels", SD_VAE_CONFIG.blockOutChannels),
      layersPerBlock: pick("layers_per_block", SD_VAE_CONFIG.layersPerBlock),
      normGroups: pick("norm_num_groups", SD_VAE_CONFIG.normGroups),
      scalingFactor: pick("scaling_factor", SD_VAE_CONFIG.scalingFactor),
    },
    name,
  );
}

/** Every decoder tensor (post_quant_conv.*, decoder.*) with its shape, in the diffusers names. */
export function decoderWeightShapes(config: VaeConfig): Map<string, readonly number[]> {
  const shapes = new Map<string, readonly number[]>();
  const conv = (key: string, out: number, inputs: number, kernel: number): void => {
    shapes.set(`${key}.weight`, [out, inputs, kernel, kernel]);
    shapes.set(`${key}.bias`, [out]);
  };
  const norm = (key: string, channels: number): void => {
    shapes.set(`${key}.weight`, [channels]);
    shapes.set(`${key}.bias`, [channels]);
  };
  const resnet = (key: string, inputs: number, out: number): void => {
    norm(`${key}.norm1`, inputs);
    conv(`${key}.conv1`, out, inputs, 3);
    norm(`${key}.norm2`, out);
    conv(`${key}.conv2`, out, out, 3);
    if (inputs !== out) conv(`${key}.conv_shortcut`, out, inputs, 1);
  };
  const latent = config.latentChannels;
  const reversed = [...config.blockOutChannels].reverse();
  const top = reversed[0]!;
  conv("post_quant_conv", latent, latent, 1);
  conv("decoder.conv_in", top, latent, 3);
  resnet("decoder.mid_block.resnets.0", top, top);
  const attention = "decoder.mid_block.attentions.0";
  norm(`${attention}.group_norm`, top);
  for (const name of ["to_q", "to_k", "to_v", "to_out.0"]) {
    shapes.set(`${attention}.${name}.weight`, [top, top]);
    shapes.set(`${attention}.${name}.bias`, [top]);
  }
  resnet("decoder.mid_block.resnets.1", top, top);
  let previous = top;
  reversed.forEach((channels, i) => {
    for (let j = 0; j <= config.layersPerBlock; j++) {
      resnet(`decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? previous : channels, channels);
    }
    if (i < reversed.length - 1) conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, channels, channels, 3);
    previous = channels;
  });
  norm("decoder.conv_norm_out", config.blockOutChannels[0]!);
  conv("decoder.conv_out", config.outChannels, config.blockOutChannels[0]!, 3);
  return shapes;
}
