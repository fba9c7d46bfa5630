import { fuzz, parsesOrFailsTyped } from "@ditcache/core/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Command, intListOption, intOption, numberOption, parseCommandArgs } from "./args.js";

const RUNS = 3000;

const command: Command = {
  name: "fuzz",
  summary: "a command with every kind of option",
  options: {
    steps: { type: "string", default: "20", help: "" },
    labels: { type: "string", help: "" },
    out: { type: "string", short: "o", help: "" },
    verbose: { type: "boolean", help: "" },
    "check-finite": { type: "boolean", help: "" },
  },
  run: async () => {},
};

const token = fc.oneof(
  fc.constantFrom(
    "--steps",
    "--labels",
    "--out",
    "-o",
    "--verbose",
    "--check-finite",
    "--verbose=1",
    "--steps=",
    "--",
    "-",
    "-3",
    "--unknown",
    "-x",
    "--steps=-1",
    "3",
    "0-9",
    "--__proto__",
    "--constructor",
  ),
  fc.string({ maxLength: 8 }),
);

/** Number-like strings: canonical, signed, spaced, exponent, hex, empty, huge, lists and ranges. */
const numberText = fc.oneof(
  fc.integer({ min: -5, max: 2000 }).map(String),
  fc.constantFrom(
    "",
    " ",
    "1e3",
    "0x10",
    "1.5",
    "+3",
    " 7 ",
    "-0",
    "NaN",
    "Infinity",
    "9".repeat(30),
    "1_000",
    "3,",
    ",",
    "0-9",
    "9-0",
    "0-100000",
    "1,,2",
    "2 - 4",
    "0-4294967295",
  ),
  fc
    .array(fc.oneof(fc.integer({ min: -2, max: 12 }).map(String), fc.constantFrom("", "0-3", "x")), {
      maxLength: 4,
    })
    .map((parts) => parts.join(",")),
  fc.string({ maxLength: 6 }),
);

describe("CLI argument parsing under arbitrary argv", () => {
  it("parseCommandArgs: values of the declared options, or a typed one-line error", () => {
    const cases = fuzz("parseCommandArgs", fc.array(token, { maxLength: 6 }), (argv) => {
      let parsed: ReturnType<typeof parseCommandArgs> | undefined;
      parsesOrFailsTyped(() => {
        parsed = parseCommandArgs(command, argv);
      });
      if (parsed === undefined) return;
      for (const key of Object.keys(parsed.values)) expect(Object.hasOwn(command.options, key)).toBe(true);
    });
    expect(cases).toBe(RUNS);
  });

  it("intOption: an integer in bounds written as plain digits, or a typed error naming the option", () => {
    const cases = fuzz("intOption", numberText, (raw) => {
      let value: number | undefined;
      const outcome = parsesOrFailsTyped(() => {
        value = intOption({ steps: raw }, "steps", 1, 1000);
      });
      if (outcome === "parsed") {
        expect(Number.isInteger(value) && value! >= 1 && value! <= 1000).toBe(true);
        expect(raw.trim()).toMatch(/^[+-]?\d+$/);
      }
    });
    expect(cases).toBe(RUNS);
    expect(() => intOption({ steps: "" }, "steps", 0, 10)).toThrow(/--steps: expected an integer/);
  });

  it("numberOption: a finite number in bounds, or a typed error", () => {
    const cases = fuzz("numberOption", numberText, (raw) => {
      let value: number | undefined;
      if (parsesOrFailsTyped(() => (value = numberOption({ cfg: raw }, "cfg", 1, 50))) === "parsed") {
        expect(Number.isFinite(value) && value! >= 1 && value! <= 50).toBe(true);
      }
    });
    expect(cases).toBe(RUNS);
  });

  it("intListOption: at most 1024 integers in bounds, or a typed error", () => {
    const cases = fuzz("intListOption", numberText, (raw) => {
      let list: number[] | undefined;
      if (parsesOrFailsTyped(() => (list = intListOption({ labels: raw }, "labels", 0, 9))) === "parsed") {
        expect(list!.length).toBeGreaterThan(0);
        expect(list!.length).toBeLessThanOrEqual(1024);
        expect(list!.every((label) => Number.isInteger(label) && label >= 0 && label <= 9)).toBe(true);
      }
    });
    expect(cases).toBe(RUNS);
    expect(() => intListOption({ labels: "1,,2" }, "labels", 0, 9)).toThrow(/--labels/);
  });
});
