import fc from "fast-check";
import { DitcacheError } from "../errors.js";

/**
 * Feeds one untrusted input to a parser and checks the only two acceptable outcomes: it parses,
 * or it throws a {@link DitcacheError} whose message is one non-empty line. Anything else (a
 * TypeError, RangeError, a multi-line message) fails the property with the input's story.
 *
 * @returns "parsed", or the error's code.
 * @example
 * fc.assert(fc.property(fc.uint8Array(), (bytes) => { parsesOrFailsTyped(() => readSafetensors(bytes)); }));
 */
export function parsesOrFailsTyped(parse: () => unknown): "parsed" | DitcacheError["code"] {
  try {
    parse();
    return "parsed";
  } catch (error) {
    return checkTyped(error);
  }
}

/** {@link parsesOrFailsTyped} for parsers that return a promise (file loaders). */
export async function parsesOrFailsTypedAsync(
  parse: () => Promise<unknown>,
): Promise<"parsed" | DitcacheError["code"]> {
  try {
    await parse();
    return "parsed";
  } catch (error) {
    return checkTyped(error);
  }
}

function checkTyped(error: unknown): DitcacheError["code"] {
  if (!DitcacheError.isInstance(error)) {
    throw new Error(
      `expected a DitcacheError, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`,
      {
        cause: error,
      },
    );
  }
  if (error.message.trim() === "" || error.message.includes("\n")) {
    throw new Error(`expected a one-line error message, got ${JSON.stringify(error.message)}`);
  }
  return error.code;
}

/** A description of one tensor of a safetensors header, valid or not. */
type HeaderEntry = Record<string, unknown>;

const DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "I64", "F8_E4M3", "f32", "", "Q4"];

/** Dimensions that stress size arithmetic: zero, tiny, huge, unsafe, negative, fractional, not numbers. */
const dimension: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 4 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<unknown>(
      -1,
      1.5,
      2 ** 31,
      2 ** 32,
      2 ** 53,
      2 ** 64,
      1e308,
      Number.NaN,
      null,
      "2",
      [2],
    ),
  },
);

/** Offsets that are in range, past the end, reversed, overlapping, or not integers. */
const offset: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 96 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(-8, 0.5, 2 ** 32, 2 ** 53 + 2, 1e300, "4", null) },
);

const entry: fc.Arbitrary<HeaderEntry> = fc.record(
  {
    dtype: fc.oneof(fc.constantFrom<unknown>(...DTYPES), fc.constantFrom<unknown>(1, null, ["F32"])),
    shape: fc.oneof(
      { weight: 8, arbitrary: fc.array(dimension, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>("2x2", null, {}) },
    ),
    data_offsets: fc.oneof(
      { weight: 8, arbitrary: fc.tuple(offset, offset) },
      { weight: 1, arbitrary: fc.array(offset, { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>(null, "0,4", {}) },
    ),
  },
  { requiredKeys: [] },
);

/**
 * A structured safetensors header: tensors whose dtypes, shapes and offsets are drawn to hit every
 * check (unknown dtypes, huge dimensions, out-of-range and overlapping offsets), plus an optional
 * `__metadata__` map with wrong value types now and then.
 */
export const safetensorsHeaderArbitrary: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.dictionary(
      fc.oneof(
        fc.constantFrom("w", "b", "x.weight", "__proto__", "constructor", ""),
        fc.string({ maxLength: 6 }),
      ),
      entry,
      {
        maxKeys: 4,
      },
    ),
    fc.option(
      fc.oneof(
        {
          weight: 4,
          arbitrary: fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 12 }), { maxKeys: 3 }),
        },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
      ),
      { nil: undefined },
    ),
  )
  .map(([tensors, metadata]) => (metadata === undefined ? tensors : { ...tensors, __metadata__: metadata }));

/**
 * Bytes of a safetensors file around a header: the JSON (or any text), the 8-byte length prefix
 * (right, or any u64 up to 2^64 - 1), and a data section of a few random bytes.
 */
export const safetensorsFileArbitrary: fc.Arbitrary<Uint8Array> = fc
  .record({
    header: fc.oneof(
      { weight: 6, arbitrary: safetensorsHeaderArbitrary.map((header) => JSON.stringify(header)) },
      { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
      { weight: 1, arbitrary: fc.json({ maxDepth: 2 }) },
    ),
    length: fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { freq: 4, nil: undefined }),
    data: fc.uint8Array({ maxLength: 96 }),
  })
  .map(({ header, length, data }) => encodeFile(new TextEncoder().encode(header), data, length));

