import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DitcacheError } from "./errors.js";
import { readSafetensors, readSafetensorsFile, writeSafetensors } from "./safetensors.js";

/** A safetensors file from a raw header (object or text) and a data section. */
function file(header: unknown, data: Uint8Array = new Uint8Array(0), lengthOverride?: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, lengthOverride ?? json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function badFile(bytes: Uint8Array, message: RegExp | string, code = "BAD_FILE"): void {
  try {
    readSafetensors(bytes, { name: "model.safetensors" });
  } catch (error) {
    expect(DitcacheError.isInstance(error)).toBe(true);
    expect((error as DitcacheError).code).toBe(code);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain("\n");
    expect((error as Error).message.startsWith("model.safetensors: ")).toBe(true);
    return;
  }
  throw new Error("expected readSafetensors to throw");
}

const f32 = (...values: number[]) => new Uint8Array(Float32Array.from(values).buffer);

describe("writeSafetensors / readSafetensors", () => {
  it("round-trips F32 with sorted keys, metadata and an 8-byte aligned data section", () => {
    const bytes = writeSafetensors(
      {
        zeta: { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) },
        alpha: { shape: [], data: Float32Array.from([-0.5]) },
      },
      { metadata: { format: "pt", model: "test" } },
    );
    const headerLength = new DataView(bytes.buffer).getUint32(0, true);
    expect((8 + headerLength) % 8).toBe(0);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
    expect(header.indexOf('"alpha"')).toBeLessThan(header.indexOf('"zeta"'));
    expect(JSON.parse(header).alpha.data_offsets).toEqual([0, 4]);
    const { tensors, metadata } = readSafetensors(bytes);
    expect(metadata).toEqual({ format: "pt", model: "test" });
    expect(tensors.get("zeta")).toEqual({
      dtype: "F32",
      shape: [2, 2],
      data: Float32Array.from([1, 2, 3, 4]),
    });
    expect(tensors.get("alpha")).toEqual({ dtype: "F32", shape: [], data: Float32Array.from([-0.5]) });
  });

  it("round-trips F16 and BF16 with rounding", () => {
    const data = Float32Array.from([0, 1, -2.5, 65504, 1e-7, 0.1]);
    const half = readSafetensors(writeSafetensors({ x: { shape: [6], data } }, { dtype: "F16" })).tensors.get(
      "x",
    )!;
    expect(half.dtype).toBe("F16");
    expect(Array.from(half.data)).toEqual([0, 1, -2.5, 65504, 1.1920928955078125e-7, 0.0999755859375]);
    const brain = readSafetensors(
      writeSafetensors({ x: { shape: [6], data } }, { dtype: "BF16" }),
    ).tensors.get("x")!;
    expect(brain.dtype).toBe("BF16");
    expect(brain.data[3]).toBe(65536);
    expect(brain.data[5]).toBe(0.10009765625);
  });

  it("reads data that is not 4-byte aligned in the buffer", () => {
    const bytes = file({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, f32(1.5, -3));
    const shifted = new Uint8Array(bytes.length + 1).subarray(1);
    shifted.set(bytes);
    expect(Array.from(readSafetensors(shifted).tensors.get("a")!.data)).toEqual([1.5, -3]);
  });

  it("accepts an empty file header and zero-size tensors", () => {
    expect(readSafetensors(file({})).tensors.size).toBe(0);
    const bytes = file(
      {
        e: { dtype: "F32", shape: [0, 3], data_offsets: [0, 0] },
        a: { dtype: "F16", shape: [1], data_offsets: [0, 2] },
      },
      new Uint8Array([0, 60]),
    );
    const { tensors } = readSafetensors(bytes);
    expect(tensors.get("e")!.data.length).toBe(0);
    expect(Array.from(tensors.get("a")!.data)).toEqual([1]);
  });

  it("rejects bad writer input", () => {
    expect(() => writeSafetensors({ x: { shape: [3], data: new Float32Array(2) } })).toThrow(
      /entries\["x"\]\.data/,
    );
    expect(() => writeSafetensors({}, { dtype: "F64" as "F32" })).toThrow(/options\.dtype/);
  });
});

describe("readSafetensors validation", () => {
  const ok = { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };

  it("rejects truncated files and bad header lengths", () => {
    badFile(new Uint8Array(5), "file is 5 bytes, expected at least 8");
    badFile(file(ok, f32(1, 2), 1000), /header length 1000 exceeds the \d+ bytes after the length field/);
    const huge = file(ok, f32(1, 2));
    new DataView(huge.buffer).setUint32(4, 1, true); // 2^32 + n
    badFile(huge, /exceeds the 100000000-byte limit \(not a safetensors file\? it starts with ".{8}"\)/);
    badFile(file(ok, f32(1)), /reach past the 4-byte data section/);
  });

  it("rejects headers that are not a UTF-8 JSON object", () => {
    badFile(file("{not json"), /header is not valid JSON/);
    badFile(file("[1, 2]"), "header is not a JSON object");
    const invalidUtf8 = file('{"a": 1}');
    invalidUtf8[10] = 0xff;
    badFile(invalidUtf8, "header is not valid UTF-8");
  });

  it("rejects bad entries, naming the tensor and field", () => {
    badFile(
      file({ a: { dtype: "toString", shape: [2], data_offsets: [0, 8] } }, f32(1, 2)),
      /tensor "a": dtype "toString" is not a safetensors dtype/,
    );
    badFile(file({ a: 3 }), 'tensor "a" is not an object');
    badFile(
      file({ a: { dtype: "F99", shape: [2], data_offsets: [0, 8] } }, f32(1, 2)),
      /tensor "a": dtype "F99"/,
    );
    badFile(
      file({ a: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }, f32(1, 2)),
      /tensor "a": shape \[-2\]/,
    );
    badFile(
      file({ a: { dtype: "F32", shape: [2.5], data_offsets: [0, 8] } }, f32(1, 2)),
      /tensor "a": shape/,
    );
    badFile(
      file({ a: { dtype: "F32", shape: [2], data_offsets: [0] } }, f32(1, 2)),
      /tensor "a": data_offsets \[0\]/,
    );
    badFile(file({ a: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, f32(1, 2)), /begin > end/);
    badFile(
      file({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32(1, 2)),
      /tensor "a": 8 data bytes, expected 12 for F32 \[3\]/,
    );
    badFile(file({ __metadata__: { k: 1 } }), /__metadata__\["k"\] is number, expected a string/);
    badFile(file({ __metadata__: [] }), "__metadata__ is not an object");
  });

  it("rejects overlapping tensors, holes and unused data", () => {
    badFile(
      file(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        f32(1, 2, 3),
      ),
      /tensor "b": data_offsets \[4, 12\] overlap tensor "a"/,
    );
    badFile(
      file({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f32(1, 2)),
      /data starts at 4, expected 0/,
    );
    badFile(
      file({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, f32(1, 2)),
      /data section is 8 bytes but tensors cover 4/,
    );
  });

  it("rejects unsupported dtypes with UNSUPPORTED, or skips them when asked", () => {
    const bytes = file(
      {
        a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
        ids: { dtype: "I64", shape: [1], data_offsets: [4, 12] },
      },
      new Uint8Array(12),
    );
    badFile(bytes, /tensor "ids" has dtype I64, expected F32, F16 or BF16/, "UNSUPPORTED");
    const { tensors } = readSafetensors(bytes, { unsupported: "skip" });
    expect([...tensors.keys()]).toEqual(["a"]);
  });
});

describe("readSafetensorsFile", () => {
  const folder = mkdtemp(join(tmpdir(), "ditcache-safetensors-"));
  afterAll(async () => rm(await folder, { recursive: true, force: true }));

  it("reads a file and names the path in errors", async () => {
    const path = join(await folder, "w.safetensors");
    await writeFile(path, writeSafetensors({ w: { shape: [1], data: Float32Array.from([7]) } }));
    expect(Array.from((await readSafetensorsFile(path)).tensors.get("w")!.data)).toEqual([7]);
    const broken = join(await folder, "broken.safetensors");
    await writeFile(broken, new Uint8Array(3));
    await expect(readSafetensorsFile(broken)).rejects.toThrow(`${broken}: file is 3 bytes`);
    await expect(readSafetensorsFile(join(await folder, "missing.safetensors"))).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
  });

  it("validates files exactly like readSafetensors, and skips unsupported dtypes on request", async () => {
    const cases = [
      file({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, f32(1, 2), 1000),
      file("{oops"),
      file({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32(1, 2)),
      file(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
        },
        f32(1, 2),
      ),
      file(
        {
          ids: { dtype: "I64", shape: [1], data_offsets: [0, 8] },
          a: { dtype: "BF16", shape: [1], data_offsets: [8, 10] },
        },
        new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f]),
      ),
    ];
    for (const [i, bytes] of cases.entries()) {
      const path = join(await folder, `case${i}.safetensors`);
      await writeFile(path, bytes);
      let expected: unknown;
      try {
        readSafetensors(bytes, { name: path });
      } catch (error) {
        expected = error;
      }
      expect(expected, `case ${i}`).toBeInstanceOf(DitcacheError);
      await expect(readSafetensorsFile(path)).rejects.toMatchObject({
        code: (expected as DitcacheError).code,
        message: (expected as DitcacheError).message,
      });
    }
    const skipped = await readSafetensorsFile(join(await folder, "case4.safetensors"), {
      unsupported: "skip",
    });
    expect([...skipped.tensors.entries()]).toEqual([
      ["a", { dtype: "BF16", shape: [1], data: Float32Array.from([1]) }],
    ]);
  });
});
