import { spaceTimesteps } from "@ditcache/diffusion";
import type { ModelInfo } from "./protocol.js";

/** Input limits of the API (also listed by GET /api/options). */
export const LIMITS = Object.freeze({
  /** Images per request. */
  maxLabels: 32,
  /** Denoising steps. */
  maxSteps: 100,
  /** Classifier-free guidance scale range. */
  minCfgScale: 1,
  maxCfgScale: 10,
  /** Largest seed (seeds of a request are seed, seed + 1, …). */
  maxSeed: 2 ** 31 - 1,
  /** Characters of a policy or corrector spec. */
  maxSpecLength: 200,
  /** Bytes of a request body. */
  maxBodyBytes: 16 * 1024,
  /** Milliseconds to receive a whole request (headers and body). */
  requestTimeoutMs: 10_000,
  /** Milliseconds a connection may stay silent. */
  connectionTimeoutMs: 60_000,
});

/** Diffusion steps of the models the server runs (the DiT training schedule). */
const TRAINING_STEPS = 1000;

/**
 * Step counts DDIM can take: "ddimN" needs an integer stride s with ceil(1000 / s) = N, so
 * some counts (1, 92 to 99, …) cannot be made.
 */
export const DDIM_STEP_COUNTS: readonly number[] = Array.from(
  { length: LIMITS.maxSteps },
  (_, i) => i + 1,
).filter((steps) => {
  try {
    spaceTimesteps(TRAINING_STEPS, `ddim${steps}`);
    return true;
  } catch {
    return false;
  }
});

/** Why a DDIM step count cannot be used, naming the nearest counts that can; undefined when fine. */
export function ddimStepsProblem(steps: number): string | undefined {
  if (DDIM_STEP_COUNTS.includes(steps)) return undefined;
  const below = DDIM_STEP_COUNTS.filter((count) => count < steps).at(-1);
  const above = DDIM_STEP_COUNTS.find((count) => count > steps);
  const near = [below, above].filter((count) => count !== undefined).join(" or ");
  return `steps: DDIM cannot take exactly ${steps} of ${TRAINING_STEPS} steps with an integer stride; use ${near}, or the ddpm sampler`;
}

/** Defaults of POST /api/generate fields other than the corrector. */
export const REQUEST_DEFAULTS = Object.freeze({
  seed: 0,
  steps: 20,
  sampler: "ddim" as const,
  cfgScale: 4,
  policy: "fora:interval=2",
  corrector: "reuse",
});

/** JSON schema of the POST /api/generate body for a model with `numClasses` classes. */
export function generateBodySchema(numClasses: number) {
  const spec = (description: string) => ({
    type: "string",
    minLength: 1,
    maxLength: LIMITS.maxSpecLength,
    description,
  });
  return {
    type: "object",
    additionalProperties: false,
    required: ["labels"],
    properties: {
      labels: {
        type: "array",
        minItems: 1,
        maxItems: LIMITS.maxLabels,
        items: { type: "integer", minimum: 0, maximum: numClasses - 1 },
        description: "one class label per image",
      },
      seed: {
        type: "integer",
        minimum: 0,
        maximum: LIMITS.maxSeed,
        default: REQUEST_DEFAULTS.seed,
        description: "seed of the first image's noise; image i uses seed + i",
      },
      steps: {
        type: "integer",
        minimum: 1,
        maximum: LIMITS.maxSteps,
        default: REQUEST_DEFAULTS.steps,
        description: "denoising steps",
      },
      sampler: { type: "string", enum: ["ddim", "ddpm"], default: REQUEST_DEFAULTS.sampler },
      cfgScale: {
        type: "number",
        minimum: LIMITS.minCfgScale,
        maximum: LIMITS.maxCfgScale,
        default: REQUEST_DEFAULTS.cfgScale,
        description: "classifier-free guidance scale (1 = no guidance)",
      },
      policy: { ...spec('cache policy spec, e.g. "fora:interval=2"'), default: REQUEST_DEFAULTS.policy },
      corrector: {
        ...spec('corrector spec, e.g. "taylor:order=1"; "reuse" = plain reuse'),
        default: REQUEST_DEFAULTS.corrector,
      },
    },
  } as const;
}

/** Path parameters of the /api/jobs/:id routes. */
export const JOB_PARAMS_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["id"],
  properties: {
    id: { type: "string", pattern: "^[0-9a-f-]{36}$", description: "job id from POST /api/generate" },
  },
} as const;

const ERROR_SCHEMA = {
  type: "object",
  required: ["error", "message"],
  properties: {
    error: { type: "string" },
    message: { type: "string" },
    field: { type: "string", description: "the request field at fault, for validation errors" },
  },
} as const;

const PARAM_SPEC_SCHEMA = {
  type: "object",
  required: ["type", "description"],
  properties: {
    type: { type: "string", enum: ["integer", "number", "boolean", "string", "integer[]", "number[]"] },
    min: { type: "number" },
    max: { type: "number" },
    choices: { type: "array", items: { type: "string" } },
    description: { type: "string" },
  },
} as const;

