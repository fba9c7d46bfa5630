import {
  DitcacheError,
  invalidArgument,
  readSafetensors,
  readSafetensorsFile,
  writeFileAtomic,
  writeSafetensors,
} from "@ditcache/core";

/** Which feature extractor produced a set of statistics; stats of different extractors never mix. */
export interface ExtractorIdentity {
  /** Extractor name, e.g. "mnist-classifier" or "inception-v3-pool3". */
  readonly name: string;
  /** Hash of the extractor's weights; compared when both sides have one. */
  readonly hash?: string;
}

/** What a loaded stats file must match; a {@link FeatureExtractor} is one. */
export interface FeatureStatsExpectation {
  /** Expected extractor name. */
  readonly name?: string;
  /** Expected weight hash (checked when the file has one too). */
  readonly hash?: string;
  /** Expected feature dimension. */
  readonly dim?: number;
}

/** Options of the {@link FeatureStats} constructor. */
export interface FeatureStatsOptions {
  /** The extractor the features come from. @defaultValue undefined (anonymous features) */
  extractor?: ExtractorIdentity;
}

/** Plain-object form of {@link FeatureStats} ({@link FeatureStats.toJSON}). */
export interface FeatureStatsJson {
  /** Always "ditcache.feature-stats". */
  kind: typeof KIND;
  /** Feature dimension. */
  dim: number;
  /** Number of samples accumulated. */
  count: number;
  /** Extractor identity, when known. */
  extractor?: { name: string; hash?: string };
  /** Sample mean (dim values). */
  mean: number[];
  /** Unbiased sample covariance (dim x dim, row-major; zeros when count < 2). */
  covariance: number[];
}

const KIND = "ditcache.feature-stats";
const FORMAT_VERSION = "1";

/**
 * Streaming mean and covariance of feature vectors, in float64. Memory is O(dim^2) whatever the
 * sample count: it keeps the count, the mean and the scatter matrix M2 = sum (x - mean)(x - mean)^T.
 * Each batch is centred on its own mean and folded in with the pairwise update of Chan, Golub
 * and LeVeque, which avoids the cancellation of the naive sum-of-outer-products formula when the
 * mean is large against the spread; {@link FeatureStats.merge} uses the same update, so stats
 * accumulated over shards and merged equal those of the whole set up to rounding.
 *
 * The covariance is the unbiased one (divided by count - 1), as numpy's `np.cov` in pytorch-fid.
 *
 * @example
 * const stats = new FeatureStats(128, { extractor: classifier });
 * for (const batch of batches) stats.add((await classifier.extract(batch, shape)).features, 128);
 * await stats.save("reference-stats.safetensors");
 */
export class FeatureStats {
  /** Feature dimension. */
  readonly dim: number;
  /** The extractor the features came from, when known. */
  readonly extractor: ExtractorIdentity | undefined;
  private samples = 0;
  private readonly center: Float64Array;
  // Lower triangle of M2 (row-major, full dim x dim storage; the upper triangle stays unused).
  private readonly scatter: Float64Array;

  constructor(dim: number, options: FeatureStatsOptions = {}) {
    if (!Number.isSafeInteger(dim) || dim < 1) invalidArgument("dim", dim, "a positive integer");
    const extractor = options.extractor;
    if (extractor !== undefined) checkIdentity(extractor);
    this.dim = dim;
    this.extractor =
      extractor === undefined
        ? undefined
        : extractor.hash === undefined
          ? { name: extractor.name }
          : { name: extractor.name, hash: extractor.hash };
    this.center = new Float64Array(dim);
    this.scatter = new Float64Array(dim * dim);
  }

  /** Number of samples accumulated. */
  get count(): number {
    return this.samples;
  }

