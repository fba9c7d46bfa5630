import { readFile } from "node:fs/promises";
import {
  DitcacheError,
  float16ToFloat32Array,
  float32ToFloat16Array,
  formatShape,
  invalidArgument,
  readSafetensors,
  sizeOf,
  writeFileAtomic,
  writeSafetensors,
} from "@ditcache/core";
import {
  type CellEntry,
  isTrendOrder,
  MAX_TREND_ORDER,
  METADATA_KEY,
  PRIORS_FORMAT,
  PRIORS_VERSION,
  type PriorsHeader,
  type SamplerDescriptor,
} from "./header.js";

/** The prior of one reused (site, step) cell. */
export interface PriorCell {
  /** Position in the file's per-cell tensors. */
  readonly index: number;
  /** Site key, e.g. "block3.attn". */
  readonly site: string;
  /** Step at which the base policy reuses. */
  readonly step: number;
  /** Step whose value it reuses (src(step)). */
  readonly sourceStep: number;
  /** e = ||D|| / ||P[step]||. */
  readonly relativeError: number;
  /** Fitted gamma of F_cached + gamma·D (clipped to [0, gammaMax]). */
  readonly gamma: number;
  /** Fitted a of the trend-only correction F_cached + a·trend. */
  readonly trendGain: number;
  /** Fitted a of F_cached + a·trend + b·D. */
  readonly trendCoefficient: number;
  /** Fitted b of F_cached + a·trend + b·D. */
  readonly priorCoefficient: number;
  /** Σ<D,e> / Σ<D,D> (unclipped); with `trendProjection`, b of the fixed-trend correction. */
  readonly priorGain: number;
  /** Σ<t,D> / Σ<D,D>. */
  readonly trendProjection: number;
  /** D = mean_i (F_i[step] - F_i[sourceStep]), one row of `valueShape`. */
  readonly difference: Float32Array;
}

/** What the loaded file must match; every field given is checked. */
export interface ExpectedPriors {
  /** Hash of the model weights. */
  modelHash?: string;
  /** Sampler fields to check. */
  sampler?: Partial<SamplerDescriptor>;
  /** Sampling steps. */
  steps?: number;
  /**
   * Base policy: a spec string (compared with the file's spec), or the policy, compared by its
   * `identity` where both it and the file have one (a table policy read from another path still
   * fits; a rewritten table does not), else by spec.
   */
  basePolicy?: string | { readonly spec: string; readonly identity?: string };
  /** Model depth. */
  depth?: number;
}

/** The raw arrays of a priors object (host float32, already rounded to the file's dtype). */
export interface PriorsData {
  /** P, (sites, steps, ...valueShape) flattened; absent when the mean is not stored. */
  readonly mean?: Float32Array;
  /** D per cell, (cells, ...valueShape) flattened. */
  readonly difference: Float32Array;
  /** e per cell. */
  readonly relativeError: Float32Array;
  /** gamma per cell. */
  readonly gamma: Float32Array;
  /** Trend-only gain per cell. */
  readonly trendGain: Float32Array;
  /** a per cell. */
  readonly trendCoefficient: Float32Array;
  /** b per cell. */
  readonly priorCoefficient: Float32Array;
  /** Σ<D,e> / Σ<D,D> per cell. */
  readonly priorGain: Float32Array;
  /** Σ<t,D> / Σ<D,D> per cell. */
  readonly trendProjection: Float32Array;
}

const FLOAT16_MAX = 65504;
const PER_CELL = [
  "relativeError",
  "gamma",
  "trendGain",
  "trendCoefficient",
  "priorCoefficient",
  "priorGain",
  "trendProjection",
] as const;
const TENSOR_NAMES: Readonly<Record<(typeof PER_CELL)[number], string>> = {
  relativeError: "relative_error",
  gamma: "gamma",
  trendGain: "trend_gain",
  trendCoefficient: "trend_coefficient",
  priorCoefficient: "prior_coefficient",
  priorGain: "prior_gain",
  trendProjection: "trend_projection",
};

