/**
 * out[M, N] = a[M, K] · b[N, K]^T (+ bias[N]), rows contiguous: every output is the dot product
 * of a row of `a` and a row of `b`, so both operands are read along memory. Products are
 * accumulated in float64 (JavaScript numbers) in 4x4 register blocks and rounded to float32
 * once; rows of `b` are visited in panels that stay in cache while every row of `a` passes.
 */
export function gemmNT(
  a: Float32Array,
  aOffset: number,
  b: Float32Array,
  bOffset: number,
  out: Float32Array,
  outOffset: number,
  m: number,
  n: number,
  k: number,
  bias?: Float32Array,
  scale = 1,
): void {
  const panel = Math.max(4, Math.min(n, Math.floor(65536 / Math.max(1, k)) & ~3));
  for (let j0 = 0; j0 < n; j0 += panel) {
    const j1 = Math.min(n, j0 + panel);
    let i = 0;
    for (; i + 4 <= m; i += 4) {
      const a0 = aOffset + i * k;
      const a1 = a0 + k;
      const a2 = a1 + k;
      const a3 = a2 + k;
      const o0 = outOffset + i * n;
      const o1 = o0 + n;
      const o2 = o1 + n;
      const o3 = o2 + n;
      let j = j0;
      for (; j + 4 <= j1; j += 4) {
        const b0 = bOffset + j * k;
        const b1 = b0 + k;
        const b2 = b1 + k;
        const b3 = b2 + k;
        let s00 = 0,
          s01 = 0,
          s02 = 0,
          s03 = 0;
        let s10 = 0,
          s11 = 0,
          s12 = 0,
          s13 = 0;
        let s20 = 0,
          s21 = 0,
          s22 = 0,
          s23 = 0;
        let s30 = 0,
          s31 = 0,
          s32 = 0,
          s33 = 0;
        for (let p = 0; p < k; p++) {
          const x0 = a[a0 + p]!;
          const x1 = a[a1 + p]!;
          const x2 = a[a2 + p]!;
          const x3 = a[a3 + p]!;
          const y0 = b[b0 + p]!;
          const y1 = b[b1 + p]!;
          const y2 = b[b2 + p]!;
          const y3 = b[b3 + p]!;
          s00 += x0 * y0;
          s01 += x0 * y1;
          s02 += x0 * y2;
          s03 += x0 * y3;
          s10 += x1 * y0;
          s11 += x1 * y1;
          s12 += x1 * y2;
          s13 += x1 * y3;
          s20 += x2 * y0;
          s21 += x2 * y1;
          s22 += x2 * y2;
          s23 += x2 * y3;
          s30 += x3 * y0;
          s31 += x3 * y1;
          s32 += x3 * y2;
          s33 += x3 * y3;
        }
        const c0 = bias === undefined ? 0 : bias[j]!;
        const c1 = bias === undefined ? 0 : bias[j + 1]!;
        const c2 = bias === undefined ? 0 : bias[j + 2]!;
        const c3 = bias === undefined ? 0 : bias[j + 3]!;
        out[o0 + j] = s00 * scale + c0;
        out[o0 + j + 1] = s01 * scale + c1;
        out[o0 + j + 2] = s02 * scale + c2;
        out[o0 + j + 3] = s03 * scale + c3;
        out[o1 + j] = s10 * scale + c0;
        out[o1 + j + 1] = s11 * scale + c1;
        out[o1 + j + 2] = s12 * scale + c2;
        out[o1 + j + 3] = s13 * scale + c3;
        out[o2 + j] = s20 * scale + c0;
        out[o2 + j + 1] = s21 * scale + c1;
        out[o2 + j + 2] = s22 * scale + c2;
        out[o2 + j + 3] = s23 * scale + c3;
        out[o3 + j] = s30 * scale + c0;
        out[o3 + j + 1] = s31 * scale + c1;
        out[o3 + j + 2] = s32 * scale + c2;
        out[o3 + j + 3] = s33 * scale + c3;
      }
      for (; j < j1; j++) {
        for (let r = 0; r < 4; r++)
          out[o0 + r * n + j] =
            dot(a, a0 + r * k, b, bOffset + j * k, k) * scale + (bias === undefined ? 0 : bias[j]!);
      }
    }
    for (; i < m; i++) {
      const ai = aOffset + i * k;
      const oi = outOffset + i * n;
      for (let j = j0; j < j1; j++)
        out[oi + j] = dot(a, ai, b, bOffset + j * k, k) * scale + (bias === undefined ? 0 : bias[j]!);
    }
  }
}

function dot(a: Float32Array, aOffset: number, b: Float32Array, bOffset: number, k: number): number {
  let sum = 0;
  for (let p = 0; p < k; p++) sum += a[aOffset + p]! * b[bOffset + p]!;
  return sum;
}

/** Transposes the last two axes of a (rows, cols) matrix at an offset into `out` (cols, rows). */
export function transpose2d(
  source: Float32Array,
  sourceOffset: number,
  rows: number,
  cols: number,
  out: Float32Array,
  outOffset: number,
): void {
  const tile = 32;
  for (let r0 = 0; r0 < rows; r0 += tile) {
    const r1 = Math.min(rows, r0 + tile);
    for (let c0 = 0; c0 < cols; c0 += tile) {
      const c1 = Math.min(cols, c0 + tile);
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) out[outOffset + c * rows + r] = source[sourceOffset + r * cols + c]!;
      }
    }
  }
}
