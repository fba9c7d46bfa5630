import { readFile } from "node:fs/promises";
import { DitcacheError } from "@ditcache/core";
import { demoPriorsPath } from "@ditcache/models";
import { BACKEND_SPECS, type BackendSpec } from "@ditcache/pipeline";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import {
  type CacheChoices,
  cacheChoices,
  redactSpec,
  resolveSpec,
  type ServerParams,
} from "./cache-choices.js";
import { isFinished, JobQueue, type QueueLimits } from "./jobs.js";
import { checkCorrectorFits, correctorRequirements } from "./priors-fit.js";
import type { JobRequest, ModelInfo, ModelSource } from "./protocol.js";
import { prepareRegistry } from "./registry-setup.js";
import {
  DDIM_STEP_COUNTS,
  ddimStepsProblem,
  generateBodySchema,
  JOB_PARAMS_SCHEMA,
  LIMITS,
  openApiDocument,
  REQUEST_DEFAULTS,
} from "./schemas.js";
import { ModelWorker } from "./worker-pool.js";

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Interface to bind. @defaultValue "127.0.0.1" (this machine only) */
  host?: string;
  /** TCP port; 0 picks a free one. @defaultValue 7860 */
  port?: number;
  /** Backend the model runs on. @defaultValue "cpu" */
  backend?: BackendSpec;
  /** The model. @defaultValue the embedded demo model */
  modelSource?: ModelSource;
  /** Queue limits, and worker threads (each holds the model and runs one job at a time). */
  queue?: QueueLimits & {
    /** Worker threads. @defaultValue 1 */
    workers?: number;
  };
  /** Parameters the server sets itself (e.g. a corrector's priors file); clients cannot set them. */
  serverParams?: ServerParams;
  /** Log requests to stdout. @defaultValue false */
  logger?: boolean;
  /**
   * Milliseconds a client has to send a whole request (headers and body); slower ones get 408
   * and are disconnected, so trickling clients cannot hold sockets. @defaultValue 10000
   */
  requestTimeout?: number;
  /**
   * Milliseconds a connection may stay silent before it is closed (event streams send a ping
   * every 15 s, so they stay open). @defaultValue 60000
   */
  connectionTimeout?: number;
}

/** The embedded demo model comes with EOC priors: the server, never a client, points EOC at them. */
function defaultServerParams(source: ModelSource): ServerParams {
  if (source.kind !== "demo") return {};
  try {
    return { corrector: { eoc: { priors: demoPriorsPath() } } };
  } catch {
    return {}; // priors not shipped (yet): EOC is simply not offered
  }
}

/** A started server. */
export interface RunningServer {
  /** Base URL, e.g. "http://127.0.0.1:7860". */
  readonly url: string;
  /** The loaded model. */
  readonly model: ModelInfo;
  /** The fastify instance (for tests and embedding). */
  readonly app: FastifyInstance;
  /** Cancels every job, stops the workers and closes the listener. */
  close(): Promise<void>;
}

const VERSION = "0.1.0";
const PUBLIC_FILES = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
} as const;
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-origin",
};
const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

interface ValidationIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Turns an ajv error into "field: problem" with the field named, e.g. "labels[2]: must be <= 9". */
function describeIssue(
  issue: ValidationIssue,
  allowed: readonly string[],
): { field: string; message: string } {
  const segments = issue.instancePath.split("/").filter((segment) => segment !== "");
  if (issue.keyword === "required") segments.push(String(issue.params.missingProperty));
  if (issue.keyword === "additionalProperties") {
    const field = String(issue.params.additionalProperty);
    return { field, message: `${field}: unknown field; expected only ${allowed.join(", ")}` };
  }
  const path = segments
    .map((segment, index) => (/^\d+$/.test(segment) ? `[${segment}]` : index > 0 ? `.${segment}` : segment))
    .join("");
  const field = segments[0] ?? "body";
  const detail =
    issue.keyword === "required"
      ? "is required"
      : issue.keyword === "enum"
        ? `must be one of ${(issue.params.allowedValues as unknown[]).map((value) => JSON.stringify(value)).join(", ")}`
        : (issue.message ?? "is invalid");
  return { field, message: `${path || "body"}: ${detail}` };
}

function sendError(reply: FastifyReply, status: number, message: string, field?: string): FastifyReply {
  const error =
    {
      400: "Bad Request",
      404: "Not Found",
      409: "Conflict",
      413: "Payload Too Large",
      429: "Too Many Requests",
    }[status] ?? "Error";
  return reply.code(status).send({ error, message, ...(field ? { field } : {}) });
}

/**
 * Starts the demo server: loads the model in worker thread(s), then serves the web page and
 * the JSON API on `host:port`. Clients choose labels, seed, steps, sampler, guidance, policy
 * and corrector within {@link LIMITS}; they never name files.
 *
 * @example
 * const server = await startServer({ port: 7860, backend: "onnx" });
 * console.log(`open ${server.url}`);
 */
