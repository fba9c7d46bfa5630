import { existsSync, statSync } from "node:fs";
import { basename } from "node:path";
import { type CachePolicy, type Corrector, parseCorrector, parsePolicy } from "@ditcache/cache";
import { type Backend, fileDigest } from "@ditcache/core";
import { DiTModel, loadDiTFromDiffusers } from "@ditcache/dit";
import { type ProgressEvent, resolveModelFiles } from "@ditcache/hub";
import { demoModelPath, loadDemoModel } from "@ditcache/models";
import { type CacheSetting, eocSetting, type SamplerSetting } from "@ditcache/pipeline";
import { fail } from "./output.js";
import { ProgressBar } from "./progress.js";

/** Where models come from: the hub cache and whether the network may be used. */
export interface ModelFetchOptions {
  /** Never touch the network; fail with what to download and where to put it. */
  offline?: boolean;
  /** Hub cache directory. @defaultValue $DITCACHE_CACHE or ~/.cache/ditcache */
  cacheDir?: string;
}

/** Reads --offline and --cache-dir. */
export function fetchOptions(values: Record<string, unknown>): ModelFetchOptions {
  return {
    ...(values.offline === true ? { offline: true } : {}),
    ...(typeof values["cache-dir"] === "string" ? { cacheDir: values["cache-dir"] } : {}),
  };
}

/** A loaded model and the weights file it came from (for its fingerprint). */
export interface LoadedModel {
  readonly model: DiTModel;
  readonly weightsPath: string;
}

/**
 * Loads a model named on the command line: "demo" (the embedded model), a .safetensors file
 * (official layout), a diffusers folder, or a hub id such as "facebook/DiT-XL-2-256" (fetched
 * into the cache, or found there when offline).
 */
export async function loadModel(
  spec: string,
  backend: Backend,
  options: ModelFetchOptions = {},
): Promise<LoadedModel> {
  if (spec === "demo") return { model: await loadDemoModel(backend), weightsPath: demoModelPath() };
  if (existsSync(spec) && !statSync(spec).isDirectory()) {
    return { model: await DiTModel.load(spec, { backend }), weightsPath: spec };
  }
  const resolved = await resolveModelFiles(spec, {
    ...(options.offline ? { offline: true } : {}),
    ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
    onProgress: downloadProgress(),
  });
  const model = await loadDiTFromDiffusers(resolved.path, { backend });
  const weights = Object.entries(resolved.files).find(([name]) => name.endsWith(".safetensors"))?.[1];
  return { model, weightsPath: weights ?? resolved.path };
}

/** A progress bar per downloaded file. */
export function downloadProgress(): (event: ProgressEvent) => void {
  const bars = new Map<string, ProgressBar>();
  return (event) => {
    if (event.status !== "progress") return;
    let bar = bars.get(event.file);
    if (bar === undefined) {
      bar = new ProgressBar(`download ${event.file} (MB)`, Math.ceil(event.total / 1e6));
      bars.set(event.file, bar);
    }
    bar.update(Math.floor(event.loaded / 1e6));
  };
}

/** Fingerprint of a model's weights file, which priors and statistics are tied to. */
export function modelHash(weightsPath: string): Promise<string> {
  return fileDigest(weightsPath);
}

/** A printable name for a model spec. */
export function modelName(spec: string): string {
  return spec === "demo" ? "embedded demo model (MNIST DiT)" : basename(spec);
}

/** Builds the cache setting from --cache / --corrector; undefined when no cache was asked for. */
export function cacheSetting(values: Record<string, unknown>): CacheSetting | undefined {
  const policySpec = values.cache;
  const correctorSpec = values.corrector;
  if (typeof policySpec !== "string" || policySpec === "none") {
    if (typeof correctorSpec === "string" && correctorSpec !== "reuse") {
      fail("--corrector needs --cache (a corrector only acts on reused values)");
    }
    return undefined;
  }
  const policy: CachePolicy = parsePolicy(policySpec);
  const corrector: Corrector | undefined =
    typeof correctorSpec === "string" ? parseCorrector(correctorSpec) : undefined;
  return { policy, ...(corrector ? { corrector } : {}) };
}

/**
 * The cache setting of a sampling command: --cache with --corrector, or --eoc PRIORS with --cache
 * or, without it, the priors' own base policy (the priors are checked against this model,
 * sampler, steps and base policy).
 */
export async function resolveCacheSetting(
  values: Record<string, unknown>,
  loaded: LoadedModel,
  sampler: SamplerSetting,
): Promise<CacheSetting | undefined> {
  const setting = cacheSetting(values);
  if (typeof values.eoc !== "string") return setting;
  if (typeof values.corrector === "string") fail("--eoc and --corrector are exclusive: EOC is the corrector");
  if (values.cache === "none") fail("--eoc needs a cache policy to correct (--cache none turns caching off)");
  return eocSetting({
    priorsPath: values.eoc,
    model: loaded.model,
    modelHash: await modelHash(loaded.weightsPath),
    ...(setting ? { basePolicy: setting.policy } : {}),
    sampler,
    eocOptions: values["eoc-mode"] === undefined ? {} : { mode: eocMode(values["eoc-mode"]) },
  });
}

function eocMode(value: unknown): "trend" | "prior" {
  if (value === "trend" || value === "prior") return value;
  return fail(`--eoc-mode: expected trend or prior, got ${JSON.stringify(value)}`);
}