function roundToHalf(name: string, values: Float32Array): Float32Array {
  for (let i = 0; i < values.length; i++) {
    const value = values[i]!;
    if (Math.abs(value) > FLOAT16_MAX) {
      throw new DitcacheError(
        "NUMERIC_FAULT",
        `priors tensor "${name}"[${i}] = ${value} does not fit float16 (|x| <= ${FLOAT16_MAX}): calibrate with dtype "F32"`,
      );
    }
  }
  return float16ToFloat32Array(float32ToFloat16Array(values));
}

/**
 * Error-Optimized Cache priors of one model + sampler + base policy: the mean caching difference
 * D and the fitted coefficients per reused (site, step), optionally the mean feature P. Made by
 * `calibrate`, stored as safetensors (`toBytes`, `save`), read back by {@link loadPriors}.
 */
export class Priors {
  /** The JSON header (also the file's `__metadata__`). */
  readonly header: PriorsHeader;
  private readonly data: PriorsData;
  private readonly rowSize: number;
  private readonly siteIndex: ReadonlyMap<string, number>;
  private readonly cellIndex: ReadonlyMap<string, number>;

  /**
   * Builds priors from a header and arrays, validating that they agree; values are rounded to
   * the header's dtype so an object in memory equals the file it saves.
   * @throws DitcacheError BAD_FILE when sizes disagree, NUMERIC_FAULT when F16 overflows.
   */
  constructor(header: PriorsHeader, data: PriorsData) {
    const rowSize = sizeOf(header.valueShape);
    const cells = header.cells.length;
    const bad = (message: string): never => {
      throw new DitcacheError("BAD_FILE", `priors: ${message}`);
    };
    if (header.hasMean !== (data.mean !== undefined))
      bad(`hasMean is ${header.hasMean} but mean is ${data.mean ? "present" : "absent"}`);
    if (data.mean !== undefined && data.mean.length !== header.sites.length * header.steps * rowSize)
      bad(`mean has ${data.mean.length} values, expected ${header.sites.length * header.steps * rowSize}`);
    if (data.difference.length !== cells * rowSize)
      bad(`difference has ${data.difference.length} values, expected ${cells * rowSize}`);
    for (const key of PER_CELL) {
      if (data[key].length !== cells)
        bad(`${TENSOR_NAMES[key]} has ${data[key].length} values, expected ${cells}`);
    }
    const round = header.dtype === "F16" ? roundToHalf : (_: string, values: Float32Array) => values;
    this.data = {
      ...(data.mean ? { mean: round("mean", data.mean) } : {}),
      difference: round("difference", data.difference),
      relativeError: round("relative_error", data.relativeError),
      gamma: round("gamma", data.gamma),
      trendGain: round("trend_gain", data.trendGain),
      trendCoefficient: round("trend_coefficient", data.trendCoefficient),
      priorCoefficient: round("prior_coefficient", data.priorCoefficient),
      priorGain: round("prior_gain", data.priorGain),
      trendProjection: round("trend_projection", data.trendProjection),
    };
    this.header = header;
    this.rowSize = rowSize;
    this.siteIndex = new Map(header.sites.map((key, i) => [key, i]));
    const cellIndex = new Map<string, number>();
    header.cells.forEach(([site, step, source], i) => {
      if (
        header.sites[site] === undefined ||
        step < 1 ||
        step >= header.steps ||
        source < 0 ||
        source >= step
      )
        bad(`cell ${i} [${site}, ${step}, ${source}] is out of range`);
      cellIndex.set(`${site}@${step}`, i);
    });
    this.cellIndex = cellIndex;
  }

  /** Sampling steps the priors were made for. */
  get steps(): number {
    return this.header.steps;
  }

  /** Site keys with priors. */
  get sites(): readonly string[] {
    return this.header.sites;
  }

