// Parity of the FID Inception-v3 with the PyTorch reference (tools/reference/fid_inception.py, the
// pytorch-fid network) on a random-weight twin with every channel count divided by 8 (same
// kernels, paddings, strides and pools), at 139x139 (Mixed_7 blocks then see 3x3 maps, so padded pooling matters): fixtures from tools/reference/make_xl_fixtures.py.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { createCpuBackend } from "@ditcache/backend-cpu";
import { type HostTensor, readSafetensorsFile } from "@ditcache/core";
import { relativeError } from "@ditcache/core/testing";
import { beforeAll, describe, expect, it } from "vitest";
import { bilinearResizeMatrix, InceptionV3FeatureExtractor } from "./inception-v3.js";

const fixture = (name: string) => fileURLToPath(new URL(`./__fixtures__/${name}`, import.meta.url));
const backend = createCpuBackend();
let io: Map<string, HostTensor>;

beforeAll(async () => {
  io = (await readSafetensorsFile(fixture("tiny-inception-io.safetensors"))).tensors;
});

describe("InceptionV3FeatureExtractor vs PyTorch", () => {
  it("matches pool3 features and logits within 1e-4 for [0,1] and [-1,1] inputs", async () => {
    const size = io.get("size")!.data[0]!;
    const images = io.get("images")!;
    const zeroOne = await InceptionV3FeatureExtractor.load(fixture("tiny-inception.safetensors"), backend, {
      resizeTo: size,
      inputRange: "0..1",
      batchSize: 1,
    });
    expect(zeroOne.dim).toBe(256);
    expect(zeroOne.classes).toBe(16);
    expect(zeroOne.name).toBe("inception-v3-pool3");
    const a = await zeroOne.extract(images.data, images.shape);
    expect(relativeError(a.features, io.get("pool")!.data)).toBeLessThan(1e-4);
    expect(relativeError(a.logits!, io.get("logits")!.data)).toBeLessThan(1e-4);
    zeroOne.dispose();

    const bytes = new Uint8Array(await readFile(fixture("tiny-inception.safetensors")));
    const minusOne = InceptionV3FeatureExtractor.fromSafetensors(bytes, backend, { resizeTo: size });
    const signed = images.data.map((v) => 2 * v - 1);
    const tensor = backend.tensor(signed, images.shape);
    const b = await minusOne.extract(tensor, images.shape);
    backend.dispose(tensor);
    expect(relativeError(b.features, io.get("pool")!.data)).toBeLessThan(1e-4);
    expect(minusOne.hash).toBe(zeroOne.hash);
    minusOne.dispose();
  });

  it("resizes like F.interpolate(bilinear, align_corners=False)", () => {
    // upsampling 2 -> 4: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel)
    expect(Array.from(bilinearResizeMatrix(2, 4))).toEqual([1, 0, 0.75, 0.25, 0.25, 0.75, 0, 1]);
    // identity when the size does not change; rows always sum to 1
    expect(Array.from(bilinearResizeMatrix(3, 3))).toEqual([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    const down = bilinearResizeMatrix(256, 299);
    for (let i = 0; i < 299; i++) {
      const row = down.subarray(i * 256, (i + 1) * 256).reduce((x, y) => x + y, 0);
      expect(row).toBeCloseTo(1, 6);
    }
  });

  it("rejects bad weights and inputs with clear errors", async () => {
    const contents = await readSafetensorsFile(fixture("tiny-inception.safetensors"));
    const { writeSafetensors } = await import("@ditcache/core");
    const entries = Object.fromEntries(
      [...contents.tensors].map(([k, v]) => [k, { shape: [...v.shape], data: v.data }]),
    );
    const { "Mixed_6b.branch7x7_2.bn.running_var": _, ...missing } = entries;
    expect(() => InceptionV3FeatureExtractor.fromSafetensors(writeSafetensors(missing), backend)).toThrow(
      /missing weight "Mixed_6b\.branch7x7_2\.bn\.running_var"/,
    );
    const extra = { ...entries, "AuxLogits.fc.weight": { shape: [1], data: new Float32Array(1) } };
    expect(() => InceptionV3FeatureExtractor.fromSafetensors(writeSafetensors(extra), backend)).toThrow(
      /unexpected weight "AuxLogits\.fc\.weight"/,
    );
    expect(() =>
      InceptionV3FeatureExtractor.fromSafetensors(writeSafetensors(entries), backend, { resizeTo: 32 }),
    ).toThrow(/options\.resizeTo/);
    const extractor = InceptionV3FeatureExtractor.fromSafetensors(writeSafetensors(entries), backend, {
      resizeTo: 80,
    });
    await expect(extractor.extract(new Float32Array(10), [1, 1, 2, 5])).rejects.toThrow(
      /shape: expected \[N, 3, H, W\]/,
    );
    await expect(extractor.extract(new Float32Array(10), [1, 3, 2, 2])).rejects.toThrow(/images\.length/);
    extractor.dispose();
    await expect(extractor.extract(new Float32Array(12), [1, 3, 2, 2])).rejects.toThrow(/after dispose/);
  });
});
