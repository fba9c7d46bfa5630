import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { DitcacheError, invalidArgument } from "@ditcache/core";
import { cachedPath, type DownloadOptions, downloadFile } from "./download.js";

/** What a known hub model is for, which picks its loader. */
export type ModelKind = "dit" | "vae";

/** A hub repository ditcache knows how to fetch and load. */
export interface KnownModel {
  /** "dit": load with `loadDiTFromDiffusers`; "vae": load with `VaeDecoder.load`. */
  readonly kind: ModelKind;
  /** Files to fetch, relative to the repository root; the last one is the weights. */
  readonly files: readonly string[];
  /** One line for listings. */
  readonly description: string;
}

const DIT_FILES = ["transformer/config.json", "transformer/diffusion_pytorch_model.safetensors"] as const;
const VAE_FILES = ["config.json", "diffusion_pytorch_model.safetensors"] as const;

/** The hub repositories of the paper setting (DiT-XL/2 and its VAE), by repository id. */
export const KNOWN_MODELS: Readonly<Record<string, KnownModel>> = Object.freeze({
  "facebook/DiT-XL-2-256": {
    kind: "dit",
    files: DIT_FILES,
    description: "DiT-XL/2, ImageNet 256x256 (diffusers layout)",
  },
  "facebook/DiT-XL-2-512": {
    kind: "dit",
    files: DIT_FILES,
    description: "DiT-XL/2, ImageNet 512x512 (diffusers layout)",
  },
  "stabilityai/sd-vae-ft-ema": {
    kind: "vae",
    files: VAE_FILES,
    description: "SD VAE, EMA fine-tune (decoder of DiT)",
  },
  "stabilityai/sd-vae-ft-mse": { kind: "vae", files: VAE_FILES, description: "SD VAE, MSE fine-tune" },
});

/** Options of {@link resolveModelFiles}. */
export interface ResolveOptions extends DownloadOptions {
  /** Files to fetch for a repository that is not in {@link KNOWN_MODELS}. */
  files?: readonly string[];
}

/** Local files of a model, ready for its loader. */
export interface ResolvedModel {
  /** The repository id, or undefined for a local path. */
  readonly repo: string | undefined;
  /** The known kind, when the repository is known. */
  readonly kind: ModelKind | undefined;
  /**
   * What to pass to the loader: the repository folder in the cache (for a DiT it holds
   * `transformer/`; for a VAE, its files), or the local path as given.
   */
  readonly path: string;
  /** Repository-relative file name -> local path (empty for a local path). */
  readonly files: Readonly<Record<string, string>>;
}

/**
 * Turns a model reference into local files: a path that exists on disk is returned as is; a hub
 * repository id ("facebook/DiT-XL-2-256", "stabilityai/sd-vae-ft-ema", ...) is fetched into the
 * cache (or found there) file by file with {@link downloadFile}, then a `ready` event fires.
 *
 * @throws DitcacheError INVALID_ARGUMENT for an unknown repository without `options.files`; the
 *   errors of {@link downloadFile} (NOT_FOUND with the URL and local path when offline or
 *   unreachable).
 * @example
 * const dit = await resolveModelFiles("facebook/DiT-XL-2-256", { onProgress: console.log });
 * const model = await loadDiTFromDiffusers(dit.path, { backend });
 */
export async function resolveModelFiles(
  repoOrPath: string,
  options: ResolveOptions = {},
): Promise<ResolvedModel> {
  if (typeof repoOrPath !== "string" || repoOrPath === "") {
    invalidArgument("repoOrPath", repoOrPath, 'a hub repository id ("owner/name") or a local path');
  }
  const onDisk = await stat(repoOrPath).then(
    () => true,
    () => false,
  );
  if (onDisk) return { repo: undefined, kind: undefined, path: repoOrPath, files: {} };
  if (/^(\.|\/|~)/.test(repoOrPath) || repoOrPath.split("/").length !== 2) {
    throw new DitcacheError(
      "NOT_FOUND",
      `${repoOrPath}: no such file or folder (and not a hub repository id "owner/name"; known: ${Object.keys(KNOWN_MODELS).join(", ")})`,
    );
  }
  const known = KNOWN_MODELS[repoOrPath];
  const files = options.files ?? known?.files;
  if (files === undefined || files.length === 0) {
    invalidArgument(
      "repoOrPath",
      repoOrPath,
      `one of ${Object.keys(KNOWN_MODELS).join(", ")}, or options.files listing what to fetch`,
    );
  }
  const local: Record<string, string> = {};
  for (const file of files) local[file] = await downloadFile(repoOrPath, file, options);
  options.onProgress?.({ status: "ready", name: repoOrPath, files: Object.values(local) });
  const root = dirname(
    cachedPath(repoOrPath, "x", { cacheDir: options.cacheDir, revision: options.revision }),
  );
  return { repo: repoOrPath, kind: known?.kind, path: root, files: local };
}