  /** Forecast order of the trend the coefficients were fitted for (1 in files from before the field). */
  get trendOrder(): number {
    return this.header.trendOrder ?? 1;
  }

  /** Shape of one row of P / D: [tokens, channels] (token-channel) or [channels] (channel). */
  get valueShape(): readonly number[] {
    return this.header.valueShape;
  }

  /** Number of reused cells with a prior. */
  get cellCount(): number {
    return this.header.cells.length;
  }

  /** The prior of a reused cell; undefined where the base policy computes (or the site is unknown). */
  cell(site: string, step: number): PriorCell | undefined {
    const siteIndex = this.siteIndex.get(site);
    if (siteIndex === undefined) return undefined;
    const index = this.cellIndex.get(`${siteIndex}@${step}`);
    return index === undefined ? undefined : this.cellAt(index);
  }

  /** The prior of the cell at a position of the file's per-cell tensors. */
  cellAt(index: number): PriorCell {
    const entry: CellEntry | undefined = this.header.cells[index];
    if (entry === undefined) invalidArgument("index", index, `a cell index in [0, ${this.cellCount})`);
    const [site, step, sourceStep] = entry;
    const d = this.data;
    return {
      index,
      site: this.header.sites[site]!,
      step,
      sourceStep,
      relativeError: d.relativeError[index]!,
      gamma: d.gamma[index]!,
      trendGain: d.trendGain[index]!,
      trendCoefficient: d.trendCoefficient[index]!,
      priorCoefficient: d.priorCoefficient[index]!,
      priorGain: d.priorGain[index]!,
      trendProjection: d.trendProjection[index]!,
      difference: d.difference.subarray(index * this.rowSize, (index + 1) * this.rowSize),
    };
  }

  /** Every cell's prior, in file order. */
  cells(): PriorCell[] {
    return this.header.cells.map((_, i) => this.cellAt(i));
  }

  /** The mean feature P of a site at a step; undefined when not stored or unknown. */
  mean(site: string, step: number): Float32Array | undefined {
    const siteIndex = this.siteIndex.get(site);
    if (siteIndex === undefined || this.data.mean === undefined || step < 0 || step >= this.steps)
      return undefined;
    const offset = (siteIndex * this.steps + step) * this.rowSize;
    return this.data.mean.subarray(offset, offset + this.rowSize);
  }

  /** The tensors as stored in the file (name -> shape and float32 data). */
  tensors(): Record<string, { shape: number[]; data: Float32Array }> {
    const cells = this.cellCount;
    const out: Record<string, { shape: number[]; data: Float32Array }> = {
      difference: { shape: [cells, ...this.valueShape], data: this.data.difference },
    };
    if (this.data.mean)
      out.mean = { shape: [this.sites.length, this.steps, ...this.valueShape], data: this.data.mean };
    for (const key of PER_CELL) out[TENSOR_NAMES[key]] = { shape: [cells], data: this.data[key] };
    return out;
  }

  /** The safetensors file: tensors in the header's dtype, the header as JSON in `__metadata__`. */
  toBytes(): Uint8Array {
    return writeSafetensors(this.tensors(), {
      dtype: this.header.dtype,
      metadata: { [METADATA_KEY]: JSON.stringify(this.header) },
    });
  }

  /** Writes the file atomically (readers never see half a file). */
  async save(path: string): Promise<void> {
    if (typeof path !== "string" || path === "") invalidArgument("path", path, "a file path");
    await writeFileAtomic(path, this.toBytes());
  }
}

// ------------------------------------------------------------------------------------------------
// Loading