  /**
   * Folds in a batch of feature vectors, row-major (count x dim).
   *
   * @throws DitcacheError INVALID_ARGUMENT when `dim` differs from the stats' or the length is
   *   not a multiple of it; NUMERIC_FAULT for non-finite features.
   */
  add(features: Float32Array | Float64Array, dim: number): this {
    if (!(features instanceof Float32Array || features instanceof Float64Array)) {
      invalidArgument("features", features, "a Float32Array or Float64Array");
    }
    if (dim !== this.dim) invalidArgument("dim", dim, `${this.dim} (the stats' dimension)`);
    if (features.length % dim !== 0) {
      invalidArgument("features.length", features.length, `a multiple of dim ${dim}`);
    }
    const count = features.length / dim;
    if (count === 0) return this;
    const mean = new Float64Array(dim);
    for (let s = 0; s < count; s++) {
      const row = s * dim;
      for (let i = 0; i < dim; i++) mean[i] = mean[i]! + features[row + i]!;
    }
    for (let i = 0; i < dim; i++) {
      mean[i] = mean[i]! / count;
      if (!Number.isFinite(mean[i]!)) {
        throw new DitcacheError("NUMERIC_FAULT", `features: non-finite values in feature ${i} of the batch`);
      }
    }
    const scatter = new Float64Array(dim * dim);
    // Four samples per pass over the scatter matrix: a rank-4 update reads and writes each
    // element once instead of four times (the update is memory bound).
    const centred = new Float64Array(4 * dim);
    let s = 0;
    for (; s + 4 <= count; s += 4) {
      for (let r = 0; r < 4; r++) {
        const row = (s + r) * dim;
        for (let i = 0; i < dim; i++) centred[r * dim + i] = features[row + i]! - mean[i]!;
      }
      for (let i = 0; i < dim; i++) {
        const a0 = centred[i]!;
        const a1 = centred[dim + i]!;
        const a2 = centred[2 * dim + i]!;
        const a3 = centred[3 * dim + i]!;
        const out = i * dim;
        for (let j = 0; j <= i; j++) {
          scatter[out + j] =
            scatter[out + j]! +
            a0 * centred[j]! +
            a1 * centred[dim + j]! +
            a2 * centred[2 * dim + j]! +
            a3 * centred[3 * dim + j]!;
        }
      }
    }
    for (; s < count; s++) {
      const row = s * dim;
      for (let i = 0; i < dim; i++) centred[i] = features[row + i]! - mean[i]!;
      for (let i = 0; i < dim; i++) {
        const ci = centred[i]!;
        const out = i * dim;
        for (let j = 0; j <= i; j++) scatter[out + j] = scatter[out + j]! + ci * centred[j]!;
      }
    }
    this.combine(count, mean, scatter);
    return this;
  }

  /**
   * Folds another set of stats into this one (Chan et al.'s pairwise update), e.g. shards
   * computed by separate workers. `other` is not modified.
   *
   * @throws DitcacheError INVALID_ARGUMENT when dimensions or extractors differ.
   */
  merge(other: FeatureStats): this {
    if (!(other instanceof FeatureStats)) invalidArgument("other", other, "a FeatureStats");
    assertCompatible(this, other, "other");
    if (other.samples === 0) return this;
    this.combine(other.samples, other.center, other.scatter);
    return this;
  }

  private combine(count: number, mean: Float64Array, scatter: Float64Array): void {
    const dim = this.dim;
    const before = this.samples;
    const total = before + count;
    const delta = new Float64Array(dim);
    for (let i = 0; i < dim; i++) delta[i] = mean[i]! - this.center[i]!;
    const weight = (before * count) / total;
    for (let i = 0; i < dim; i++) {
      const row = i * dim;
      const di = delta[i]! * weight;
      for (let j = 0; j <= i; j++)
        this.scatter[row + j] = this.scatter[row + j]! + scatter[row + j]! + di * delta[j]!;
    }
    const share = count / total;
    for (let i = 0; i < dim; i++) this.center[i] = this.center[i]! + delta[i]! * share;
    this.samples = total;
  }

  /** A copy of the sample mean (zeros when empty). */
  mean(): Float64Array {
    return this.center.slice();
  }

