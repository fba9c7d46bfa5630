import type { Backend } from "@ditcache/core";
import { DiTModel } from "@ditcache/dit";
import { loadDemoModel } from "@ditcache/models";
import type { ModelInfo, ModelSource } from "./protocol.js";

/** Loads the model a {@link ModelSource} names, on `backend`. */
export async function loadModel(source: ModelSource, backend: Backend): Promise<DiTModel> {
  switch (source.kind) {
    case "demo":
      return loadDemoModel(backend);
    case "random": {
      // Test helpers ship only with the sources (tests, `tsx`), so load them on demand.
      const { randomDiTWeights } = await import("@ditcache/dit/testing");
      return DiTModel.fromWeights(randomDiTWeights(source.config, source.seed ?? 0), source.config, backend);
    }
    case "file":
      return DiTModel.load(source.path, { backend });
  }
}

/** Describes a loaded model for the API (no paths: the client never sees the file system). */
export function describeModel(source: ModelSource, model: DiTModel, backend: string): ModelInfo {
  const { config } = model;
  const name =
    source.kind === "demo"
      ? "mnist-dit (embedded demo)"
      : (source.name ?? (source.kind === "random" ? "random weights" : "model file"));
  return {
    name,
    backend,
    numClasses: config.numClasses,
    inputSize: config.inputSize,
    inChannels: config.inChannels,
    depth: config.depth,
    hiddenSize: config.hiddenSize,
    patchSize: config.patchSize,
  };
}
