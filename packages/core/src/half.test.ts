import { describe, expect, it } from "vitest";
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float16ToFloat32Array,
  float32ToBfloat16Bits,
  float32ToFloat16Array,
  float32ToFloat16Bits,
} from "./half.js";

describe("float16", () => {
  it("converts known values both ways", () => {
    const pairs: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
      [0.333251953125, 0x3555],
    ];
    for (const [value, bits] of pairs) {
      expect(float32ToFloat16Bits(value)).toBe(bits);
      expect(Object.is(float16BitsToFloat32(bits), value)).toBe(true);
    }
  });

  it("rounds to nearest, ties to even, including overflow and subnormals", () => {
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // rounds to infinity
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000); // tie -> even zero
    expect(float32ToFloat16Bits(2 ** -25 + 2 ** -35)).toBe(0x0001);
    expect(float32ToFloat16Bits(3 * 2 ** -25)).toBe(0x0002); // 1.5 ulp -> 2
    expect(float32ToFloat16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up to smallest normal
  });

  it("keeps NaN", () => {
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(Number.NaN)))).toBe(true);
  });

  it("round-trips every finite binary16 value", () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const values = float16ToFloat32Array(bits);
    const back = float32ToFloat16Array(values);
    for (let i = 0; i < 65536; i++) {
      if (Number.isNaN(values[i]!)) continue;
      if (back[i] !== i) throw new Error(`0x${i.toString(16)} -> ${values[i]} -> 0x${back[i]!.toString(16)}`);
    }
  });
});

describe("bfloat16", () => {
  it("converts and rounds to nearest even", () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(bfloat16BitsToFloat32(0x3f80)).toBe(1);
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(float32ToBfloat16Bits(Number.NEGATIVE_INFINITY)).toBe(0xff80);
    expect(Number.isNaN(bfloat16BitsToFloat32(float32ToBfloat16Bits(Number.NaN)))).toBe(true);
    expect(float32ToBfloat16Bits(3.4028234663852886e38)).toBe(0x7f80); // max float32 rounds to inf
  });
});
