import { createHash } from "node:crypto";
import {
  type Backend,
  DitcacheError,
  type Executable,
  formatShape,
  type HostTensor,
  invalidArgument,
  type Ops,
  readSafetensors,
  type Tensor,
  type Unit,
} from "@ditcache/core";
import type { FeatureExtraction, FeatureExtractor } from "./feature-extractor.js";
import { readBytes } from "./read-bytes.js";

/** Options of {@link InceptionV3FeatureExtractor.load}. */
export interface InceptionV3Options {
  /** Value range of the images given to `extract`. @defaultValue "-1..1" (DiT / VAE output) */
  inputRange?: "-1..1" | "0..1";
  /** Side the images are resized to (bilinear, align_corners=False, as pytorch-fid). @defaultValue 299 */
  resizeTo?: number;
  /** Images per backend call when `extract` gets a Float32Array. @defaultValue 16 */
  batchSize?: number;
  /** Name of the feature space. @defaultValue "inception-v3-pool3" */
  name?: string;
}

/** BatchNorm epsilon of the FID Inception's BasicConv2d (TF's 0.001). */
const BATCH_NORM_EPS = 0.001;

/** Convolutions with stride 2 (all others have stride 1). */
const STRIDE_TWO = new Set([
  "Conv2d_1a_3x3",
  "Mixed_6a.branch3x3",
  "Mixed_6a.branch3x3dbl_3",
  "Mixed_7a.branch3x3_2",
  "Mixed_7a.branch7x7x3_4",
]);
/** Stride-1 convolutions without padding; every other stride-1 one keeps the size ("same"). */
const VALID_PADDING = new Set(["Conv2d_2a_3x3", "Conv2d_4a_3x3"]);

const STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"] as const;
const BLOCKS = {
  A: [
    "branch1x1",
    "branch5x5_1",
    "branch5x5_2",
    "branch3x3dbl_1",
    "branch3x3dbl_2",
    "branch3x3dbl_3",
    "branch_pool",
  ],
  B: ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"],
  C: [
    "branch1x1",
    "branch7x7_1",
    "branch7x7_2",
    "branch7x7_3",
    "branch7x7dbl_1",
    "branch7x7dbl_2",
    "branch7x7dbl_3",
    "branch7x7dbl_4",
    "branch7x7dbl_5",
    "branch_pool",
  ],
  D: ["branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"],
  E: [
    "branch1x1",
    "branch3x3_1",
    "branch3x3_2a",
    "branch3x3_2b",
    "branch3x3dbl_1",
    "branch3x3dbl_2",
    "branch3x3dbl_3a",
    "branch3x3dbl_3b",
    "branch_pool",
  ],
} as const;
/** pytorch-fid's FIDInceptionV3: A = FIDInceptionA, C = FIDInceptionC, E/E_max = FIDInceptionE_1/_2. */
const MIXED: readonly (readonly [string, "A" | "B" | "C" | "D" | "E" | "E_max"])[] = [
  ["Mixed_5b", "A"],
  ["Mixed_5c", "A"],
  ["Mixed_5d", "A"],
  ["Mixed_6a", "B"],
  ["Mixed_6b", "C"],
  ["Mixed_6c", "C"],
  ["Mixed_6d", "C"],
  ["Mixed_6e", "C"],
  ["Mixed_7a", "D"],
  ["Mixed_7b", "E"],
  ["Mixed_7c", "E_max"],
];

/** Every BasicConv2d of the network, by state-dict prefix. */
function convNames(): string[] {
  const names: string[] = [...STEM];
  for (const [block, type] of MIXED) {
    for (const branch of BLOCKS[type === "E_max" ? "E" : type]) names.push(`${block}.${branch}`);
  }
  return names;
}

/** Makes unit names unique per instance. */
let instances = 0;

