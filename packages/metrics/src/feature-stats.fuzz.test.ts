import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSafetensors } from "@ditcache/core";
import {
  corruptedBytesArbitrary,
  fuzz,
  parsesOrFailsTyped,
  parsesOrFailsTypedAsync,
  safetensorsFileArbitrary,
  withMetadataEntry,
} from "@ditcache/core/testing";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { FeatureStats } from "./feature-stats.js";

const RUNS = 3000;
const stats = new FeatureStats(3, { extractor: { name: "fuzz", hash: "h" } });
stats.add(new Float32Array([1, 2, 3, 2, 0, 1, 5, 1, 1]), 3);
const valid = stats.toSafetensors();
const folder = mkdtempSync(join(tmpdir(), "ditcache-stats-fuzz-"));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const metadataValue = fc.oneof(
  fc.constantFrom(
    "",
    "0",
    "1",
    "3",
    "-3",
    "3.5",
    "1e308",
    "9007199254740993",
    "NaN",
    "Infinity",
    " 3 ",
    "0x3",
    "ditcache.feature-stats",
    "2",
  ),
  fc.string({ maxLength: 8 }),
);

describe("FeatureStats.fromSafetensors under untrusted bytes", () => {
  it("the valid file parses (the fuzz below damages it)", () => {
    expect(FeatureStats.fromSafetensors(valid).dim).toBe(3);
  });

  it("damaged copies of a valid stats file: parsed or a typed one-line error", () => {
    const cases = fuzz("FeatureStats.fromSafetensors (damaged)", corruptedBytesArbitrary(valid), (bytes) => {
      parsesOrFailsTyped(() => FeatureStats.fromSafetensors(bytes, {}, "fuzz.stats"));
    });
    expect(cases).toBe(RUNS);
  });

  it("damaged metadata (kind, version, dim, count, extractor): a typed one-line error or a consistent parse", () => {
    const codes = new Set<string>();
    const cases = fuzz(
      "FeatureStats.fromSafetensors (metadata)",
      fc.tuple(
        fc.constantFrom("kind", "version", "dim", "count", "extractor", "extractorHash"),
        metadataValue,
      ),
      ([key, value]) => {
        const outcome = parsesOrFailsTyped(() =>
          FeatureStats.fromSafetensors(
            withMetadataEntry(valid, key, () => value),
            { name: "fuzz" },
          ),
        );
        codes.add(outcome);
      },
    );
    expect(cases).toBe(RUNS);
    expect(codes).toContain("parsed");
    expect(codes).toContain("BAD_FILE");
    expect(codes).toContain("INCOMPATIBLE_FILE");
  });

  it("tensors of the wrong size or with non-finite values: BAD_FILE", () => {
    const value = fc.oneof(
      { weight: 6, arbitrary: fc.float({ noNaN: true, noDefaultInfinity: true }) },
      { weight: 1, arbitrary: fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY) },
    );
    const cases = fuzz(
      "FeatureStats.fromSafetensors (tensors)",
      fc.record({ mean: fc.array(value, { maxLength: 4 }), covariance: fc.array(value, { maxLength: 10 }) }),
      ({ mean, covariance }) => {
        const bytes = writeSafetensors(
          {
            "mean.hi": { shape: [mean.length], data: Float32Array.from(mean) },
            "mean.lo": { shape: [mean.length], data: new Float32Array(mean.length) },
            "covariance.hi": { shape: [covariance.length], data: Float32Array.from(covariance) },
            "covariance.lo": { shape: [covariance.length], data: new Float32Array(covariance.length) },
          },
          { metadata: { kind: "ditcache.feature-stats", version: "1", dim: "3", count: "4" } },
        );
        const outcome = parsesOrFailsTyped(() => FeatureStats.fromSafetensors(bytes));
        const consistent =
          mean.length === 3 &&
          covariance.length === 9 &&
          [...mean, ...covariance].every((x) => Number.isFinite(Math.fround(x)));
        expect(outcome).toBe(consistent ? "parsed" : "BAD_FILE");
      },
    );
    expect(cases).toBe(RUNS);
  });

  it("arbitrary safetensors files: a typed one-line error", () => {
    const cases = fuzz("FeatureStats.fromSafetensors (random files)", safetensorsFileArbitrary, (bytes) => {
      expect(parsesOrFailsTyped(() => FeatureStats.fromSafetensors(bytes))).not.toBe("parsed");
    });
    expect(cases).toBe(RUNS);
  });

  it("FeatureStats.load from a path: damaged files and a missing one fail typed", async () => {
    const path = join(folder, "s.safetensors");
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(corruptedBytesArbitrary(valid), async (bytes) => {
        cases++;
        writeFileSync(path, bytes);
        await parsesOrFailsTypedAsync(() => FeatureStats.load(path));
      }),
      { numRuns: 200 },
    );
    console.log(`fuzz FeatureStats.load (files): ${cases} cases`);
    expect(cases).toBe(200);
    expect(await parsesOrFailsTypedAsync(() => FeatureStats.load(join(folder, "missing")))).toBe("NOT_FOUND");
  });
});
