import { DitcacheError } from "@ditcache/core";

/**
 * Dense symmetric eigensolver in float64: Householder reduction to tridiagonal form followed by
 * the implicit QL algorithm with Wilkinson-style shifts (EISPACK tred2/tql2, as in JAMA).
 * O(n^3), backward stable; fine up to a few thousand dimensions. Matrices are row-major
 * `Float64Array`s of n*n values.
 */

/** Eigenvalues (ascending) and, when requested, eigenvectors as the rows of a row-major matrix. */
export interface SymmetricEigen {
  /** Eigenvalues, ascending. */
  readonly values: Float64Array;
  /** Row-major n x n matrix whose row j is the unit eigenvector of `values[j]`; absent when not requested. */
  readonly vectors?: Float64Array;
}

/**
 * Eigendecomposition of a symmetric matrix (only the lower triangle is read).
 *
 * @param matrix - row-major n x n values; not modified.
 * @param vectors - also compute eigenvectors (the cost roughly doubles).
 * @throws DitcacheError INVALID_ARGUMENT for a wrong size, NUMERIC_FAULT for non-finite input
 *   or when QL fails to converge.
 */
export function symmetricEigen(matrix: Float64Array, n: number, vectors = true): SymmetricEigen {
  if (!Number.isSafeInteger(n) || n < 0 || matrix.length !== n * n) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `matrix: expected ${n}x${n} = ${n * n} values, got ${matrix.length}`,
    );
  }
  for (let i = 0; i < matrix.length; i++) {
    if (!Number.isFinite(matrix[i]!))
      throw new DitcacheError("NUMERIC_FAULT", `matrix: non-finite value at index ${i}`);
  }
  if (n === 0)
    return vectors
      ? { values: new Float64Array(0), vectors: new Float64Array(0) }
      : { values: new Float64Array(0) };
  // v: working copy, symmetrised from the lower triangle.
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      const value = matrix[i * n + j]!;
      v[i * n + j] = value;
      v[j * n + i] = value;
    }
  }
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  // v is symmetric, so it is its own transpose: the layout tridiagonalize expects.
  tridiagonalize(v, n, d, e, vectors);
  tridiagonalQl(v, n, d, e, vectors);
  return vectors ? { values: d, vectors: v } : { values: d };
}

/**
 * Householder tridiagonalisation (tred2). On exit d/e hold the tridiagonal and, when
 * accumulating, `w` the orthogonal transform transposed. EISPACK works on the lower triangle
 * column by column; this version indexes the transpose (w[j * n + k] is V[k][j]) so that every
 * O(n^3) loop runs over contiguous memory.
 */
function tridiagonalize(
  w: Float64Array,
  n: number,
  d: Float64Array,
  e: Float64Array,
  accumulate: boolean,
): void {
  for (let j = 0; j < n; j++) d[j] = w[j * n + n - 1]!;
  for (let i = n - 1; i > 0; i--) {
    // Scale to avoid under/overflow.
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = w[j * n + i - 1]!;
        w[j * n + i] = 0;
        w[i * n + j] = 0;
      }
    } else {
      // Generate the Householder vector.
      for (let k = 0; k < i; k++) {
        d[k] = d[k]! / scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // Apply the similarity transformation to the remaining columns.
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        const row = j * n;
        w[i * n + j] = f;
        g = e[j]! + w[row + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          const value = w[row + k]!;
          g += value * d[k]!;
          e[k] = e[k]! + value * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        const row = j * n;
        for (let k = j; k <= i - 1; k++) w[row + k] = w[row + k]! - (f * e[k]! + g * d[k]!);
        d[j] = w[row + i - 1]!;
        w[row + i] = 0;
      }
    }
    d[i] = h;
  }
  if (accumulate) {
    // Accumulate the transformations.
    for (let i = 0; i < n - 1; i++) {
      w[i * n + n - 1] = w[i * n + i]!;
      w[i * n + i] = 1;
      const h = d[i + 1]!;
      const next = (i + 1) * n;
      if (h !== 0) {
        for (let k = 0; k <= i; k++) d[k] = w[next + k]! / h;
        for (let j = 0; j <= i; j++) {
          const row = j * n;
          let g = 0;
          for (let k = 0; k <= i; k++) g += w[next + k]! * w[row + k]!;
          for (let k = 0; k <= i; k++) w[row + k] = w[row + k]! - g * d[k]!;
        }
      }
      for (let k = 0; k <= i; k++) w[next + k] = 0;
    }
    for (let j = 0; j < n; j++) {
      d[j] = w[j * n + n - 1]!;
      w[j * n + n - 1] = 0;
    }
    w[(n - 1) * n + n - 1] = 1;
  } else {
    // Without accumulation the tridiagonal's diagonal is left on the working matrix's diagonal.
    for (let j = 0; j < n; j++) d[j] = w[j * n + j]!;
  }
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
}