/**
 * The FID Inception-v3 (pytorch-fid's `fid_inception_v3`, a port of TF's 2015-12-05 graph that
 * FID is defined with) as a {@link FeatureExtractor}: images are resized to 299x299 (bilinear,
 * align_corners=False), scaled to [-1, 1], and mapped to the 2048-d pool3 features; logits come
 * from the 1008-way fc when the file has it. Weights: `pt_inception-2015-12-05-6726825d.pth`
 * converted with tools/reference/convert_pytorch_fid_inception.py (state-dict names, BatchNorm
 * folded into the convolutions at load). Channel counts are read from the weights, so narrower
 * twins of the network (the test fixture) load too.
 *
 * @example
 * const inception = await InceptionV3FeatureExtractor.load("models/pt_inception-2015-12-05.safetensors", backend);
 * const { features } = await inception.extract(images, [n, 3, 256, 256]); // images in [-1, 1]
 */
export class InceptionV3FeatureExtractor implements FeatureExtractor {
  /** Name of the feature space. */
  readonly name: string;
  /** First 16 hex digits of the SHA-256 of the weights file. */
  readonly hash: string;
  /** Feature dimension (2048 for the real network). */
  readonly dim: number;
  /** Number of logits (1008), when the file has the fc layer. */
  readonly classes: number | undefined;
  readonly #backend: Backend;
  readonly #params: Record<string, Tensor>;
  readonly #executable: Executable;
  readonly #batchSize: number;
  readonly #resizeTo: number;
  #disposed = false;

