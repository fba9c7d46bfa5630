import type { Conv2dOptions, Ops, Pool2dOptions } from "@ditcache/core";
import {
  broadcastShapes,
  DitcacheError,
  formatShape,
  invalidArgument,
  normalizeAxis,
  sizeOf,
} from "@ditcache/core";
import * as tf from "@tensorflow/tfjs-core";

// The op table on tfjs-core. Every op runs eagerly on tfjs's current global backend; the caller
// (TfjsBackend) makes sure that is the right one and wraps each unit in tf.tidy.

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

function shapeError(message: string): never {
  throw new DitcacheError("SHAPE_MISMATCH", message);
}

function requireRank(name: string, x: tf.Tensor, rank: number, layout: string): void {
  if (x.rank !== rank)
    shapeError(`${name}: expected a rank-${rank} ${layout} tensor, got shape ${formatShape(x.shape)}`);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) invalidArgument(name, value, "a positive integer");
  return value;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0) invalidArgument(name, value, "a non-negative integer");
  return value;
}

/** NCHW -> NHWC, the only layout every tfjs kernel (wasm included) accepts. */
function toChannelsLast(x: tf.Tensor): tf.Tensor4D {
  return tf.transpose(x as tf.Tensor4D, [0, 2, 3, 1]);
}

function toChannelsFirst(x: tf.Tensor4D): tf.Tensor4D {
  return tf.transpose(x, [0, 3, 1, 2]);
}

/** Normalizes by the biased variance over `axis` (kept), as torch's layer/group norm do. */
function normalize(x: tf.Tensor, axis: number, eps: number): tf.Tensor {
  const { mean, variance } = tf.moments(x, axis, true);
  return tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, tf.scalar(eps))));
}

function pool(kind: "max" | "avg", x: tf.Tensor, options: Pool2dOptions): tf.Tensor {
  requireRank(`${kind}Pool2d x`, x, 4, "(N, C, H, W)");
  const kernel = positiveInteger("options.kernel", options.kernel);
  const stride = positiveInteger("options.stride", options.stride ?? kernel);
  const padding = nonNegativeInteger("options.padding", options.padding ?? 0);
  // As torch: a window must always overlap the input, so padding is at most half the kernel.
  if (padding * 2 > kernel) invalidArgument("options.padding", padding, `at most kernel / 2 = ${kernel / 2}`);
  const [, , height, width] = x.shape as [number, number, number, number];
  if (height + 2 * padding < kernel || width + 2 * padding < kernel) {
    shapeError(`${kind}Pool2d: kernel ${kernel} is larger than the padded input ${formatShape(x.shape)}`);
  }
  // tfjs's pools visit only real cells: max ignores padding, avg divides by the real-cell count.
  const nhwc = toChannelsLast(x);
  const pooled =
    kind === "max" ? tf.maxPool(nhwc, kernel, stride, padding) : tf.avgPool(nhwc, kernel, stride, padding);
  return toChannelsFirst(pooled);
}

/** What a backend tells {@link createTfjsOps} about its engine. */
export interface TfjsOpsOptions {
  /**
   * Runs linear as `(W · xᵀ)ᵀ`: the weight is the LEFT operand of an untransposed matmul, in its
   * own (out, in) layout. tfjs-wasm sends only untransposed batch-1 matmuls to XNNPACK, and
   * XNNPACK keeps a packed copy of the RIGHT operand for as long as that tensor lives: with the
   * weight on the left, the packed copy is of the per-call xᵀ (freed with it), so each weight
   * stays in wasm memory exactly once. @defaultValue false (a transposed matmul `x · Wᵀ`)
   */
  weightFirstLinear?: boolean;
  /**
   * Runs attention as one 2-D matmul pair per (batch, head): the wasm engine sends matmuls with
   * a batch above 1 to a plain loop instead of XNNPACK. @defaultValue false
   */
  perHeadAttention?: boolean;
}

/**
 * Transposes in steps of rank <= 4 (the generic higher-rank kernel of tfjs-wasm is several times
 * slower): step i views the tensor as (placed, before, axis, after) and moves output axis i in
 * front of the axes not yet placed.
 */