const CHOICE_SCHEMA = {
  type: "object",
  required: ["name", "params", "examples"],
  properties: {
    name: { type: "string" },
    params: { type: "object", additionalProperties: PARAM_SPEC_SCHEMA },
    examples: { type: "array", items: { type: "string" } },
  },
} as const;

const MODEL_SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string" },
    backend: { type: "string" },
    numClasses: { type: "integer" },
    inputSize: { type: "integer" },
    inChannels: { type: "integer" },
    depth: { type: "integer" },
    hiddenSize: { type: "integer" },
    patchSize: { type: "integer" },
  },
} as const;

const RUN_SCHEMA = {
  type: "object",
  properties: {
    phase: { type: "string", enum: ["uncached", "cached", "reuse"] },
    milliseconds: { type: "number" },
    stepMilliseconds: { type: "array", items: { type: "number" } },
    image: { type: "string", description: "image grid, PNG data URL" },
    psnr: { type: ["number", "null"], description: "dB vs uncached; null when identical" },
    errorCurve: { type: "array", items: { type: "number" }, description: "per step MSE of x_t vs uncached" },
    policy: { type: "string" },
    corrector: { type: "string" },
  },
} as const;

const RESULT_SCHEMA = {
  type: "object",
  properties: {
    id: { type: "string" },
    request: { type: "object" },
    model: MODEL_SCHEMA,
    speedup: { type: "number", description: "uncached ms / cached ms" },
    reuseSpeedup: { type: ["number", "null"] },
    macsRatio: { type: "number", description: "computed / full MACs of the cacheable sites" },
    cachingLevel: { type: "number" },
    sites: { type: "array", items: { type: "string" } },
    decisions: { type: "array", items: { type: "string" }, description: "per step, one character per site" },
    runs: { type: "array", items: RUN_SCHEMA },
  },
} as const;

const STATUS_SCHEMA = {
  type: "object",
  properties: { id: { type: "string" }, status: { type: "string" }, position: { type: "integer" } },
} as const;

function json(schema: object, description: string) {
  return { description, content: { "application/json": { schema } } };
}

/** The OpenAPI 3 document of the API, written from the same schemas the routes validate with. */
export function openApiDocument(model: ModelInfo, version: string) {
  const errors = {
    "400": json(ERROR_SCHEMA, "invalid input; `field` names it"),
  };
  const jobParameters = [{ name: "id", in: "path", required: true, schema: JOB_PARAMS_SCHEMA.properties.id }];
  return {
    openapi: "3.0.3",
    info: {
      title: "ditcache demo server",
      version,
      description: `Feature-cached DiT sampling on ${model.name} (${model.backend}), compared with uncached sampling.`,
    },
    servers: [{ url: "/" }],
    paths: {
      "/api/health": {
        get: { summary: "Liveness and queue state", responses: { "200": json({ type: "object" }, "ok") } },
      },
      "/api/options": {
        get: {
          summary: "Policies, correctors, limits, defaults and the model",
          responses: {
            "200": json(
              {
                type: "object",
                properties: {
                  model: MODEL_SCHEMA,
                  limits: { type: "object" },
                  defaults: { type: "object" },
                  policies: { type: "array", items: CHOICE_SCHEMA },
                  correctors: { type: "array", items: CHOICE_SCHEMA },
                },
              },
              "what a client may choose",
            ),
          },
        },
      },
      "/api/generate": {
        post: {
          summary: "Queue a comparison: uncached, cached, and cached with plain reuse",
          requestBody: {
            required: true,
            content: { "application/json": { schema: generateBodySchema(model.numClasses) } },
          },
          responses: {
            "202": json(STATUS_SCHEMA, "queued; follow /api/jobs/{id}/events"),
            ...errors,
            "413": json(ERROR_SCHEMA, `body over ${LIMITS.maxBodyBytes} bytes`),
            "429": json(ERROR_SCHEMA, "queue full"),
          },
        },
      },
      "/api/jobs/{id}/events": {
        get: {
          summary:
            "Server-sent events: queued {position}, started {phases}, progress {phase, step, count, fraction}, then result, failed or cancelled. Closing the stream before the result cancels the job.",
          parameters: jobParameters,
          responses: {
            "200": { description: "text/event-stream" },
            ...errors,
            "404": json(ERROR_SCHEMA, "no such job"),
          },
        },
      },
      "/api/jobs/{id}/result": {
        get: {
          summary: "The result of a finished job",
          parameters: jobParameters,
          responses: {
            "200": json(RESULT_SCHEMA, "done"),
            "202": json(STATUS_SCHEMA, "still queued or running"),
            ...errors,
            "404": json(ERROR_SCHEMA, "no such job"),
            "409": json(ERROR_SCHEMA, "the job failed or was cancelled"),
          },
        },
      },
      "/api/jobs/{id}": {
        delete: {
          summary: "Cancel a queued or running job",
          parameters: jobParameters,
          responses: {
            "200": json(STATUS_SCHEMA, "cancelled"),
            ...errors,
            "404": json(ERROR_SCHEMA, "no such job"),
            "409": json(ERROR_SCHEMA, "already finished"),
          },
        },
      },
      "/api/openapi.json": {
        get: { summary: "This document", responses: { "200": { description: "OpenAPI 3" } } },
      },
    },
  };
}
