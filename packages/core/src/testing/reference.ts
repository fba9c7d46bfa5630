/**
 * Naive float64 reference implementations of every op, written for obviousness rather than
 * speed: each output element is computed from its index by the textbook formula.
 */

/** A float64 tensor of the reference implementations. */
export interface RefTensor {
  /** Dimensions, outermost first. */
  readonly shape: readonly number[];
  /** Values, row-major. */
  readonly data: Float64Array;
}

function size(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

function strides(shape: readonly number[]): number[] {
  const out: number[] = [];
  let stride = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = stride;
    stride *= shape[i]!;
  }
  return out;
}

function unravel(index: number, shape: readonly number[]): number[] {
  const out = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = index % shape[d]!;
    index = Math.floor(index / shape[d]!);
  }
  return out;
}

function ravel(coordinates: readonly number[], shape: readonly number[]): number {
  const s = strides(shape);
  return coordinates.reduce((sum, c, d) => sum + c * s[d]!, 0);
}

function tensor(shape: readonly number[], fill: (coordinates: number[]) => number): RefTensor {
  const data = new Float64Array(size(shape));
  for (let i = 0; i < data.length; i++) data[i] = fill(unravel(i, shape));
  return { shape: [...shape], data };
}

function at(x: RefTensor, coordinates: readonly number[]): number {
  return x.data[ravel(coordinates, x.shape)]!;
}

/** Reads an element of `x` at output coordinates under NumPy broadcasting. */
function broadcastAt(x: RefTensor, coordinates: readonly number[]): number {
  const offset = coordinates.length - x.shape.length;
  return at(
    x,
    x.shape.map((dim, d) => (dim === 1 ? 0 : coordinates[offset + d]!)),
  );
}

