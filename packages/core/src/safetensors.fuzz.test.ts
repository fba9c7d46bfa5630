import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { readSafetensors, readSafetensorsFile, writeSafetensors } from "./safetensors.js";
import {
  corruptedBytesArbitrary,
  fuzz,
  parsesOrFailsTyped,
  parsesOrFailsTypedAsync,
  safetensorsFileArbitrary,
} from "./testing/fuzz.js";

const RUNS = 3000;
const directory = await mkdtemp(join(tmpdir(), "ditcache-fuzz-"));
afterAll(() => rm(directory, { recursive: true, force: true }));

describe("readSafetensors under untrusted bytes", () => {
  it("parses or throws a typed one-line error for structured headers, bad lengths and junk", () => {
    const outcomes = new Map<string, number>();
    const cases = fuzz("readSafetensors (structured)", safetensorsFileArbitrary, (bytes) => {
      const outcome = parsesOrFailsTyped(() =>
        readSafetensors(bytes, { name: "fuzz.safetensors", unsupported: "skip" }),
      );
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    });
    expect(cases).toBe(RUNS);
    // The generator reaches both sides: files that parse and files that are refused.
    expect(outcomes.get("parsed")).toBeGreaterThan(0);
    expect(outcomes.get("BAD_FILE")).toBeGreaterThan(0);
  });

  const valid = writeSafetensors(
    {
      a: { shape: [2, 3], data: new Float32Array(6).fill(1.5) },
      b: { shape: [4], data: new Float32Array(4) },
    },
    { dtype: "F16", metadata: { note: "x" } },
  );

  it("parses or throws a typed error for damaged copies of a valid file", () => {
    const cases = fuzz("readSafetensors (damaged)", corruptedBytesArbitrary(valid), (bytes) => {
      const outcome = parsesOrFailsTyped(() => readSafetensors(bytes));
      if (outcome === "parsed") return;
      expect(["BAD_FILE", "UNSUPPORTED"]).toContain(outcome);
    });
    expect(cases).toBe(RUNS);
  });

  it("keeps the error on one line when damage turns a key into a tensor name holding a \\n escape", () => {
    // A damaged copy the property above fails on (found by trying every two-byte overwrite): bytes
    // 10 and 11 ("__" of the "__metadata__" key) become a backslash and "n". The header is still
    // valid JSON, with a tensor "\nmetadata__" that has no dtype; its name used to be pasted raw
    // into the message, splitting it over two lines.
    const damaged = valid.slice();
    expect(new TextDecoder().decode(damaged.subarray(8, 14))).toBe('{"__me');
    damaged.set([0x5c, 0x6e], 10);
    expect(parsesOrFailsTyped(() => readSafetensors(damaged))).toBe("BAD_FILE");
    expect(() => readSafetensors(damaged)).toThrow(
      'safetensors: tensor "\\nmetadata__": dtype undefined is not a safetensors dtype',
    );
  });

  it("never allocates from a claimed size: a huge header length or shape is refused from the prefix alone", () => {
    const cases = fuzz(
      "readSafetensors (huge claims)",
      fc.record({
        length: fc.bigInt({ min: 100_000_001n, max: 2n ** 64n - 1n }),
        dims: fc.array(fc.integer({ min: 2 ** 20, max: 2 ** 30 }), { minLength: 2, maxLength: 4 }),
      }),
      ({ length, dims }) => {
        const prefix = new Uint8Array(16);
        new DataView(prefix.buffer).setBigUint64(0, length, true);
        expect(parsesOrFailsTyped(() => readSafetensors(prefix))).toBe("BAD_FILE");
        const header = new TextEncoder().encode(
          JSON.stringify({ t: { dtype: "F32", shape: dims, data_offsets: [0, 8] } }),
        );
        const small = new Uint8Array(8 + header.length + 8);
        new DataView(small.buffer).setUint32(0, header.length, true);
        small.set(header, 8);
        expect(parsesOrFailsTyped(() => readSafetensors(small))).toBe("BAD_FILE");
      },
      500,
    );
    expect(cases).toBe(500);
  });

  it("the file reader agrees with the in-memory reader on random files", async () => {
    const path = join(directory, "case.safetensors");
    let cases = 0;
    await fc.assert(
      fc.asyncProperty(safetensorsFileArbitrary, async (bytes) => {
        cases++;
        await writeFile(path, bytes);
        const inMemory = parsesOrFailsTyped(() => readSafetensors(bytes, { unsupported: "skip" }));
        const fromFile = await parsesOrFailsTypedAsync(() =>
          readSafetensorsFile(path, { unsupported: "skip" }),
        );
        expect(fromFile).toBe(inMemory);
      }),
      { numRuns: 300 },
    );
    console.log(`fuzz readSafetensorsFile: ${cases} cases`);
    expect(cases).toBe(300);
  });
});
