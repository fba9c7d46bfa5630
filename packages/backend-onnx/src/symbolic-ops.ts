import type { Conv2dOptions, Ops, Pool2dOptions } from "@ditcache/core";
import {
  broadcastShapes,
  DitcacheError,
  formatShape,
  invalidArgument,
  normalizeAxis,
  sizeOf,
} from "@ditcache/core";
import { type GraphBuilder, MICROSOFT_DOMAIN, type Sym } from "./graph-builder.js";
import type { OnnxLowering } from "./lowering.js";
import { expectInteger, expectRank, expectShape } from "./shapes.js";

/**
 * {@link Ops} over symbolic values: every call checks its operands, infers the static output
 * shape and records ONNX nodes into a {@link GraphBuilder}. Nothing is computed here.
 */
export class SymbolicOps implements Ops<Sym> {
  constructor(
    private readonly graph: GraphBuilder,
    private readonly lowering: Required<OnnxLowering>,
  ) {}

  shape(x: Sym): readonly number[] {
    this.graph.use(x);
    return x.shape;
  }

  constant(value: number | Float32Array, shape?: readonly number[]): Sym {
    if (typeof value === "number") {
      const dims = shape ?? [];
      checkDims("constant", dims);
      return this.graph.constant(new Float32Array(sizeOf(dims)).fill(value), dims);
    }
    if (!(value instanceof Float32Array))
      invalidArgument("constant: value", value, "a number or a Float32Array");
    const dims = shape ?? [value.length];
    checkDims("constant", dims);
    if (sizeOf(dims) !== value.length) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `constant: ${value.length} values do not fill shape ${formatShape(dims)} (expected ${sizeOf(dims)})`,
      );
    }
    return this.graph.constant(value, dims);
  }

  add(a: Sym, b: Sym): Sym {
    return this.binary("Add", a, b);
  }
  sub(a: Sym, b: Sym): Sym {
    return this.binary("Sub", a, b);
  }
  mul(a: Sym, b: Sym): Sym {
    return this.binary("Mul", a, b);
  }
  div(a: Sym, b: Sym): Sym {
    return this.binary("Div", a, b);
  }
  exp(x: Sym): Sym {
    return this.graph.node("Exp", [x], x.shape);
  }
  sqrt(x: Sym): Sym {
    return this.graph.node("Sqrt", [x], x.shape);
  }
  sin(x: Sym): Sym {
    return this.graph.node("Sin", [x], x.shape);
  }
  cos(x: Sym): Sym {
    return this.graph.node("Cos", [x], x.shape);
  }
  relu(x: Sym): Sym {
    return this.graph.node("Relu", [x], x.shape);
  }
  silu(x: Sym): Sym {
    // ORT fuses x * Sigmoid(x) into one kernel at the extended optimisation level.
    return this.graph.node("Mul", [x, this.graph.node("Sigmoid", [x], x.shape)], x.shape);
  }
  gelu(x: Sym, approximate: "tanh" | "none"): Sym {
    if (approximate !== "tanh" && approximate !== "none") {
      invalidArgument("gelu: approximate", approximate, '"tanh" or "none"');
    }
    if (this.lowering.gelu === "contrib") {
      const op = approximate === "tanh" ? "FastGelu" : "Gelu";
      return this.graph.node(op, [x], x.shape, undefined, MICROSOFT_DOMAIN);
    }
    return this.graph.node("Gelu", [x], x.shape, { approximate: { s: approximate } });
  }

  matmul(a: Sym, b: Sym): Sym {
    if (a.shape.length < 2 || b.shape.length < 2) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `matmul: operands must have rank >= 2, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`,
      );
    }
    const [m, k] = a.shape.slice(-2) as [number, number];
    const [k2, n] = b.shape.slice(-2) as [number, number];
    if (k !== k2) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `matmul: inner dimensions differ: ${formatShape(a.shape)} @ ${formatShape(b.shape)} (expected a's last = b's second last)`,
      );
    }
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return this.graph.node("MatMul", [a, b], [...batch, m, n]);
  }

  linear(x: Sym, weight: Sym, bias?: Sym): Sym {
    expectRank("linear", "weight", weight.shape, 2);
    const [outFeatures, inFeatures] = weight.shape as [number, number];
    if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== inFeatures) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `linear: input ${formatShape(x.shape)} does not end in weight's in_features ${inFeatures} (weight ${formatShape(weight.shape)})`,
      );
    }
    if (bias !== undefined) expectShape("linear", "bias", bias.shape, [outFeatures]);
    const outShape = [...x.shape.slice(0, -1), outFeatures];
    if (this.lowering.linear === "gemm") {
      const rows = sizeOf(x.shape.slice(0, -1));
      const flat = x.shape.length === 2 ? x : this.reshapeTo(x, [rows, inFeatures]);
      const inputs = bias === undefined ? [flat, weight] : [flat, weight, bias];
      const y = this.graph.node("Gemm", inputs, [rows, outFeatures], { transB: { i: 1 } });
      return x.shape.length === 2 ? y : this.reshapeTo(y, outShape);
    }
    // MatMul against (in, out): a constant weight is transposed once here, so ORT pre-packs it.
    const transposed =
      weight.data !== undefined
        ? this.graph.constant(
            transpose2d(weight.data, outFeatures, inFeatures),
            [inFeatures, outFeatures],
            "weight_t",
          )
        : this.graph.node("Transpose", [weight], [inFeatures, outFeatures], { perm: { ints: [1, 0] } });
    const y = this.graph.node("MatMul", [x, transposed], outShape);
    return bias === undefined ? y : this.graph.node("Add", [y, bias], outShape);
  }

  attention(q: Sym, k: Sym, v: Sym, scale: number): Sym {
    expectRank("attention", "q", q.shape, 4);
    expectRank("attention", "k", k.shape, 4);
    expectRank("attention", "v", v.shape, 4);
    const [batch, heads, queries, depth] = q.shape as [number, number, number, number];
    const keys = k.shape[2]!;
    expectShape("attention", "k", k.shape, [batch, heads, keys, depth]);
    if (v.shape[0] !== batch || v.shape[1] !== heads || v.shape[2] !== keys) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `attention: v ${formatShape(v.shape)} must be (${batch}, ${heads}, ${keys}, Dv) to match k ${formatShape(k.shape)}`,
      );
    }
    if (typeof scale !== "number" || !Number.isFinite(scale))
      invalidArgument("attention: scale", scale, "a finite number");
    // Scaling q (L x Dh) is cheaper than scaling the scores (L x S); ORT folds Transpose into
    // FusedMatMul(transB) at the extended optimisation level.
    const scaled = this.graph.node("Mul", [q, this.graph.constant(Float32Array.of(scale), [])], q.shape);
    const keysT = this.graph.node("Transpose", [k], [batch, heads, depth, keys], {
      perm: { ints: [0, 1, 3, 2] },
    });
    const scores = this.graph.node("MatMul", [scaled, keysT], [batch, heads, queries, keys]);
    const probabilities = this.graph.node("Softmax", [scores], scores.shape, { axis: { i: -1 } });
    return this.graph.node("MatMul", [probabilities, v], [batch, heads, queries, v.shape[3]!]);
  }

  layerNorm(x: Sym, eps: number, weight?: Sym, bias?: Sym): Sym {
    if (x.shape.length < 1)
      throw new DitcacheError("SHAPE_MISMATCH", "layerNorm: input must have rank >= 1, got a scalar");
    checkEps("layerNorm", eps);
    const features = x.shape[x.shape.length - 1]!;
    if (weight !== undefined) expectShape("layerNorm", "weight", weight.shape, [features]);
    if (bias !== undefined) expectShape("layerNorm", "bias", bias.shape, [features]);
    const scale = weight ?? this.graph.constant(new Float32Array(features).fill(1), [features], "ones");
    const inputs = bias === undefined ? [x, scale] : [x, scale, bias];
    return this.graph.node("LayerNormalization", inputs, x.shape, { axis: { i: -1 }, epsilon: { f: eps } });
  }

  groupNorm(x: Sym, groups: number, eps: number, weight?: Sym, bias?: Sym): Sym {
    if (x.shape.length < 2) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `groupNorm: input must be (N, C, ...), got ${formatShape(x.shape)}`,
      );
    }
    expectInteger("groupNorm", "groups", groups, 1);
    checkEps("groupNorm", eps);
    const [n, channels] = x.shape as [number, number];
    if (channels % groups !== 0)
      invalidArgument("groupNorm: groups", groups, `a divisor of the ${channels} channels`);
    if (weight !== undefined) expectShape("groupNorm", "weight", weight.shape, [channels]);
    if (bias !== undefined) expectShape("groupNorm", "bias", bias.shape, [channels]);
    // InstanceNormalization over (N, G, rest) normalises each group: GroupNorm without affine.
    const grouped = this.reshapeTo(x, [n, groups, sizeOf(x.shape) / (n * groups)]);
    const ones = this.graph.constant(new Float32Array(groups).fill(1), [groups], "ones");
    const zeros = this.graph.constant(new Float32Array(groups), [groups], "zeros");
    const normalized = this.graph.node("InstanceNormalization", [grouped, ones, zeros], grouped.shape, {
      epsilon: { f: eps },
    });
    let y = this.reshapeTo(normalized, x.shape);
    const perChannel = [channels, ...x.shape.slice(2).map(() => 1)];
    if (weight !== undefined) y = this.graph.node("Mul", [y, this.channelView(weight, perChannel)], x.shape);
    if (bias !== undefined) y = this.graph.node("Add", [y, this.channelView(bias, perChannel)], x.shape);
    return y;
  }

  softmax(x: Sym, axis: number): Sym {
    return this.graph.node("Softmax", [x], x.shape, {
      axis: { i: normalizeAxis(axis, x.shape.length) },
    });
  }

  conv2d(x: Sym, weight: Sym, bias: Sym | undefined, options: Conv2dOptions): Sym {
    expectRank("conv2d", "input", x.shape, 4);
    expectRank("conv2d", "weight", weight.shape, 4);
    const stride = expectInteger("conv2d", "stride", options?.stride ?? 1, 1);
    const padding = expectInteger("conv2d", "padding", options?.padding ?? 0, 0);
    const [n, cin, h, w] = x.shape as [number, number, number, number];
    const [cout, wcin, kh, kw] = weight.shape as [number, number, number, number];
    if (wcin !== cin) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `conv2d: weight ${formatShape(weight.shape)} expects ${wcin} input channels, input ${formatShape(x.shape)} has ${cin}`,
      );
    }
    if (bias !== undefined) expectShape("conv2d", "bias", bias.shape, [cout]);
    const outH = windowSize("conv2d", h, kh, stride, padding);
    const outW = windowSize("conv2d", w, kw, stride, padding);
    const inputs = bias === undefined ? [x, weight] : [x, weight, bias];
    return this.graph.node("Conv", inputs, [n, cout, outH, outW], {
      kernel_shape: { ints: [kh, kw] },
      strides: { ints: [stride, stride] },
      pads: { ints: [padding, padding, padding, padding] },
    });
  }

  maxPool2d(x: Sym, options: Pool2dOptions): Sym {
    return this.pool("MaxPool", "maxPool2d", x, options);
  }

  avgPool2d(x: Sym, options: Pool2dOptions): Sym {
    return this.pool("AveragePool", "avgPool2d", x, options, { count_include_pad: { i: 0 } });
  }

  upsampleNearest2d(x: Sym, factor: number): Sym {
    expectRank("upsampleNearest2d", "input", x.shape, 4);
    expectInteger("upsampleNearest2d", "factor", factor, 1);
    const [n, c, h, w] = x.shape as [number, number, number, number];
    // (N, C, H, 1, W, 1) broadcast to (N, C, H, f, W, f): exact nearest-neighbour copies.
    const spread = this.reshapeTo(x, [n, c, h, 1, w, 1]);
    const expanded = this.graph.node(
      "Expand",
      [spread, this.graph.int64s([n, c, h, factor, w, factor])],
      [n, c, h, factor, w, factor],
    );
    return this.reshapeTo(expanded, [n, c, h * factor, w * factor]);
  }

  reshape(x: Sym, shape: readonly number[]): Sym {
    if (!Array.isArray(shape as unknown)) invalidArgument("reshape: shape", shape, "an array of dimensions");
    const known = shape.filter((dim) => dim !== -1);
    if (known.some((dim) => !Number.isInteger(dim) || dim < 0) || shape.length - known.length > 1) {
      invalidArgument("reshape: shape", shape, "non-negative integers with at most one -1");
    }
    const total = sizeOf(x.shape);
    const knownSize = sizeOf(known);
    const inferred = knownSize === 0 ? 0 : total / knownSize;
    const resolved = shape.map((dim) => (dim === -1 ? inferred : dim));
    if (!Number.isInteger(inferred) || sizeOf(resolved) !== total) {
      throw new DitcacheError(
        "SHAPE_MISMATCH",
        `reshape: cannot reshape ${formatShape(x.shape)} (${total} elements) to ${formatShape(shape)}`,
      );
    }
    return this.reshapeTo(x, resolved);
  }

  transpose(x: Sym, perm: readonly number[]): Sym {
    const rank = x.shape.length;
    const valid =
      Array.isArray(perm as unknown) &&
      perm.length === rank &&
      [...perm].sort((a, b) => a - b).every((axis, i) => axis === i);
    if (!valid) invalidArgument("transpose: perm", perm, `a permutation of 0..${rank - 1}`);
    return this.graph.node(
      "Transpose",
      [x],
      perm.map((axis) => x.shape[axis]!),
      { perm: { ints: perm } },
    );
  }

  concat(xs: readonly Sym[], axis: number): Sym {
    if (!Array.isArray(xs as unknown) || xs.length === 0)
      invalidArgument("concat: xs", xs, "a non-empty array of values");
    const first = xs[0]!;
    const a = normalizeAxis(axis, first.shape.length);
    let total = 0;
    for (const x of xs) {
      const matches =
        x.shape.length === first.shape.length && x.shape.every((dim, i) => i === a || dim === first.shape[i]);
      if (!matches) {
        throw new DitcacheError(
          "SHAPE_MISMATCH",
          `concat: ${formatShape(x.shape)} does not match ${formatShape(first.shape)} outside axis ${a}`,
        );
      }
      total += x.shape[a]!;
    }
    const shape = first.shape.map((dim, i) => (i === a ? total : dim));
    return this.graph.node("Concat", xs, shape, { axis: { i: a } });
  }

  slice(x: Sym, axis: number, start: number, end: number): Sym {
    const a = normalizeAxis(axis, x.shape.length);
    const dim = x.shape[a]!;
    if (!Number.isInteger(start)) invalidArgument("slice: start", start, "an integer");
    if (!Number.isInteger(end)) invalidArgument("slice: end", end, "an integer");
    // Python semantics: negative indices count from the end, out-of-range ones clamp.
    const from = clamp(start < 0 ? start + dim : start, 0, dim);
    const to = Math.max(from, clamp(end < 0 ? end + dim : end, 0, dim));
    const shape = x.shape.map((size, i) => (i === a ? to - from : size));
    const g = this.graph;
    return g.node("Slice", [x, g.int64s([from]), g.int64s([to]), g.int64s([a])], shape);
  }

  sum(x: Sym, axes: readonly number[], keepDims: boolean): Sym {
    return this.reduce("ReduceSum", "sum", x, axes, keepDims);
  }

  mean(x: Sym, axes: readonly number[], keepDims: boolean): Sym {
    return this.reduce("ReduceMean", "mean", x, axes, keepDims);
  }

  private binary(opType: string, a: Sym, b: Sym): Sym {
    return this.graph.node(opType, [a, b], broadcastShapes(a.shape, b.shape));
  }

  private reshapeTo(x: Sym, shape: readonly number[]): Sym {
    return this.graph.node("Reshape", [x, this.graph.int64s(shape)], shape);
  }

  /** A (C) vector viewed as (C, 1, ..., 1); constants are re-shaped without a node. */
  private channelView(vector: Sym, shape: readonly number[]): Sym {
    return vector.data !== undefined
      ? this.graph.constant(vector.data, shape, "channel")
      : this.reshapeTo(vector, shape);
  }

  private pool(
    opType: string,
    op: string,
    x: Sym,
    options: Pool2dOptions,
    extra: Record<string, { i: number }> = {},
  ): Sym {
    expectRank(op, "input", x.shape, 4);
    const kernel = expectInteger(op, "kernel", options?.kernel, 1);
    const stride = expectInteger(op, "stride", options.stride ?? kernel, 1);
    const padding = expectInteger(op, "padding", options.padding ?? 0, 0);
    if (padding * 2 > kernel)
      invalidArgument(`${op}: padding`, padding, `at most half the kernel (${kernel})`);
    const [n, c, h, w] = x.shape as [number, number, number, number];
    const shape = [
      n,
      c,
      windowSize(op, h, kernel, stride, padding),
      windowSize(op, w, kernel, stride, padding),
    ];
    return this.graph.node(opType, [x], shape, {
      kernel_shape: { ints: [kernel, kernel] },
      strides: { ints: [stride, stride] },
      pads: { ints: [padding, padding, padding, padding] },
      ...extra,
    });
  }

  private reduce(opType: string, op: string, x: Sym, axes: readonly number[], keepDims: boolean): Sym {
    if (!Array.isArray(axes as unknown)) invalidArgument(`${op}: axes`, axes, "an array of axes");
    const normalized = axes.map((axis) => normalizeAxis(axis, x.shape.length));
    if (new Set(normalized).size !== normalized.length) invalidArgument(`${op}: axes`, axes, "distinct axes");
    if (normalized.length === 0) return this.graph.node("Identity", [x], x.shape);
    const shape = keepDims
      ? x.shape.map((dim, i) => (normalized.includes(i) ? 1 : dim))
      : x.shape.filter((_, i) => !normalized.includes(i));
    return this.graph.node(opType, [x, this.graph.int64s(normalized)], shape, {
      keepdims: { i: keepDims ? 1 : 0 },
    });
  }
}

