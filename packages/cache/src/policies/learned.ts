import {
  type Backend,
  DitcacheError,
  invalidArgument,
  type SiteHook,
  type SiteKind,
  type StepInfo,
  type Tensor,
} from "@ditcache/core";
import { TensorMath } from "../math.js";
import { type ParamSchema, validateParams } from "../params.js";
import type { CachePolicy } from "../policy.js";
import {
  parseSiteKey,
  readScheduleFile,
  type ScheduleTable,
  tablePolicy,
  validateSchedule,
} from "./schedule.js";

/** Parameters of {@link learnedPolicy} through the registry. */
export const learnedPolicyParams: ParamSchema = {
  file: {
    type: "string",
    description: "path of a learned schedule JSON file (learnSchedule or convertL2CRouter output)",
  },
};

/** Options of {@link learnedPolicy}. */
export interface LearnedPolicyOptions {
  /** The learned table. */
  table?: ScheduleTable;
  /** Path of a schedule JSON file (Node only). */
  file?: string;
}

/**
 * Learning-to-Cache (Ma et al., "Learning-to-Cache: Accelerating Diffusion Transformer via Layer
 * Caching", NeurIPS 2024) in spirit: a static per-step, per-layer table of which attention / MLP
 * layers to reuse, learned offline. Tables come from {@link learnSchedule} (gradient-free, greedy
 * on measured errors) or from an official router through {@link convertL2CRouter}.
 */
export function learnedPolicy(options: LearnedPolicyOptions): CachePolicy {
  const { table, file } = options ?? {};
  validateParams("learned", learnedPolicyParams, { file });
  if ((table === undefined) === (file === undefined))
    invalidArgument("learned options", options, "exactly one of table or file");
  if (file !== undefined) return tablePolicy("learned", `learned:file=${file}`, readScheduleFile(file));
  return tablePolicy("learned", "learned", validateSchedule(table));
}

// ---------------------------------------------------------------- calibration

/**
 * Per-site reuse errors measured on uncached runs: `error[step][column]` is the relative L1
 * change `mean|F_s - F_{s-1}| / mean|F_{s-1}|` of the site's value (pre-gate branch output, or
 * block residual) between consecutive steps, averaged over runs. Row 0 is 0.
 */
export interface SiteErrorTable {
  /** Steps per run. */
  readonly steps: number;
  /** Site keys of the columns. */
  readonly sites: readonly string[];
  /** `error[step][column]`. */
  readonly error: readonly (readonly number[])[];
  /** Model depth. */
  readonly depth: number;
}

/** Options of {@link learnSchedule}. */
export interface LearnScheduleOptions {
  /** Times to call the calibration callback; errors are averaged. @defaultValue 1 */
  runs?: number;
  /** A site is never reused more than this many steps in a row. @defaultValue Infinity */
  maxConsecutiveReuse?: number;
}

/**
 * Learns a schedule gradient-free: greedily picks the (step, site) reuses of least marginal
 * estimated error until the caching level reaches `budget`. The error of a reuse is estimated as
 * the sum of the one-step errors since the site was last computed (drift accumulates along a run
 * of reuses), so the greedy prefers spreading reuses over long chains.
 *
 * @param runCalibration runs uncached sampling and reports per-site errors (see
 *   {@link createReuseErrorRecorder}).
 * @param budget target caching level in [0, 1] (fraction of step x block computations reused).
 */
export async function learnSchedule(
  runCalibration: () => Promise<SiteErrorTable>,
  budget: number,
  options: LearnScheduleOptions = {},
): Promise<ScheduleTable> {
  if (typeof runCalibration !== "function") invalidArgument("runCalibration", runCalibration, "a function");
  if (typeof budget !== "number" || !(budget >= 0 && budget <= 1))
    invalidArgument("budget", budget, "a caching level in [0, 1]");
  const runs = options.runs ?? 1;
  if (!Number.isInteger(runs) || runs < 1) invalidArgument("options.runs", runs, "an integer >= 1");
  const maxRun = options.maxConsecutiveReuse ?? Number.POSITIVE_INFINITY;
  if (!(maxRun >= 1)) invalidArgument("options.maxConsecutiveReuse", maxRun, "a number >= 1");

  let first: SiteErrorTable | undefined;
  let sum: number[][] = [];
  for (let run = 0; run < runs; run++) {
    const table = await runCalibration();
    checkErrorTable(table, first);
    if (first === undefined) {
      first = table;
      sum = table.error.map((row) => [...row]);
    } else {
      table.error.forEach((row, step) => {
        row.forEach((value, column) => {
          sum[step]![column]! += value;
        });
      });
    }
  }
  const reference = first!;
  const error = sum.map((row) => row.map((value) => value / runs));
  const { steps, sites, depth } = reference;
  const weights = sites.map((key) => {
    const id = parseSiteKey(key);
    return id.kind === "attn" || id.kind === "mlp" ? 1 : 2 * (id.end - id.block + 1);
  });
  const capacity = Math.round(budget * 2 * depth * steps);
  const reuse = Array.from({ length: steps }, () => sites.map(() => false));

  const columnCost = (column: number): number => {
    let cost = 0;
    let drift = 0;
    for (let step = 0; step < steps; step++) {
      if (reuse[step]![column]) {
        drift += error[step]![column]!;
        cost += drift;
      } else drift = 0;
    }
    return cost;
  };
  const runLength = (step: number, column: number): number => {
    let length = 1;
    for (let s = step - 1; s >= 1 && reuse[s]![column]; s--) length++;
    for (let s = step + 1; s < steps && reuse[s]![column]; s++) length++;
    return length;
  };

  let used = 0;
  for (;;) {
    let best: { step: number; column: number; cost: number } | undefined;
    for (let column = 0; column < sites.length; column++) {
      if (used + weights[column]! > capacity) continue;
      const base = columnCost(column);
      for (let step = 1; step < steps; step++) {
        if (reuse[step]![column]) continue;
        reuse[step]![column] = true;
        const ok = runLength(step, column) <= maxRun;
        const cost = columnCost(column) - base;
        reuse[step]![column] = false;
        if (ok && (best === undefined || cost < best.cost)) best = { step, column, cost };
      }
    }
    if (best === undefined) break;
    reuse[best.step]![best.column] = true;
    used += weights[best.column]!;
  }
  return { version: 1, steps, depth, sites: [...sites], reuse };
}

