import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { DitcacheError, invalidArgument } from "@ditcache/core";

/** The public Hugging Face hub. */
export const HF_ENDPOINT = "https://huggingface.co";

/**
 * A progress report, shaped like transformers.js's `progress_callback` events: `initiate` when a
 * file is looked up, `download` when bytes start to flow, `progress` while they do, `done` when
 * the file is in place (downloaded or already cached), `ready` when every file of a
 * {@link resolveModelFiles} call is.
 */
export type ProgressEvent =
  | { status: "initiate"; name: string; file: string }
  | { status: "download"; name: string; file: string }
  | { status: "progress"; name: string; file: string; progress: number; loaded: number; total: number }
  | { status: "done"; name: string; file: string; path: string; cached: boolean }
  | { status: "ready"; name: string; files: readonly string[] };

/** Options of {@link downloadFile}. */
export interface DownloadOptions {
  /** Cache root. @defaultValue env DITCACHE_CACHE, else ~/.cache/ditcache */
  cacheDir?: string;
  /** Never touch the network: return the cached file or fail. @defaultValue false */
  offline?: boolean;
  /** Git revision (branch, tag or commit). @defaultValue "main" */
  revision?: string;
  /** Hub base URL (a mirror, or a local server in tests). @defaultValue env HF_ENDPOINT, else https://huggingface.co */
  endpoint?: string;
  /** Receives progress events. */
  onProgress?: (event: ProgressEvent) => void;
  /** Bearer token for gated or private repositories. @defaultValue env HF_TOKEN */
  token?: string;
  /** Milliseconds to wait for a server's response headers before giving up. @defaultValue 15000 */
  timeoutMs?: number;
  /** Aborts the download (the .part file stays, so a later call resumes). */
  signal?: AbortSignal;
}

/** The cache root: `options.cacheDir`, else `$DITCACHE_CACHE`, else `~/.cache/ditcache`. */
export function defaultCacheDir(cacheDir?: string): string {
  return cacheDir ?? process.env.DITCACHE_CACHE ?? join(homedir(), ".cache", "ditcache");
}

/** `https://huggingface.co/{repo}/resolve/{revision}/{file}` (path segments URL-encoded). */
export function resolveUrl(repo: string, file: string, revision = "main", endpoint = HF_ENDPOINT): string {
  const encode = (path: string) => path.split("/").map(encodeURIComponent).join("/");
  return `${endpoint.replace(/\/+$/, "")}/${encode(repo)}/resolve/${encodeURIComponent(revision)}/${encode(file)}`;
}

/** Where a hub file lives in the cache: `{cacheDir}/{repo}/{revision}/{file}`. */
export function cachedPath(
  repo: string,
  file: string,
  options: { cacheDir?: string; revision?: string } = {},
): string {
  return join(
    defaultCacheDir(options.cacheDir),
    ...repo.split("/"),
    options.revision ?? "main",
    ...file.split("/"),
  );
}

const REPO = /^[\w.-]+\/[\w.-]+$/;
const FILE = /^(?!\/)(?!.*(^|\/)\.\.?(\/|$))[\w./-]+$/;

/**
 * Downloads one file of a hub repository into the cache (or returns the cached copy) and
 * returns its local path. The bytes go to `<path>.part`, resumed with an HTTP Range request when
 * a previous attempt was cut, and the file is renamed into place only after its checksum matched:
 * SHA-256 for LFS files (the hub's `X-Linked-Etag`), the git blob SHA-1 for small files (`ETag`).
 *
 * @throws DitcacheError NOT_FOUND when the file is not cached and cannot be downloaded (offline,
 *   network down, 404); the message gives the URL to fetch and the path to put the file at.
 *   BAD_FILE on a checksum mismatch (nothing is left behind). ABORTED when `signal` fires.
 */
