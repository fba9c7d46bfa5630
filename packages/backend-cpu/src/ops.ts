import {
  broadcastShapes,
  type Conv2dOptions,
  DitcacheError,
  formatShape,
  invalidArgument,
  normalizeAxis,
  type Ops,
  type Pool2dOptions,
  sizeOf,
} from "@ditcache/core";
import { erf } from "./erf.js";
import { gemmNT, transpose2d } from "./gemm.js";
import { CpuTensor } from "./tensor.js";

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

function make(data: Float32Array, shape: readonly number[]): CpuTensor {
  return new CpuTensor(data, shape);
}

function mismatch(op: string, message: string): never {
  throw new DitcacheError("SHAPE_MISMATCH", `${op}: ${message}`);
}

function stridesOf(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = stride;
    stride *= shape[i]!;
  }
  return strides;
}

type Binary = "add" | "sub" | "mul" | "div";

function binary(op: Binary, a: CpuTensor, b: CpuTensor): CpuTensor {
  const x = a.data;
  const y = b.data;
  if (a.shape.length === b.shape.length && a.shape.every((dim, i) => dim === b.shape[i])) {
    const out = new Float32Array(x.length);
    binaryRun(op, x, 0, 1, y, 0, 1, out, 0, x.length);
    return make(out, a.shape);
  }
  const shape = broadcastShapes(a.shape, b.shape);
  const rank = shape.length;
  const out = new Float32Array(sizeOf(shape));
  if (out.length === 0) return make(out, shape);
  const aStrides = broadcastStrides(a.shape, shape);
  const bStrides = broadcastStrides(b.shape, shape);
  const inner = rank === 0 ? 1 : shape[rank - 1]!;
  const aInner = rank === 0 ? 0 : aStrides[rank - 1]!;
  const bInner = rank === 0 ? 0 : bStrides[rank - 1]!;
  const outer = out.length / inner;
  const index = new Array<number>(Math.max(0, rank - 1)).fill(0);
  let aOffset = 0;
  let bOffset = 0;
  for (let row = 0; row < outer; row++) {
    binaryRun(op, x, aOffset, aInner, y, bOffset, bInner, out, row * inner, inner);
    for (let d = rank - 2; d >= 0; d--) {
      index[d]!++;
      aOffset += aStrides[d]!;
      bOffset += bStrides[d]!;
      if (index[d]! < shape[d]!) break;
      aOffset -= aStrides[d]! * shape[d]!;
      bOffset -= bStrides[d]! * shape[d]!;
      index[d] = 0;
    }
  }
  return make(out, shape);
}

function broadcastStrides(shape: readonly number[], target: readonly number[]): number[] {
  const own = stridesOf(shape);
  const offset = target.length - shape.length;
  return target.map((_, i) => (i < offset || shape[i - offset] === 1 ? 0 : own[i - offset]!));
}

function binaryRun(
  op: Binary,
  x: Float32Array,
  xo: number,
  xs: number,
  y: Float32Array,
  yo: number,
  ys: number,
  out: Float32Array,
  oo: number,
  n: number,
): void {
  switch (op) {
    case "add":
      for (let i = 0; i < n; i++) out[oo + i] = x[xo + i * xs]! + y[yo + i * ys]!;
      break;
    case "sub":
      for (let i = 0; i < n; i++) out[oo + i] = x[xo + i * xs]! - y[yo + i * ys]!;
      break;
    case "mul":
      for (let i = 0; i < n; i++) out[oo + i] = x[xo + i * xs]! * y[yo + i * ys]!;
      break;
    case "div":
      for (let i = 0; i < n; i++) out[oo + i] = x[xo + i * xs]! / y[yo + i * ys]!;
      break;
  }
}

function unary(x: CpuTensor, f: (value: number) => number): CpuTensor {
  const source = x.data;
  const out = new Float32Array(source.length);
  for (let i = 0; i < source.length; i++) out[i] = f(source[i]!);
  return make(out, x.shape);
}

