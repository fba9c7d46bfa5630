import { describe, expect, it } from "vitest";
import { ProtoWriter } from "./protobuf.js";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe("ProtoWriter", () => {
  it("encodes varints as in the protobuf spec (field 1 = 150 -> 08 96 01)", () => {
    expect(hex(new ProtoWriter().int(1, 150).finish())).toBe("089601");
    expect(hex(new ProtoWriter().int(2, 0).finish())).toBe("1000");
    expect(hex(new ProtoWriter().int(1, 2 ** 35).finish())).toBe("08808080808001");
  });

  it("encodes negative int64 as ten bytes of two's complement", () => {
    expect(hex(new ProtoWriter().int(1, -1).finish())).toBe("08ffffffffffffffffff01");
    expect(hex(new ProtoWriter().int(1, -2).finish())).toBe("08feffffffffffffffff01");
  });

  it("encodes floats as fixed32 little-endian and strings as length-delimited UTF-8", () => {
    expect(hex(new ProtoWriter().float(2, 1).finish())).toBe("150000803f");
    expect(hex(new ProtoWriter().string(2, "testing").finish())).toBe("120774657374696e67");
  });

  it("prefixes nested messages with their length (spec example 1a 03 08 96 01)", () => {
    const nested = new ProtoWriter().int(1, 150);
    expect(hex(new ProtoWriter().message(3, nested).finish())).toBe("1a03089601");
  });

  it("references large byte fields and copies them once into the result", () => {
    const big = new Uint8Array(1000).map((_, i) => i % 251);
    const writer = new ProtoWriter().int(1, 7).bytes(9, big).int(2, 3);
    expect(writer.length).toBe(2 + 3 + 1000 + 2);
    const out = writer.finish();
    expect(hex(out.subarray(0, 5))).toBe("08074ae807");
    expect(out.subarray(5, 1005)).toEqual(big);
    expect(hex(out.subarray(1005))).toBe("1003");
  });

  it("rejects values that are not safe integers", () => {
    expect(() => new ProtoWriter().int(1, 0.5)).toThrow(RangeError);
  });
});