function encodeFile(header: Uint8Array, data: Uint8Array, length?: bigint): Uint8Array {
  const out = new Uint8Array(8 + header.length + data.length);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(header.length), true);
  out.set(header, 8);
  out.set(data, 8 + header.length);
  return out;
}

/**
 * Damaged copies of a valid file: truncated, bytes overwritten, the length prefix replaced, or
 * garbage spliced in. Most cases keep the file mostly intact, so they reach the checks that sit
 * behind the header parse (format-specific validation of priors, stats, weights).
 */
export function corruptedBytesArbitrary(valid: Uint8Array): fc.Arbitrary<Uint8Array> {
  const at = fc.nat({ max: Math.max(0, valid.length - 1) });
  return fc.oneof(
    at.map((end) => valid.slice(0, end)),
    fc.array(fc.tuple(at, fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }).map((edits) => {
      const out = valid.slice();
      for (const [index, value] of edits) out[index] = value;
      return out;
    }),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((length) => {
      const out = valid.slice();
      if (out.length >= 8) new DataView(out.buffer).setBigUint64(0, length, true);
      return out;
    }),
    fc.tuple(at, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([index, garbage]) => {
      const out = new Uint8Array(valid.length + garbage.length);
      out.set(valid.subarray(0, index));
      out.set(garbage, index);
      out.set(valid.subarray(index), index + garbage.length);
      return out;
    }),
  );
}

/**
 * Rewrites a valid safetensors file's `__metadata__` entry `key` through `edit` (keeping the data),
 * so a fuzzer can damage a format's own JSON header while the container stays well-formed.
 */
export function withMetadataEntry(
  valid: Uint8Array,
  key: string,
  edit: (text: string) => string,
): Uint8Array {
  const view = new DataView(valid.buffer, valid.byteOffset, valid.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(valid.subarray(8, 8 + headerLength))) as {
    __metadata__?: Record<string, string>;
  };
  const metadata = { ...header.__metadata__ };
  metadata[key] = edit(metadata[key] ?? "");
  const json = new TextEncoder().encode(JSON.stringify({ ...header, __metadata__: metadata }));
  return encodeFile(json, valid.subarray(8 + headerLength));
}

/** Cases a fuzz property runs by default: thousands per parser per CI run. */
export const FUZZ_RUNS = 3000;

/**
 * Runs a fast-check property `runs` times, prints how many cases it tried (the count the
 * reliability issue asks each run to report) with the seed, and returns the count, so tests can
 * assert it. The seed is random per run; a failure's message starts with the environment that
 * replays it: `DITCACHE_FUZZ_SEED` replays the whole run (same seed, same cases in the same order),
 * `DITCACHE_FUZZ_PATH` with it jumps straight to the shrunk counterexample.
 *
 * @throws Error when the property fails: the replay line, then fast-check's report (counterexample,
 * its error); the check's error is the `cause`.
 */
export function fuzz<T>(
  label: string,
  arbitrary: fc.Arbitrary<T>,
  check: (value: T) => void,
  runs = FUZZ_RUNS,
): number {
  let cases = 0;
  const seed = fuzzSeedFromEnvironment();
  const path = process.env.DITCACHE_FUZZ_PATH;
  const details = fc.check(
    fc.property(arbitrary, (value) => {
      cases++;
      check(value);
    }),
    { numRuns: runs, ...(seed === undefined ? {} : { seed }), ...(path ? { path } : {}) },
  );
  if (details.failed) {
    const replay = `DITCACHE_FUZZ_SEED=${details.seed} DITCACHE_FUZZ_PATH=${details.counterexamplePath ?? ""}`;
    throw new Error(`fuzz ${label} failed; replay with ${replay}\n${fc.defaultReportMessage(details)}`, {
      cause: details.errorInstance,
    });
  }
  // The seed is printed on success too: assertions after fuzz() (outcome counts) can still fail.
  console.log(`fuzz ${label}: ${cases} cases (DITCACHE_FUZZ_SEED=${details.seed})`);
  return cases;
}

function fuzzSeedFromEnvironment(): number | undefined {
  const text = process.env.DITCACHE_FUZZ_SEED;
  if (text === undefined || text === "") return undefined;
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `DITCACHE_FUZZ_SEED: expected an integer seed as printed by a fuzz run, got ${JSON.stringify(text)}`,
    );
  }
  return Number(text);
}
