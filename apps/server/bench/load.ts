/**
 * Load test of the demo server, from a second process on loopback.
 *
 *   pnpm exec tsx --conditions=source apps/server/bench/load.ts [--clients 64] [--requests 2000]
 *
 * The script starts the server (tiny random DiT, cpu backend, 1 worker, 8 waiting jobs) in a child
 * process, then from this process: (1) health + options latency on an idle server, (2) a flood of
 * generate requests from many concurrent clients while health/options are probed, (3) after the
 * queue drains, the server's memory against its baseline (after a forced GC in the server), twice.
 * Only 127.0.0.1, a bounded number of requests, and a bounded wait. Prints a Markdown table.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

interface Memory {
  readonly rss: number;
  readonly heapUsed: number;
}

// ------------------------------------------------------------------------------------------------
// Server side (child process)

async function serve(): Promise<void> {
  const { startServer } = await import("../src/index.js");
  const { TINY_MODEL_SOURCE } = await import("../src/testing/index.js");
  const server = await startServer({
    host: "127.0.0.1",
    port: 0,
    modelSource: TINY_MODEL_SOURCE,
    queue: { workers: 1, maxWaiting: 8 },
  });
  const gc = (globalThis as { gc?: () => void }).gc;
  const lines = createInterface({ input: process.stdin });
  console.log(JSON.stringify({ url: server.url }));
  for await (const line of lines) {
    if (line === "memory") {
      gc?.();
      const { rss, heapUsed } = process.memoryUsage();
      console.log(JSON.stringify({ memory: { rss, heapUsed } }));
    } else if (line === "stop") {
      await server.close();
      process.exit(0);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Driver

class ServerProcess {
  readonly #child: ChildProcess;
  readonly #lines: Interface;
  readonly #waiting: ((value: Record<string, unknown>) => void)[] = [];

  constructor() {
    this.#child = spawn(
      process.execPath,
      ["--expose-gc", "--conditions=source", "--import", "tsx", fileURLToPath(import.meta.url), "--serve"],
      {
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    this.#lines = createInterface({ input: this.#child.stdout! });
    this.#lines.on("line", (line) => {
      if (line.startsWith("{")) this.#waiting.shift()?.(JSON.parse(line) as Record<string, unknown>);
    });
  }

  next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  async memory(): Promise<Memory> {
    const reply = this.next();
    this.#child.stdin!.write("memory\n");
    return (await reply).memory as Memory;
  }

  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  async stop(): Promise<void> {
    this.#child.stdin!.write("stop\n");
    await new Promise((resolve) => this.#child.once("exit", resolve));
  }
}

interface Timed {
  readonly status: number;
  readonly milliseconds: number;
}

async function timedRequest(url: string, init?: RequestInit): Promise<Timed> {
  const started = performance.now();
  try {
    const response = await fetch(url, init);
    await response.arrayBuffer();
    return { status: response.status, milliseconds: performance.now() - started };
  } catch {
    return { status: 0, milliseconds: performance.now() - started };
  }
}

/** Runs `total` requests from `clients` concurrent loops. */
async function pool(
  clients: number,
  total: number,
  request: (index: number) => Promise<Timed>,
): Promise<Timed[]> {
  const results: Timed[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < total) results.push(await request(next++));
    }),
  );
  return results;
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function latencyRow(label: string, results: readonly Timed[]): string {
  const ms = results.map((r) => r.milliseconds);
  const ok = results.filter((r) => r.status === 200).length;
  return `| ${label} | ${results.length} | ${ok} | ${percentile(ms, 50).toFixed(1)} | ${percentile(ms, 99).toFixed(1)} | ${Math.max(...ms).toFixed(1)} |`;
}

const MB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

/** Probe clients in the latency rows that compare idle and loaded. */
const PROBE_CLIENTS = 8;

