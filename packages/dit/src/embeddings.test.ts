import { describe, expect, it } from "vitest";
import { sincosPositionEmbedding, timestepEmbedding } from "./embeddings.js";

describe("sincosPositionEmbedding", () => {
  it("matches get_2d_sincos_pos_embed(8, 3) of the official code (w index first)", () => {
    const embedding = sincosPositionEmbedding(8, 3);
    const row = (m: number) => Array.from(embedding.subarray(m * 8, m * 8 + 8));
    // Printed by numpy from tools/reference/dit.py.
    const expected: Record<number, number[]> = {
      0: [0, 0, 1, 1, 0, 0, 1, 1],
      1: [0.8414709568023682, 0.009999833069741726, 0.5403022766113281, 0.9999499917030334, 0, 0, 1, 1],
      3: [0, 0, 1, 1, 0.8414709568023682, 0.009999833069741726, 0.5403022766113281, 0.9999499917030334],
      5: [
        0.9092974066734314, 0.019998665899038315, -0.416146844625473, 0.9998000264167786, 0.8414709568023682,
        0.009999833069741726, 0.5403022766113281, 0.9999499917030334,
      ],
    };
    for (const [m, values] of Object.entries(expected)) expect(row(Number(m))).toEqual(values);
  });
});

describe("timestepEmbedding", () => {
  it("is [cos, sin] of t times geometric frequencies", () => {
    const embedding = timestepEmbedding([0, 10], 8);
    expect(Array.from(embedding.subarray(0, 8))).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
    expect(embedding[8]).toBeCloseTo(Math.cos(10), 6);
    expect(embedding[12]).toBeCloseTo(Math.sin(10), 6);
    expect(embedding[9]).toBeCloseTo(Math.cos(10 * Math.exp(-Math.log(10000) / 4)), 6);
  });
});