function checkErrorTable(table: SiteErrorTable, first: SiteErrorTable | undefined): void {
  if (
    table === null ||
    typeof table !== "object" ||
    !Array.isArray(table.sites) ||
    !Array.isArray(table.error)
  ) {
    invalidArgument("runCalibration()", table, "a SiteErrorTable { steps, sites, error, depth }");
  }
  if (table.error.length !== table.steps || table.error.some((row) => row.length !== table.sites.length)) {
    invalidArgument(
      "runCalibration().error",
      table.error,
      `${table.steps} rows of ${table.sites.length} numbers`,
    );
  }
  if (first !== undefined && (first.steps !== table.steps || first.sites.join() !== table.sites.join())) {
    throw new DitcacheError(
      "INVALID_ARGUMENT",
      "runCalibration(): expected every run to report the same steps and sites",
    );
  }
}

/** Options of {@link createReuseErrorRecorder}. */
export interface ReuseErrorRecorderOptions {
  /** Site kinds to record. @defaultValue ["attn", "mlp"] */
  kinds?: readonly SiteKind[];
}

/** A site hook that computes everything and records per-site one-step errors; see {@link learnSchedule}. */
export interface ReuseErrorRecorder extends SiteHook {
  /** Errors averaged over the runs recorded so far. */
  table(): SiteErrorTable;
  /** Frees the tensors it holds. */
  dispose(): void;
}

/**
 * Creates a hook that runs the model uncached and measures, per site and step, the relative L1
 * change of the site's value since the previous step: the error a one-step reuse would make.
 * Run several samples through it (a step index going back starts a new run), then `table()`.
 */
export function createReuseErrorRecorder(options: ReuseErrorRecorderOptions = {}): ReuseErrorRecorder {
  const kinds = new Set<SiteKind>(options.kinds ?? ["attn", "mlp"]);
  let math: TensorMath | undefined;
  let backend: Backend | undefined;
  let lastIndex = -1;
  let steps = 0;
  let depth = 0;
  const previous = new Map<string, Tensor>();
  const sums = new Map<string, Map<number, { total: number; count: number }>>();
  const clearPrevious = () => {
    for (const tensor of previous.values()) backend?.dispose(tensor);
    previous.clear();
  };
  const begin = (step: StepInfo, stepBackend: Backend) => {
    if (backend === undefined) {
      backend = stepBackend;
      math = new TensorMath(stepBackend);
    }
    if (step.index < lastIndex) clearPrevious();
    lastIndex = step.index;
    steps = Math.max(steps, step.count);
  };
  return {
    beginForward: begin,
    async run(call) {
      if (math === undefined)
        throw new DitcacheError("INVALID_ARGUMENT", "reuse error recorder: beginForward was not called");
      if (call.site.kind === "blocks" && call.site.block === 0) depth = call.site.end + 1;
      depth = Math.max(depth, call.site.end + 1);
      const out = await call.compute();
      if (!kinds.has(call.site.kind)) return out;
      const value =
        call.site.kind === "attn" || call.site.kind === "mlp"
          ? await math.copy(out)
          : await math.sub(out, call.input);
      const before = previous.get(call.site.key);
      let perStep = sums.get(call.site.key);
      if (perStep === undefined) {
        perStep = new Map();
        sums.set(call.site.key, perStep);
      }
      if (before !== undefined) {
        const { difference, reference } = await math.rowAbsSums(value, before);
        const d = difference.reduce((a, b) => a + b, 0);
        const r = reference.reduce((a, b) => a + b, 0);
        const entry = perStep.get(call.step.index) ?? { total: 0, count: 0 };
        entry.total += r > 0 ? d / r : 0;
        entry.count += 1;
        perStep.set(call.step.index, entry);
        backend!.dispose(before);
      }
      previous.set(call.site.key, value);
      return out;
    },
    table() {
      const keys = [...sums.keys()].sort((a, b) => {
        const x = parseSiteKey(a);
        const y = parseSiteKey(b);
        return x.block - y.block || x.end - y.end || x.key.localeCompare(y.key);
      });
      const error = Array.from({ length: steps }, (_, step) =>
        keys.map((key) => {
          const entry = sums.get(key)!.get(step);
          return entry ? entry.total / entry.count : 0;
        }),
      );
      return { steps, sites: keys, error, depth };
    },
    dispose: clearPrevious,
  };
}

