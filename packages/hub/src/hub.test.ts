// Hub downloads against a local HTTP server on 127.0.0.1 that mimics huggingface.co: the resolve
// URL answers HEAD with the checksum headers (LFS files: 302 + X-Linked-Etag/X-Linked-Size to a
// byte store that honours Range; small files: 200 + the git blob SHA-1 as ETag). No test contacts
// anything but the loopback interface.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DitcacheError } from "@ditcache/core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { cachedPath, downloadFile, type ProgressEvent, resolveUrl } from "./download.js";
import { resolveModelFiles } from "./models.js";

const REPO = "stabilityai/sd-vae-ft-ema";
const CONFIG = new TextEncoder().encode(JSON.stringify({ _class_name: "AutoencoderKL", latent_channels: 4 }));
const WEIGHTS = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 2654435761) >>> 24);

interface Behaviour {
  /** Close the socket after this many body bytes on the next byte-store GET. */
  cutAfter?: number;
  /** Advertise this SHA-256 instead of the real one. */
  wrongSha?: string;
}

let server: Server;
let endpoint: string;
let behaviour: Behaviour = {};
const requests: { method: string; url: string; range: string | undefined }[] = [];
let scratch: string;

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const gitSha1 = (bytes: Uint8Array) =>
  createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");

function handle(request: IncomingMessage, response: ServerResponse): void {
  const url = request.url ?? "";
  requests.push({ method: request.method ?? "", url, range: request.headers.range });
  const prefix = `/${REPO}/resolve/main/`;
  if (url === `${prefix}config.json`) {
    response.writeHead(200, { etag: `"${gitSha1(CONFIG)}"`, "content-length": CONFIG.length });
    response.end(request.method === "HEAD" ? undefined : CONFIG);
    return;
  }
  if (url === `${prefix}diffusion_pytorch_model.safetensors`) {
    response.writeHead(302, {
      location: "/lfs/weights-blob",
      "x-linked-etag": `"${behaviour.wrongSha ?? sha256(WEIGHTS)}"`,
      "x-linked-size": WEIGHTS.length,
      etag: `W/"${"ab".repeat(20)}"`,
    });
    response.end();
    return;
  }
  if (url === "/lfs/weights-blob") {
    const match = /^bytes=(\d+)-$/.exec(request.headers.range ?? "");
    const start = match ? Number(match[1]) : 0;
    const body = WEIGHTS.subarray(start);
    response.writeHead(match ? 206 : 200, {
      "content-length": body.length,
      ...(match ? { "content-range": `bytes ${start}-${WEIGHTS.length - 1}/${WEIGHTS.length}` } : {}),
    });
    if (request.method === "HEAD") {
      response.end();
      return;
    }
    const cut = behaviour.cutAfter;
    if (cut !== undefined) {
      behaviour = { ...behaviour, cutAfter: undefined };
      response.write(body.subarray(0, cut), () => setTimeout(() => response.socket?.destroy(), 20));
      return;
    }
    response.end(body);
    return;
  }
  response.writeHead(404);
  response.end();
}