function geluTanh(v: number): number {
  return 0.5 * v * (1 + Math.tanh(SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)));
}

function geluErf(v: number): number {
  return 0.5 * v * (1 + erf(v * Math.SQRT1_2));
}

function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

function checkInteger(name: string, value: number, minimum: number): number {
  if (!Number.isInteger(value) || value < minimum) invalidArgument(name, value, `an integer >= ${minimum}`);
  return value;
}

function rank(op: string, name: string, x: CpuTensor, expected: number): void {
  if (x.shape.length !== expected)
    mismatch(op, `${name} must have rank ${expected}, got shape ${formatShape(x.shape)}`);
}

function matmul(a: CpuTensor, b: CpuTensor): CpuTensor {
  if (a.shape.length < 2 || b.shape.length < 2) {
    mismatch("matmul", `operands need rank >= 2, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
  }
  const m = a.shape[a.shape.length - 2]!;
  const k = a.shape[a.shape.length - 1]!;
  const kb = b.shape[b.shape.length - 2]!;
  const n = b.shape[b.shape.length - 1]!;
  if (k !== kb)
    mismatch("matmul", `inner dimensions differ: ${formatShape(a.shape)} @ ${formatShape(b.shape)}`);
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  let batch: number[];
  try {
    batch = broadcastShapes(aBatch, bBatch);
  } catch {
    return mismatch(
      "matmul",
      `batch dimensions do not broadcast: ${formatShape(a.shape)} @ ${formatShape(b.shape)}`,
    );
  }
  const batchSize = sizeOf(batch);
  const out = new Float32Array(batchSize * m * n);
  const aStrides = broadcastStrides(aBatch, batch);
  const bStrides = broadcastStrides(bBatch, batch);
  const bt = new Float32Array(sizeOf(bBatch) * k * n); // each (K, N) matrix transposed to (N, K)
  for (let i = 0; i < sizeOf(bBatch); i++) transpose2d(b.data, i * k * n, k, n, bt, i * k * n);
  for (let index = 0; index < batchSize; index++) {
    let aIndex = 0;
    let bIndex = 0;
    let rest = index;
    for (let d = batch.length - 1; d >= 0; d--) {
      const coordinate = rest % batch[d]!;
      rest = Math.floor(rest / batch[d]!);
      aIndex += coordinate * aStrides[d]!;
      bIndex += coordinate * bStrides[d]!;
    }
    gemmNT(a.data, aIndex * m * k, bt, bIndex * k * n, out, index * m * n, m, n, k);
  }
  return make(out, [...batch, m, n]);
}

function linear(x: CpuTensor, weight: CpuTensor, bias?: CpuTensor): CpuTensor {
  rank("linear", "weight", weight, 2);
  const [outFeatures, inFeatures] = weight.shape as [number, number];
  const k = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || k !== inFeatures) {
    mismatch(
      "linear",
      `x ${formatShape(x.shape)} last dimension must equal weight ${formatShape(weight.shape)} in_features ${inFeatures}`,
    );
  }
  if (bias !== undefined && (bias.shape.length !== 1 || bias.shape[0] !== outFeatures)) {
    mismatch("linear", `bias must have shape [${outFeatures}], got ${formatShape(bias.shape)}`);
  }
  const rows = x.data.length / inFeatures || 0;
  const out = new Float32Array(rows * outFeatures);
  gemmNT(x.data, 0, weight.data, 0, out, 0, rows, outFeatures, inFeatures, bias?.data);
  return make(out, [...x.shape.slice(0, -1), outFeatures]);
}

function attention(q: CpuTensor, k: CpuTensor, v: CpuTensor, scale: number): CpuTensor {
  rank("attention", "q", q, 4);
  rank("attention", "k", k, 4);
  rank("attention", "v", v, 4);
  const [batch, heads, queries, depth] = q.shape as [number, number, number, number];
  const keys = k.shape[2]!;
  if (k.shape[0] !== batch || k.shape[1] !== heads || k.shape[3] !== depth) {
    mismatch(
      "attention",
      `k ${formatShape(k.shape)} does not match q ${formatShape(q.shape)} in (B, H, ·, Dh)`,
    );
  }
  if (v.shape[0] !== batch || v.shape[1] !== heads || v.shape[2] !== keys) {
    mismatch(
      "attention",
      `v ${formatShape(v.shape)} does not match k ${formatShape(k.shape)} in (B, H, Lk, ·)`,
    );
  }
  if (typeof scale !== "number" || !Number.isFinite(scale))
    invalidArgument("scale", scale, "a finite number");
  const valueDepth = v.shape[3]!;
  const out = new Float32Array(batch * heads * queries * valueDepth);
  const scores = new Float32Array(queries * keys);
  const vt = new Float32Array(keys * valueDepth);
  for (let bh = 0; bh < batch * heads; bh++) {
    gemmNT(
      q.data,
      bh * queries * depth,
      k.data,
      bh * keys * depth,
      scores,
      0,
      queries,
      keys,
      depth,
      undefined,
      scale,
    );
    softmaxRows(scores, queries, keys);
    transpose2d(v.data, bh * keys * valueDepth, keys, valueDepth, vt, 0);
    gemmNT(scores, 0, vt, 0, out, bh * queries * valueDepth, queries, valueDepth, keys);
  }
  return make(out, [batch, heads, queries, valueDepth]);
}

/** In-place stable softmax of contiguous rows. */
function softmaxRows(data: Float32Array, rows: number, length: number): void {
  for (let r = 0; r < rows; r++) {
    const offset = r * length;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < length; i++) max = Math.max(max, data[offset + i]!);
    let sum = 0;
    for (let i = 0; i < length; i++) sum += Math.exp(data[offset + i]! - max);
    for (let i = 0; i < length; i++) data[offset + i] = Math.exp(data[offset + i]! - max) / sum;
  }
}

function softmax(x: CpuTensor, axis: number): CpuTensor {
  const a = normalizeAxis(axis, x.shape.length);
  const length = x.shape[a]!;
  const inner = sizeOf(x.shape.slice(a + 1));
  const outer = sizeOf(x.shape.slice(0, a));
  const source = x.data;
  const out = new Float32Array(source.length);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const base = o * length * inner + i;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < length; j++) max = Math.max(max, source[base + j * inner]!);
      let sum = 0;
      for (let j = 0; j < length; j++) sum += Math.exp(source[base + j * inner]! - max);
      for (let j = 0; j < length; j++)
        out[base + j * inner] = Math.exp(source[base + j * inner]! - max) / sum;
    }
  }
  return make(out, x.shape);
}

function checkEps(eps: number): void {
  if (typeof eps !== "number" || !(eps >= 0) || !Number.isFinite(eps))
    invalidArgument("eps", eps, "a finite number >= 0");
}

function layerNorm(x: CpuTensor, eps: number, weight?: CpuTensor, bias?: CpuTensor): CpuTensor {
  checkEps(eps);
  if (x.shape.length < 1) mismatch("layerNorm", "x must have rank >= 1");
  const length = x.shape[x.shape.length - 1]!;
  for (const [name, parameter] of [
    ["weight", weight],
    ["bias", bias],
  ] as const) {
    if (parameter !== undefined && (parameter.shape.length !== 1 || parameter.shape[0] !== length)) {
      mismatch("layerNorm", `${name} must have shape [${length}], got ${formatShape(parameter.shape)}`);
    }
  }
  const source = x.data;
  const w = weight?.data;
  const b = bias?.data;
  const out = new Float32Array(source.length);
  const rows = length === 0 ? 0 : source.length / length;
  for (let r = 0; r < rows; r++) {
    const offset = r * length;
    let sum = 0;
    for (let i = 0; i < length; i++) sum += source[offset + i]!;
    const mean = sum / length;
    let squares = 0;
    for (let i = 0; i < length; i++) {
      const d = source[offset + i]! - mean;
      squares += d * d;
    }
    const inverse = 1 / Math.sqrt(squares / length + eps);
    for (let i = 0; i < length; i++) {
      const normalized = (source[offset + i]! - mean) * inverse;
      out[offset + i] = (w === undefined ? normalized : normalized * w[i]!) + (b === undefined ? 0 : b[i]!);
    }
  }
  return make(out, x.shape);
}

function groupNorm(
  x: CpuTensor,
  groups: number,
  eps: number,
  weight?: CpuTensor,
  bias?: CpuTensor,
): CpuTensor {
  checkEps(eps);
  if (x.shape.length < 2) mismatch("groupNorm", `x must be (N, C, ...), got ${formatShape(x.shape)}`);
  const [batch, channels] = x.shape as [number, number];
  checkInteger("groups", groups, 1);
  if (channels % groups !== 0) invalidArgument("groups", groups, `a divisor of the ${channels} channels`);
  for (const [name, parameter] of [
    ["weight", weight],
    ["bias", bias],
  ] as const) {
    if (parameter !== undefined && (parameter.shape.length !== 1 || parameter.shape[0] !== channels)) {
      mismatch("groupNorm", `${name} must have shape [${channels}], got ${formatShape(parameter.shape)}`);
    }
  }
  const spatial = sizeOf(x.shape.slice(2));
  const perGroup = (channels / groups) * spatial;
  const source = x.data;
  const w = weight?.data;
  const b = bias?.data;
  const out = new Float32Array(source.length);
  for (let n = 0; n < batch; n++) {
    for (let g = 0; g < groups; g++) {
      const offset = (n * groups + g) * perGroup;
      let sum = 0;
      for (let i = 0; i < perGroup; i++) sum += source[offset + i]!;
      const mean = sum / perGroup;
      let squares = 0;
      for (let i = 0; i < perGroup; i++) {
        const d = source[offset + i]! - mean;
        squares += d * d;
      }
      const inverse = 1 / Math.sqrt(squares / perGroup + eps);
      for (let i = 0; i < perGroup; i++) {
        const channel = g * (channels / groups) + Math.floor(i / spatial);
        const normalized = (source[offset + i]! - mean) * inverse;
        out[offset + i] =
          (w === undefined ? normalized : normalized * w[channel]!) + (b === undefined ? 0 : b[channel]!);
      }
    }
  }
  return make(out, x.shape);
}

function conv2d(
  x: CpuTensor,
  weight: CpuTensor,
  bias: CpuTensor | undefined,
  options: Conv2dOptions,
): CpuTensor {
  rank("conv2d", "x", x, 4);
  rank("conv2d", "weight", weight, 4);
  const stride = checkInteger("options.stride", options?.stride ?? 1, 1);
  const padding = checkInteger("options.padding", options?.padding ?? 0, 0);
  const [batch, inChannels, height, width] = x.shape as [number, number, number, number];
  const [outChannels, weightIn, kernelH, kernelW] = weight.shape as [number, number, number, number];
  if (weightIn !== inChannels) {
    mismatch(
      "conv2d",
      `weight ${formatShape(weight.shape)} expects ${weightIn} input channels, x ${formatShape(x.shape)} has ${inChannels}`,
    );
  }
  if (bias !== undefined && (bias.shape.length !== 1 || bias.shape[0] !== outChannels)) {
    mismatch("conv2d", `bias must have shape [${outChannels}], got ${formatShape(bias.shape)}`);
  }
  const outH = Math.floor((height + 2 * padding - kernelH) / stride) + 1;
  const outW = Math.floor((width + 2 * padding - kernelW) / stride) + 1;
  if (outH < 1 || outW < 1)
    mismatch("conv2d", `kernel ${kernelH}x${kernelW} larger than padded input ${formatShape(x.shape)}`);
  const patch = inChannels * kernelH * kernelW;
  const pixels = outH * outW;
  const columns = new Float32Array(pixels * patch); // (pixels, patch): one receptive field per row
  const transposed = new Float32Array(outChannels * pixels);
  const out = new Float32Array(batch * outChannels * pixels);
  const source = x.data;
  for (let n = 0; n < batch; n++) {
    columns.fill(0);
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        const row = (oy * outW + ox) * patch;
        for (let c = 0; c < inChannels; c++) {
          for (let ky = 0; ky < kernelH; ky++) {
            const iy = oy * stride - padding + ky;
            if (iy < 0 || iy >= height) continue;
            const sourceRow = ((n * inChannels + c) * height + iy) * width;
            const column = row + (c * kernelH + ky) * kernelW;
            for (let kx = 0; kx < kernelW; kx++) {
              const ix = ox * stride - padding + kx;
              if (ix >= 0 && ix < width) columns[column + kx] = source[sourceRow + ix]!;
            }
          }
        }
      }
    }
    gemmNT(columns, 0, weight.data, 0, transposed, 0, pixels, outChannels, patch, bias?.data);
    transpose2d(transposed, 0, pixels, outChannels, out, n * outChannels * pixels);
  }
  return make(out, [batch, outChannels, outH, outW]);
}

function pool(op: "maxPool2d" | "avgPool2d", x: CpuTensor, options: Pool2dOptions): CpuTensor {
  rank(op, "x", x, 4);
  const kernel = checkInteger("options.kernel", options?.kernel, 1);
  const stride = checkInteger("options.stride", options.stride ?? kernel, 1);
  const padding = checkInteger("options.padding", options.padding ?? 0, 0);
  if (padding * 2 > kernel)
    invalidArgument("options.padding", padding, `at most half the kernel (${kernel})`);
  const [batch, channels, height, width] = x.shape as [number, number, number, number];
  const outH = Math.floor((height + 2 * padding - kernel) / stride) + 1;
  const outW = Math.floor((width + 2 * padding - kernel) / stride) + 1;
  if (outH < 1 || outW < 1) mismatch(op, `kernel ${kernel} larger than padded input ${formatShape(x.shape)}`);
  const source = x.data;
  const out = new Float32Array(batch * channels * outH * outW);
  const isMax = op === "maxPool2d";
  let o = 0;
  for (let plane = 0; plane < batch * channels; plane++) {
    const base = plane * height * width;
    for (let oy = 0; oy < outH; oy++) {
      const y0 = Math.max(0, oy * stride - padding);
      const y1 = Math.min(height, oy * stride - padding + kernel);
      for (let ox = 0; ox < outW; ox++) {
        const x0 = Math.max(0, ox * stride - padding);
        const x1 = Math.min(width, ox * stride - padding + kernel);
        let accumulator = isMax ? Number.NEGATIVE_INFINITY : 0;
        for (let y = y0; y < y1; y++) {
          for (let xx = x0; xx < x1; xx++) {
            const value = source[base + y * width + xx]!;
            accumulator = isMax ? Math.max(accumulator, value) : accumulator + value;
          }
        }
        out[o++] = isMax ? accumulator : accumulator / ((y1 - y0) * (x1 - x0));
      }
    }
  }
  return make(out, [batch, channels, outH, outW]);
}

function upsampleNearest2d(x: CpuTensor, factor: number): CpuTensor {
  rank("upsampleNearest2d", "x", x, 4);
  checkInteger("factor", factor, 1);
  const [batch, channels, height, width] = x.shape as [number, number, number, number];
  const outW = width * factor;
  const source = x.data;
  const out = new Float32Array(batch * channels * height * factor * outW);
  let o = 0;
  for (let plane = 0; plane < batch * channels; plane++) {
    for (let y = 0; y < height * factor; y++) {
      const row = (plane * height + Math.floor(y / factor)) * width;
      for (let xx = 0; xx < outW; xx++) out[o++] = source[row + Math.floor(xx / factor)]!;
    }
  }
  return make(out, [batch, channels, height * factor, outW]);
}

function reshape(x: CpuTensor, shape: readonly number[]): CpuTensor {
  const size = x.data.length;
  let inferred = -1;
  let known = 1;
  shape.forEach((dim, i) => {
    if (dim === -1 && inferred === -1) inferred = i;
    else if (!Number.isInteger(dim) || dim < 0)
      invalidArgument("shape", shape, "non-negative integers and at most one -1");
    else known *= dim;
  });
  const target = [...shape];
  if (inferred >= 0) {
    if (known === 0 || size % known !== 0)
      mismatch("reshape", `cannot infer -1 in ${formatShape(shape)} for ${size} elements`);
    target[inferred] = size / known;
  }
  if (sizeOf(target) !== size)
    mismatch("reshape", `cannot reshape ${formatShape(x.shape)} (${size} elements) to ${formatShape(shape)}`);
  return make(x.data, target); // data is never mutated, so sharing it is safe
}

function transpose(x: CpuTensor, perm: readonly number[]): CpuTensor {
  const r = x.shape.length;
  if (perm.length !== r || [...perm].sort((p, q) => p - q).some((axis, i) => axis !== i)) {
    invalidArgument("perm", perm, `a permutation of 0..${r - 1}`);
  }
  const shape = perm.map((axis) => x.shape[axis]!);
  const sourceStrides = stridesOf(x.shape);
  const strides = perm.map((axis) => sourceStrides[axis]!);
  const source = x.data;
  const out = new Float32Array(source.length);
  if (out.length === 0) return make(out, shape);
  const inner = r === 0 ? 1 : shape[r - 1]!;
  const innerStride = r === 0 ? 0 : strides[r - 1]!;
  const index = new Array<number>(Math.max(0, r - 1)).fill(0);
  let offset = 0;
  for (let o = 0; o < out.length; o += inner) {
    for (let i = 0; i < inner; i++) out[o + i] = source[offset + i * innerStride]!;
    for (let d = r - 2; d >= 0; d--) {
      index[d]!++;
      offset += strides[d]!;
      if (index[d]! < shape[d]!) break;
      offset -= strides[d]! * shape[d]!;
      index[d] = 0;
    }
  }
  return make(out, shape);
}

function concat(xs: readonly CpuTensor[], axis: number): CpuTensor {
  if (xs.length === 0) invalidArgument("xs", xs, "at least one tensor");
  const first = xs[0]!;
  const a = normalizeAxis(axis, first.shape.length);
  for (const x of xs) {
    if (
      x.shape.length !== first.shape.length ||
      x.shape.some((dim, i) => i !== a && dim !== first.shape[i])
    ) {
      mismatch("concat", `shapes ${xs.map((t) => formatShape(t.shape)).join(", ")} differ outside axis ${a}`);
    }
  }
  const shape = [...first.shape];
  shape[a] = xs.reduce((sum, x) => sum + x.shape[a]!, 0);
  const outer = sizeOf(first.shape.slice(0, a));
  const inner = sizeOf(first.shape.slice(a + 1));
  const out = new Float32Array(sizeOf(shape));
  const rowLength = shape[a]! * inner;
  let position = 0;
  for (const x of xs) {
    const chunk = x.shape[a]! * inner;
    const data = x.data;
    for (let o = 0; o < outer; o++)
      out.set(data.subarray(o * chunk, (o + 1) * chunk), o * rowLength + position);
    position += chunk;
  }
  return make(out, shape);
}

function slice(x: CpuTensor, axis: number, start: number, end: number): CpuTensor {
  const a = normalizeAxis(axis, x.shape.length);
  const length = x.shape[a]!;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > length) {
    invalidArgument(
      "start/end",
      [start, end],
      `integers with 0 <= start <= end <= ${length} (axis ${a} of ${formatShape(x.shape)})`,
    );
  }
  const shape = [...x.shape];
  shape[a] = end - start;
  const outer = sizeOf(x.shape.slice(0, a));
  const inner = sizeOf(x.shape.slice(a + 1));
  const out = new Float32Array(sizeOf(shape));
  const chunk = (end - start) * inner;
  const data = x.data;
  for (let o = 0; o < outer; o++) {
    const from = (o * length + start) * inner;
    out.set(data.subarray(from, from + chunk), o * chunk);
  }
  return make(out, shape);
}

function reduce(x: CpuTensor, axes: readonly number[], keepDims: boolean, average: boolean): CpuTensor {
  const r = x.shape.length;
  const reduced = new Set(axes.map((axis) => normalizeAxis(axis, r)));
  if (reduced.size !== axes.length) invalidArgument("axes", axes, "distinct axes");
  const keptShape = x.shape.map((dim, i) => (reduced.has(i) ? 1 : dim));
  const count = sizeOf(x.shape.filter((_, i) => reduced.has(i)));
  const sums = new Float64Array(sizeOf(keptShape));
  const outStrides = stridesOf(keptShape).map((stride, i) => (reduced.has(i) ? 0 : stride));
  const source = x.data;
  const index = new Array<number>(r).fill(0);
  let offset = 0;
  for (let i = 0; i < source.length; i++) {
    sums[offset]! += source[i]!;
    for (let d = r - 1; d >= 0; d--) {
      index[d]!++;
      offset += outStrides[d]!;
      if (index[d]! < x.shape[d]!) break;
      offset -= outStrides[d]! * x.shape[d]!;
      index[d] = 0;
    }
  }
  const out = new Float32Array(sums.length);
  for (let i = 0; i < sums.length; i++) out[i] = average ? sums[i]! / count : sums[i]!;
  return make(out, keepDims ? keptShape : x.shape.filter((_, i) => !reduced.has(i)));
}

function constant(value: number | Float32Array, shape?: readonly number[]): CpuTensor {
  if (shape !== undefined && !shape.every((dim) => Number.isInteger(dim) && dim >= 0)) {
    invalidArgument("shape", shape, "non-negative integers");
  }
  if (typeof value === "number") {
    const target = shape ?? [];
    return make(new Float32Array(sizeOf(target)).fill(value), target);
  }
  if (!(value instanceof Float32Array)) invalidArgument("value", value, "a number or a Float32Array");
  const target = shape ?? [value.length];
  if (sizeOf(target) !== value.length) {
    mismatch("constant", `${value.length} values do not fill shape ${formatShape(target)}`);
  }
  return make(value.slice(), target);
}

/** The eager op table of the cpu backend. */
export const cpuOps: Ops<CpuTensor> = {
  shape: (x) => x.shape,
  constant,
  add: (a, b) => binary("add", a, b),
  sub: (a, b) => binary("sub", a, b),
  mul: (a, b) => binary("mul", a, b),
  div: (a, b) => binary("div", a, b),
  exp: (x) => unary(x, Math.exp),
  sqrt: (x) => unary(x, Math.sqrt),
  sin: (x) => unary(x, Math.sin),
  cos: (x) => unary(x, Math.cos),
  relu: (x) => unary(x, (v) => Math.max(v, 0)), // NaN passes through, as in PyTorch
  silu: (x) => unary(x, silu),
  gelu: (x, approximate) => {
    if (approximate !== "tanh" && approximate !== "none")
      invalidArgument("approximate", approximate, '"tanh" or "none"');
    return unary(x, approximate === "tanh" ? geluTanh : geluErf);
  },
  matmul,
  linear,
  attention,
  layerNorm,
  groupNorm,
  softmax,
  conv2d,
  maxPool2d: (x, options) => pool("maxPool2d", x, options),
  avgPool2d: (x, options) => pool("avgPool2d", x, options),
  upsampleNearest2d,
  reshape,
  transpose,
  concat,
  slice,
  sum: (x, axes, keepDims) => reduce(x, axes, keepDims, false),
  mean: (x, axes, keepDims) => reduce(x, axes, keepDims, true),
};
