import {
  type Backend,
  contentDigest,
  DitcacheError,
  type Executable,
  type HostTensor,
  invalidArgument,
  type Ops,
  readSafetensors,
  type SafetensorsContents,
  type Tensor,
  type Unit,
} from "@ditcache/core";
import type { FeatureExtraction, FeatureExtractor } from "./feature-extractor.js";
import { readBytes } from "./read-bytes.js";

/**
 * One layer of the classifier's architecture, as tools/train/common.py writes it into the
 * safetensors `__metadata__["architecture"]` JSON (`{"input": [1, 32, 32], "layers": [...]}`).
 * Weights are named like a PyTorch state dict: `<name>.weight`, `<name>.bias`. The JSON's other
 * fields (`name`, `input_range`, `preprocess`, a `features` description) are documentation,
 * except `name`, which names the feature space.
 */
export type ClassifierLayer =
  | {
      type: "conv2d";
      name: string;
      in: number;
      out: number;
      kernel: number;
      padding?: number;
      stride?: number;
      features?: boolean;
    }
  | { type: "linear"; name: string; in: number; out: number; features?: boolean }
  | { type: "relu" }
  | { type: "maxpool2d"; kernel: number; stride?: number }
  | { type: "gap" }
  | { type: "flatten" };

/** Options of {@link DigitClassifier.load} and {@link DigitClassifier.fromSafetensors}. */
export interface DigitClassifierOptions {
  /** Images per backend call when `extract` gets a Float32Array. @defaultValue 256 */
  batchSize?: number;
  /** Name of the feature space. @defaultValue the architecture's `name` ("mnist-cnn" for the shipped network), else "mnist-classifier" */
  name?: string;
}

/** Makes unit names unique per instance, so disposing one instance never releases a compiled form another still uses. */
let instances = 0;

/** Input shape used when the architecture JSON has no `input`. */
const DEFAULT_INPUT: readonly number[] = [1, 32, 32];

/**
 * The demo's small digit CNN as a {@link FeatureExtractor}, run through any {@link Backend}.
 * Input: (N, 1, 32, 32) images in [-1, 1] (MNIST padded to 32x32, background -1). The layer list
 * comes from the file's metadata, so retrained or resized networks load without code changes.
 *
 * Features are the output of the layer flagged `"features": true` (in the shipped network, the
 * 128-unit linear layer before its ReLU, the penultimate layer); without a flag, the input of the
 * last linear layer (the pre-logit activations, as Inception's pool3 for FID). Pre-ReLU
 * features keep units that ReLU would zero on most samples informative, so the covariance is
 * better conditioned. Logits are the last layer's output.
 *
 * @example
 * const classifier = await DigitClassifier.load("models/mnist/mnist-classifier.safetensors", createCpuBackend());
 * const { features, logits } = await classifier.extract(images, [n, 1, 32, 32]);
 */
export class DigitClassifier implements FeatureExtractor {
  /** Name of the feature space. */
  readonly name: string;
  /** First 16 hex digits of the SHA-256 of the weights file. */
  readonly hash: string;
  /** Feature dimension. */
  readonly dim: number;
  /** Number of logits (10 digits for MNIST). */
  readonly classes: number;
  /** Expected (C, H, W) of one image. */
  readonly inputShape: readonly number[];
  private readonly backend: Backend;
  private readonly params: Record<string, Tensor>;
  private readonly executable: Executable;
  private readonly batchSize: number;
  private disposed = false;