beforeAll(async () => {
  server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
afterEach(async () => {
  behaviour = {};
  requests.length = 0;
  if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
});

async function freshCache(): Promise<string> {
  scratch = await mkdtemp(join(tmpdir(), "ditcache-hub-"));
  return scratch;
}

describe("downloadFile / resolveModelFiles", () => {
  it("downloads a known model into the cache with transformers.js-style events, then serves it offline", async () => {
    const cacheDir = await freshCache();
    const events: ProgressEvent[] = [];
    const resolved = await resolveModelFiles(REPO, { cacheDir, endpoint, onProgress: (e) => events.push(e) });
    expect(resolved.kind).toBe("vae");
    expect(resolved.path).toBe(join(cacheDir, "stabilityai", "sd-vae-ft-ema", "main"));
    const weights = resolved.files["diffusion_pytorch_model.safetensors"]!;
    expect(sha256(await readFile(weights))).toBe(sha256(WEIGHTS));
    expect(new Uint8Array(await readFile(resolved.files["config.json"]!))).toEqual(CONFIG);
    const statuses = events.map((e) => `${e.status}${"file" in e ? `:${e.file}` : ""}`);
    expect(statuses[0]).toBe("initiate:config.json");
    expect(statuses).toContain("download:diffusion_pytorch_model.safetensors");
    expect(statuses).toContain("progress:diffusion_pytorch_model.safetensors");
    expect(statuses.at(-2)).toBe("done:diffusion_pytorch_model.safetensors");
    expect(statuses.at(-1)).toBe("ready");
    const last = events.filter((e) => e.status === "progress").at(-1)!;
    expect(last).toMatchObject({ loaded: WEIGHTS.length, total: WEIGHTS.length, progress: 100 });
    expect(await readdir(resolved.path)).toEqual(["config.json", "diffusion_pytorch_model.safetensors"]);

    requests.length = 0;
    const again = await resolveModelFiles(REPO, { cacheDir, endpoint, offline: true });
    expect(again.files).toEqual(resolved.files);
    expect(requests).toEqual([]);
  });

  it("resumes a cut download with an HTTP Range request onto the .part file", async () => {
    const cacheDir = await freshCache();
    behaviour = { cutAfter: 100_000 };
    const file = "diffusion_pytorch_model.safetensors";
    const error = await downloadFile(REPO, file, { cacheDir, endpoint }).catch((e: unknown) => e);
    expect(DitcacheError.isInstance(error)).toBe(true);
    expect((error as DitcacheError).message).toMatch(/connection broke|stopped at/);
    const path = cachedPath(REPO, file, { cacheDir });
    expect(existsSync(path)).toBe(false);
    expect((await readFile(`${path}.part`)).length).toBe(100_000);

    requests.length = 0;
    expect(await downloadFile(REPO, file, { cacheDir, endpoint })).toBe(path);
    expect(requests.find((r) => r.method === "GET")?.range).toBe("bytes=100000-");
    expect(sha256(await readFile(path))).toBe(sha256(WEIGHTS));
    expect(existsSync(`${path}.part`)).toBe(false);
  });

  it("deletes the download and fails on a checksum mismatch", async () => {
    const cacheDir = await freshCache();
    behaviour = { wrongSha: "0".repeat(64) };
    const file = "diffusion_pytorch_model.safetensors";
    await expect(downloadFile(REPO, file, { cacheDir, endpoint })).rejects.toThrow(
      /checksum mismatch \(sha256 [0-9a-f]{64}, the hub says 0{64}\)/,
    );
    const path = cachedPath(REPO, file, { cacheDir });
    expect(existsSync(path)).toBe(false);
    expect(existsSync(`${path}.part`)).toBe(false);
  });

  it("fails an offline miss without a request, saying what to download and where to put it", async () => {
    const cacheDir = await freshCache();
    const file = "transformer/diffusion_pytorch_model.safetensors";
    const url =
      "https://huggingface.co/facebook/DiT-XL-2-256/resolve/main/transformer/diffusion_pytorch_model.safetensors";
    const path = join(
      cacheDir,
      "facebook",
      "DiT-XL-2-256",
      "main",
      "transformer",
      "diffusion_pytorch_model.safetensors",
    );
    await writeFile(join(cacheDir, "unrelated"), "x");
    await expect(
      resolveModelFiles("facebook/DiT-XL-2-256", { cacheDir, offline: true, endpoint: undefined }),
    ).rejects.toThrow(/offline mode/);
    const error = (await downloadFile("facebook/DiT-XL-2-256", file, { cacheDir, offline: true }).catch(
      (e: unknown) => e,
    )) as DitcacheError;
    expect(error.code).toBe("NOT_FOUND");
    expect(error.message).toContain(url);
    expect(error.message).toContain(path);
    expect(requests).toEqual([]);
  });

  it("fails fast with the URL and path when the host refuses connections", async () => {
    const cacheDir = await freshCache();
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const unreachable = `http://127.0.0.1:${port}`;
    const error = (await downloadFile(REPO, "config.json", {
      cacheDir,
      endpoint: unreachable,
      timeoutMs: 5000,
    }).catch((e: unknown) => e)) as DitcacheError;
    expect(error.code).toBe("NOT_FOUND");
    expect(error.message).toMatch(/cannot be reached \(ECONNREFUSED\)/);
    expect(error.message).toContain(resolveUrl(REPO, "config.json", "main", unreachable));
    expect(error.message).toContain(cachedPath(REPO, "config.json", { cacheDir }));
  });

  it("reports a file the hub does not have, and rejects bad references", async () => {
    const cacheDir = await freshCache();
    await expect(downloadFile(REPO, "missing.bin", { cacheDir, endpoint })).rejects.toThrow(/answered 404/);
    await expect(resolveModelFiles("someone/unknown-model", { cacheDir, endpoint })).rejects.toThrow(
      /one of facebook\/DiT-XL-2-256/,
    );
    await expect(resolveModelFiles("./not/here", { cacheDir })).rejects.toThrow(/no such file or folder/);
    await expect(downloadFile(REPO, "../escape", { cacheDir, endpoint })).rejects.toThrow(
      /relative file path/,
    );
    expect(requests.filter((r) => r.url.includes("escape"))).toEqual([]);
    const local = await resolveModelFiles(cacheDir);
    expect(local).toEqual({ repo: undefined, kind: undefined, path: cacheDir, files: {} });
  });

  it("builds hub URLs and cache paths", () => {
    expect(resolveUrl("facebook/DiT-XL-2-512", "transformer/config.json")).toBe(
      "https://huggingface.co/facebook/DiT-XL-2-512/resolve/main/transformer/config.json",
    );
    expect(cachedPath("a/b", "c/d.json", { cacheDir: "/cache", revision: "v1" })).toBe(
      join("/cache", "a", "b", "v1", "c", "d.json"),
    );
  });
});
