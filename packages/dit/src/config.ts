import { DitcacheError, parseJsonObject } from "@ditcache/core";

/**
 * Hyper-parameters of a DiT, as in facebookresearch/DiT `DiT(...)` (camelCase).
 * Latent models see `inputSize = imageSize / 8` with 4 channels.
 */
export interface DiTConfig {
  /** Side of the (square) input, in pixels of the latent. */
  readonly inputSize: number;
  /** Side of a patch; `inputSize` must be a multiple of it. */
  readonly patchSize: number;
  /** Channels of the input. */
  readonly inChannels: number;
  /** Width D of the token stream. */
  readonly hiddenSize: number;
  /** Number of DiT blocks. */
  readonly depth: number;
  /** Attention heads; must divide `hiddenSize`. */
  readonly numHeads: number;
  /** MLP hidden width = floor(hiddenSize * mlpRatio). */
  readonly mlpRatio: number;
  /** Number of class labels; label `numClasses` is the null (unconditional) class. */
  readonly numClasses: number;
  /** When true the model outputs 2 * inChannels channels: eps, then the variance interpolation v. */
  readonly learnSigma: boolean;
  /** Label dropout of training; > 0 means the embedding table has a null-class row. */
  readonly classDropoutProb: number;
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0;
}

function bad(field: string, got: unknown, expected: string): never {
  throw new DitcacheError(
    "INVALID_ARGUMENT",
    `config.${field}: expected ${expected}, got ${typeof got === "string" ? JSON.stringify(got) : String(got)}`,
  );
}

/**
 * Checks a config and returns it frozen.
 *
 * @throws DitcacheError INVALID_ARGUMENT naming the first bad field and what it should be.
 */
export function validateConfig(config: DiTConfig): DiTConfig {
  if (typeof config !== "object" || config === null) bad("", config, "an object");
  for (const field of [
    "inputSize",
    "patchSize",
    "inChannels",
    "hiddenSize",
    "depth",
    "numHeads",
    "numClasses",
  ] as const) {
    if (!isPositiveInteger(config[field])) bad(field, config[field], "a positive integer");
  }
  if (config.inputSize % config.patchSize !== 0) {
    bad("patchSize", config.patchSize, `a divisor of inputSize ${config.inputSize}`);
  }
  if (config.hiddenSize % config.numHeads !== 0) {
    bad("numHeads", config.numHeads, `a divisor of hiddenSize ${config.hiddenSize}`);
  }
  // The 2-D sin-cos position embedding splits D in halves, each half in sin/cos halves.
  if (config.hiddenSize % 4 !== 0) bad("hiddenSize", config.hiddenSize, "a multiple of 4");
  if (typeof config.mlpRatio !== "number" || !(config.mlpRatio > 0) || !Number.isFinite(config.mlpRatio)) {
    bad("mlpRatio", config.mlpRatio, "a positive number");
  }
  if (Math.floor(config.hiddenSize * config.mlpRatio) < 1)
    bad("mlpRatio", config.mlpRatio, "hiddenSize * mlpRatio >= 1");
  if (typeof config.learnSigma !== "boolean") bad("learnSigma", config.learnSigma, "a boolean");
  const dropout = config.classDropoutProb;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1))
    bad("classDropoutProb", dropout, "a number in [0, 1)");
  return Object.freeze({
    inputSize: config.inputSize,
    patchSize: config.patchSize,
    inChannels: config.inChannels,
    hiddenSize: config.hiddenSize,
    depth: config.depth,
    numHeads: config.numHeads,
    mlpRatio: config.mlpRatio,
    numClasses: config.numClasses,
    learnSigma: config.learnSigma,
    classDropoutProb: config.classDropoutProb,
  });
}

const JSON_FIELDS = {
  input_size: "inputSize",
  patch_size: "patchSize",
  in_channels: "inChannels",
  hidden_size: "hiddenSize",
  depth: "depth",
  num_heads: "numHeads",
  mlp_ratio: "mlpRatio",
  num_classes: "numClasses",
  learn_sigma: "learnSigma",
  class_dropout_prob: "classDropoutProb",
} as const satisfies Record<string, keyof DiTConfig>;

/** Defaults of the official `DiT.__init__` for fields a JSON config may leave out. */
const JSON_DEFAULTS: Partial<Record<keyof DiTConfig, number | boolean>> = {
  inChannels: 4,
  mlpRatio: 4,
  numClasses: 1000,
  learnSigma: true,
  classDropoutProb: 0.1,
};

/**
 * Parses a config written by the Python tools (snake_case keys, as `DiT(**config)` takes them;
 * camelCase keys are accepted too). Missing optional fields take the official defaults
 * (in_channels 4, mlp_ratio 4, num_classes 1000, learn_sigma true, class_dropout_prob 0.1);
 * unknown keys are ignored so files may carry extra notes.
 *
 * @param source - JSON text or an already parsed object.
 * @param name - What to call the source in errors (a path).
 * @throws DitcacheError BAD_FILE for invalid JSON, INVALID_ARGUMENT for a bad field.
 */
export function parseConfigJson(source: string | Record<string, unknown>, name = "config"): DiTConfig {
  const raw = parseJsonObject(source, name, "a JSON object with DiT config fields");
  const record = raw;
  const config: Record<string, unknown> = { ...JSON_DEFAULTS };
  for (const [snake, camel] of Object.entries(JSON_FIELDS)) {
    if (record[snake] !== undefined) config[camel] = record[snake];
    else if (record[camel] !== undefined) config[camel] = record[camel];
  }
  for (const required of ["input_size", "patch_size", "hidden_size", "depth", "num_heads"] as const) {
    if (config[JSON_FIELDS[required]] === undefined) {
      throw new DitcacheError("BAD_FILE", `${name}: missing required field "${required}"`);
    }
  }
  return validateConfig(config as unknown as DiTConfig);
}

/** Tokens per image: (inputSize / patchSize)^2. */
export function tokenCount(config: DiTConfig): number {
  return (config.inputSize / config.patchSize) ** 2;
}

/** Channels the model outputs: 2C with a learned variance, C otherwise. */
export function outChannels(config: DiTConfig): number {
  return config.learnSigma ? config.inChannels * 2 : config.inChannels;
}

/** MLP hidden width, `int(hidden_size * mlp_ratio)` as in the official block. */
export function mlpHiddenSize(config: DiTConfig): number {
  return Math.floor(config.hiddenSize * config.mlpRatio);
}

/** Whether the label table has the null-class row (`class_dropout_prob > 0`, needed for CFG). */
export function hasNullClass(config: DiTConfig): boolean {
  return config.classDropoutProb > 0;
}
