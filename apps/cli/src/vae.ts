import type { Backend } from "@ditcache/core";
import { resolveModelFiles } from "@ditcache/hub";
import { VaeDecoder } from "@ditcache/vae";
import { downloadProgress, type ModelFetchOptions } from "./model-source.js";

/** Decodes latents (N, 4, h, w) into images (N, 3, 8h, 8w) in [-1, 1] with an SD VAE decoder. */
export async function decodeLatents(
  latents: Float32Array,
  shape: readonly [number, number, number, number],
  vaeSpec: string,
  backend: Backend,
  fetch: ModelFetchOptions,
): Promise<{ images: Float32Array; shape: readonly [number, number, number, number] }> {
  const resolved = await resolveModelFiles(vaeSpec, { ...fetch, onProgress: downloadProgress() });
  const decoder = await VaeDecoder.load(resolved.path, { backend });
  try {
    const tensor = await decoder.decode(latents, shape, { clamp: true });
    const images = await backend.read(tensor);
    const [n, c, h, w] = tensor.shape as [number, number, number, number];
    backend.dispose(tensor);
    return { images, shape: [n, c, h, w] };
  } finally {
    decoder.dispose?.();
  }
}
