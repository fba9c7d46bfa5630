/**
 * The op table: the only contract between model code and backends. Model code is written once as
 * a function over `Ops<T>`; an eager backend runs each op as it is called, a graph backend
 * records it into a graph (`T` is then a symbolic value with a static shape).
 *
 * Conventions: float32 everywhere; shapes are static; binary ops broadcast like NumPy; `axis`
 * may be negative (counted from the end); images are NCHW.
 */
export interface Ops<T> {
  /** Static shape of a value. */
  shape(x: T): readonly number[];
  /** A constant: a scalar when `shape` is omitted and `value` is a number. */
  constant(value: number | Float32Array, shape?: readonly number[]): T;

  /** Elementwise a + b with broadcasting. */
  add(a: T, b: T): T;
  /** Elementwise a - b with broadcasting. */
  sub(a: T, b: T): T;
  /** Elementwise a * b with broadcasting. */
  mul(a: T, b: T): T;
  /** Elementwise a / b with broadcasting. */
  div(a: T, b: T): T;
  /** Elementwise e^x. */
  exp(x: T): T;
  /** Elementwise square root. */
  sqrt(x: T): T;
  /** Elementwise sine. */
  sin(x: T): T;
  /** Elementwise cosine. */
  cos(x: T): T;
  /** max(x, 0). */
  relu(x: T): T;
  /** x * sigmoid(x). */
  silu(x: T): T;
  /** GELU; 'tanh' is the approximation DiT's MLP uses, 'none' the exact erf form. */
  gelu(x: T, approximate: "tanh" | "none"): T;

  /** Batched matrix product: a (..., M, K) @ b (..., K, N) -> (..., M, N); leading dims broadcast. */
  matmul(a: T, b: T): T;
  /** x (..., in) @ weight(out, in)^T + bias(out): a torch.nn.Linear. */
  linear(x: T, weight: T, bias?: T): T;
  /**
   * Scaled dot-product attention over (B, H, L, Dh) queries/keys/values:
   * softmax(q k^T * scale) v -> (B, H, L, Dh).
   */
  attention(q: T, k: T, v: T, scale: number): T;

  /** LayerNorm over the last axis; weight/bias (last dim) are optional (elementwise_affine=False). */
  layerNorm(x: T, eps: number, weight?: T, bias?: T): T;
  /** GroupNorm over (N, C, ...) with `groups` groups; weight/bias of shape (C). */
  groupNorm(x: T, groups: number, eps: number, weight?: T, bias?: T): T;
  /** Softmax along an axis. */
  softmax(x: T, axis: number): T;

  /** 2-D convolution: x (N, Cin, H, W), weight (Cout, Cin, kH, kW), bias (Cout). */
  conv2d(x: T, weight: T, bias: T | undefined, options: Conv2dOptions): T;
  /** Max pooling over (N, C, H, W). */
  maxPool2d(x: T, options: Pool2dOptions): T;
  /** Average pooling over (N, C, H, W); padded cells are excluded from the average. */
  avgPool2d(x: T, options: Pool2dOptions): T;
  /** Nearest-neighbour upsampling of (N, C, H, W) by an integer factor. */
  upsampleNearest2d(x: T, factor: number): T;

  /** Reshape; one dimension may be -1. */
  reshape(x: T, shape: readonly number[]): T;
  /** Permute axes. */
  transpose(x: T, perm: readonly number[]): T;
  /** Concatenate along an axis. */
  concat(xs: readonly T[], axis: number): T;
  /** x[start:end] along one axis. */
  slice(x: T, axis: number, start: number, end: number): T;
  /** Sum over axes. */
  sum(x: T, axes: readonly number[], keepDims: boolean): T;
  /** Mean over axes. */
  mean(x: T, axes: readonly number[], keepDims: boolean): T;
}

/** Options of {@link Ops.conv2d}. */
export interface Conv2dOptions {
  /** @defaultValue 1 */
  stride?: number;
  /** Zero padding on each side. @defaultValue 0 */
  padding?: number;
}

/** Options of {@link Ops.maxPool2d} and {@link Ops.avgPool2d}. */
export interface Pool2dOptions {
  /** Square kernel size. */
  kernel: number;
  /** @defaultValue kernel */
  stride?: number;
  /** @defaultValue 0 */
  padding?: number;
}

/** The names of all ops, for conformance suites and backends that check coverage. */
export const OP_NAMES = [
  "shape",
  "constant",
  "add",
  "sub",
  "mul",
  "div",
  "exp",
  "sqrt",
  "sin",
  "cos",
  "relu",
  "silu",
  "gelu",
  "matmul",
  "linear",
  "attention",
  "layerNorm",
  "groupNorm",
  "softmax",
  "conv2d",
  "maxPool2d",
  "avgPool2d",
  "upsampleNearest2d",
  "reshape",
  "transpose",
  "concat",
  "slice",
  "sum",
  "mean",
] as const satisfies readonly (keyof Ops<unknown>)[];