/** Waits (at most 2 minutes) until no job is waiting or running. */
async function drain(url: string): Promise<void> {
  const deadline = performance.now() + 120_000;
  for (;;) {
    const health = (await (await fetch(`${url}/api/health`)).json()) as {
      queue: { waiting: number; running: number };
    };
    if ((health.queue.waiting === 0 && health.queue.running === 0) || performance.now() > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function drive(clients: number, requests: number): Promise<void> {
  const server = new ServerProcess();
  const { url } = (await server.next()) as { url: string };
  if (!url.startsWith("http://127.0.0.1:"))
    throw new Error(`refusing to load-test a non-loopback url ${url}`);
  const probe = (index: number) => timedRequest(`${url}${index % 2 === 0 ? "/api/health" : "/api/options"}`);

  await pool(4, 50, probe); // warm-up
  const baseline = await server.memory();
  const idle = await pool(PROBE_CLIENTS, requests, probe);
  const saturated = await pool(clients, requests, probe);

  // Generate flood: every client posts small jobs while a few clients keep probing. Two rounds,
  // so memory after the second shows whether anything keeps growing.
  const body = JSON.stringify({ labels: [0, 1], steps: 10, policy: "fora:interval=2" });
  const generate = () =>
    timedRequest(`${url}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
  const statuses = new Map<number, number>();
  const flood: Timed[] = [];
  let busy: Timed[] = [];
  const memory: Memory[] = [];
  for (let round = 0; round < 2; round++) {
    const [sent, probed] = await Promise.all([
      pool(clients, requests, generate),
      pool(PROBE_CLIENTS, requests, probe),
    ]);
    flood.push(...sent);
    busy = busy.concat(probed);
    await drain(url);
    await pool(4, 50, probe);
    memory.push(await server.memory());
  }
  for (const r of flood) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);

  // Oversized bodies.
  const big = JSON.stringify({ labels: [0], pad: "x".repeat(64 * 1024) });
  const oversized = await pool(clients, Math.min(requests, 500), () =>
    timedRequest(`${url}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: big,
    }),
  );
  const alive = server.alive && (await timedRequest(`${url}/api/health`)).status === 200;
  await server.stop();

  const count = (status: number) => statuses.get(status) ?? 0;
  console.log(
    `\n${clients} concurrent clients, ${requests} requests per phase, server: tiny random DiT on cpu, 1 worker, 8 waiting jobs\n`,
  );
  console.log("| phase | requests | 200 | p50 ms | p99 ms | max ms |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
  console.log(latencyRow(`health + options, idle server, ${PROBE_CLIENTS} clients`, idle));
  console.log(latencyRow(`health + options, during the generate flood, ${PROBE_CLIENTS} clients`, busy));
  console.log(latencyRow(`health + options, saturating, ${clients} clients`, saturated));
  console.log("");
  console.log("| generate flood | count |");
  console.log("| --- | ---: |");
  console.log(`| POST /api/generate sent | ${flood.length} |`);
  console.log(`| 202 accepted (queued or running) | ${count(202)} |`);
  console.log(`| 429 queue full | ${count(429)} |`);
  const others = [...statuses].filter(([status]) => status !== 202 && status !== 429);
  console.log(
    `| other status / connection error | ${others.map(([status, n]) => `${n} x ${status === 0 ? "error" : status}`).join(", ") || 0} |`,
  );
  console.log(
    `| 413 for ${oversized.length} oversized bodies (64 KB) | ${oversized.filter((r) => r.status === 413).length} |`,
  );
  console.log("");
  const [first, second] = memory as [Memory, Memory];
  console.log("| server memory (after GC, queue drained) | baseline | after flood 1 | after flood 2 |");
  console.log("| --- | ---: | ---: | ---: |");
  console.log(
    `| rss MB (process, worker thread included) | ${MB(baseline.rss)} | ${MB(first.rss)} | ${MB(second.rss)} |`,
  );
  console.log(
    `| heap used MB (main thread) | ${MB(baseline.heapUsed)} | ${MB(first.heapUsed)} | ${MB(second.heapUsed)} |`,
  );
  console.log(`\nserver alive and healthy at the end: ${alive ? "yes" : "NO"}`);
  if (!alive || flood.length !== count(202) + count(429)) process.exitCode = 1;
}

const { values } = parseArgs({
  options: {
    serve: { type: "boolean" },
    clients: { type: "string", default: "64" },
    requests: { type: "string", default: "2000" },
  },
});
if (values.serve) await serve();
else {
  const clients = Number(values.clients);
  const requests = Number(values.requests);
  if (!Number.isInteger(clients) || clients < 1 || clients > 512)
    throw new Error("--clients: expected an integer in [1, 512]");
  if (!Number.isInteger(requests) || requests < 1 || requests > 20_000)
    throw new Error("--requests: expected an integer in [1, 20000]");
  await drive(clients, requests);
}