function checkDims(op: string, dims: readonly number[]): void {
  if (!Array.isArray(dims as unknown) || dims.some((dim) => !Number.isInteger(dim) || dim < 0)) {
    invalidArgument(`${op}: shape`, dims, "an array of non-negative integers");
  }
}

function checkEps(op: string, eps: number): void {
  if (typeof eps !== "number" || !(eps >= 0) || !Number.isFinite(eps))
    invalidArgument(`${op}: eps`, eps, "a finite number >= 0");
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}

/** Output size of a sliding window; SHAPE_MISMATCH when the window does not fit. */
function windowSize(op: string, size: number, kernel: number, stride: number, padding: number): number {
  const out = Math.floor((size + 2 * padding - kernel) / stride) + 1;
  if (out < 1) {
    throw new DitcacheError(
      "SHAPE_MISMATCH",
      `${op}: kernel ${kernel} with padding ${padding} does not fit a spatial size of ${size}`,
    );
  }
  return out;
}

/** (rows, cols) row-major -> (cols, rows), blocked so both sides stay in cache. */
function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const block = 32;
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(r0 + block, rows);
    for (let c0 = 0; c0 < cols; c0 += block) {
      const c1 = Math.min(c0 + block, cols);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) out[c * rows + r] = data[r * cols + c]!;
      }
    }
  }
  return out;
}
