import { describe, expect, it } from "vitest";
import { parseConfigJson, tokenCount, validateConfig } from "./config.js";
import { ditMacs } from "./cost.js";
import { DIT_PRESETS, ditPreset } from "./model.js";
import { TINY_DIT_CONFIG } from "./testing/index.js";
import { parameterCount } from "./weights.js";

describe("presets", () => {
  it("DiT-XL/2 at 256px has the official 675,129,632 parameters", () => {
    expect(parameterCount(DIT_PRESETS["DiT-XL/2"])).toBe(675_129_632);
  });

  it("matches the official table for the other presets (trainable params in M, Gflops = MACs)", () => {
    // DiT paper, Table 4 (256px): params per model size (given for /2), Gflops per forward.
    const paper: [keyof typeof DIT_PRESETS, number, number][] = [
      ["DiT-S/2", 33, 6.1],
      ["DiT-S/4", 33, 1.4],
      ["DiT-S/8", 33, 0.4],
      ["DiT-B/2", 130, 23.0],
      ["DiT-B/4", 130, 5.6],
      ["DiT-B/8", 130, 1.4],
      ["DiT-L/2", 458, 80.7],
      ["DiT-L/4", 458, 19.7],
      ["DiT-L/8", 458, 5.0],
      ["DiT-XL/2", 675, 118.6],
      ["DiT-XL/4", 675, 29.1],
      ["DiT-XL/8", 675, 7.4],
    ];
    for (const [name, millions, gflops] of paper) {
      const config = DIT_PRESETS[name];
      const fixedPositions = tokenCount(config) * config.hiddenSize; // pos_embed has requires_grad=False
      if (name.endsWith("/2")) {
        expect(Math.round((parameterCount(config) - fixedPositions) / 1e6), name).toBe(millions);
      }
      expect(Math.abs(ditMacs(DIT_PRESETS[name]).forward / 1e9 - gflops), name).toBeLessThan(0.1);
    }
  });

  it("takes overrides (512px) and rejects unknown names", () => {
    expect(ditPreset("DiT-XL/2", { inputSize: 64 }).inputSize).toBe(64);
    expect(() => ditPreset("DiT-XXL/2" as never)).toThrow(/preset: expected one of DiT-XL\/2/);
  });
});

describe("validateConfig", () => {
  it("names the bad field", () => {
    expect(() => validateConfig({ ...TINY_DIT_CONFIG, depth: 0 })).toThrow(
      /config.depth: expected a positive integer, got 0/,
    );
    expect(() => validateConfig({ ...TINY_DIT_CONFIG, patchSize: 3 })).toThrow(
      /config.patchSize: expected a divisor of inputSize 8/,
    );
    expect(() => validateConfig({ ...TINY_DIT_CONFIG, numHeads: 5 })).toThrow(
      /config.numHeads: expected a divisor of hiddenSize 32/,
    );
    expect(() => validateConfig({ ...TINY_DIT_CONFIG, learnSigma: "yes" as never })).toThrow(
      /config.learnSigma/,
    );
    expect(() => validateConfig({ ...TINY_DIT_CONFIG, classDropoutProb: 1 })).toThrow(
      /config.classDropoutProb/,
    );
  });
});

describe("parseConfigJson", () => {
  it("reads the snake_case JSON of the Python tools", () => {
    const config = parseConfigJson(
      JSON.stringify({
        input_size: 8,
        patch_size: 2,
        in_channels: 4,
        hidden_size: 64,
        depth: 2,
        num_heads: 4,
        mlp_ratio: 4.0,
        num_classes: 10,
        learn_sigma: true,
        class_dropout_prob: 0.1,
        note: "ignored",
      }),
    );
    expect(config).toEqual({
      inputSize: 8,
      patchSize: 2,
      inChannels: 4,
      hiddenSize: 64,
      depth: 2,
      numHeads: 4,
      mlpRatio: 4,
      numClasses: 10,
      learnSigma: true,
      classDropoutProb: 0.1,
    });
  });

  it("fills official defaults and reports missing fields and bad JSON", () => {
    const config = parseConfigJson({
      input_size: 32,
      patch_size: 2,
      hidden_size: 1152,
      depth: 28,
      num_heads: 16,
    });
    expect(parameterCount(config)).toBe(675_129_632);
    expect(() => parseConfigJson("{", "model.json")).toThrow(/model.json: invalid JSON/);
    expect(() => parseConfigJson({ input_size: 32 }, "model.json")).toThrow(
      /model.json: missing required field "patch_size"/,
    );
    expect(() => parseConfigJson("[1]")).toThrow(/expected a JSON object/);
  });
});