  private constructor(
    backend: Backend,
    tensors: ReadonlyMap<string, HostTensor>,
    hash: string,
    options: InceptionV3Options,
    file: string,
  ) {
    const batchSize = options.batchSize ?? 16;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1)
      invalidArgument("options.batchSize", batchSize, "a positive integer");
    const resizeTo = options.resizeTo ?? 299;
    if (!Number.isSafeInteger(resizeTo) || resizeTo < 75)
      invalidArgument(
        "options.resizeTo",
        resizeTo,
        "an integer >= 75 (the smallest input Inception-v3 takes)",
      );
    const range = options.inputRange ?? "-1..1";
    if (range !== "-1..1" && range !== "0..1")
      invalidArgument("options.inputRange", range, '"-1..1" or "0..1"');
    const folded = foldWeights(tensors, file);
    this.#backend = backend;
    this.#batchSize = batchSize;
    this.#resizeTo = resizeTo;
    this.hash = hash;
    this.name = options.name ?? "inception-v3-pool3";
    this.dim = folded.dim;
    this.classes = folded.classes;
    this.#params = {};
    for (const [key, value] of folded.weights) this.#params[key] = backend.tensor(value.data, value.shape);
    this.#executable = backend.compile(
      inceptionUnit(
        `inception-v3:${hash}:${++instances}`,
        this.#params,
        resizeTo,
        range,
        folded.classes !== undefined,
      ),
    );
  }

  /**
   * Loads the converted FID Inception weights (safetensors, pytorch-fid state-dict names).
   *
   * @throws DitcacheError NOT_FOUND, BAD_FILE, MISSING_WEIGHT / SHAPE_MISMATCH / UNEXPECTED_WEIGHT.
   */
  static async load(
    path: string,
    backend: Backend,
    options: InceptionV3Options = {},
  ): Promise<InceptionV3FeatureExtractor> {
    return InceptionV3FeatureExtractor.fromSafetensors(
      await readBytes(path, "Inception weights"),
      backend,
      options,
      path,
    );
  }

  /** Builds the extractor from the bytes of a safetensors file; see {@link InceptionV3FeatureExtractor.load}. */
  static fromSafetensors(
    bytes: Uint8Array,
    backend: Backend,
    options: InceptionV3Options = {},
    name = "inception",
  ): InceptionV3FeatureExtractor {
    const contents = readSafetensors(bytes, { name });
    const hash = createHash("sha256").update(bytes).digest("hex").slice(0, 16);
    return new InceptionV3FeatureExtractor(backend, contents.tensors, hash, options, name);
  }

  /**
   * pool3 features (and logits) of (N, 3, H, W) images of any size (resized to `resizeTo`), in the
   * range given by `options.inputRange`.
   */
  async extract(images: Tensor | Float32Array, shape: readonly number[]): Promise<FeatureExtraction> {
    if (this.#disposed)
      throw new DitcacheError("INVALID_ARGUMENT", `${this.name}: extract() called after dispose()`);
    if (
      !Array.isArray(shape) ||
      shape.length !== 4 ||
      shape[1] !== 3 ||
      !shape.every((d) => Number.isSafeInteger(d) && d > 0)
    ) {
      invalidArgument("shape", shape, "[N, 3, H, W] positive integers");
    }
    const [count, , height, width] = shape as [number, number, number, number];
    const imageSize = 3 * height * width;
    const features = new Float32Array(count * this.dim);
    const logits = this.classes === undefined ? undefined : new Float32Array(count * this.classes);
    if (images instanceof Float32Array) {
      if (images.length !== count * imageSize)
        invalidArgument(
          "images.length",
          images.length,
          `${count * imageSize} values for shape ${formatShape(shape)}`,
        );
      for (let start = 0; start < count; start += this.#batchSize) {
        const end = Math.min(start + this.#batchSize, count);
        const input = this.#backend.tensor(images.slice(start * imageSize, end * imageSize), [
          end - start,
          3,
          height,
          width,
        ]);
        try {
          await this.#runInto(input, start, features, logits);
        } finally {
          this.#backend.dispose(input);
        }
      }
    } else {
      if (typeof images !== "object" || images === null || !Array.isArray(images.shape))
        invalidArgument("images", images, "a Float32Array or a Tensor");
      if (images.backend !== this.#backend.name)
        invalidArgument(
          "images.backend",
          images.backend,
          `"${this.#backend.name}" (the extractor's backend)`,
        );
      if (images.shape.length !== 4 || images.shape.some((d, i) => d !== shape[i]))
        invalidArgument("images.shape", images.shape, `${formatShape(shape)} (the shape argument)`);
      await this.#runInto(images, 0, features, logits);
    }
    return logits === undefined ? { features } : { features, logits };
  }

  /** The side images are resized to before the network. */
  get resizeTo(): number {
    return this.#resizeTo;
  }

  /** Releases the weights and the compiled unit. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#executable.dispose();
    for (const tensor of Object.values(this.#params)) this.#backend.dispose(tensor);
  }

  async #runInto(
    input: Tensor,
    start: number,
    features: Float32Array,
    logits: Float32Array | undefined,
  ): Promise<void> {
    const outputs = await this.#executable.run([input]);
    try {
      features.set(await this.#backend.read(outputs[0]!), start * this.dim);
      if (logits !== undefined) logits.set(await this.#backend.read(outputs[1]!), start * this.classes!);
    } finally {
      for (const output of outputs) this.#backend.dispose(output);
    }
  }
}

/**
 * Checks the state dict and folds each BatchNorm into its convolution:
 * w' = w * g / sqrt(v + eps), b' = beta - mean * g / sqrt(v + eps).
 */
function foldWeights(
  tensors: ReadonlyMap<string, HostTensor>,
  file: string,
): {
  weights: Map<string, { shape: number[]; data: Float32Array }>;
  dim: number;
  classes: number | undefined;
} {
  const used = new Set<string>();
  const get = (key: string, rank: number): HostTensor => {
    const tensor = tensors.get(key);
    if (tensor === undefined)
      throw new DitcacheError(
        "MISSING_WEIGHT",
        `${file}: missing weight "${key}" (FID Inception-v3 state dict)`,
      );
    if (tensor.shape.length !== rank)
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `${file}: weight "${key}" has shape ${formatShape(tensor.shape)}, expected rank ${rank}`,
      );
    used.add(key);
    return tensor;
  };
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  let dim = 0;
  for (const name of convNames()) {
    const conv = get(`${name}.conv.weight`, 4);
    const out = conv.shape[0]!;
    const parts = ["weight", "bias", "running_mean", "running_var"].map((part) => {
      const tensor = get(`${name}.bn.${part}`, 1);
      if (tensor.shape[0] !== out)
        throw new DitcacheError(
          "SHAPE_MISMATCH",
          `${file}: weight "${name}.bn.${part}" has shape ${formatShape(tensor.shape)}, expected [${out}] (the conv's output channels)`,
        );
      return tensor.data;
    });
    const [gamma, beta, mean, variance] = parts as [Float32Array, Float32Array, Float32Array, Float32Array];
    const perOut = conv.data.length / out;
    const weight = new Float32Array(conv.data.length);
    const bias = new Float32Array(out);
    for (let o = 0; o < out; o++) {
      const scale = gamma[o]! / Math.sqrt(variance[o]! + BATCH_NORM_EPS);
      for (let i = 0; i < perOut; i++) weight[o * perOut + i] = conv.data[o * perOut + i]! * scale;
      bias[o] = beta[o]! - mean[o]! * scale;
    }
    weights.set(`${name}.weight`, { shape: [...conv.shape], data: weight });
    weights.set(`${name}.bias`, { shape: [out], data: bias });
  }
  // pool3 is Mixed_7c's concatenated output.
  for (const branch of [
    "branch1x1",
    "branch3x3_2a",
    "branch3x3_2b",
    "branch3x3dbl_3a",
    "branch3x3dbl_3b",
    "branch_pool",
  ]) {
    dim += weights.get(`Mixed_7c.${branch}.weight`)!.shape[0]!;
  }
  let classes: number | undefined;
  if (tensors.has("fc.weight")) {
    const fcWeight = get("fc.weight", 2);
    const fcBias = get("fc.bias", 1);
    if (fcWeight.shape[1] !== dim || fcBias.shape[0] !== fcWeight.shape[0])
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `${file}: fc has shapes ${formatShape(fcWeight.shape)} / ${formatShape(fcBias.shape)}, expected [classes, ${dim}] / [classes]`,
      );
    classes = fcWeight.shape[0]!;
    weights.set("fc.weight", { shape: [...fcWeight.shape], data: fcWeight.data.slice() });
    weights.set("fc.bias", { shape: [...fcBias.shape], data: fcBias.data.slice() });
  }
  for (const key of tensors.keys()) {
    if (!used.has(key) && !key.endsWith("num_batches_tracked"))
      throw new DitcacheError(
        "UNEXPECTED_WEIGHT",
        `${file}: unexpected weight "${key}" (not part of the FID Inception-v3)`,
      );
  }
  return { weights, dim, classes };
}