  private constructor(
    backend: Backend,
    contents: SafetensorsContents,
    hash: string,
    options: DigitClassifierOptions,
    file: string,
  ) {
    const batchSize = options.batchSize ?? 256;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1)
      invalidArgument("options.batchSize", batchSize, "a positive integer");
    const { input, layers, name } = parseArchitecture(contents.metadata, file);
    const plan = planLayers(input, layers, contents.tensors, file);
    this.backend = backend;
    this.batchSize = batchSize;
    this.hash = hash;
    this.name = options.name ?? name ?? "mnist-classifier";
    this.dim = plan.featureSize;
    this.classes = plan.outputSize;
    this.inputShape = input;
    this.params = {};
    for (const [key, tensor] of contents.tensors)
      this.params[key] = backend.tensor(tensor.data, tensor.shape);
    const featureIndex = plan.featureIndex;
    const unit: Unit = {
      name: `digit-classifier:${hash}:${++instances}`,
      params: this.params,
      build<T>(ops: Ops<T>, inputs: readonly T[], params: Readonly<Record<string, T>>): T[] {
        let x: T = inputs[0] as T; // (N, C, H, W)
        let features: T = x;
        for (let index = 0; index < layers.length; index++) {
          x = applyLayer(ops, x, layers[index]!, params);
          if (index === featureIndex) features = x; // (N, dim)
        }
        return [features, x]; // (N, dim), (N, classes)
      },
    };
    this.executable = backend.compile(unit);
  }

  /**
   * Loads a classifier from a safetensors file whose `__metadata__["architecture"]` holds the
   * layer list (tools/train writes it).
   *
   * @throws DitcacheError NOT_FOUND, BAD_FILE for a malformed architecture, MISSING_WEIGHT /
   *   UNEXPECTED_WEIGHT / SHAPE_MISMATCH when weights do not fit the layer list.
   */
  static async load(
    path: string,
    backend: Backend,
    options: DigitClassifierOptions = {},
  ): Promise<DigitClassifier> {
    return DigitClassifier.fromSafetensors(await readBytes(path, "classifier"), backend, options, path);
  }

  /** Builds a classifier from the bytes of a safetensors file; see {@link DigitClassifier.load}. */
  static fromSafetensors(
    bytes: Uint8Array,
    backend: Backend,
    options: DigitClassifierOptions = {},
    name = "classifier",
  ): DigitClassifier {
    const contents = readSafetensors(bytes, { name });
    const hash = contentDigest(bytes);
    return new DigitClassifier(backend, contents, hash, options, name);
  }

  /** Features and logits of (N, 1, 32, 32) images; Float32Array input is run in chunks of `batchSize`. */
  async extract(images: Tensor | Float32Array, shape: readonly number[]): Promise<FeatureExtraction> {
    if (this.disposed)
      throw new DitcacheError("INVALID_ARGUMENT", `${this.name}: extract() called after dispose()`);
    const expected = this.inputShape;
    if (
      !Array.isArray(shape) ||
      shape.length !== 4 ||
      !Number.isSafeInteger(shape[0]) ||
      (shape[0] as number) < 1 ||
      shape[1] !== expected[0] ||
      shape[2] !== expected[1] ||
      shape[3] !== expected[2]
    ) {
      invalidArgument("shape", shape, `[N, ${expected.join(", ")}]`);
    }
    const count = shape[0] as number;
    const imageSize = expected[0]! * expected[1]! * expected[2]!;
    const features = new Float32Array(count * this.dim);
    const logits = new Float32Array(count * this.classes);
    if (images instanceof Float32Array) {
      if (images.length !== count * imageSize)
        invalidArgument(
          "images.length",
          images.length,
          `${count * imageSize} values for shape [${shape.join(", ")}]`,
        );
      for (let start = 0; start < count; start += this.batchSize) {
        const end = Math.min(start + this.batchSize, count);
        const input = this.backend.tensor(images.slice(start * imageSize, end * imageSize), [
          end - start,
          ...expected,
        ]);
        try {
          await this.runInto(input, start, features, logits);
        } finally {
          this.backend.dispose(input);
        }
      }
    } else {
      if (typeof images !== "object" || images === null || !Array.isArray(images.shape)) {
        invalidArgument("images", images, "a Float32Array or a Tensor");
      }
      if (images.backend !== this.backend.name) {
        invalidArgument(
          "images.backend",
          images.backend,
          `"${this.backend.name}" (the classifier's backend)`,
        );
      }
      if (images.shape.length !== 4 || images.shape.some((d, i) => d !== shape[i])) {
        invalidArgument("images.shape", images.shape, `[${shape.join(", ")}] (the shape argument)`);
      }
      await this.runInto(images, 0, features, logits);
    }
    return { features, logits };
  }

  private async runInto(
    input: Tensor,
    start: number,
    features: Float32Array,
    logits: Float32Array,
  ): Promise<void> {
    const outputs = await this.executable.run([input]);
    try {
      const [featureData, logitData] = await Promise.all([
        this.backend.read(outputs[0]!),
        this.backend.read(outputs[1]!),
      ]);
      features.set(featureData, start * this.dim);
      logits.set(logitData, start * this.classes);
    } finally {
      for (const output of outputs) this.backend.dispose(output);
    }
  }

  /** Releases the weights and the compiled unit. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.executable.dispose();
    for (const tensor of Object.values(this.params)) this.backend.dispose(tensor);
  }
}

function applyLayer<T>(ops: Ops<T>, x: T, layer: ClassifierLayer, params: Readonly<Record<string, T>>): T {
  switch (layer.type) {
    case "conv2d":
      return ops.conv2d(x, params[`${layer.name}.weight`]!, params[`${layer.name}.bias`], {
        padding: layer.padding ?? 0,
        stride: layer.stride ?? 1,
      });
    case "linear":
      return ops.linear(x, params[`${layer.name}.weight`]!, params[`${layer.name}.bias`]);
    case "relu":
      return ops.relu(x);
    case "maxpool2d":
      return ops.maxPool2d(x, { kernel: layer.kernel, stride: layer.stride ?? layer.kernel });
    case "gap":
      return ops.mean(x, [2, 3], false);
    case "flatten": {
      const shape = ops.shape(x);
      return ops.reshape(x, [shape[0]!, -1]);
    }
  }
}

function parseArchitecture(
  metadata: Record<string, string>,
  file: string,
): { input: number[]; layers: ClassifierLayer[]; name: string | undefined } {
  const bad = (message: string): never => {
    throw new DitcacheError("BAD_FILE", `${file}: ${message}`);
  };
  const text = metadata.architecture;
  if (text === undefined)
    bad('no __metadata__["architecture"] (the classifier layer list) in this safetensors file');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text!);
  } catch (error) {
    bad(`__metadata__["architecture"] is not valid JSON (${(error as Error).message})`);
  }
  const record = parsed as { input?: unknown; layers?: unknown; name?: unknown };
  if (
    typeof record !== "object" ||
    record === null ||
    !Array.isArray(record.layers) ||
    record.layers.length === 0
  ) {
    bad('__metadata__["architecture"] must be {"layers": [...]} with at least one layer');
  }
  const input = record.input ?? DEFAULT_INPUT;
  if (!Array.isArray(input) || input.length !== 3 || !input.every((d) => Number.isSafeInteger(d) && d > 0)) {
    bad(`architecture input ${JSON.stringify(input)}, expected [C, H, W] positive integers`);
  }
  const positive = (value: unknown): boolean => Number.isSafeInteger(value) && (value as number) > 0;
  const layers = (record.layers as unknown[]).map((value, index): ClassifierLayer => {
    const layer = value as Record<string, unknown>;
    const where = `architecture layer ${index} (${JSON.stringify(value)})`;
    if (typeof layer !== "object" || layer === null) return bad(`${where} is not an object`);
    switch (layer.type) {
      case "conv2d":
      case "linear":
        if (typeof layer.name !== "string" || !positive(layer.in) || !positive(layer.out)) {
          bad(`${where}: needs a string name and positive integer in/out`);
        }
        if (layer.type === "conv2d") {
          if (!positive(layer.kernel)) bad(`${where}: needs a positive integer kernel`);
          if (
            layer.padding !== undefined &&
            !(Number.isSafeInteger(layer.padding) && (layer.padding as number) >= 0)
          ) {
            bad(`${where}: padding must be a non-negative integer`);
          }
          if (layer.stride !== undefined && !positive(layer.stride))
            bad(`${where}: stride must be a positive integer`);
        }
        return layer as ClassifierLayer;
      case "maxpool2d":
        if (!positive(layer.kernel)) bad(`${where}: needs a positive integer kernel`);
        if (layer.stride !== undefined && !positive(layer.stride))
          bad(`${where}: stride must be a positive integer`);
        return layer as ClassifierLayer;
      case "relu":
      case "gap":
      case "flatten":
        return layer as ClassifierLayer;
      default:
        return bad(`${where}: unknown type, expected conv2d, linear, relu, maxpool2d, gap or flatten`);
    }
  });
  if (record.name !== undefined && (typeof record.name !== "string" || record.name === "")) {
    bad(`architecture name ${JSON.stringify(record.name)}, expected a non-empty string`);
  }
  return { input: input as number[], layers, name: record.name as string | undefined };
}

/**
 * Walks the layer list over the input shape: checks every weight's presence and shape, that no
 * weight is left over, and finds the feature layer.
 */