/**
 * Implicit QL on the symmetric tridiagonal (tql2); sorts eigenvalues ascending. `w` holds the
 * accumulated transform transposed (eigenvectors as rows).
 */
function tridiagonalQl(
  w: Float64Array,
  n: number,
  d: Float64Array,
  e: Float64Array,
  accumulate: boolean,
): void {
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    // Find a small subdiagonal element.
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    // If m === l, d[l] is already an eigenvalue; otherwise iterate.
    if (m > l) {
      let iterations = 0;
      do {
        if (++iterations > 60) {
          throw new DitcacheError(
            "NUMERIC_FAULT",
            `symmetric eigensolver: QL did not converge for eigenvalue ${l} of ${n}`,
          );
        }
        // Compute the implicit shift.
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;
        // Implicit QL transformation.
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          if (accumulate) {
            const upper = (i + 1) * n;
            const lower = i * n;
            for (let k = 0; k < n; k++) {
              const above = w[upper + k]!;
              const below = w[lower + k]!;
              w[upper + k] = s * below + c * above;
              w[lower + k] = c * below - s * above;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
  // Sort eigenvalues (and vectors) ascending.
  for (let i = 0; i < n - 1; i++) {
    let k = i;
    let p = d[i]!;
    for (let j = i + 1; j < n; j++) {
      if (d[j]! < p) {
        k = j;
        p = d[j]!;
      }
    }
    if (k !== i) {
      d[k] = d[i]!;
      d[i] = p;
      if (accumulate) {
        const rowI = w.slice(i * n, i * n + n);
        w.copyWithin(i * n, k * n, k * n + n);
        w.set(rowI, k * n);
      }
    }
  }
}

/**
 * tr(sqrt(A B)) for symmetric positive semi-definite A and B, the cross term of the Fréchet
 * distance. A B is not symmetric, but it is similar to the symmetric PSD matrix
 * sqrt(A) B sqrt(A) = V (D^1/2 V^T B V D^1/2) V^T with A = V D V^T, so the trace of its square
 * root is the sum of square roots of the eigenvalues of D^1/2 V^T B V D^1/2. Eigenvalues at the
 * rounding noise floor (below n eps max|lambda|, including slightly negative ones) count as 0.
 */
export function traceSqrtProduct(a: Float64Array, b: Float64Array, n: number): number {
  if (b.length !== n * n)
    throw new DitcacheError("INVALID_ARGUMENT", `b: expected ${n * n} values, got ${b.length}`);
  const { values, vectors } = symmetricEigen(a, n, true);
  const w = vectors!; // rows w_i: eigenvectors of A
  const rootD = new Float64Array(n);
  for (let i = 0; i < n; i++) rootD[i] = Math.sqrt(Math.max(values[i]!, 0));
  // u_j = B w_j, as rows (B is symmetric, so (B w_j)_k = <B row k, w_j>).
  const u = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    if (rootD[j] === 0) continue; // its row and column of M vanish
    const wj = w.subarray(j * n, j * n + n);
    for (let k = 0; k < n; k++) u[j * n + k] = dot(b.subarray(k * n, k * n + n), wj);
  }
  // M = D^1/2 W B W^T D^1/2: M_ij = sqrt(d_i) <w_i, u_j> sqrt(d_j); lower triangle only.
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    if (rootD[i] === 0) continue;
    const wi = w.subarray(i * n, i * n + n);
    for (let j = 0; j <= i; j++) {
      if (rootD[j] === 0) continue;
      m[i * n + j] = rootD[i]! * dot(wi, u.subarray(j * n, j * n + n)) * rootD[j]!;
    }
  }
  const { values: mValues } = symmetricEigen(m, n, false);
  // Eigenvalues below the solver's noise floor (n eps |lambda_max|) are rounding residue of
  // exact zeros (singular covariances); their square roots (~1e-8 relative) would only add noise.
  const floor = n * 2 ** -52 * Math.max(Math.abs(mValues[0]!), Math.abs(mValues[n - 1]!));
  let trace = 0;
  for (let i = 0; i < n; i++) if (mValues[i]! > floor) trace += Math.sqrt(mValues[i]!);
  return trace;
}

function dot(x: Float64Array, y: Float64Array): number {
  let sum = 0;
  for (let k = 0; k < x.length; k++) sum += x[k]! * y[k]!;
  return sum;
}
