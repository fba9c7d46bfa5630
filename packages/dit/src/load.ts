import { readFile } from "node:fs/promises";
import { DitcacheError, readSafetensorsFile } from "@ditcache/core";
import { type DiTConfig, parseConfigJson, validateConfig } from "./config.js";
import type { HostArray } from "./weights.js";

/** Path of the config file that may sit next to a checkpoint: `model.safetensors` -> `model.json`. */
export function siblingConfigPath(path: string): string {
  return path.endsWith(".safetensors") ? `${path.slice(0, -".safetensors".length)}.json` : `${path}.json`;
}

/**
 * Reads a checkpoint's tensors and finds its config: the explicit one, else `__metadata__.config`,
 * else the sibling `.json`.
 */
export async function readDiTFile(
  path: string,
  config?: DiTConfig,
): Promise<{ tensors: Map<string, HostArray>; config: DiTConfig }> {
  const contents = await readSafetensorsFile(path);
  if (config !== undefined) return { tensors: contents.tensors, config: validateConfig(config) };
  const embedded = contents.metadata.config;
  if (embedded !== undefined) {
    return { tensors: contents.tensors, config: parseConfigJson(embedded, `${path} __metadata__.config`) };
  }
  const sibling = siblingConfigPath(path);
  let text: string;
  try {
    text = await readFile(sibling, "utf8");
  } catch (error) {
    throw new DitcacheError(
      "NOT_FOUND",
      `${path}: no DiT config (pass options.config, store it in __metadata__.config, or write ${sibling})`,
      { cause: error },
    );
  }
  return { tensors: contents.tensors, config: parseConfigJson(text, sibling) };
}
