import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { DitcacheError } from "@ditcache/core";
import { listSupportedBackends } from "onnxruntime-node";
import type { OnnxExecutionProvider } from "./options.js";

/**
 * Checks, before any session is made, that ONNX Runtime can load a provider, so a missing
 * provider is a BACKEND_UNAVAILABLE error with a fix instead of a native failure.
 */
export function assertProviderInstalled(provider: OnnxExecutionProvider): void {
  if (provider === "cpu") return;
  const listed = listSupportedBackends().find((backend) => backend.name === provider);
  if (listed === undefined) {
    throw new DitcacheError(
      "BACKEND_UNAVAILABLE",
      `onnx backend: onnxruntime-node has no "${provider}" execution provider on ${process.platform}-${process.arch} (use executionProvider "cpu")`,
    );
  }
  if (provider === "cuda") {
    const directory = bindingDirectory();
    const missing = ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"].filter(
      (file) => !existsSync(join(directory, file)),
    );
    if (missing.length > 0) {
      throw new DitcacheError(
        "BACKEND_UNAVAILABLE",
        `onnx backend: the CUDA execution provider is not installed (missing ${missing.join(", ")} in ${directory}); ` +
          'reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 and network access on a machine with CUDA 12 and cuDNN 9, or use executionProvider "cpu"',
      );
    }
  }
}

/** Turns an ORT failure while creating a session for `provider` into a clear error. */
export function providerError(provider: OnnxExecutionProvider, cause: unknown): DitcacheError {
  const message = cause instanceof Error ? cause.message : String(cause);
  const firstLine = message.split("\n").find((line) => line.trim() !== "") ?? message;
  const adapter = /Failed to get a WebGPU adapter:?\s*([^\n]*)/i.exec(message);
  if (provider === "webgpu" && adapter) {
    return new DitcacheError(
      "BACKEND_UNAVAILABLE",
      `onnx backend: WebGPU found no GPU adapter (${adapter[1]?.trim() || "none reported"}); install a Vulkan driver (libvulkan.so.1) for a supported GPU, or use executionProvider "cpu"`,
      { cause },
    );
  }
  return new DitcacheError(
    "BACKEND_UNAVAILABLE",
    `onnx backend: the "${provider}" execution provider failed to start: ${firstLine.trim()}`,
    { cause },
  );
}

function bindingDirectory(): string {
  const require = createRequire(import.meta.url);
  const packageDirectory = dirname(require.resolve("onnxruntime-node/package.json"));
  return join(packageDirectory, "bin", "napi-v6", process.platform, process.arch);
}