// ---------------------------------------------------------------- official routers

/** Options of {@link convertL2CRouter}. */
export interface ConvertL2CRouterOptions {
  /** A layer computes where its router score exceeds this (`--thres` of the official sampler). @defaultValue 0.1 */
  threshold?: number;
  /**
   * Order of the router list: "timestep" (the official one: router i belongs to the i-th
   * smallest timestep, so sampling step s uses router steps-1-s) or "step" (router i = step i).
   * @defaultValue "timestep"
   */
  order?: "timestep" | "step";
  /** Whether the stored values are logits to pass through a sigmoid (official `prob`). @defaultValue true */
  sigmoid?: boolean;
}

/**
 * Converts an official Learning-to-Cache router into a schedule table. The official DiT router
 * (`DDIM20_router.pt`) holds, per step, a parameter `prob` of 2·depth logits (attention, MLP of
 * each block in turn); the sampler computes a layer where sigmoid(prob) > threshold and reuses it
 * otherwise. Export it to JSON first, e.g.
 * `json.dump({k: v.tolist() for k, v in torch.load(path).items()}, f)`; accepted shapes:
 * `{"routers.0.prob": [...], ...}` (state dict), `{"routers": [[...], ...]}` or `[[...], ...]`.
 * Step 0 always computes (nothing is cached yet, as in the official sampler).
 */
export function convertL2CRouter(json: unknown, options: ConvertL2CRouterOptions = {}): ScheduleTable {
  const threshold = options.threshold ?? 0.1;
  if (typeof threshold !== "number" || Number.isNaN(threshold))
    invalidArgument("options.threshold", threshold, "a number");
  const order = options.order ?? "timestep";
  if (order !== "timestep" && order !== "step")
    invalidArgument("options.order", order, '"timestep" or "step"');
  const sigmoid = options.sigmoid ?? true;
  let value: unknown = json;
  if (typeof json === "string") {
    try {
      value = JSON.parse(json);
    } catch (error) {
      throw new DitcacheError(
        "BAD_FILE",
        `router: expected JSON, got a parse error: ${(error as Error).message.split("\n")[0]}`,
        { cause: error },
      );
    }
  }
  let routers: unknown[];
  if (Array.isArray(value)) routers = value;
  else if (
    value !== null &&
    typeof value === "object" &&
    Array.isArray((value as { routers?: unknown }).routers)
  ) {
    routers = (value as { routers: unknown[] }).routers;
  } else if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .map(([key, item]) => ({ match: /^(?:.*\.)?routers\.(0|[1-9]\d{0,5})\.prob$/.exec(key), item }))
      .filter((entry) => entry.match !== null);
    // Only indices 0..n-1 make a list: a sparse or huge index would leave holes (or loop for long).
    routers = [];
    for (const entry of entries) {
      const index = Number(entry.match![1]);
      if (index < entries.length) routers[index] = entry.item;
    }
    if (routers.length !== entries.length) routers = [undefined];
  } else routers = [];
  if (routers.length === 0 || ![...routers].every((router) => Array.isArray(router))) {
    invalidArgument(
      "router",
      json,
      'a Learning-to-Cache router: {"routers.<i>.prob": [...]}, {"routers": [[...]]} or [[...]]',
    );
  }
  const width = (routers[0] as unknown[]).length;
  if (width === 0 || width % 2 !== 0 || routers.some((router) => (router as unknown[]).length !== width)) {
    invalidArgument("router", json, "routers of one even length (2 x depth: attention, MLP per block)");
  }
  const depth = width / 2;
  const steps = routers.length;
  const sites: string[] = [];
  for (let block = 0; block < depth; block++) sites.push(`block${block}.attn`, `block${block}.mlp`);
  const reuse = Array.from({ length: steps }, (_, step) => {
    if (step === 0) return sites.map(() => false);
    const router = routers[order === "timestep" ? steps - 1 - step : step] as number[];
    return router.map((raw) => {
      if (typeof raw !== "number" || !Number.isFinite(raw))
        invalidArgument("router value", raw, "a finite number");
      const score = sigmoid ? 1 / (1 + Math.exp(-raw)) : raw;
      return !(score > threshold);
    });
  });
  return { version: 1, steps, depth, sites, reuse };
}
