export type { DownloadOptions, ProgressEvent } from "./download.js";
export { cachedPath, defaultCacheDir, downloadFile, HF_ENDPOINT, resolveUrl } from "./download.js";
export type { KnownModel, ModelKind, ResolvedModel, ResolveOptions } from "./models.js";
export { KNOWN_MODELS, resolveModelFiles } from "./models.js";