  /** The unbiased sample covariance, dim x dim row-major (zeros when count < 2). */
  covariance(): Float64Array {
    const dim = this.dim;
    const out = new Float64Array(dim * dim);
    if (this.samples < 2) return out;
    const scale = 1 / (this.samples - 1);
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j <= i; j++) {
        const value = this.scatter[i * dim + j]! * scale;
        out[i * dim + j] = value;
        out[j * dim + i] = value;
      }
    }
    return out;
  }

  /** A copy with the same samples, extractor and dimension. */
  clone(): FeatureStats {
    const copy = new FeatureStats(
      this.dim,
      this.extractor === undefined ? {} : { extractor: this.extractor },
    );
    return copy.merge(this);
  }

  /** Plain-object form (mean and covariance as number arrays). */
  toJSON(): FeatureStatsJson {
    const json: FeatureStatsJson = {
      kind: KIND,
      dim: this.dim,
      count: this.samples,
      mean: Array.from(this.center),
      covariance: Array.from(this.covariance()),
    };
    if (this.extractor !== undefined) json.extractor = { ...this.extractor };
    return json;
  }

  /**
   * Rebuilds stats from {@link FeatureStats.toJSON}'s output.
   *
   * @throws DitcacheError INVALID_ARGUMENT for a malformed object; INCOMPATIBLE_FILE when it does
   *   not match `expected`.
   */
  static fromJSON(json: FeatureStatsJson, expected: FeatureStatsExpectation = {}): FeatureStats {
    if (typeof json !== "object" || json === null || json.kind !== KIND) {
      invalidArgument("json.kind", (json as { kind?: unknown } | null)?.kind, `"${KIND}"`);
    }
    const { dim, count } = json;
    if (!Number.isSafeInteger(dim) || dim < 1) invalidArgument("json.dim", dim, "a positive integer");
    if (!Number.isSafeInteger(count) || count < 0)
      invalidArgument("json.count", count, "a non-negative integer");
    if (!Array.isArray(json.mean) || json.mean.length !== dim) {
      invalidArgument("json.mean.length", json.mean?.length, `${dim} values`);
    }
    if (!Array.isArray(json.covariance) || json.covariance.length !== dim * dim) {
      invalidArgument("json.covariance.length", json.covariance?.length, `${dim * dim} values`);
    }
    const extractor = json.extractor;
    checkExpected("json", { dim, extractor }, expected);
    return FeatureStats.fromMoments(
      { dim, count, mean: Float64Array.from(json.mean), covariance: Float64Array.from(json.covariance) },
      extractor,
    );
  }

  /**
   * Serialises as safetensors. The file holds float32 tensors only (core's format), so each
   * float64 array is stored exactly enough as a pair hi + lo of float32 arrays (hi = the value
   * rounded to float32, lo = the remainder rounded; about 48 significant bits):
   * `mean.hi`, `mean.lo` (dim) and `covariance.hi`, `covariance.lo` (dim x dim, unbiased).
   * Header metadata: kind, version, dim, count, extractor, extractorHash.
   *
   * @throws DitcacheError NUMERIC_FAULT when a value is outside the float32 range.
   */
  toSafetensors(): Uint8Array {
    const metadata: Record<string, string> = {
      kind: KIND,
      version: FORMAT_VERSION,
      dim: String(this.dim),
      count: String(this.samples),
      covariance: "unbiased (count - 1)",
      encoding: "float64 values stored as float32 pairs: value = hi + lo",
    };
    if (this.extractor !== undefined) {
      metadata.extractor = this.extractor.name;
      if (this.extractor.hash !== undefined) metadata.extractorHash = this.extractor.hash;
    }
    const mean = splitFloat64(this.center, "mean");
    const covariance = splitFloat64(this.covariance(), "covariance");
    const vector = [this.dim];
    const matrix = [this.dim, this.dim];
    return writeSafetensors(
      {
        "mean.hi": { shape: vector, data: mean.hi },
        "mean.lo": { shape: vector, data: mean.lo },
        "covariance.hi": { shape: matrix, data: covariance.hi },
        "covariance.lo": { shape: matrix, data: covariance.lo },
      },
      { metadata },
    );
  }

  /**
   * Parses {@link FeatureStats.toSafetensors}'s output.
   *
   * @param name - used in error messages (a file path).
   * @throws DitcacheError BAD_FILE for a file that is not feature stats; INCOMPATIBLE_FILE when
   *   its extractor or dimension differs from `expected`.
   */
  static fromSafetensors(
    bytes: Uint8Array,
    expected: FeatureStatsExpectation = {},
    name = "feature stats",
  ): FeatureStats {
    return FeatureStats.fromContents(readSafetensors(bytes, { name }), expected, name);
  }

  /** Writes {@link FeatureStats.toSafetensors}'s output to a file (atomically: readers never see half a file). */
  async save(path: string): Promise<void> {
    await writeFileAtomic(path, this.toSafetensors());
  }

  /**
   * Loads stats saved by {@link FeatureStats.save}.
   *
   * @example
   * const reference = await FeatureStats.load("mnist-train.stats.safetensors", classifier);
   * @throws DitcacheError NOT_FOUND, BAD_FILE, or INCOMPATIBLE_FILE when the stats were computed
   *   with another extractor or dimension than `expected`.
   */
  static async load(path: string, expected: FeatureStatsExpectation = {}): Promise<FeatureStats> {
    return FeatureStats.fromContents(await readSafetensorsFile(path), expected, path);
  }

  private static fromContents(
    contents: {
      tensors: Map<string, { shape: number[]; data: Float32Array }>;
      metadata: Record<string, string>;
    },
    expected: FeatureStatsExpectation,
    file: string,
  ): FeatureStats {
    const { metadata, tensors } = contents;
    const bad = (message: string): never => {
      throw new DitcacheError("BAD_FILE", `${file}: ${message}`);
    };
    if (metadata.kind !== KIND)
      bad(`metadata kind is ${JSON.stringify(metadata.kind)}, expected "${KIND}" (not a feature-stats file)`);
    if (metadata.version !== FORMAT_VERSION)
      bad(`format version ${JSON.stringify(metadata.version)}, expected "${FORMAT_VERSION}"`);
    const dim = Number(metadata.dim);
    const count = Number(metadata.count);
    if (!Number.isSafeInteger(dim) || dim < 1)
      bad(`metadata dim ${JSON.stringify(metadata.dim)}, expected a positive integer`);
    if (!Number.isSafeInteger(count) || count < 0)
      bad(`metadata count ${JSON.stringify(metadata.count)}, expected a non-negative integer`);
    const extractor =
      metadata.extractor === undefined
        ? undefined
        : metadata.extractorHash === undefined
          ? { name: metadata.extractor }
          : { name: metadata.extractor, hash: metadata.extractorHash };
    checkExpected(file, { dim, extractor }, expected);
    const joined = (key: string, size: number): Float64Array => {
      const hi = tensors.get(`${key}.hi`);
      const lo = tensors.get(`${key}.lo`);
      if (hi === undefined || lo === undefined)
        return bad(`tensors "${key}.hi" and "${key}.lo" are required`);
      if (hi.data.length !== size || lo.data.length !== size) {
        bad(
          `tensor "${key}" has ${hi.data.length}/${lo.data.length} values, expected ${size} for dim ${dim}`,
        );
      }
      const out = new Float64Array(size);
      for (let i = 0; i < size; i++) {
        out[i] = hi.data[i]! + lo.data[i]!;
        // A NaN or infinity would make every FID computed from these stats NaN, far from here.
        if (!Number.isFinite(out[i]!))
          bad(`tensor "${key}" has a non-finite value (${out[i]}) at index ${i}`);
      }
      return out;
    };
    return FeatureStats.fromMoments(
      { dim, count, mean: joined("mean", dim), covariance: joined("covariance", dim * dim) },
      extractor,
    );
  }

  private static fromMoments(
    moments: { dim: number; count: number; mean: Float64Array; covariance: Float64Array },
    extractor: ExtractorIdentity | undefined,
  ): FeatureStats {
    const { dim, count, mean, covariance } = moments;
    const stats = new FeatureStats(dim, extractor === undefined ? {} : { extractor });
    stats.samples = count;
    stats.center.set(mean);
    const scale = Math.max(count - 1, 0);
    for (let i = 0; i < dim; i++) {
      for (let j = 0; j <= i; j++) stats.scatter[i * dim + j] = covariance[i * dim + j]! * scale;
    }
    return stats;
  }
}

