import type { ClosedLoopReport } from "@ditcache/eoc";
import { describe, expect, it } from "vitest";
import { closedLoopTable } from "./priors-report.js";

describe("closedLoopTable", () => {
  const candidate = (trendScale: number, relativeError: number, samples: number, screenError: number) => ({
    trendOrder: 2,
    trendGain: "fixed" as const,
    trendScale,
    prior: false,
    relativeError,
    samples,
    screenError,
  });
  const loop: ClosedLoopReport = {
    samples: 8,
    screen: { samples: 2, keep: 2 },
    candidates: [candidate(1, 3e-5, 2, 3e-5), candidate(0.9, 2e-5, 8, 1e-5), candidate(1.1, 1e-5, 8, 2e-5)],
  };

  it("lists the candidates that ran every sample by error, then the dropped ones, marking the choice", () => {
    const lines = closedLoopTable(loop, 2, { trendGain: "fixed", trendScale: 1.1, prior: false });
    expect(lines[0]).toMatch(/every candidate ran the first 2 samples, the best 2 all 8/);
    expect(lines[1]).toMatch(/order\s+gain\s+scale\s+curvature\s+prior\s+first 2\s+all 8/);
    expect(lines.slice(2).map((line) => line.split(/\s+/).filter(Boolean))).toEqual([
      ["2", "fixed", "1.1", "-", "no", "2.000e-5", "1.000e-5", "<-", "chosen"],
      ["2", "fixed", "0.9", "-", "no", "1.000e-5", "2.000e-5"],
      ["2", "fixed", "1", "-", "no", "3.000e-5", "dropped"],
    ]);
  });

  it("has one error column without a race", () => {
    const exhaustive: ClosedLoopReport = {
      samples: 8,
      candidates: loop.candidates.map(({ screenError: _, samples: __, ...c }) => c),
    };
    const lines = closedLoopTable(exhaustive, 2, { trendGain: "fixed", trendScale: 0.9, prior: false });
    expect(lines[0]).toMatch(/over 8 samples$/);
    expect(lines[2]!.split(/\s+/).filter(Boolean)).toEqual(["2", "fixed", "1.1", "-", "no", "1.000e-5"]);
    expect(lines.at(-1)).toMatch(/3\.000e-5$/);
    expect(lines.filter((line) => line.includes("<- chosen"))).toHaveLength(1);
  });
});
