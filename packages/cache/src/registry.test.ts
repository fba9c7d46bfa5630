import { DitcacheError } from "@ditcache/core";
import { describe, expect, it } from "vitest";
import { nonePolicy } from "./policies/none.js";
import { createPolicy, listPolicies, parsePolicy, registerPolicy } from "./registry.js";

describe("policy registry", () => {
  it("round-trips specs", () => {
    for (const spec of [
      "fora:interval=2",
      "fora:reuseEvery=4",
      "teacache:threshold=0.2,coefficients=1;0",
      "fbcache:threshold=0.1",
    ]) {
      expect(parsePolicy(parsePolicy(spec).spec).spec).toBe(parsePolicy(spec).spec);
    }
    expect(parsePolicy("fora").spec).toBe("fora:interval=2");
  });

  it("explains unknown names, parameters and bad values", () => {
    const unknown = () => parsePolicy("froa:interval=2");
    expect(unknown).toThrow(DitcacheError);
    expect(unknown).toThrow(
      /unknown cache policy "froa": expected one of none .*fora \(interval \(an integer >= 1\)/,
    );
    expect(() => parsePolicy("fora:intervl=2")).toThrow(
      /fora: unknown parameter "intervl": expected one of interval \(an integer >= 1\), reuseEvery/,
    );
    expect(() => parsePolicy("fora:interval=0")).toThrow(
      /fora: parameter interval: expected an integer >= 1, got 0/,
    );
    expect(() => parsePolicy("fora:interval=2.5")).toThrow(/expected an integer >= 1/);
    expect(() => parsePolicy("fora:interval=2,reuseEvery=4")).toThrow(
      /expected interval or reuseEvery, got both/,
    );
    expect(() => parsePolicy("teacache:perHalf=yes")).toThrow(/perHalf: expected true or false/);
    expect(() => parsePolicy("fora:interval")).toThrow(/expected key=value/);
    expect(() => createPolicy("delta-dit", { boundary: 2 })).toThrow(
      /boundary: expected a number >= 0 and <= 1, got 2/,
    );
  });

  it("registers new policies once", () => {
    registerPolicy("always-compute-test", () => nonePolicy(), {});
    expect(listPolicies().some((entry) => entry.name === "always-compute-test")).toBe(true);
    expect(() => registerPolicy("always-compute-test", () => nonePolicy(), {})).toThrow(/already registered/);
    expect(() => registerPolicy("Bad Name", () => nonePolicy(), {})).toThrow(/policy name/);
  });

  it("declares FORA levels exactly", () => {
    expect(parsePolicy("fora:interval=2").cachingLevel!(20, 28)).toBe(0.5);
    expect(parsePolicy("fora:interval=4").cachingLevel!(20, 28)).toBe(0.75);
    expect(parsePolicy("fora:reuseEvery=4").cachingLevel!(20, 28)).toBe(0.25);
    expect(parsePolicy("delta-dit:interval=2,blocks=7").cachingLevel!(20, 28)).toBe(0.125);
  });
});