/** Row-stochastic (out, in) matrix of 1-D bilinear resizing with align_corners=False (PyTorch's rule). */
export function bilinearResizeMatrix(size: number, out: number): Float32Array {
  const matrix = new Float32Array(out * size);
  const scale = size / out;
  for (let i = 0; i < out; i++) {
    const source = Math.max(scale * (i + 0.5) - 0.5, 0);
    const i0 = Math.min(Math.floor(source), size - 1);
    const i1 = Math.min(i0 + 1, size - 1);
    const lambda = source - i0;
    matrix[i * size + i0]! += 1 - lambda;
    matrix[i * size + i1]! += lambda;
  }
  return matrix;
}

function inceptionUnit(
  name: string,
  params: Record<string, Tensor>,
  resizeTo: number,
  range: "-1..1" | "0..1",
  withLogits: boolean,
): Unit {
  return {
    name,
    params,
    build<T>(ops: Ops<T>, inputs: readonly T[], p: Readonly<Record<string, T>>): T[] {
      const zeros = (shape: number[]): T =>
        ops.constant(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
      /** Zero-pads one spatial axis on both sides (Ops' conv padding is the same on every side). */
      const padAxis = (x: T, axis: 2 | 3, amount: number): T => {
        if (amount === 0) return x;
        const shape = [...ops.shape(x)];
        shape[axis] = amount;
        return ops.concat([zeros(shape), x, zeros(shape)], axis);
      };
      const conv = (x: T, key: string): T => {
        const [, , kernelH, kernelW] = ops.shape(p[`${key}.weight`]!) as [number, number, number, number];
        const stride = STRIDE_TWO.has(key) ? 2 : 1;
        const same = stride === 1 && !VALID_PADDING.has(key);
        const padH = same ? (kernelH - 1) / 2 : 0;
        const padW = same ? (kernelW - 1) / 2 : 0;
        let input = x;
        let padding = 0;
        if (padH === padW) padding = padH;
        else input = padAxis(padAxis(x, 2, padH), 3, padW);
        return ops.relu(ops.conv2d(input, p[`${key}.weight`]!, p[`${key}.bias`], { stride, padding }));
      };
      const avgPool = (x: T): T => ops.avgPool2d(x, { kernel: 3, stride: 1, padding: 1 });
      const maxPool = (x: T, stride: number, padding = 0): T =>
        ops.maxPool2d(x, { kernel: 3, stride, padding });
      const chain = (x: T, block: string, names: readonly string[]): T =>
        names.reduce((h, branch) => conv(h, `${block}.${branch}`), x);

      const mixed = (x: T, block: string, type: (typeof MIXED)[number][1]): T => {
        const c = (branch: string, input: T = x) => conv(input, `${block}.${branch}`);
        switch (type) {
          case "A":
            return ops.concat(
              [
                c("branch1x1"),
                chain(x, block, ["branch5x5_1", "branch5x5_2"]),
                chain(x, block, ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]),
                c("branch_pool", avgPool(x)),
              ],
              1,
            );
          case "B":
            return ops.concat(
              [
                c("branch3x3"),
                chain(x, block, ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]),
                maxPool(x, 2),
              ],
              1,
            );
          case "C":
            return ops.concat(
              [
                c("branch1x1"),
                chain(x, block, ["branch7x7_1", "branch7x7_2", "branch7x7_3"]),
                chain(x, block, [
                  "branch7x7dbl_1",
                  "branch7x7dbl_2",
                  "branch7x7dbl_3",
                  "branch7x7dbl_4",
                  "branch7x7dbl_5",
                ]),
                c("branch_pool", avgPool(x)),
              ],
              1,
            );
          case "D":
            return ops.concat(
              [
                chain(x, block, ["branch3x3_1", "branch3x3_2"]),
                chain(x, block, ["branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3", "branch7x7x3_4"]),
                maxPool(x, 2),
              ],
              1,
            );
          case "E":
          case "E_max": {
            const b3 = c("branch3x3_1");
            const d3 = chain(x, block, ["branch3x3dbl_1", "branch3x3dbl_2"]);
            // FIDInceptionE_1 average-pools without the padded cells; FIDInceptionE_2 max-pools.
            const pooled = type === "E" ? avgPool(x) : maxPool(x, 1, 1);
            return ops.concat(
              [
                c("branch1x1"),
                c("branch3x3_2a", b3),
                c("branch3x3_2b", b3),
                c("branch3x3dbl_3a", d3),
                c("branch3x3dbl_3b", d3),
                c("branch_pool", pooled),
              ],
              1,
            );
          }
        }
      };

      let x: T = inputs[0] as T;
      const [, , height, width] = ops.shape(x) as [number, number, number, number];
      // Bilinear resize as two matmuls with constant interpolation matrices: x @ Rw^T, then Rh @ x.
      if (height !== resizeTo || width !== resizeTo) {
        const rw = bilinearResizeMatrix(width, resizeTo);
        const rwT = new Float32Array(width * resizeTo);
        for (let i = 0; i < resizeTo; i++)
          for (let j = 0; j < width; j++) rwT[j * resizeTo + i] = rw[i * width + j]!;
        x = ops.matmul(x, ops.constant(rwT, [1, 1, width, resizeTo]));
        x = ops.matmul(ops.constant(bilinearResizeMatrix(height, resizeTo), [1, 1, resizeTo, height]), x);
      }
      if (range === "0..1") x = ops.sub(ops.mul(x, ops.constant(2)), ops.constant(1));
      x = conv(conv(conv(x, "Conv2d_1a_3x3"), "Conv2d_2a_3x3"), "Conv2d_2b_3x3");
      x = maxPool(x, 2);
      x = conv(conv(x, "Conv2d_3b_1x1"), "Conv2d_4a_3x3");
      x = maxPool(x, 2);
      for (const [block, type] of MIXED) x = mixed(x, block, type);
      const pool = ops.mean(x, [2, 3], false);
      return withLogits ? [pool, ops.linear(pool, p["fc.weight"]!, p["fc.bias"])] : [pool];
    },
  };
}
