import { fuzz, parsesOrFailsTyped } from "@ditcache/core/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { convertL2CRouter } from "./learned.js";
import { parseSchedule } from "./schedule.js";

const RUNS = 3000;

const siteKey = fc.oneof(
  fc.constantFrom(
    "block0.attn",
    "block1.mlp",
    "block2",
    "blocks0-3",
    "blocks3-0",
    "block99999999999999999999.attn",
    "block-1",
    "",
  ),
  fc.string({ maxLength: 8 }),
);
const count = fc.oneof(
  fc.integer({ min: -1, max: 4 }),
  fc.constantFrom<unknown>(1.5, 2 ** 53, 1e9, Number.NaN, "2", null),
);
const cell = fc.oneof(
  { weight: 8, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(0, 1, "true", null) },
);

/** Schedule-shaped objects: mostly near-valid, with every field sometimes wrong. */
const scheduleLike = fc.record(
  {
    version: fc.constantFrom<unknown>(1, 1, 1, 2, "1", null),
    steps: count,
    depth: count,
    sites: fc.oneof(
      { weight: 8, arbitrary: fc.array(siteKey, { maxLength: 4 }) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>("block0", null, {}) },
    ),
    reuse: fc.oneof(
      {
        weight: 8,
        arbitrary: fc.array(
          fc.oneof(
            { weight: 8, arbitrary: fc.array(cell, { maxLength: 4 }) },
            { weight: 1, arbitrary: fc.constantFrom<unknown>(null, true, {}) },
          ),
          { maxLength: 5 },
        ),
      },
      { weight: 1, arbitrary: fc.constantFrom<unknown>(null, "yes", {}) },
    ),
  },
  { requiredKeys: [] },
);

/** Valid schedules: distinct site keys, one boolean row per step, nothing reused at step 0. */
const validSchedule = fc
  .record({
    steps: fc.integer({ min: 1, max: 5 }),
    sites: fc.uniqueArray(
      fc.constantFrom("block0.attn", "block0.mlp", "block1", "blocks0-3", "block2.attn"),
      { maxLength: 4 },
    ),
  })
  .chain(({ steps, sites }) =>
    fc
      .array(fc.array(fc.boolean(), { minLength: sites.length, maxLength: sites.length }), {
        minLength: steps - 1,
        maxLength: steps - 1,
      })
      .map((rows) => ({
        version: 1,
        steps,
        sites,
        reuse: [sites.map(() => false), ...rows],
      })),
  );

const jsonText = fc.oneof(
  { weight: 2, arbitrary: validSchedule.map((value) => JSON.stringify(value)) },
  { weight: 4, arbitrary: scheduleLike.map((value) => JSON.stringify(value)) },
  { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

describe("parseSchedule under untrusted JSON", () => {
  it("keeps a schedule with thousands of sites off the call stack", () => {
    const sites = Array.from({ length: 200_000 }, (_, i) => `block${i}`);
    const table = parseSchedule(
      JSON.stringify({ version: 1, steps: 1, sites, reuse: [sites.map(() => false)] }),
    );
    expect(table.sites.length).toBe(200_000);
  });

  it("parses or throws a typed one-line error", () => {
    const outcomes = new Set<string>();
    const cases = fuzz("parseSchedule", jsonText, (text) => {
      outcomes.add(parsesOrFailsTyped(() => parseSchedule(text)));
    });
    expect(cases).toBe(RUNS);
    expect(outcomes).toContain("parsed");
    expect(outcomes).toContain("INVALID_ARGUMENT");
    expect(outcomes).toContain("BAD_FILE");
  });
});

const routerValue = fc.oneof(
  { weight: 8, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true, min: -10, max: 10 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(Number.NaN, null, "0.5", [1]) },
);
const router = fc.oneof(
  { weight: 8, arbitrary: fc.array(routerValue, { maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 3, {}) },
);
const routerIndex = fc.oneof(
  fc.integer({ min: 0, max: 4 }).map(String),
  fc.constantFrom("-1", "01", "4294967294", "4294967295", "99999999999999999999", "1e3", "x"),
);

/** Router-shaped values in every accepted layout, and a few that are none. */
const routerLike = fc.oneof(
  fc.array(router, { maxLength: 5 }),
  fc.record({ routers: fc.oneof(fc.array(router, { maxLength: 5 }), fc.constantFrom<unknown>(null, {})) }),
  fc.dictionary(
    fc.oneof(
      routerIndex.map((index) => `routers.${index}.prob`),
      routerIndex.map((index) => `model.routers.${index}.prob`),
      fc.string({ maxLength: 8 }),
    ),
    router,
    { maxKeys: 5 },
  ),
  fc.jsonValue({ maxDepth: 2 }),
);

describe("convertL2CRouter under untrusted JSON", () => {
  it("converts or throws a typed one-line error, for values and for JSON text", () => {
    const outcomes = new Set<string>();
    const cases = fuzz(
      "convertL2CRouter",
      fc.tuple(routerLike, fc.boolean(), fc.constantFrom<"timestep" | "step">("timestep", "step")),
      ([value, asText, order]) => {
        outcomes.add(parsesOrFailsTyped(() => convertL2CRouter(value, { order })));
        if (asText) parsesOrFailsTyped(() => convertL2CRouter(`${JSON.stringify(value)}x`));
      },
    );
    expect(cases).toBe(RUNS);
    expect(outcomes).toContain("parsed");
    expect(outcomes).toContain("INVALID_ARGUMENT");
  });
});