function checkIdentity(extractor: ExtractorIdentity): void {
  if (
    typeof extractor !== "object" ||
    extractor === null ||
    typeof extractor.name !== "string" ||
    extractor.name === ""
  ) {
    invalidArgument(
      "options.extractor.name",
      (extractor as { name?: unknown } | null)?.name,
      "a non-empty string",
    );
  }
  if (extractor.hash !== undefined && typeof extractor.hash !== "string") {
    invalidArgument("options.extractor.hash", extractor.hash, "a string or undefined");
  }
}

function describeIdentity(extractor: ExtractorIdentity | undefined, dim: number): string {
  if (extractor === undefined) return `an unnamed extractor (dim ${dim})`;
  return `extractor "${extractor.name}"${extractor.hash === undefined ? "" : ` (hash ${extractor.hash})`} (dim ${dim})`;
}

/**
 * Throws INVALID_ARGUMENT unless two stats describe the same feature space: same dimension and,
 * when both name their extractor, the same name (and hash, when both have one).
 */
export function assertCompatible(a: FeatureStats, b: FeatureStats, argument: string): void {
  const differentName =
    a.extractor !== undefined && b.extractor !== undefined && a.extractor.name !== b.extractor.name;
  const differentHash =
    a.extractor?.hash !== undefined &&
    b.extractor?.hash !== undefined &&
    a.extractor.hash !== b.extractor.hash;
  if (a.dim !== b.dim || differentName || differentHash) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `${argument}: stats from ${describeIdentity(b.extractor, b.dim)}, expected ${describeIdentity(a.extractor, a.dim)}`,
    );
  }
}