function transposeInSteps(x: tf.Tensor, perm: readonly number[]): tf.Tensor {
  if (perm.length <= 4) return tf.transpose(x, [...perm]);
  const dims = x.shape;
  const size = (axes: readonly number[]) => axes.reduce((product, axis) => product * dims[axis]!, 1);
  let order = perm.map((_, i) => i); // the current layout, as original axis numbers
  let current = x;
  for (let i = 0; i < perm.length - 1; i++) {
    const j = order.indexOf(perm[i]!);
    const before = size(order.slice(i, j));
    if (before > 1 && dims[perm[i]!]! > 1) {
      const view = [size(order.slice(0, i)), before, dims[perm[i]!]!, size(order.slice(j + 1))];
      current = tf.transpose(tf.reshape(current, view), [0, 2, 1, 3]);
    }
    order = [...order.slice(0, i), order[j]!, ...order.slice(i, j), ...order.slice(j + 1)];
  }
  return tf.reshape(
    current,
    perm.map((axis) => dims[axis]!),
  );
}

/**
 * The {@link Ops} table on tfjs-core tensors. Ops are eager and allocate tfjs tensors; run them
 * inside `tf.tidy` (as the tfjs backend's executables do) so intermediates are released.
 */
export function createTfjsOps(options: TfjsOpsOptions = {}): Ops<tf.Tensor> {
  return {
    shape: (x) => x.shape,

    constant(value, shape) {
      if (typeof value === "number") {
        return shape === undefined ? tf.scalar(value, "float32") : tf.fill([...shape], value, "float32");
      }
      if (!(value instanceof Float32Array)) invalidArgument("value", value, "a number or a Float32Array");
      const dims = shape ?? [value.length];
      const size = sizeOf(dims);
      if (size !== value.length) {
        shapeError(
          `constant: ${value.length} values do not fill shape ${formatShape(dims)} (${size} elements)`,
        );
      }
      return tf.tensor(value, [...dims], "float32");
    },

    add: (a, b) => tf.add(a, b),
    sub: (a, b) => tf.sub(a, b),
    mul: (a, b) => tf.mul(a, b),
    div: (a, b) => tf.div(a, b),
    exp: (x) => tf.exp(x),
    sqrt: (x) => tf.sqrt(x),
    sin: (x) => tf.sin(x),
    cos: (x) => tf.cos(x),
    relu: (x) => tf.relu(x),
    silu: (x) => tf.mul(x, tf.sigmoid(x)),

    gelu(x, approximate) {
      if (approximate === "tanh") {
        // torch: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
        const cube = tf.mul(tf.mul(x, x), x);
        const inner = tf.mul(tf.add(x, tf.mul(cube, tf.scalar(0.044715))), tf.scalar(SQRT_2_OVER_PI));
        return tf.mul(tf.mul(x, tf.scalar(0.5)), tf.add(tf.tanh(inner), tf.scalar(1)));
      }
      if (approximate === "none") {
        // torch: 0.5 * x * (1 + erf(x / sqrt(2)))
        return tf.mul(
          tf.mul(x, tf.scalar(0.5)),
          tf.add(tf.erf(tf.mul(x, tf.scalar(Math.SQRT1_2))), tf.scalar(1)),
        );
      }
      return invalidArgument("approximate", approximate, '"tanh" or "none"');
    },

    matmul(a, b) {
      if (a.rank < 2 || b.rank < 2) {
        shapeError(
          `matmul: both operands need rank >= 2, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`,
        );
      }
      if (a.shape[a.rank - 1] !== b.shape[b.rank - 2]) {
        shapeError(`matmul: inner dimensions differ: ${formatShape(a.shape)} @ ${formatShape(b.shape)}`);
      }
      // tfjs flattens the batch dims of each operand into one and only broadcasts a flattened
      // batch of 1, so materialise any other broadcast and hand it 3-D operands.
      const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
      const total = sizeOf(batch);
      const flatten = (t: tf.Tensor): tf.Tensor3D => {
        const [rows, columns] = t.shape.slice(-2) as [number, number];
        const own = sizeOf(t.shape.slice(0, -2));
        // A batch of the full size that broadcasts to `batch` already has its layout.
        const full = own === 1 || own === total ? t : tf.broadcastTo(t, [...batch, rows, columns]);
        return tf.reshape(full, [own === 1 ? 1 : total, rows, columns]);
      };
      const product = tf.matMul(flatten(a), flatten(b));
      return tf.reshape(product, [...batch, a.shape[a.rank - 2]!, b.shape[b.rank - 1]!]);
    },

    linear(x, weight, bias) {
      requireRank("linear weight", weight, 2, "(out, in)");
      const [outFeatures, inFeatures] = weight.shape as [number, number];
      if (x.rank < 1 || x.shape[x.rank - 1] !== inFeatures) {
        shapeError(`linear: x ${formatShape(x.shape)} does not end in weight's in-features ${inFeatures}`);
      }
      if (bias !== undefined && (bias.rank !== 1 || bias.shape[0] !== outFeatures)) {
        shapeError(`linear: bias must have shape [${outFeatures}], got ${formatShape(bias.shape)}`);
      }
      // One 2-D GEMM over all leading dims.
      const rows = tf.reshape(x, [-1, inFeatures]) as tf.Tensor2D;
      // weightFirstLinear: (out, in) @ (in, rows) on XNNPACK, then back to (rows, out); the two
      // transposes move activations only. The bias is added apart: fused, it would broadcast
      // along the rows of (out, rows).
      const product = options.weightFirstLinear
        ? tf.transpose(tf.matMul(weight as tf.Tensor2D, tf.transpose(rows)))
        : tf.matMul(rows, weight, false, true);
      const out = bias === undefined ? product : tf.add(product, bias);
      return tf.reshape(out, [...x.shape.slice(0, -1), outFeatures]);
    },

    attention(q, k, v, scale) {
      requireRank("attention q", q, 4, "(B, H, L, Dh)");
      requireRank("attention k", k, 4, "(B, H, L, Dh)");
      requireRank("attention v", v, 4, "(B, H, L, Dh)");
      const [b, h, , dh] = q.shape;
      if (k.shape[0] !== b || k.shape[1] !== h || k.shape[3] !== dh || v.shape[0] !== b || v.shape[1] !== h) {
        shapeError(
          `attention: q ${formatShape(q.shape)}, k ${formatShape(k.shape)}, v ${formatShape(v.shape)} disagree on B, H or Dh`,
        );
      }
      if (k.shape[2] !== v.shape[2])
        shapeError(`attention: k and v lengths differ: ${k.shape[2]} vs ${v.shape[2]}`);
      if (!Number.isFinite(scale)) invalidArgument("scale", scale, "a finite number");
      const attend = (qs: tf.Tensor, keysT: tf.Tensor, vs: tf.Tensor) =>
        tf.matMul(tf.softmax(tf.mul(tf.matMul(qs, keysT), tf.scalar(scale)), -1), vs);
      const keysT = tf.transpose(k, [0, 1, 3, 2]); // (B, H, Dh, Lk): an untransposed matmul
      const heads = b! * h!;
      if (!options.perHeadAttention || heads === 1) return attend(q, keysT, v); // (B, H, L, Dh)
      const perHead = (t: tf.Tensor) => {
        const [rows, columns] = t.shape.slice(2) as [number, number];
        const stacked = tf.reshape(t, [heads, rows, columns]);
        return Array.from({ length: heads }, (_, i) =>
          tf.reshape(tf.slice(stacked, [i, 0, 0], [1, rows, columns]), [rows, columns]),
        );
      };
      const [qs, ks, vs] = [perHead(q), perHead(keysT), perHead(v)];
      const outputs = qs.map((one, i) => attend(one, ks[i]!, vs[i]!)); // H x (L, Dh)
      return tf.reshape(tf.stack(outputs), [b!, h!, q.shape[2]!, v.shape[3]!]);
    },

    layerNorm(x, eps, weight, bias) {
      if (x.rank < 1) shapeError("layerNorm: x must have rank >= 1, got a scalar");
      const features = x.shape[x.rank - 1];
      for (const [name, param] of [
        ["weight", weight],
        ["bias", bias],
      ] as const) {
        if (param !== undefined && (param.rank !== 1 || param.shape[0] !== features)) {
          shapeError(`layerNorm: ${name} must have shape [${features}], got ${formatShape(param.shape)}`);
        }
      }
      let y = normalize(x, -1, eps);
      if (weight !== undefined) y = tf.mul(y, weight);
      if (bias !== undefined) y = tf.add(y, bias);
      return y;
    },

    groupNorm(x, groups, eps, weight, bias) {
      if (x.rank < 2) shapeError(`groupNorm: x must be (N, C, ...), got ${formatShape(x.shape)}`);
      positiveInteger("groups", groups);
      const [n, channels] = x.shape as [number, number];
      if (channels % groups !== 0)
        invalidArgument("groups", groups, `a divisor of the channel count ${channels}`);
      const y = tf.reshape(normalize(tf.reshape(x, [n, groups, -1]), 2, eps), x.shape);
      // (C) -> (C, 1, ..., 1) so it broadcasts over the spatial axes.
      const perChannel = [channels, ...new Array<number>(x.rank - 2).fill(1)];
      let out = y;
      for (const [name, param] of [
        ["weight", weight],
        ["bias", bias],
      ] as const) {
        if (param === undefined) continue;
        if (param.rank !== 1 || param.shape[0] !== channels) {
          shapeError(`groupNorm: ${name} must have shape [${channels}], got ${formatShape(param.shape)}`);
        }
        const reshaped = tf.reshape(param, perChannel);
        out = name === "weight" ? tf.mul(out, reshaped) : tf.add(out, reshaped);
      }
      return out;
    },

    softmax(x, axis) {
      const a = normalizeAxis(axis, x.rank);
      if (a === x.rank - 1) return tf.softmax(x, -1);
      // tfjs's kernel only supports the last axis; the explicit form is the same arithmetic.
      const shifted = tf.exp(tf.sub(x, tf.max(x, a, true)));
      return tf.div(shifted, tf.sum(shifted, a, true));
    },

    conv2d(x, weight, bias, options: Conv2dOptions) {
      requireRank("conv2d x", x, 4, "(N, Cin, H, W)");
      requireRank("conv2d weight", weight, 4, "(Cout, Cin, kH, kW)");
      const stride = positiveInteger("options.stride", options.stride ?? 1);
      const padding = nonNegativeInteger("options.padding", options.padding ?? 0);
      const [outChannels, inChannels, kernelHeight, kernelWidth] = weight.shape as [
        number,
        number,
        number,
        number,
      ];
      if (x.shape[1] !== inChannels) {
        shapeError(
          `conv2d: x has ${x.shape[1]} channels, weight ${formatShape(weight.shape)} expects ${inChannels}`,
        );
      }
      if (x.shape[2]! + 2 * padding < kernelHeight || x.shape[3]! + 2 * padding < kernelWidth) {
        shapeError(
          `conv2d: kernel ${kernelHeight}x${kernelWidth} is larger than the padded input ${formatShape(x.shape)}`,
        );
      }
      if (bias !== undefined && (bias.rank !== 1 || bias.shape[0] !== outChannels)) {
        shapeError(`conv2d: bias must have shape [${outChannels}], got ${formatShape(bias.shape)}`);
      }
      // tfjs wants NHWC input and (kH, kW, Cin, Cout) filters; its wasm kernel has no NCHW mode.
      const filter = tf.transpose(weight as tf.Tensor4D, [2, 3, 1, 0]);
      const y = tf.fused.conv2d({ x: toChannelsLast(x), filter, strides: stride, pad: padding, bias });
      return toChannelsFirst(y);
    },

    maxPool2d: (x, options) => pool("max", x, options),
    avgPool2d: (x, options) => pool("avg", x, options),

    upsampleNearest2d(x, factor) {
      requireRank("upsampleNearest2d x", x, 4, "(N, C, H, W)");
      positiveInteger("factor", factor);
      const [n, c, h, w] = x.shape as [number, number, number, number];
      // (N, C, H, 1, W, 1) broadcast to (N, C, H, f, W, f): each pixel repeated f x f, exactly.
      const spread = tf.broadcastTo(tf.reshape(x, [n, c, h, 1, w, 1]), [n, c, h, factor, w, factor]);
      return tf.reshape(spread, [n, c, h * factor, w * factor]);
    },

    reshape(x, shape) {
      const inferred = shape.filter((d) => d === -1).length;
      if (inferred > 1 || shape.some((d) => !Number.isInteger(d) || d < -1)) {
        invalidArgument("shape", shape, "non-negative integers with at most one -1");
      }
      const known = shape.reduce((a, d) => (d === -1 ? a : a * d), 1);
      if (inferred === 0 ? known !== x.size : known === 0 || x.size % known !== 0) {
        shapeError(
          `reshape: cannot reshape ${formatShape(x.shape)} (${x.size} elements) to ${formatShape(shape)}`,
        );
      }
      return tf.reshape(x, [...shape]);
    },

    transpose(x, perm) {
      const sorted = [...perm].sort((a, b) => a - b);
      if (perm.length !== x.rank || sorted.some((p, i) => p !== i)) {
        invalidArgument("perm", perm, `a permutation of 0..${x.rank - 1}`);
      }
      return transposeInSteps(x, perm);
    },

    concat(xs, axis) {
      const first = xs[0];
      if (first === undefined) invalidArgument("xs", xs, "at least one tensor");
      const a = normalizeAxis(axis, first.rank);
      for (const [i, t] of xs.entries()) {
        if (t.rank !== first.rank || t.shape.some((d, j) => j !== a && d !== first.shape[j])) {
          shapeError(
            `concat: xs[${i}] ${formatShape(t.shape)} does not match xs[0] ${formatShape(first.shape)} off axis ${a}`,
          );
        }
      }
      return tf.concat([...xs], a);
    },

    slice(x, axis, start, end) {
      const a = normalizeAxis(axis, x.rank);
      const length = x.shape[a]!;
      if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > length) {
        invalidArgument(
          "start/end",
          [start, end],
          `integers with 0 <= start <= end <= ${length} (axis ${a} of ${formatShape(x.shape)})`,
        );
      }
      const size = x.shape.map((d, i) => (i === a ? end - start : d));
      const outer = sizeOf(x.shape.slice(0, a));
      if (outer === 1 || start === end || x.rank <= 4) {
        return tf.slice(
          x,
          x.shape.map((_, i) => (i === a ? start : 0)),
          size,
        );
      }
      // A strided slice of rank > 4: tfjs-wasm copies it element by element through a generic
      // JavaScript loop, ~20x slower than this gather of whole rows.
      const inner = sizeOf(x.shape.slice(a + 1));
      const rows = tf.gather(tf.reshape(x, [outer, length, inner]), tf.range(start, end, 1, "int32"), 1);
      return tf.reshape(rows, size);
    },

    sum: (x, axes, keepDims) => reduce("sum", x, axes, keepDims),
    mean: (x, axes, keepDims) => reduce("mean", x, axes, keepDims),
  };
}

function reduce(kind: "sum" | "mean", x: tf.Tensor, axes: readonly number[], keepDims: boolean): tf.Tensor {
  const normalized = axes.map((axis) => normalizeAxis(axis, x.rank));
  if (new Set(normalized).size !== normalized.length) invalidArgument("axes", axes, "distinct axes");
  // Reducing over no axes is the identity (NumPy); tfjs would reduce over all of them.
  if (normalized.length === 0) return tf.clone(x);
  return kind === "sum" ? tf.sum(x, normalized, keepDims) : tf.mean(x, normalized, keepDims);
}
