import { readSafetensorsFile } from "@ditcache/core";
import { ditMacs, parameterCount, parseConfigJson } from "@ditcache/dit";
import { loadPriors, METADATA_KEY } from "@ditcache/eoc";
import type { Command } from "../args.js";
import { fail } from "../output.js";
import { describePriors } from "../priors-report.js";

/** `ditcache info FILE`: what a weights, priors or stats file holds. */
export const infoCommand: Command = {
  name: "info",
  summary: "describe a weights, priors or stats file (.safetensors): config, parameters, dtypes, metadata",
  options: { json: { type: "boolean", help: "print JSON" } },
  async run(values, positionals) {
    const path = positionals[0];
    if (path === undefined)
      fail("info: expected a file path, e.g. ditcache info models/mnist-dit/mnist-dit.safetensors");
    const { tensors, metadata } = await readSafetensorsFile(path);
    const dtypes: Record<string, number> = {};
    let elements = 0;
    for (const tensor of tensors.values()) {
      dtypes[tensor.dtype] = (dtypes[tensor.dtype] ?? 0) + 1;
      elements += tensor.data.length;
    }
    const info: Record<string, unknown> = { file: path, tensors: tensors.size, elements, dtypes };
    if (metadata.config !== undefined) {
      const config = parseConfigJson(metadata.config);
      info.config = config;
      info.parameters = parameterCount(config);
      info.gmacsPerForward = Number((ditMacs(config).forward / 1e9).toFixed(3));
    }
    // A priors file: its header read and checked as EOC reads it, shown as what it is for.
    const priors = metadata[METADATA_KEY] === undefined ? undefined : await loadPriors(path);
    const rest = Object.fromEntries(
      Object.entries(metadata).filter(
        ([key]) => key !== "config" && (priors === undefined || key !== METADATA_KEY),
      ),
    );
    if (Object.keys(rest).length > 0) info.metadata = rest;
    if (values.json) {
      console.log(JSON.stringify(priors ? { ...info, priors: priors.header } : info, null, 2));
      return;
    }
    for (const [key, value] of Object.entries(info)) {
      console.log(`${key.padEnd(16)} ${typeof value === "object" ? JSON.stringify(value) : value}`);
    }
    if (priors) for (const line of describePriors(priors)) console.log(line);
  },
};
