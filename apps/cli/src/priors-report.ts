import type { ClosedLoopReport, Priors, PriorsDefaults } from "@ditcache/eoc";

/**
 * The closed loop's candidates as a table, best first: those that ran every sample, then those
 * the race dropped, with every candidate's error on the race's first samples beside it (the one
 * column all of them share).
 */
export function closedLoopTable(
  loop: ClosedLoopReport,
  order: number,
  chosen: Pick<PriorsDefaults, "trendGain" | "trendScale" | "prior" | "curvatureGain">,
): string[] {
  const ranAll = loop.candidates.filter((c) => (c.samples ?? loop.samples) === loop.samples);
  const dropped = loop.candidates.filter((c) => !ranAll.includes(c));
  const byError = (a: { relativeError: number }, b: { relativeError: number }) =>
    a.relativeError - b.relativeError;
  const isChosen = (c: ClosedLoopReport["candidates"][number]) =>
    (c.trendOrder ?? 1) === order &&
    c.trendGain === chosen.trendGain &&
    c.trendScale === chosen.trendScale &&
    c.prior === chosen.prior &&
    c.curvatureGain === chosen.curvatureGain;
  const screen = loop.screen;
  const widths = [6, 7, 6, 10, 6, 11, 11];
  const row = (cells: readonly string[]) =>
    `  ${cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join(" ")}`.trimEnd();
  const lines = [
    `closed loop: relative error of the last step's block-stack input vs uncached (geometric mean)${screen ? `; every candidate ran the first ${screen.samples} samples, the best ${screen.keep} all ${loop.samples}` : ` over ${loop.samples} samples`}`,
    row([
      "order",
      "gain",
      "scale",
      "curvature",
      "prior",
      screen ? `first ${screen.samples}` : "",
      `all ${loop.samples}`,
    ]),
  ];
  for (const c of [...ranAll.sort(byError), ...dropped.sort(byError)]) {
    const full = dropped.includes(c) ? "dropped" : c.relativeError.toExponential(3);
    lines.push(
      row([
        String(c.trendOrder ?? 1),
        c.trendGain,
        String(c.trendScale),
        c.curvatureGain === undefined ? "-" : String(c.curvatureGain),
        c.prior ? "yes" : "no",
        screen ? (c.screenError?.toExponential(3) ?? "") : "",
        `${full}${isChosen(c) ? "  <- chosen" : ""}`,
      ]),
    );
  }
  return lines;
}

/** What a priors file is for and what its closed loop chose, as lines for `ditcache info`. */
export function describePriors(priors: Priors): string[] {
  const { header } = priors;
  const { sampler, defaults, calibration } = header;
  const chosen =
    header.report.closedLoop === undefined
      ? "no closed loop"
      : `${defaults.trendGain} gain ${defaults.trendScale}${defaults.curvatureGain === undefined ? "" : `, curvature ${defaults.curvatureGain}`}, ${defaults.prior ? "with" : "no"} prior term`;
  const lines = [
    `EOC priors (format version ${header.version}) for model ${header.modelHash}, base policy ${header.basePolicy}`,
    `${sampler.sampler} ${header.steps} steps (${sampler.respacing}), cfg ${sampler.cfgScale}, guide channels ${sampler.guideChannels}; depth ${header.depth}`,
    `${header.sites.length} sites, ${header.cells.length} reused cells, ${header.granularity} granularity, ${header.dtype}`,
    `trend order ${priors.trendOrder}: ${chosen}`,
    `calibration: ${calibration.samples} samples (${calibration.description || "no description"})`,
  ];
  const loop = header.report.closedLoop;
  return loop ? [...lines, ...closedLoopTable(loop, priors.trendOrder, defaults)] : lines;
}