function describeValue(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function differs(name: string, field: string, found: unknown, expected: unknown): never {
  throw new DitcacheError(
    "INCOMPATIBLE_FILE",
    `${name}: ${field} differs: the priors were made for ${describeValue(found)}, expected ${describeValue(expected)} (run calibrate for this configuration)`,
  );
}

/**
 * Checks a header against what the caller runs; the first differing field is named.
 * @throws DitcacheError INCOMPATIBLE_FILE naming the field.
 */
export function checkPriorsCompatible(header: PriorsHeader, expected: ExpectedPriors, name = "priors"): void {
  if (expected.modelHash !== undefined && header.modelHash !== expected.modelHash)
    differs(name, "model hash", header.modelHash, expected.modelHash);
  if (expected.depth !== undefined && header.depth !== expected.depth)
    differs(name, "model depth", header.depth, expected.depth);
  if (expected.steps !== undefined && header.steps !== expected.steps)
    differs(name, "steps", header.steps, expected.steps);
  const sampler = expected.sampler ?? {};
  const labels: Record<keyof SamplerDescriptor, string> = {
    sampler: "sampler",
    respacing: "sampler respacing",
    cfgScale: "cfg scale",
    guideChannels: "guide channels",
  };
  for (const key of Object.keys(labels) as (keyof SamplerDescriptor)[]) {
    const want = sampler[key];
    if (want !== undefined && header.sampler[key] !== want)
      differs(name, labels[key], header.sampler[key], want);
  }
  if (expected.basePolicy !== undefined) {
    const policy =
      typeof expected.basePolicy === "string" ? { spec: expected.basePolicy } : expected.basePolicy;
    const fileIdentity = header.basePolicyIdentity;
    if (fileIdentity !== undefined && policy.identity !== undefined) {
      if (fileIdentity !== policy.identity)
        differs(
          name,
          "base policy",
          `${header.basePolicy} (${fileIdentity})`,
          `${policy.spec} (${policy.identity})`,
        );
    } else if (header.basePolicy !== policy.spec)
      differs(name, "base policy", header.basePolicy, policy.spec);
  }
}

function validateHeader(value: unknown, name: string): PriorsHeader {
  const header = value as PriorsHeader;
  const bad = (message: string): never => {
    throw new DitcacheError("BAD_FILE", `${name}: ${message}`);
  };
  if (header === null || typeof header !== "object" || header.format !== PRIORS_FORMAT)
    bad(
      `not an EOC priors file (header format ${describeValue((header as { format?: unknown })?.format)}, expected "${PRIORS_FORMAT}")`,
    );
  if (header.version !== PRIORS_VERSION) {
    throw new DitcacheError(
      "INCOMPATIBLE_FILE",
      `${name}: format version differs: the file has ${describeValue(header.version)}, this ditcache reads ${PRIORS_VERSION} (run calibrate again to make the priors in this version)`,
    );
  }
  if (typeof header.modelHash !== "string") bad("modelHash: expected a string");
  if (!Number.isInteger(header.steps) || header.steps < 1) bad("steps: expected an integer >= 1");
  if (!Number.isInteger(header.depth) || header.depth < 1) bad("depth: expected an integer >= 1");
  if (typeof header.basePolicy !== "string") bad("basePolicy: expected a spec string");
  if (header.basePolicyIdentity !== undefined && typeof header.basePolicyIdentity !== "string")
    bad("basePolicyIdentity: expected a string");
  if (header.granularity !== "token-channel" && header.granularity !== "channel")
    bad(`granularity: expected "token-channel" or "channel", got ${describeValue(header.granularity)}`);
  if (header.dtype !== "F16" && header.dtype !== "F32") bad(`dtype: expected "F16" or "F32"`);
  if (header.sampler === null || typeof header.sampler !== "object") bad("sampler: expected an object");
  if (!Array.isArray(header.valueShape) || !header.valueShape.every((d) => Number.isInteger(d) && d > 0))
    bad("valueShape: expected positive integers");
  if (!Array.isArray(header.sites) || !header.sites.every((key) => typeof key === "string"))
    bad("sites: expected site keys");
  if (
    !Array.isArray(header.cells) ||
    !header.cells.every((cell) => Array.isArray(cell) && cell.length === 3 && cell.every(Number.isInteger))
  )
    bad("cells: expected [site, step, source] integer triples");
  if (header.defaults === null || typeof header.defaults !== "object") bad("defaults: expected an object");
  if (header.trendOrder !== undefined && !isTrendOrder(header.trendOrder))
    bad(
      `trendOrder: expected an integer in [1, ${MAX_TREND_ORDER}], got ${describeValue(header.trendOrder)}`,
    );
  return header;
}

/**
 * Parses a priors file held in memory and checks it against `expected`.
 * @param name Used in error messages (a file path).
 * @throws DitcacheError BAD_FILE when malformed, INCOMPATIBLE_FILE naming the differing field.
 */
export function priorsFromBytes(bytes: Uint8Array, expected: ExpectedPriors = {}, name = "priors"): Priors {
  const { tensors, metadata } = readSafetensors(bytes, { name });
  const text = metadata[METADATA_KEY];
  if (text === undefined)
    throw new DitcacheError(
      "BAD_FILE",
      `${name}: not an EOC priors file (no __metadata__["${METADATA_KEY}"])`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new DitcacheError("BAD_FILE", `${name}: __metadata__["${METADATA_KEY}"] is not valid JSON`, {
      cause: error,
    });
  }
  const header = validateHeader(parsed, name);
  checkPriorsCompatible(header, expected, name);
  const take = (tensor: string, shape: readonly number[]): Float32Array => {
    const found = tensors.get(tensor);
    if (found === undefined) throw new DitcacheError("BAD_FILE", `${name}: tensor "${tensor}" is missing`);
    if (found.dtype !== header.dtype)
      throw new DitcacheError(
        "BAD_FILE",
        `${name}: tensor "${tensor}" is ${found.dtype}, the header says ${header.dtype}`,
      );
    if (found.shape.length !== shape.length || found.shape.some((dim, i) => dim !== shape[i]))
      throw new DitcacheError(
        "BAD_FILE",
        `${name}: tensor "${tensor}" has shape ${formatShape(found.shape)}, expected ${formatShape(shape)}`,
      );
    return found.data;
  };
  const cells = header.cells.length;
  return new Priors(header, {
    ...(header.hasMean
      ? { mean: take("mean", [header.sites.length, header.steps, ...header.valueShape]) }
      : {}),
    difference: take("difference", [cells, ...header.valueShape]),
    relativeError: take("relative_error", [cells]),
    gamma: take("gamma", [cells]),
    trendGain: take("trend_gain", [cells]),
    trendCoefficient: take("trend_coefficient", [cells]),
    priorCoefficient: take("prior_coefficient", [cells]),
    priorGain: take("prior_gain", [cells]),
    trendProjection: take("trend_projection", [cells]),
  });
}

/**
 * Loads a priors file (bytes or a path) and checks it against what the caller runs.
 *
 * @throws DitcacheError NOT_FOUND (no such file), BAD_FILE (malformed), INCOMPATIBLE_FILE naming
 *   the field that differs (model hash, steps, sampler, cfg scale, guide channels, base policy, depth).
 * @example
 * const priors = await loadPriors("priors.safetensors", { modelHash, steps: 20, basePolicy: "fora:interval=2" });
 */
export async function loadPriors(
  source: Uint8Array | string,
  expected: ExpectedPriors = {},
): Promise<Priors> {
  if (typeof source === "string") {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(source));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new DitcacheError(
        code === "ENOENT" ? "NOT_FOUND" : "BAD_FILE",
        `${source}: cannot read priors file (${code ?? (error as Error).message})`,
        { cause: error },
      );
    }
    return priorsFromBytes(bytes, expected, source);
  }
  if (!(source instanceof Uint8Array)) invalidArgument("source", source, "a Uint8Array or a file path");
  return priorsFromBytes(source, expected);
}
