import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { parsePolicy } from "@ditcache/cache";
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
import { noise, trajectoryModel } from "./__fixtures__/trajectory.js";
import { calibrate } from "./calibrate.js";
import { METADATA_KEY } from "./header.js";
import { loadPriors, priorsFromBytes } from "./priors.js";

const RUNS = 3000;
const backend = createCpuBackend();
const model = trajectoryModel(backend, {
  depth: 2,
  steps: 4,
  rows: ["cond"],
  tokens: 2,
  channels: 2,
  feature: (s, step) => noise(7 + s, 4).map((v, i) => v + 0.3 * step * noise(s, 4)[i]!),
});
const priors = await calibrate({
  runSample: (hook, i) => model.run(hook, i),
  basePolicy: parsePolicy("fora:interval=2"),
  steps: 4,
  depth: 2,
  descriptor: {
    modelHash: "m",
    sampler: { respacing: "ddim4", sampler: "ddim", cfgScale: 1, guideChannels: "all" },
  },
  samples: 2,
  dtype: "F16",
});
const valid = priors.toBytes();
const header = priors.header as unknown as Record<string, unknown>;
const folder = mkdtempSync(join(tmpdir(), "ditcache-eoc-fuzz-"));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

const weird = fc.constantFrom<unknown>(
  null,
  -1,
  0,
  1.5,
  2 ** 53,
  1e300,
  "",
  "x",
  true,
  [],
  {},
  [[0, 1, 0]],
  [-1],
  [2 ** 31],
  [[0, 3, 1]],
  [[9, 1, 0]],
  ["block0.attn"],
);

/** The valid header with one to three fields replaced by something else (or removed). */
const headerEdits = fc
  .array(fc.tuple(fc.constantFrom(...Object.keys(header), "extra"), fc.option(weird, { nil: undefined })), {
    minLength: 1,
    maxLength: 3,
  })
  .map((edits) => {
    const out: Record<string, unknown> = { ...header };
    for (const [key, value] of edits) {
      if (value === undefined) delete out[key];
      else out[key] = value;
    }
    return JSON.stringify(out);
  });

describe("priorsFromBytes under untrusted bytes", () => {
  it("the valid file parses (the fuzz below damages it)", () => {
    expect(priorsFromBytes(valid).cellCount).toBeGreaterThan(0);
  });

  it("damaged copies of a valid priors file: parsed or a typed one-line error", () => {
    const cases = fuzz("priorsFromBytes (damaged)", corruptedBytesArbitrary(valid), (bytes) => {
      parsesOrFailsTyped(() => priorsFromBytes(bytes, {}, "fuzz.priors"));
    });
    expect(cases).toBe(RUNS);
  });

  it("a damaged JSON header inside a well-formed container: a typed one-line error", () => {
    const codes = new Set<string>();
    const cases = fuzz(
      "priorsFromBytes (header)",
      fc.oneof(
        { weight: 4, arbitrary: headerEdits },
        { weight: 1, arbitrary: fc.json({ maxDepth: 2 }) },
        { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
      ),
      (text) => {
        codes.add(
          parsesOrFailsTyped(() =>
            priorsFromBytes(
              withMetadataEntry(valid, METADATA_KEY, () => text),
              { steps: 4 },
            ),
          ),
        );
      },
    );
    expect(cases).toBe(RUNS);
    expect(codes).toContain("BAD_FILE");
  });

  it("arbitrary safetensors files: a typed one-line error", () => {
    const cases = fuzz("priorsFromBytes (random files)", safetensorsFileArbitrary, (bytes) => {
      expect(parsesOrFailsTyped(() => priorsFromBytes(bytes))).not.toBe("parsed");
    });
    expect(cases).toBe(RUNS);
  });

  it("loadPriors from a path: damaged files and a missing one fail typed", async () => {
    const path = join(folder, "p.safetensors");
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(corruptedBytesArbitrary(valid), async (bytes) => {
        cases++;
        writeFileSync(path, bytes);
        await parsesOrFailsTypedAsync(() => loadPriors(path));
      }),
      { numRuns: 200 },
    );
    console.log(`fuzz loadPriors (files): ${cases} cases`);
    expect(cases).toBe(200);
    expect(await parsesOrFailsTypedAsync(() => loadPriors(join(folder, "missing.safetensors")))).toBe(
      "NOT_FOUND",
    );
  });
});
