import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "./index.js";
import { TINY_MODEL_SOURCE } from "./testing/index.js";

let server: RunningServer;

beforeAll(async () => {
  server = await startServer({ port: 0, modelSource: TINY_MODEL_SOURCE, queue: { maxWaiting: 1 } });
});
afterAll(async () => {
  await server?.close();
});

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/api/generate`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

const get = (path: string) => fetch(`${server.url}${path}`);

/** A job that runs for minutes on the tiny model unless cancelled. */
const LONG_JOB = { labels: [0, 1, 2, 3, 4, 5, 6, 7], steps: 100, corrector: "taylor" };

/** Reads a job's server-sent events until `until` says stop (or the stream ends). */
async function readEvents(
  path: string,
  until: (event: string) => boolean,
  signal?: AbortSignal,
): Promise<{ event: string; data: unknown }[]> {
  const response = await fetch(`${server.url}${path}`, signal ? { signal } : {});
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: { event: string; data: unknown }[] = [];
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return events;
    buffer += value;
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf("\n\n");
      const name = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (name === undefined || data === undefined) continue;
      events.push({ event: name, data: JSON.parse(data) });
      if (until(name)) {
        await reader.cancel();
        return events;
      }
    }
  }
}

async function waitFor<T>(probe: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const idle = () =>
  waitFor(async () => {
    const health = (await (await get("/api/health")).json()) as {
      queue: { running: number; waiting: number };
    };
    return health.queue.running === 0 && health.queue.waiting === 0 ? true : undefined;
  });

describe("read-only endpoints", () => {
  it("lists policies and correctors from the registry, without the file-based ones", async () => {
    const response = await get("/api/options");
    expect(response.status).toBe(200);
    const options = (await response.json()) as {
      model: { numClasses: number; depth: number };
      limits: { maxLabels: number; maxSteps: number };
      defaults: { policy: string; corrector: string };
      policies: { name: string; params: Record<string, { type: string }> }[];
      correctors: { name: string }[];
    };
    const policies = options.policies.map((entry) => entry.name);
    expect(policies).toEqual(expect.arrayContaining(["none", "fora", "delta-dit", "fbcache", "teacache"]));
    expect(policies).not.toContain("schedule");
    expect(policies).not.toContain("learned");
    expect(options.policies.find((entry) => entry.name === "fora")!.params.interval!.type).toBe("integer");
    expect(options.correctors.map((entry) => entry.name)).toEqual(
      expect.arrayContaining(["reuse", "taylor", "goc"]),
    );
    expect(options.model).toMatchObject({ numClasses: 10, depth: 2 });
    expect(options.limits).toMatchObject({ maxLabels: 32, maxSteps: 100 });
    expect(["eoc", "taylor"]).toContain(options.defaults.corrector);
  });

  it("serves an OpenAPI 3 document built from the route schemas", async () => {
    const document = (await (await get("/api/openapi.json")).json()) as {
      openapi: string;
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: {
              content: Record<
                string,
                { schema: { properties: Record<string, { maxItems?: number; items?: { maximum: number } }> } }
              >;
            };
          }
        >
      >;
    };
    expect(document.openapi).toMatch(/^3\./);
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining([
        "/api/generate",
        "/api/options",
        "/api/jobs/{id}/events",
        "/api/jobs/{id}/result",
        "/api/jobs/{id}",
        "/api/health",
      ]),
    );
    const labels =
      document.paths["/api/generate"]!.post!.requestBody!.content["application/json"]!.schema.properties
        .labels!;
    expect(labels.maxItems).toBe(32);
    expect(labels.items!.maximum).toBe(9);
  });

  it("serves the page, its script and style with a strict content security policy", async () => {
    const page = await get("/");
    expect(page.headers.get("content-type")).toMatch(/text\/html/);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await page.text()).toContain('<script type="module" src="/app.js">');
    expect((await get("/app.js")).headers.get("content-type")).toMatch(/javascript/);
    expect((await get("/style.css")).status).toBe(200);
    expect((await get("/../package.json")).status).toBe(404);
  });

  it("reports health", async () => {
    const health = (await (await get("/api/health")).json()) as {
      status: string;
      queue: { workers: number };
    };
    expect(health).toMatchObject({ status: "ok", queue: { workers: 1 } });
  });
});

describe("input validation", () => {
  const valid = { labels: [1, 2], steps: 2 };
  const cases: [string, Record<string, unknown>, string, RegExp?][] = [
    ["missing labels", { steps: 2 }, "labels"],
    ["no labels", { ...valid, labels: [] }, "labels"],
    ["33 labels", { ...valid, labels: Array.from({ length: 33 }, () => 1) }, "labels"],
    ["a label out of range", { ...valid, labels: [1, 10] }, "labels", /labels\[1\]: must be <= 9/],
    ["a fractional label", { ...valid, labels: [1.5] }, "labels"],
    ["a string label", { ...valid, labels: ["1"] }, "labels"],
    ["a negative seed", { ...valid, seed: -1 }, "seed"],
    ["a seed over 2^31-1", { ...valid, seed: 2 ** 31 }, "seed"],
    ["zero steps", { ...valid, steps: 0 }, "steps"],
    ["101 steps", { ...valid, steps: 101 }, "steps"],
    ["a DDIM step count without an integer stride", { ...valid, steps: 95 }, "steps", /91 or 100/],
    ["an unknown sampler", { ...valid, sampler: "euler" }, "sampler", /"ddim", "ddpm"/],
    ["cfg below 1", { ...valid, cfgScale: 0.5 }, "cfgScale"],
    ["cfg above 10", { ...valid, cfgScale: 11 }, "cfgScale"],
    ["an unknown policy", { ...valid, policy: "magic" }, "policy", /expected one of .*fora/],
    ["a bad policy parameter", { ...valid, policy: "fora:interval=0" }, "policy", /interval/],
    ["an unknown policy parameter", { ...valid, policy: "fora:speed=2" }, "policy", /interval/],
    ["a file-based policy", { ...valid, policy: "schedule:file=/etc/passwd" }, "policy"],
    [
      "a policy spec over 200 characters",
      { ...valid, policy: `fora:interval=2${" ".repeat(200)}` },
      "policy",
    ],
    ["an unknown corrector", { ...valid, corrector: "magic" }, "corrector", /taylor/],
    ["a bad corrector parameter", { ...valid, corrector: "taylor:order=9" }, "corrector", /order/],
    ["an unknown field (a model path)", { ...valid, model: "/tmp/x.safetensors" }, "model"],
  ];
  it.each(cases)("rejects %s with 400 naming the field", async (_name, body, field, message) => {
    const response = await post(body);
    expect(response.status).toBe(400);
    const error = (await response.json()) as { field: string; message: string };
    expect(error.field).toBe(field);
    expect(error.message).toContain(field);
    if (message) expect(error.message).toMatch(message);
  });

  it("rejects a body over 16 KB with 413", async () => {
    const response = await post(JSON.stringify({ labels: [1], policy: "x".repeat(17_000) }));
    expect(response.status).toBe(413);
  });

  it("rejects a malformed job id with 400 and an unknown one with 404", async () => {
    expect((await get("/api/jobs/..%2F..%2Fetc/result")).status).toBe(400);
    const unknown = await get("/api/jobs/00000000-0000-0000-0000-000000000000/result");
    expect(unknown.status).toBe(404);
  });

  it("rejects foreign Host names (DNS rebinding) when bound to loopback", async () => {
    const { statusCode, body } = await server.app.inject({
      method: "GET",
      url: "/api/options",
      headers: { host: "evil.example:7860" },
    });
    expect(statusCode).toBe(400);
    expect(body).toContain("host");
  });
});

describe("jobs", () => {
  it("runs a job: progress events for each run, then a result with metrics and grids", async () => {
    const response = await post({ labels: [3, 7], steps: 4, policy: "fora:interval=2", corrector: "taylor" });
    expect(response.status).toBe(202);
    const job = (await response.json()) as { id: string; events: string; result: string };
    const events = await readEvents(job.events, (name) => name === "result");
    const phases = new Set(
      events.filter((e) => e.event === "progress").map((e) => (e.data as { phase: string }).phase),
    );
    expect([...phases]).toEqual(["uncached", "cached", "reuse"]);
    expect(events.at(-1)!.event).toBe("result");

    const result = (await (await get(job.result)).json()) as {
      speedup: number;
      macsRatio: number;
      cachingLevel: number;
      decisions: string[];
      sites: string[];
      runs: { phase: string; image: string; psnr: number | null; errorCurve: number[]; corrector?: string }[];
    };
    expect(result.speedup).toBeGreaterThan(0);
    expect(result.cachingLevel).toBe(0.5);
    expect(result.macsRatio).toBeLessThan(1);
    expect(result.sites).toEqual(["block0.attn", "block0.mlp", "block1.attn", "block1.mlp"]);
    expect(result.decisions).toEqual(["CCCC", "RRRR", "CCCC", "RRRR"]);
    expect(result.runs.map((run) => run.phase)).toEqual(["uncached", "cached", "reuse"]);
    for (const run of result.runs) {
      expect(run.image).toMatch(/^data:image\/png;base64,iVBORw0KGgo/);
      expect(run.errorCurve).toHaveLength(4);
    }
    const [uncached, cached, reuse] = result.runs;
    expect(uncached!.errorCurve).toEqual([0, 0, 0, 0]);
    expect(cached!.corrector).toBe("taylor:order=1");
    expect(reuse!.corrector).toBe("reuse");
    // Step 0 is computed in every run, so its x_t matches; the first reuse at step 1 is where they part.
    expect(cached!.errorCurve[0]).toBe(0);
    expect(reuse!.errorCurve[1]).toBeGreaterThan(0);
    expect(cached!.psnr).not.toBeNull();
  });

  it("makes no plain-reuse comparison run when the corrector is plain reuse", async () => {
    const job = (await (await post({ labels: [5], steps: 2, corrector: "reuse" })).json()) as {
      events: string;
    };
    const events = await readEvents(job.events, (name) => name === "result");
    const result = events.at(-1)!.data as { runs: { phase: string }[]; reuseSpeedup: number | null };
    expect(result.runs.map((run) => run.phase)).toEqual(["uncached", "cached"]);
    expect(result.reuseSpeedup).toBeNull();
  });

  it("refuses a job with 429 when the queue is full, and cancels queued and running jobs", async () => {
    await idle();
    const running = (await (await post(LONG_JOB)).json()) as { id: string; status: string };
    expect(running.status).toBe("running");
    const waiting = (await (await post(LONG_JOB)).json()) as { id: string; status: string; position: number };
    expect(waiting).toMatchObject({ status: "queued", position: 1 });
    const refused = await post(LONG_JOB);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { message: string }).message).toMatch(/queue full/);

    const cancelQueued = await fetch(`${server.url}/api/jobs/${waiting.id}`, { method: "DELETE" });
    expect(await cancelQueued.json()).toMatchObject({ status: "cancelled" });
    const cancelRunning = await fetch(`${server.url}/api/jobs/${running.id}`, { method: "DELETE" });
    expect(cancelRunning.status).toBe(200);
    expect((await fetch(`${server.url}/api/jobs/${running.id}`, { method: "DELETE" })).status).toBe(409);
    const result = await get(`/api/jobs/${running.id}/result`);
    expect(result.status).toBe(409);
    expect(await result.json()).toMatchObject({ status: "cancelled" });

    // The worker stops after its current step and takes the next job.
    await idle();
    const next = (await (await post({ labels: [1], steps: 2, corrector: "reuse" })).json()) as {
      events: string;
    };
    const events = await readEvents(next.events, (name) => name === "result" || name === "failed");
    expect(events.at(-1)!.event).toBe("result");
  });

  it("cancels a job when its event stream closes before the result", async () => {
    await idle();
    const job = (await (await post(LONG_JOB)).json()) as { id: string; events: string };
    const controller = new AbortController();
    const events = await readEvents(job.events, (name) => name === "progress", controller.signal);
    expect(events.some((event) => event.event === "progress")).toBe(true);
    controller.abort();
    const status = await waitFor(async () => {
      const body = (await (await get(`/api/jobs/${job.id}/result`)).json()) as { status: string };
      return body.status === "cancelled" ? body.status : undefined;
    });
    expect(status).toBe("cancelled");
    await idle();
  });
});
