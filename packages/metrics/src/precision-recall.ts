import { invalidArgument } from "@ditcache/core";

/** Options of {@link precisionRecall}. */
export interface PrecisionRecallOptions {
  /** The k of the k-nearest-neighbour radius that spans each manifold. @defaultValue 3 */
  k?: number;
  /** Query rows per block of the pairwise distance computation (bounds memory, keeps rows in cache). @defaultValue 64 */
  blockSize?: number;
}

/** Result of {@link precisionRecall}. */
export interface PrecisionRecall {
  /** Fraction of generated samples inside the real manifold (fidelity). */
  precision: number;
  /** Fraction of real samples inside the generated manifold (diversity). */
  recall: number;
}

/**
 * Improved precision and recall (Kynkäänniemi et al., 2019). Each set spans a manifold: the
 * union of balls around its points, each ball's radius the distance to that point's k-th
 * nearest neighbour in the same set (the point itself excluded). Precision is the fraction of
 * generated points inside the real manifold, recall the fraction of real points inside the
 * generated one. Distances are exact Euclidean distances in float64 over all pairs, computed in
 * blocks; memory is O(N k) besides the inputs.
 *
 * @param real - row-major (N, dim) features of reference samples.
 * @param generated - row-major (M, dim) features of generated samples.
 * @throws DitcacheError INVALID_ARGUMENT for bad sizes or a set with no more than k samples.
 */
export function precisionRecall(
  real: Float32Array,
  generated: Float32Array,
  dim: number,
  options: PrecisionRecallOptions = {},
): PrecisionRecall {
  if (!Number.isSafeInteger(dim) || dim < 1) invalidArgument("dim", dim, "a positive integer");
  const k = options.k ?? 3;
  if (!Number.isSafeInteger(k) || k < 1) invalidArgument("options.k", k, "a positive integer");
  const blockSize = options.blockSize ?? 64;
  if (!Number.isSafeInteger(blockSize) || blockSize < 1)
    invalidArgument("options.blockSize", blockSize, "a positive integer");
  const a = toRows(real, dim, k, "real");
  const b = toRows(generated, dim, k, "generated");
  const realRadii = kthNeighbourDistances(a, dim, k, blockSize);
  const generatedRadii = kthNeighbourDistances(b, dim, k, blockSize);
  return {
    precision: coveredFraction(b, a, realRadii, dim),
    recall: coveredFraction(a, b, generatedRadii, dim),
  };
}

function toRows(values: Float32Array, dim: number, k: number, name: string): Float64Array {
  if (!(values instanceof Float32Array)) invalidArgument(name, values, "a Float32Array");
  if (values.length % dim !== 0) invalidArgument(`${name}.length`, values.length, `a multiple of dim ${dim}`);
  const count = values.length / dim;
  if (count <= k) invalidArgument(`${name}`, `${count} samples`, `more than k = ${k} samples`);
  const out = Float64Array.from(values);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i]!)) invalidArgument(`${name}[${i}]`, out[i], "a finite value");
  }
  return out;
}

function squaredDistance(x: Float64Array, i: number, y: Float64Array, j: number, dim: number): number {
  let sum = 0;
  const xi = i * dim;
  const yj = j * dim;
  for (let d = 0; d < dim; d++) {
    const delta = x[xi + d]! - y[yj + d]!;
    sum += delta * delta;
  }
  return sum;
}

/** Squared distance from each point to its k-th nearest other point of the same set. */
function kthNeighbourDistances(
  points: Float64Array,
  dim: number,
  k: number,
  blockSize: number,
): Float64Array {
  const count = points.length / dim;
  const radii = new Float64Array(count);
  const nearest = new Float64Array(blockSize * k); // per query row: k smallest, ascending
  for (let start = 0; start < count; start += blockSize) {
    const end = Math.min(start + blockSize, count);
    nearest.fill(Number.POSITIVE_INFINITY);
    for (let j = 0; j < count; j++) {
      for (let i = start; i < end; i++) {
        if (i === j) continue;
        const distance = squaredDistance(points, i, points, j, dim);
        const base = (i - start) * k;
        if (distance >= nearest[base + k - 1]!) continue;
        let slot = k - 1;
        while (slot > 0 && nearest[base + slot - 1]! > distance) {
          nearest[base + slot] = nearest[base + slot - 1]!;
          slot--;
        }
        nearest[base + slot] = distance;
      }
    }
    for (let i = start; i < end; i++) radii[i] = nearest[(i - start) * k + k - 1]!;
  }
  return radii;
}

/** Fraction of probes within the radius of at least one manifold point (boundary included). */
function coveredFraction(
  probes: Float64Array,
  manifold: Float64Array,
  radii: Float64Array,
  dim: number,
): number {
  const probeCount = probes.length / dim;
  const manifoldCount = manifold.length / dim;
  let inside = 0;
  for (let i = 0; i < probeCount; i++) {
    for (let j = 0; j < manifoldCount; j++) {
      if (squaredDistance(probes, i, manifold, j, dim) <= radii[j]!) {
        inside++;
        break;
      }
    }
  }
  return inside / probeCount;
}
