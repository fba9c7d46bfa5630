import { type Backend, DitcacheError } from "@ditcache/core";

/** Backend specs accepted by {@link createBackend}. */
export const BACKEND_SPECS = [
  "cpu",
  "onnx",
  "onnx:cpu",
  "onnx:webgpu",
  "onnx:cuda",
  "tfjs",
  "tfjs:cpu",
  "tfjs:wasm",
  "tfjs:node",
  "tfjs:node-gpu",
] as const;

/** One of {@link BACKEND_SPECS}. */
export type BackendSpec = (typeof BACKEND_SPECS)[number];

/** Options of {@link createBackend}. */
export interface CreateBackendOptions {
  /** Intra-op threads for backends that have a thread pool (ONNX Runtime). @defaultValue the runtime's default */
  threads?: number;
}

/**
 * Creates a backend from a spec such as "onnx", "onnx:webgpu", "tfjs:wasm" or "cpu". Backends
 * are imported lazily, so choosing "cpu" never loads ONNX Runtime or tfjs.
 */
export async function createBackend(spec: string, options: CreateBackendOptions = {}): Promise<Backend> {
  const [family, variant] = spec.split(":", 2) as [string, string | undefined];
  if (!(BACKEND_SPECS as readonly string[]).includes(spec)) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `backend: unknown backend ${JSON.stringify(spec)}; expected one of ${BACKEND_SPECS.join(", ")}`,
    );
  }
  switch (family) {
    case "cpu": {
      const { createCpuBackend } = await import("@ditcache/backend-cpu");
      return createCpuBackend();
    }
    case "onnx": {
      const { createOnnxBackend } = await import("@ditcache/backend-onnx");
      return createOnnxBackend({
        executionProvider: (variant ?? "cpu") as "cpu" | "webgpu" | "cuda",
        ...(options.threads !== undefined ? { intraOpNumThreads: options.threads } : {}),
      });
    }
    default: {
      const { createTfjsBackend } = await import("@ditcache/backend-tfjs");
      return createTfjsBackend(variant ? { engine: variant as "cpu" | "wasm" | "node" | "node-gpu" } : {});
    }
  }
}