export async function startServer(options: ServerOptions = {}): Promise<RunningServer> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? 7860;
  const backend = options.backend ?? "cpu";
  if (!(BACKEND_SPECS as readonly string[]).includes(backend)) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `backend: expected one of ${BACKEND_SPECS.join(", ")}, got ${JSON.stringify(backend)}`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `port: expected an integer in [0, 65535], got ${String(port)}`,
    );
  }
  const requestTimeout = options.requestTimeout ?? LIMITS.requestTimeoutMs;
  const connectionTimeout = options.connectionTimeout ?? LIMITS.connectionTimeoutMs;
  for (const [name, value] of Object.entries({ requestTimeout, connectionTimeout })) {
    if (!Number.isInteger(value) || value < 1 || value > 3_600_000) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `${name}: expected milliseconds in [1, 3600000], got ${String(value)}`,
      );
    }
  }
  const workerCount = options.queue?.workers ?? 1;
  if (!Number.isInteger(workerCount) || workerCount < 1 || workerCount > 16) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      `queue.workers: expected an integer in [1, 16], got ${String(workerCount)}`,
    );
  }
  const source = options.modelSource ?? { kind: "demo" };
  const serverParams = options.serverParams ?? defaultServerParams(source);
  prepareRegistry();
  const choices: CacheChoices = cacheChoices(serverParams);
  const publicFiles = new Map<string, { body: Buffer; type: string }>();
  for (const [route, { file, type }] of Object.entries(PUBLIC_FILES)) {
    publicFiles.set(route, { body: await readFile(new URL(`../public/${file}`, import.meta.url)), type });
  }

  const workers = await Promise.all(
    Array.from({ length: workerCount }, () => ModelWorker.start(backend, source)),
  );
  const model = workers[0]!.model;
  const queue = new JobQueue(workers, options.queue, (run) => ({
    ...run,
    ...(run.policy !== undefined ? { policy: redactSpec("policy", run.policy, serverParams) } : {}),
    ...(run.corrector !== undefined
      ? { corrector: redactSpec("corrector", run.corrector, serverParams) }
      : {}),
  }));
  // Correctors with priors (EOC) only fit the setting they were calibrated for: say which.
  const correctors = choices.correctors.map((entry) => {
    const requires = correctorRequirements(resolveSpec("corrector", entry.name, choices, serverParams));
    return requires ? { ...entry, requires } : entry;
  });
  const bestCorrector = ["eoc", "taylor"].find((name) =>
    choices.correctors.some((entry) => entry.name === name),
  );
  const defaults = { ...REQUEST_DEFAULTS, corrector: bestCorrector ?? REQUEST_DEFAULTS.corrector };
  const bodySchema = generateBodySchema(model.numClasses);
  const bodyFields = Object.keys(bodySchema.properties);

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: LIMITS.maxBodyBytes,
    requestTimeout,
    connectionTimeout,
    // Node checks request deadlines on this interval (30 s by default): keep it well below them.
    http: {
      headersTimeout: requestTimeout,
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(requestTimeout / 4))),
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  app.addHook("onRequest", async (request, reply) => {
    // The server binds to loopback by default; refusing other Host names stops DNS rebinding
    // pages from reaching it through the browser.
    if (LOOPBACK.has(host)) {
      const name = (request.headers.host ?? "").replace(/:\d+$/, "");
      if (!LOOPBACK.has(name))
        return sendError(
          reply,
          400,
          `host: expected a loopback host name, got ${JSON.stringify(name)}`,
          "host",
        );
    }
  });
  app.addHook("onSend", async (_request, reply, payload) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) reply.header(name, value);
    return payload;
  });
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error.validation && error.validation.length > 0) {
      const { field, message } = describeIssue(error.validation[0] as ValidationIssue, bodyFields);
      return sendError(reply, 400, message, field);
    }
    if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      return sendError(reply, 413, `body: larger than ${LIMITS.maxBodyBytes} bytes`);
    }
    if (error.statusCode !== undefined && error.statusCode < 500) {
      return sendError(reply, error.statusCode, error.message);
    }
    reply.log.error(error);
    return reply.code(500).send({ error: "Internal Server Error", message: "internal error" });
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 404, `no route ${request.method} ${request.url.split("?")[0]}`),
  );

  for (const [route, file] of publicFiles) {
    app.get(route, async (_request, reply) =>
      reply.type(file.type).header("cache-control", "no-cache").send(file.body),
    );
  }

  app.get("/api/health", async () => ({ status: "ok", model, queue: queue.stats }));

  app.get("/api/options", async () => ({
    model,
    limits: { ...LIMITS, ddimSteps: DDIM_STEP_COUNTS },
    defaults,
    policies: choices.policies,
    correctors,
  }));

  const openApi = openApiDocument(model, VERSION);
  app.get("/api/openapi.json", async () => openApi);

  app.post<{ Body: Partial<JobRequest> & { labels: number[] } }>(
    "/api/generate",
    { schema: { body: bodySchema } },
    async (request, reply) => {
      const body = request.body;
      const accepted: JobRequest = {
        labels: body.labels,
        seed: body.seed ?? defaults.seed,
        steps: body.steps ?? defaults.steps,
        sampler: body.sampler ?? defaults.sampler,
        cfgScale: body.cfgScale ?? defaults.cfgScale,
        policy: body.policy ?? defaults.policy,
        corrector: body.corrector ?? defaults.corrector,
      };
      const stepsProblem = accepted.sampler === "ddim" ? ddimStepsProblem(accepted.steps) : undefined;
      if (stepsProblem !== undefined) return sendError(reply, 400, stepsProblem, "steps");
      let policy: string;
      let corrector: string;
      try {
        policy = resolveSpec("policy", accepted.policy, choices, serverParams);
        corrector = resolveSpec("corrector", accepted.corrector, choices, serverParams);
      } catch (error) {
        if (!DitcacheError.isInstance(error)) throw error;
        return sendError(
          reply,
          400,
          error.message,
          error.message.startsWith("policy") ? "policy" : "corrector",
        );
      }
      try {
        checkCorrectorFits(corrector, policy, accepted, model);
      } catch (error) {
        if (!DitcacheError.isInstance(error)) throw error;
        return sendError(reply, 400, `corrector: ${error.message}`, "corrector");
      }
      const withReuse = corrector.split(":", 1)[0]!.trim() !== "reuse";
      const job = queue.submit(accepted, policy, corrector, withReuse);
      if (job === undefined) {
        const { waiting, maxWaiting } = queue.stats;
        return sendError(
          reply,
          429,
          `queue full: ${waiting} jobs waiting (limit ${maxWaiting}); try again when one finishes`,
        );
      }
      const last = job.history.at(-1);
      return reply.code(202).send({
        id: job.id,
        status: job.status,
        position: last?.event === "queued" ? last.data.position : 0,
        events: `/api/jobs/${job.id}/events`,
        result: `/api/jobs/${job.id}/result`,
      });
    },
  );

  const jobRoute = { schema: { params: JOB_PARAMS_SCHEMA } };

  app.get<{ Params: { id: string } }>("/api/jobs/:id/events", jobRoute, (request, reply) => {
    const job = queue.get(request.params.id);
    if (job === undefined) return sendError(reply, 404, `id: no job ${request.params.id}`, "id");
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      ...SECURITY_HEADERS,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
    });
    const ping = setInterval(() => raw.write(": ping\n\n"), 15_000);
    let unsubscribe = (): void => {};
    const finish = () => {
      clearInterval(ping);
      unsubscribe();
    };
    unsubscribe = queue.subscribe(job, (event) => {
      raw.write(`event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`);
      if (event.event === "result" || event.event === "failed" || event.event === "cancelled") {
        finish();
        raw.end();
      }
    });
    raw.on("close", () => {
      finish();
      // The page that asked is gone: stop working for nobody (unless another stream still listens).
      if (!isFinished(job) && job.listeners.size === 0) queue.cancel(job.id, "client disconnected");
    });
  });

  app.get<{ Params: { id: string } }>("/api/jobs/:id/result", jobRoute, async (request, reply) => {
    const job = queue.get(request.params.id);
    if (job === undefined) return sendError(reply, 404, `id: no job ${request.params.id}`, "id");
    if (job.status === "done") return job.result;
    if (job.status === "failed" || job.status === "cancelled") {
      const reason = job.status === "failed" ? job.error?.message : "the job was cancelled";
      return reply
        .code(409)
        .send({ error: "Conflict", message: `job ${job.status}: ${reason}`, status: job.status });
    }
    return reply.code(202).send({ id: job.id, status: job.status });
  });

  app.delete<{ Params: { id: string } }>("/api/jobs/:id", jobRoute, async (request, reply) => {
    const job = queue.get(request.params.id);
    if (job === undefined) return sendError(reply, 404, `id: no job ${request.params.id}`, "id");
    if (!queue.cancel(job.id, "cancelled by the client")) {
      return sendError(reply, 409, `job already ${job.status}`);
    }
    return { id: job.id, status: job.status };
  });

  try {
    await app.listen({ host, port });
  } catch (error) {
    await Promise.all(workers.map((worker) => worker.close()));
    throw error;
  }
  const address = app.server.address();
  const boundPort = typeof address === "object" && address !== null ? address.port : port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${boundPort}`,
    model,
    app,
    async close() {
      queue.cancelAll("server closing");
      await app.close();
      await Promise.all(workers.map((worker) => worker.close()));
    },
  };
}