function planLayers(
  input: readonly number[],
  layers: readonly ClassifierLayer[],
  tensors: ReadonlyMap<string, HostTensor>,
  file: string,
): { featureIndex: number; featureSize: number; outputSize: number } {
  let shape = [...input]; // per image: [C, H, W] or [F]
  const used = new Set<string>();
  const weight = (key: string, expected: readonly number[]): void => {
    const tensor = tensors.get(key);
    if (tensor === undefined)
      throw new DitcacheError(
        "MISSING_WEIGHT",
        `${file}: weight "${key}" is missing (the architecture needs it)`,
      );
    if (tensor.shape.length !== expected.length || tensor.shape.some((d, i) => d !== expected[i])) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `${file}: weight "${key}" has shape [${tensor.shape.join(", ")}], expected [${expected.join(", ")}]`,
      );
    }
    used.add(key);
  };
  const mismatch = (index: number, message: string): never => {
    throw new DitcacheError("BAD_FILE", `${file}: architecture layer ${index}: ${message}`);
  };
  let featureIndex: number | undefined;
  let lastLinear = -1;
  let featureSize = 0;
  let preLogitSize = 0;
  layers.forEach((layer, index) => {
    switch (layer.type) {
      case "conv2d": {
        if (shape.length !== 3 || shape[0] !== layer.in)
          mismatch(index, `conv2d expects ${layer.in} channels, input is [${shape.join(", ")}]`);
        const padding = layer.padding ?? 0;
        const stride = layer.stride ?? 1;
        const height = Math.floor((shape[1]! + 2 * padding - layer.kernel) / stride) + 1;
        const width = Math.floor((shape[2]! + 2 * padding - layer.kernel) / stride) + 1;
        if (height < 1 || width < 1)
          mismatch(index, `conv2d kernel ${layer.kernel} does not fit input [${shape.join(", ")}]`);
        weight(`${layer.name}.weight`, [layer.out, layer.in, layer.kernel, layer.kernel]);
        weight(`${layer.name}.bias`, [layer.out]);
        shape = [layer.out, height, width];
        break;
      }
      case "linear":
        if (shape.length !== 1 || shape[0] !== layer.in) {
          mismatch(
            index,
            `linear expects ${layer.in} inputs, input is [${shape.join(", ")}] (missing flatten?)`,
          );
        }
        weight(`${layer.name}.weight`, [layer.out, layer.in]);
        weight(`${layer.name}.bias`, [layer.out]);
        preLogitSize = shape[0]!;
        lastLinear = index;
        shape = [layer.out];
        break;
      case "maxpool2d": {
        if (shape.length !== 3)
          mismatch(index, `maxpool2d needs a [C, H, W] input, got [${shape.join(", ")}]`);
        const stride = layer.stride ?? layer.kernel;
        const height = Math.floor((shape[1]! - layer.kernel) / stride) + 1;
        const width = Math.floor((shape[2]! - layer.kernel) / stride) + 1;
        if (height < 1 || width < 1)
          mismatch(index, `maxpool2d kernel ${layer.kernel} does not fit input [${shape.join(", ")}]`);
        shape = [shape[0]!, height, width];
        break;
      }
      case "gap":
        if (shape.length !== 3) mismatch(index, `gap needs a [C, H, W] input, got [${shape.join(", ")}]`);
        shape = [shape[0]!];
        break;
      case "flatten":
        shape = [shape.reduce((a, b) => a * b, 1)];
        break;
      case "relu":
        break;
    }
    if ("features" in layer && layer.features === true) {
      if (featureIndex !== undefined) mismatch(index, "more than one layer is flagged as features");
      featureIndex = index;
      featureSize = shape.reduce((a, b) => a * b, 1);
      if (shape.length !== 1) mismatch(index, `feature layer output [${shape.join(", ")}] is not a vector`);
    }
  });
  if (shape.length !== 1) {
    throw new DitcacheError(
      "BAD_FILE",
      `${file}: the network ends in shape [${shape.join(", ")}], expected a vector of logits`,
    );
  }
  if (lastLinear === -1 && featureIndex === undefined) {
    throw new DitcacheError(
      "BAD_FILE",
      `${file}: no layer is flagged "features": true and there is no linear layer to take pre-logit features from`,
    );
  }
  for (const key of tensors.keys()) {
    if (!used.has(key))
      throw new DitcacheError(
        "UNEXPECTED_WEIGHT",
        `${file}: weight "${key}" is not used by the architecture`,
      );
  }
  if (featureIndex === undefined)
    return { featureIndex: lastLinear - 1, featureSize: preLogitSize, outputSize: shape[0]! };
  return { featureIndex, featureSize, outputSize: shape[0]! };
}