function checkExpected(
  file: string,
  found: { dim: number; extractor: ExtractorIdentity | undefined },
  expected: FeatureStatsExpectation,
): void {
  const wrongDim = expected.dim !== undefined && expected.dim !== found.dim;
  const wrongName = expected.name !== undefined && found.extractor?.name !== expected.name;
  const wrongHash =
    expected.hash !== undefined &&
    found.extractor?.hash !== undefined &&
    found.extractor.hash !== expected.hash;
  if (!wrongDim && !wrongName && !wrongHash) return;
  const want = [
    expected.name === undefined ? undefined : `extractor "${expected.name}"`,
    expected.hash === undefined ? undefined : `hash ${expected.hash}`,
    expected.dim === undefined ? undefined : `dim ${expected.dim}`,
  ]
    .filter((part) => part !== undefined)
    .join(", ");
  throw new DitcacheError(
    "INCOMPATIBLE_FILE",
    `${file}: stats were computed with ${describeIdentity(found.extractor, found.dim)}, expected ${want}; recompute them with that extractor`,
  );
}

function splitFloat64(values: Float64Array, name: string): { hi: Float32Array; lo: Float32Array } {
  const hi = new Float32Array(values.length);
  const lo = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    const high = Math.fround(value);
    if (!Number.isFinite(high)) {
      throw new DitcacheError(
        "NUMERIC_FAULT",
        `${name}[${i}] = ${value} does not fit in float32; cannot save these stats`,
      );
    }
    hi[i] = high;
    lo[i] = value - high;
  }
  return { hi, lo };
}
