import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { DitcacheError, readSafetensors, writeSafetensors } from "@ditcache/core";
import { afterAll, describe, expect, it } from "vitest";
import { input, reference, tinyClassifierBytes } from "./__fixtures__/load.js";
import { DigitClassifier } from "./digit-classifier.js";
import { FeatureStats } from "./feature-stats.js";

const directory = mkdtempSync(join(tmpdir(), "ditcache-classifier-"));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function maxAbsoluteDifference(got: Float32Array, want: number[]): number {
  expect(got).toHaveLength(want.length);
  return want.reduce((worst, value, i) => Math.max(worst, Math.abs(got[i]! - value)), 0);
}

/** The tiny fixture network with its metadata or tensors edited. */
function variant(
  edit: (
    metadata: Record<string, string>,
    tensors: Record<string, { shape: number[]; data: Float32Array }>,
  ) => void,
): Uint8Array {
  const { metadata, tensors } = readSafetensors(tinyClassifierBytes);
  const entries = Object.fromEntries(
    [...tensors].map(([name, t]) => [name, { shape: t.shape, data: t.data }]),
  );
  const copy = { ...metadata };
  edit(copy, entries);
  return writeSafetensors(entries, { metadata: copy });
}

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return DitcacheError.isInstance(error) ? error.code : "not a DitcacheError";
  }
  return undefined;
}

describe("DigitClassifier on backend-cpu", () => {
  const backend = createCpuBackend();
  const images = input("classifier.input");

  it("matches the numpy forward pass of the layer list", async () => {
    const path = join(directory, "tiny.safetensors");
    writeFileSync(path, tinyClassifierBytes);
    const classifier = await DigitClassifier.load(path, backend);
    expect(classifier.name).toBe("tiny-test-classifier");
    expect(classifier.dim).toBe(16);
    expect(classifier.classes).toBe(10);
    expect(classifier.hash).toMatch(/^[0-9a-f]{16}$/);
    const { features, logits } = await classifier.extract(images.data, images.shape);
    expect(maxAbsoluteDifference(features, reference.classifier.features)).toBeLessThan(1e-5);
    expect(maxAbsoluteDifference(logits!, reference.classifier.logits)).toBeLessThan(1e-5);
    classifier.dispose();
  });

  it("gives the same result in chunks, from a tensor, and feeds FeatureStats", async () => {
    const classifier = DigitClassifier.fromSafetensors(tinyClassifierBytes, backend, {
      batchSize: 2,
      name: "digits",
    });
    const chunked = await classifier.extract(images.data, images.shape);
    const tensor = backend.tensor(images.data.slice(), images.shape);
    const whole = await classifier.extract(tensor, images.shape);
    backend.dispose(tensor);
    expect(maxAbsoluteDifference(chunked.features, Array.from(whole.features))).toBeLessThan(1e-6);
    const stats = new FeatureStats(classifier.dim, { extractor: classifier }).add(
      chunked.features,
      classifier.dim,
    );
    expect(stats.extractor).toEqual({ name: "digits", hash: classifier.hash });
    expect(() => FeatureStats.fromSafetensors(stats.toSafetensors(), { name: "inception-v3" })).toThrow(
      /expected extractor "inception-v3"/,
    );
    await expect(classifier.extract(images.data, [3, 1, 28, 28])).rejects.toThrow(
      /shape: expected \[N, 1, 32, 32\]/,
    );
    await expect(classifier.extract(images.data.subarray(1), images.shape)).rejects.toThrow(
      /images.length: expected 3072 values/,
    );
    classifier.dispose();
    await expect(classifier.extract(images.data, images.shape)).rejects.toThrow(/after dispose/);
  });

  it("takes the pre-logit activations as features when no layer is flagged", () => {
    const bytes = variant((metadata) => {
      const architecture = JSON.parse(metadata.architecture!);
      for (const layer of architecture.layers) delete layer.features;
      metadata.architecture = JSON.stringify(architecture);
    });
    expect(DigitClassifier.fromSafetensors(bytes, backend).dim).toBe(16);
  });

  it("reports files that do not fit the architecture", () => {
    const load = (bytes: Uint8Array) => () =>
      DigitClassifier.fromSafetensors(bytes, backend, {}, "net.safetensors");
    expect(load(variant((metadata) => delete metadata.architecture))).toThrow(
      /net.safetensors: no __metadata__\["architecture"\]/,
    );
    expect(codeOf(load(variant((_, tensors) => delete tensors["conv2.bias"])))).toBe("MISSING_WEIGHT");
    expect(
      codeOf(load(variant((_, tensors) => (tensors.extra = { shape: [1], data: new Float32Array(1) })))),
    ).toBe("UNEXPECTED_WEIGHT");
    expect(
      load(variant((_, tensors) => (tensors["fc2.bias"] = { shape: [9], data: new Float32Array(9) }))),
    ).toThrow(/weight "fc2.bias" has shape \[9\], expected \[10\]/);
    expect(
      load(
        variant((metadata) => {
          metadata.architecture = JSON.stringify({ layers: [{ type: "softmax" }] });
        }),
      ),
    ).toThrow(/architecture layer 0 .* unknown type/);
    expect(
      load(
        variant((metadata) => {
          const architecture = JSON.parse(metadata.architecture!);
          architecture.layers = architecture.layers.filter(
            (layer: { type: string }) => layer.type !== "flatten",
          );
          metadata.architecture = JSON.stringify(architecture);
        }),
      ),
    ).toThrow(/missing flatten\?/);
  });
});
