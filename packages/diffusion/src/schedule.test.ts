import { describe, expect, it } from "vitest";
import { createSchedule, linearBetaSchedule, spaceTimesteps } from "./schedule.js";

// Expected values printed by numpy 2.4 from tools/reference/dit.py (the official formulas).
describe("linearBetaSchedule", () => {
  it("matches np.linspace(1e-4, 0.02, 1000) and its alphas_cumprod", () => {
    const betas = linearBetaSchedule(1000);
    expect(betas[0]).toBe(0.0001);
    expect(betas[999]).toBe(0.02);
    const schedule = createSchedule();
    expect(schedule.numTimesteps).toBe(1000);
    expect(schedule.alphasCumprod[0]).toBe(0.9999);
    expect(schedule.alphasCumprod[1]).toBeCloseTo(0.9997800920720721, 15);
    expect(schedule.alphasCumprod[499]).toBeCloseTo(0.07858724288177824, 15);
    expect(schedule.alphasCumprod[999]).toBeCloseTo(4.035829765375676e-5, 17);
  });

  it("rejects a non-positive step count", () => {
    expect(() => linearBetaSchedule(0)).toThrow(/numTimesteps: expected a positive integer, got 0/);
    expect(() => linearBetaSchedule(-5)).toThrow(/numTimesteps/);
  });
});

describe("spaceTimesteps", () => {
  it("ddim20 takes every 50th step", () => {
    expect(spaceTimesteps(1000, "ddim20")).toEqual(Array.from({ length: 20 }, (_, i) => i * 50));
    expect(spaceTimesteps(1000, "ddim7")).toEqual([0, 143, 286, 429, 572, 715, 858]);
  });

  it('"250" matches the official fractional stride', () => {
    const steps = spaceTimesteps(1000, "250");
    expect(steps).toHaveLength(250);
    expect(steps.reduce((a, b) => a + b, 0)).toBe(124875);
    expect(steps.slice(0, 4)).toEqual([0, 4, 8, 12]);
    expect(steps.slice(100, 103)).toEqual([401, 405, 409]);
    expect(steps.slice(124, 127)).toEqual([497, 502, 506]);
    expect(steps.slice(-3)).toEqual([991, 995, 999]);
  });

  it("rounds halves to even as Python's round()", () => {
    expect(spaceTimesteps(1000, "3")).toEqual([0, 500, 999]); // 499.5 -> 500
    expect(spaceTimesteps(1000, "7")).toEqual([0, 166, 333, 500, 666, 832, 999]); // 166.5 -> 166
  });

  it("splits into sections", () => {
    expect(spaceTimesteps(1000, "3,3")).toEqual([0, 250, 499, 500, 750, 999]);
    expect(spaceTimesteps(1000, [3, 3])).toEqual([0, 250, 499, 500, 750, 999]);
    expect(spaceTimesteps(1000, "20")).toEqual([
      0, 53, 105, 158, 210, 263, 315, 368, 421, 473, 526, 578, 631, 684, 736, 789, 841, 894, 946, 999,
    ]);
  });

  it("gives one-line errors for bad respacings", () => {
    expect(() => spaceTimesteps(1000, "ddim0")).toThrow(/cannot take exactly 0 of 1000 steps/);
    expect(() => spaceTimesteps(1000, "ddim999")).toThrow(/cannot take exactly 999/);
    expect(() => spaceTimesteps(1000, "abc")).toThrow(/respacing: expected "ddimN", "N"/);
    expect(() => spaceTimesteps(1000, "-5")).toThrow(/respacing: expected/);
    expect(() => spaceTimesteps(1000, "0")).toThrow(/at least one step/);
    expect(() => spaceTimesteps(1000, "2000")).toThrow(/cannot divide a section of 1000 steps into 2000/);
    expect(() => spaceTimesteps(1000, [])).toThrow(/at least one step/);
    expect(() => spaceTimesteps(1000, [-1])).toThrow(/non-negative integer counts/);
  });
});

describe("createSchedule", () => {
  it("recomputes betas from the kept alphas_cumprod like SpacedDiffusion", () => {
    const schedule = createSchedule({ respacing: "ddim10" });
    expect(schedule.timestepMap).toEqual([0, 100, 200, 300, 400, 500, 600, 700, 800, 900]);
    const expected = [
      0.9999, 0.8951415908975365, 0.6563470055193468, 0.394011122523382, 0.19357200966664662,
      0.0777966583650239, 0.025567492265459003, 0.0068682788903646425, 0.0015075210597816765,
      0.00027024451955826425,
    ];
    for (const [i, value] of expected.entries()) expect(schedule.alphasCumprod[i]).toBeCloseTo(value, 14);
    expect(schedule.posteriorLogVarianceClipped[0]).toBeCloseTo(-9.21119449, 7);
    expect(schedule.posteriorLogVarianceClipped[1]).toBeCloseTo(-9.21119449, 7);
    expect(schedule.posteriorLogVarianceClipped[2]).toBeCloseTo(-2.50839966, 7);
  });

  it("keeps all 1000 steps for an empty respacing", () => {
    expect(createSchedule({ respacing: "" }).numTimesteps).toBe(1000);
  });
});