function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`reference: shapes do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

function axisOf(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** erf by its everywhere-convergent series 2/√π e^{-x²} Σ 2^n x^{2n+1} / (1·3·…·(2n+1)). */
export function referenceErf(x: number): number {
  if (Math.abs(x) > 6) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 500 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
  }
  return (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
}

/** The reference op table (float64, plain loops). */
export const reference = {
  binary(a: RefTensor, b: RefTensor, f: (x: number, y: number) => number): RefTensor {
    return tensor(broadcastShape(a.shape, b.shape), (c) => f(broadcastAt(a, c), broadcastAt(b, c)));
  },
  unary(x: RefTensor, f: (value: number) => number): RefTensor {
    return { shape: x.shape, data: x.data.map(f) };
  },
  gelu(x: RefTensor, approximate: "tanh" | "none"): RefTensor {
    return reference.unary(x, (v) =>
      approximate === "tanh"
        ? 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))
        : 0.5 * v * (1 + referenceErf(v / Math.SQRT2)),
    );
  },
  matmul(a: RefTensor, b: RefTensor): RefTensor {
    const m = a.shape[a.shape.length - 2]!;
    const k = a.shape[a.shape.length - 1]!;
    const n = b.shape[b.shape.length - 1]!;
    const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
    return tensor([...batch, m, n], (c) => {
      const lead = c.slice(0, -2);
      const [i, j] = c.slice(-2) as [number, number];
      let sum = 0;
      for (let p = 0; p < k; p++) sum += broadcastAt(a, [...lead, i, p]) * broadcastAt(b, [...lead, p, j]);
      return sum;
    });
  },
  linear(x: RefTensor, weight: RefTensor, bias?: RefTensor): RefTensor {
    const [outFeatures, inFeatures] = weight.shape as [number, number];
    return tensor([...x.shape.slice(0, -1), outFeatures], (c) => {
      const row = c.slice(0, -1);
      const o = c[c.length - 1]!;
      let sum = bias === undefined ? 0 : bias.data[o]!;
      for (let i = 0; i < inFeatures; i++) sum += at(x, [...row, i]) * weight.data[o * inFeatures + i]!;
      return sum;
    });
  },
  softmax(x: RefTensor, axis: number): RefTensor {
    const a = axisOf(axis, x.shape.length);
    return tensor(x.shape, (c) => {
      const values: number[] = [];
      for (let j = 0; j < x.shape[a]!; j++)
        values.push(
          at(
            x,
            c.map((v, d) => (d === a ? j : v)),
          ),
        );
      const max = Math.max(...values);
      const total = values.reduce((sum, v) => sum + Math.exp(v - max), 0);
      return Math.exp(at(x, c) - max) / total;
    });
  },
  attention(q: RefTensor, k: RefTensor, v: RefTensor, scale: number): RefTensor {
    const [batch, heads, length, depth] = q.shape as [number, number, number, number];
    const keys = k.shape[2]!;
    const valueDepth = v.shape[3]!;
    return tensor([batch, heads, length, valueDepth], ([b, h, i, e]) => {
      const scores: number[] = [];
      for (let j = 0; j < keys; j++) {
        let dot = 0;
        for (let d = 0; d < depth; d++) dot += at(q, [b!, h!, i!, d]) * at(k, [b!, h!, j, d]);
        scores.push(dot * scale);
      }
      const max = Math.max(...scores);
      const total = scores.reduce((sum, s) => sum + Math.exp(s - max), 0);
      let out = 0;
      for (let j = 0; j < keys; j++) out += (Math.exp(scores[j]! - max) / total) * at(v, [b!, h!, j, e!]);
      return out;
    });
  },
  layerNorm(x: RefTensor, eps: number, weight?: RefTensor, bias?: RefTensor): RefTensor {
    const length = x.shape[x.shape.length - 1]!;
    return tensor(x.shape, (c) => {
      const row = c.slice(0, -1);
      const values = Array.from({ length }, (_, i) => at(x, [...row, i]));
      const mean = values.reduce((s, v) => s + v, 0) / length;
      const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / length;
      const i = c[c.length - 1]!;
      const normalized = (values[i]! - mean) / Math.sqrt(variance + eps);
      return normalized * (weight?.data[i] ?? 1) + (bias?.data[i] ?? 0);
    });
  },
  groupNorm(x: RefTensor, groups: number, eps: number, weight?: RefTensor, bias?: RefTensor): RefTensor {
    const channels = x.shape[1]!;
    const perGroup = channels / groups;
    const spatialShape = x.shape.slice(2);
    return tensor(x.shape, (c) => {
      const [n, channel] = c as [number, number];
      const group = Math.floor(channel / perGroup);
      const values: number[] = [];
      for (let ch = group * perGroup; ch < (group + 1) * perGroup; ch++) {
        for (let s = 0; s < size(spatialShape); s++) values.push(at(x, [n, ch, ...unravel(s, spatialShape)]));
      }
      const mean = values.reduce((sum, v) => sum + v, 0) / values.length;
      const variance = values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / values.length;
      const normalized = (at(x, c) - mean) / Math.sqrt(variance + eps);
      return normalized * (weight?.data[channel] ?? 1) + (bias?.data[channel] ?? 0);
    });
  },
  conv2d(
    x: RefTensor,
    weight: RefTensor,
    bias: RefTensor | undefined,
    stride: number,
    padding: number,
  ): RefTensor {
    const [batch, inChannels, height, width] = x.shape as [number, number, number, number];
    const [outChannels, , kernelH, kernelW] = weight.shape as [number, number, number, number];
    const outH = Math.floor((height + 2 * padding - kernelH) / stride) + 1;
    const outW = Math.floor((width + 2 * padding - kernelW) / stride) + 1;
    return tensor([batch, outChannels, outH, outW], ([n, o, oy, ox]) => {
      let sum = bias?.data[o!] ?? 0;
      for (let c = 0; c < inChannels; c++) {
        for (let ky = 0; ky < kernelH; ky++) {
          for (let kx = 0; kx < kernelW; kx++) {
            const iy = oy! * stride - padding + ky;
            const ix = ox! * stride - padding + kx;
            if (iy >= 0 && iy < height && ix >= 0 && ix < width)
              sum += at(x, [n!, c, iy, ix]) * at(weight, [o!, c, ky, kx]);
          }
        }
      }
      return sum;
    });
  },
  pool(x: RefTensor, kind: "max" | "avg", kernel: number, stride: number, padding: number): RefTensor {
    const [batch, channels, height, width] = x.shape as [number, number, number, number];
    const outH = Math.floor((height + 2 * padding - kernel) / stride) + 1;
    const outW = Math.floor((width + 2 * padding - kernel) / stride) + 1;
    return tensor([batch, channels, outH, outW], ([n, c, oy, ox]) => {
      const values: number[] = [];
      for (let ky = 0; ky < kernel; ky++) {
        for (let kx = 0; kx < kernel; kx++) {
          const iy = oy! * stride - padding + ky;
          const ix = ox! * stride - padding + kx;
          if (iy >= 0 && iy < height && ix >= 0 && ix < width) values.push(at(x, [n!, c!, iy, ix]));
        }
      }
      return kind === "max" ? Math.max(...values) : values.reduce((s, v) => s + v, 0) / values.length;
    });
  },
  upsampleNearest2d(x: RefTensor, factor: number): RefTensor {
    const [batch, channels, height, width] = x.shape as [number, number, number, number];
    return tensor([batch, channels, height * factor, width * factor], ([n, c, y, xx]) =>
      at(x, [n!, c!, Math.floor(y! / factor), Math.floor(xx! / factor)]),
    );
  },
  reshape(x: RefTensor, shape: readonly number[]): RefTensor {
    const known = shape.filter((dim) => dim !== -1).reduce((p, d) => p * d, 1);
    return { shape: shape.map((dim) => (dim === -1 ? x.data.length / known : dim)), data: x.data.slice() };
  },
  transpose(x: RefTensor, perm: readonly number[]): RefTensor {
    const shape = perm.map((axis) => x.shape[axis]!);
    return tensor(shape, (c) => {
      const source = new Array<number>(c.length);
      perm.forEach((axis, d) => {
        source[axis] = c[d]!;
      });
      return at(x, source);
    });
  },
  concat(xs: readonly RefTensor[], axis: number): RefTensor {
    const a = axisOf(axis, xs[0]!.shape.length);
    const shape = [...xs[0]!.shape];
    shape[a] = xs.reduce((sum, x) => sum + x.shape[a]!, 0);
    return tensor(shape, (c) => {
      let position = c[a]!;
      for (const x of xs) {
        if (position < x.shape[a]!)
          return at(
            x,
            c.map((v, d) => (d === a ? position : v)),
          );
        position -= x.shape[a]!;
      }
      throw new Error("reference concat: out of range");
    });
  },
  slice(x: RefTensor, axis: number, start: number, end: number): RefTensor {
    const a = axisOf(axis, x.shape.length);
    const shape = x.shape.map((dim, d) => (d === a ? end - start : dim));
    return tensor(shape, (c) =>
      at(
        x,
        c.map((v, d) => (d === a ? v + start : v)),
      ),
    );
  },
  reduce(x: RefTensor, axes: readonly number[], keepDims: boolean, average: boolean): RefTensor {
    const reduced = new Set(axes.map((axis) => axisOf(axis, x.shape.length)));
    const kept = x.shape.map((dim, d) => (reduced.has(d) ? 1 : dim));
    const sums = tensor(kept, () => 0);
    for (let i = 0; i < x.data.length; i++) {
      const c = unravel(i, x.shape).map((v, d) => (reduced.has(d) ? 0 : v));
      sums.data[ravel(c, kept)]! += x.data[i]!;
    }
    const count = x.data.length / Math.max(1, sums.data.length);
    const data = average ? sums.data.map((v) => v / count) : sums.data;
    return { shape: keepDims ? kept : x.shape.filter((_, d) => !reduced.has(d)), data };
  },
};