export async function downloadFile(
  repo: string,
  file: string,
  options: DownloadOptions = {},
): Promise<string> {
  if (typeof repo !== "string" || !REPO.test(repo))
    invalidArgument("repo", repo, 'a hub repository "owner/name"');
  if (typeof file !== "string" || !FILE.test(file))
    invalidArgument("file", file, "a relative file path inside the repository");
  const revision = options.revision ?? "main";
  const endpoint = options.endpoint ?? process.env.HF_ENDPOINT ?? HF_ENDPOINT;
  const path = cachedPath(repo, file, { cacheDir: options.cacheDir, revision });
  const url = resolveUrl(repo, file, revision, endpoint);
  const name = repo;
  const emit = options.onProgress ?? (() => {});
  emit({ status: "initiate", name, file });
  if (await isFile(path)) {
    emit({ status: "done", name, file, path, cached: true });
    return path;
  }
  const unavailable = (reason: string, cause?: unknown): DitcacheError =>
    new DitcacheError(
      "NOT_FOUND",
      `${repo}/${file} is not in the cache and ${reason}; download ${url} and save it as ${path} (or set DITCACHE_CACHE / cacheDir), then run again`,
      { cause },
    );
  if (options.offline === true) throw unavailable("offline mode is on (localFilesOnly)");
  const token = options.token ?? process.env.HF_TOKEN;
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const timeoutMs = options.timeoutMs ?? 15_000;
  const request = async (target: string, init: RequestInit): Promise<Response> => {
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`no response within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const forward = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", forward, { once: true });
    try {
      return await fetch(target, {
        ...init,
        headers: { ...headers, ...(init.headers as Record<string, string>) },
        signal: controller.signal,
      });
    } catch (error) {
      if (options.signal?.aborted === true)
        throw new DitcacheError("ABORTED", `${repo}/${file}: download aborted`, { cause: error });
      throw unavailable(`the hub cannot be reached (${describeNetworkError(error)})`, error);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", forward);
    }
  };

  // 1. Metadata: the resolve URL answers (or redirects to the LFS store) with the checksum headers.
  let target = url;
  let expected: { algorithm: "sha256" | "git-sha1"; digest: string } | undefined;
  let expectedSize: number | undefined;
  for (let hop = 0; hop < 5; hop++) {
    const head = await request(target, { method: "HEAD", redirect: "manual" });
    if (head.status === 401 || head.status === 403 || head.status === 404) {
      throw unavailable(
        `the hub answered ${head.status} ${head.statusText} for ${target}${head.status === 404 ? "" : " (gated or private: set HF_TOKEN)"}`,
      );
    }
    const linked = head.headers.get("x-linked-etag");
    const etag = clean(linked ?? head.headers.get("etag"));
    if (etag !== undefined && expected === undefined) {
      if (/^[0-9a-f]{64}$/.test(etag)) expected = { algorithm: "sha256", digest: etag };
      else if (/^[0-9a-f]{40}$/.test(etag) && linked === null)
        expected = { algorithm: "git-sha1", digest: etag };
    }
    const size = Number(
      head.headers.get("x-linked-size") ?? (head.status < 300 ? head.headers.get("content-length") : NaN),
    );
    if (expectedSize === undefined && Number.isSafeInteger(size)) expectedSize = size;
    const location = head.headers.get("location");
    if (head.status >= 300 && head.status < 400 && location !== null) {
      target = new URL(location, target).toString();
      continue;
    }
    if (!head.ok) throw unavailable(`the hub answered ${head.status} ${head.statusText} for ${target}`);
    break;
  }

  // 2. Bytes, appended to the .part file from where a previous attempt stopped.
  const part = `${path}.part`;
  await mkdir(dirname(path), { recursive: true });
  let offset = (await fileSize(part)) ?? 0;
  if (expectedSize !== undefined && offset > expectedSize) {
    await rm(part, { force: true });
    offset = 0;
  }
  emit({ status: "download", name, file });
  if (expectedSize === undefined || offset < expectedSize) {
    const response = await request(target, { headers: offset > 0 ? { range: `bytes=${offset}-` } : {} });
    if (!response.ok || response.body === null) {
      throw unavailable(`the download answered ${response.status} ${response.statusText} for ${target}`);
    }
    if (offset > 0 && response.status !== 206) offset = 0; // the server ignored Range: start over
    const length = Number(response.headers.get("content-length"));
    const total = expectedSize ?? (Number.isSafeInteger(length) ? offset + length : 0);
    let loaded = offset;
    const out = createWriteStream(part, { flags: offset > 0 ? "a" : "w" });
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", resolve));
        loaded += chunk.byteLength;
        emit({
          status: "progress",
          name,
          file,
          progress: total > 0 ? (100 * loaded) / total : 0,
          loaded,
          total,
        });
      }
    } catch (error) {
      if (options.signal?.aborted === true)
        throw new DitcacheError("ABORTED", `${repo}/${file}: download aborted`, { cause: error });
      throw unavailable(
        `the connection broke after ${loaded} bytes (${describeNetworkError(error)}; run again to resume from ${part})`,
        error,
      );
    } finally {
      await new Promise<void>((resolve, reject) =>
        out.end((error?: Error | null) => (error ? reject(error) : resolve())),
      );
    }
  }

  // 3. Verify, then move into place atomically.
  const size = (await fileSize(part)) ?? 0;
  if (expectedSize !== undefined && size !== expectedSize) {
    throw unavailable(
      `the download stopped at ${size} of ${expectedSize} bytes (run again to resume from ${part})`,
    );
  }
  if (expected !== undefined) {
    const actual = await digest(part, expected.algorithm, size);
    if (actual !== expected.digest) {
      await rm(part, { force: true });
      throw new DitcacheError(
        "BAD_FILE",
        `${repo}/${file}: checksum mismatch (${expected.algorithm} ${actual}, the hub says ${expected.digest}); the partial file was deleted, download ${url} again`,
      );
    }
  }
  await rename(part, path);
  emit({ status: "done", name, file, path, cached: false });
  return path;
}

/** Strips quotes and the weak-validator prefix of an ETag. */
function clean(etag: string | null): string | undefined {
  if (etag === null) return undefined;
  return etag.replace(/^W\//, "").replace(/^"|"$/g, "").toLowerCase();
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

async function fileSize(path: string): Promise<number | undefined> {
  return stat(path).then(
    (s) => s.size,
    () => undefined,
  );
}

/** SHA-256 of the bytes, or git's blob SHA-1 (`sha1("blob <size>\0" + bytes)`, the ETag of non-LFS files). */
async function digest(path: string, algorithm: "sha256" | "git-sha1", size: number): Promise<string> {
  const hash = createHash(algorithm === "sha256" ? "sha256" : "sha1");
  if (algorithm === "git-sha1") hash.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (error as Error)?.message ?? String(error);
}
