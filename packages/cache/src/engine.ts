import {
  type Backend,
  type BatchHalf,
  DitcacheError,
  invalidArgument,
  isWeightedSum,
  type SiteCall,
  type SiteHook,
  type SiteId,
  type StepInfo,
  siteId,
  sizeOf,
  type Tensor,
  type WeightedSum,
} from "@ditcache/core";
import type { ComputedValue, CorrectionContext, Corrector } from "./corrector.js";
import { reuseCorrector } from "./correctors/reuse.js";
import { type RowSource, TensorMath } from "./math.js";
import {
  type BlockRange,
  type CachePolicy,
  type Decision,
  type DecisionQuery,
  guardForcesCompute,
  type SignalRequest,
} from "./policy.js";
import { type CacheSummary, signalStatistics } from "./summary.js";

/** Options of {@link createCacheEngine}. */
export interface CacheEngineOptions {
  /** When to reuse. */
  policy: CachePolicy;
  /** How to turn a cached value into the value used. @defaultValue plain reuse */
  corrector?: Corrector;
  /** Backend of the run; when omitted, the one the model passes to `beginForward` is used. */
  backend?: Backend;
  /**
   * Most bytes the cache may hold across steps; past it the engine computes instead of caching
   * more and counts it in `summary().memory.budgetRefusals`. @defaultValue Infinity
   */
  memoryBudgetBytes?: number;
  /** Called each time the budget refuses to keep a value. */
  onBudgetExceeded?: (event: { site: string; step: number; bytes: number; budgetBytes: number }) => void;
}

/** A group of batch rows decided together: the whole batch, or one CFG half. */
interface Lane {
  readonly key: string;
  readonly half: BatchHalf | undefined;
  readonly rows: readonly number[];
  /** True when the lane is the whole batch in order (no row gathering needed). */
  readonly whole: boolean;
}

/** The cache of one site for one lane. */
interface SiteState {
  history: ComputedValue[];
  lastComputedStep: number | undefined;
  consecutiveReuses: number;
  budgetLimited: boolean;
}

interface LaneDecision {
  readonly lane: Lane;
  readonly state: SiteState;
  readonly decision: Decision;
}

/** A block range assembled from per-block calls, being computed in the current forward. */
interface Recording {
  readonly site: SiteId;
  readonly decisions: readonly LaneDecision[];
  readonly inputCopy: Tensor;
}

interface SignalReference {
  reference?: Tensor;
  pending?: Tensor;
}

interface RangePlan {
  readonly fullStack: boolean;
  readonly byStart: ReadonlyMap<number, BlockRange>;
}

const BRANCHES = ["attn", "mlp"] as const;
const KIND_ORDER = { blocks: 0, block: 1, attn: 2, mlp: 3 } as const;

function bytesOf(tensor: Tensor): number {
  return sizeOf(tensor.shape) * 4;
}

/**
 * A {@link SiteHook} that caches features for ONE sampling run. It owns all the run's state
 * (histories, signals, statistics), so two engines never interfere; `dispose()` frees the cached
 * tensors. See {@link createCacheEngine}.
 */
export class CacheEngine implements SiteHook {
  readonly policy: CachePolicy;
  readonly corrector: Corrector;
  private readonly budgetBytes: number;
  private readonly onBudgetExceeded: CacheEngineOptions["onBudgetExceeded"];
  private readonly historyLength: number;
  private readonly handled: ReadonlySet<string>;
  private readonly signalRequests: readonly SignalRequest[];

  private backend: Backend | undefined;
  private math: TensorMath | undefined;
  private step: StepInfo | undefined;
  private lastStepIndex = -1;
  private lanes: Lane[] = [];
  private depth: number | undefined;
  private plan: RangePlan | undefined;
  private disposed = false;

  private readonly states = new Map<string, SiteState>();
  private readonly references = new Map<string, SignalReference>();
  private readonly signalLog = new Map<string, Map<number, Map<string, number>>>();
  private readonly signalValues = new Map<string, number[]>();

  // Per-forward state.
  private inFlight = 0;
  private skipUntil: number | undefined;
  private readonly recordings = new Map<number, Recording>();
  private readonly reusedLanes = new Set<string>();

  // Accounting.
  private readonly stepsSeen = new Set<number>();
  private readonly reusedUnits = new Map<number, Set<string>>();
  private readonly decisions = new Map<string, { site: SiteId; cells: Map<number, string> }>();
  private readonly reuseCounts = new Map<string, number>();
  private readonly forced = { guard: 0, noCache: 0, shape: 0, budget: 0 };
  private macsFull = 0;
  private macsSkipped = 0;
  private currentBytes = 0;
  private peakBytes = 0;
  private budgetRefusals = 0;
  private maxBlockSeen = -1;

  constructor(options: CacheEngineOptions) {
    if (options === null || typeof options !== "object")
      invalidArgument("options", options, "an object with a policy");
    const { policy } = options;
    if (policy === null || typeof policy !== "object" || typeof policy.decide !== "function") {
      invalidArgument("options.policy", policy, 'a CachePolicy (e.g. parsePolicy("fora:interval=2"))');
    }
    const corrector = options.corrector ?? reuseCorrector();
    if (typeof corrector.correct !== "function") {
      invalidArgument("options.corrector", corrector, 'a Corrector (e.g. parseCorrector("taylor:order=1"))');
    }
    const budget = options.memoryBudgetBytes ?? Number.POSITIVE_INFINITY;
    if (typeof budget !== "number" || Number.isNaN(budget) || budget < 0) {
      invalidArgument("options.memoryBudgetBytes", budget, "a number of bytes >= 0");
    }
    if (!Number.isInteger(corrector.historyLength) || corrector.historyLength < 1) {
      invalidArgument("corrector.historyLength", corrector.historyLength, "an integer >= 1");
    }
    this.policy = policy;
    this.corrector = corrector;
    this.budgetBytes = budget;
    this.onBudgetExceeded = options.onBudgetExceeded;
    this.historyLength = corrector.historyLength;
    this.handled = new Set(policy.sites);
    this.signalRequests = policy.signals ?? [];
    if (options.backend) this.useBackend(options.backend);
  }

  // ---------------------------------------------------------------- hook

  /** Starts a model forward: the engine learns the step, its batch rows and the backend. */
  beginForward(step: StepInfo, backend: Backend): void {
    this.ensureOpen();
    if (this.step !== undefined) this.finishForward();
    this.useBackend(backend);
    if (!Number.isInteger(step.index) || step.index < 0)
      invalidArgument("step.index", step.index, "an integer >= 0");
    if (step.index < this.lastStepIndex) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `step.index: expected >= ${this.lastStepIndex} (a CacheEngine serves one sampling run; create a new engine per run), got ${step.index}`,
      );
    }
    if (
      !Array.isArray(step.rows) ||
      step.rows.length === 0 ||
      step.rows.some((row) => row !== "cond" && row !== "uncond")
    ) {
      invalidArgument("step.rows", step.rows, "a non-empty list of 'cond' | 'uncond'");
    }
    this.lastStepIndex = step.index;
    this.step = step;
    this.stepsSeen.add(step.index);
    this.lanes = this.lanesOf(step.rows);
  }

  /** Ends a model forward: commits the signal references of lanes that reused nothing. */
  endForward(): void {
    if (this.step !== undefined) this.finishForward();
  }

  /** Computes or reuses one site. */
  async run(call: SiteCall): Promise<Tensor> {
    const value = await this.enter(call, false);
    return isWeightedSum(value) ? this.math!.combine(value.terms) : value;
  }

  /**
   * Computes or reuses one branch site; a value reused for the whole batch comes back as the
   * corrector's terms (history tensors the engine keeps, priors the corrector keeps), which the
   * model applies inside its gated residual: no copy of the cached value, no combined tensor.
   */
  runBranch(call: SiteCall): Promise<Tensor | WeightedSum> {
    return this.enter(call, true);
  }

  /** `sum`: a whole-batch reused branch may be answered as a weighted sum. */
  private async enter(call: SiteCall, sum: boolean): Promise<Tensor | WeightedSum> {
    this.ensureOpen();
    if (this.step === undefined || this.step.index !== call.step.index) {
      // Models that skip beginForward still get one forward per step.
      if (this.backend === undefined) {
        throw new DitcacheError(
          "INVALID_ARGUMENT",
          "CacheEngine: no backend: pass options.backend or call beginForward(step, backend) first",
        );
      }
      this.beginForward(call.step, this.backend);
    }
    if (this.inFlight === 0) this.macsFull += call.macs;
    this.noteSite(call.site);
    this.inFlight++;
    try {
      return await this.dispatch(call, sum);
    } finally {
      this.inFlight--;
    }
  }

  // ---------------------------------------------------------------- dispatch

  private async dispatch(call: SiteCall, sum: boolean): Promise<Tensor | WeightedSum> {
    const site = call.site;
    if (site.kind === "blocks") {
      await this.measureIndicator(call);
      if (this.handled.has("blocks") && this.rangePlan(site).fullStack && site.block === 0) {
        return this.processSite(call, "residual");
      }
      return this.computePlain(call, "residual");
    }
    if (site.kind === "block") return this.processBlock(call);
    if (this.handled.has(site.kind)) return this.processSite(call, "branch", sum);
    return this.computePlain(call, "branch");
  }

  private async processBlock(call: SiteCall): Promise<Tensor> {
    const block = call.site.block;
    if (this.skipUntil !== undefined && block <= this.skipUntil) {
      // Inside a reused range: the range's residual was already added at its first block.
      if (block === this.skipUntil) this.skipUntil = undefined;
      this.skip(call, call.site);
      return this.math!.copy(call.input);
    }
    const range = this.handled.has("blocks") ? this.virtualRangeAt(block) : undefined;
    if (range !== undefined) {
      const rangeSite = siteId("blocks", range.start, range.end);
      const decided = this.decideLanes(rangeSite, call.input, "residual");
      if (decided.every((entry) => entry.decision === "reuse")) {
        const out = await this.reuseAll(rangeSite, decided, call.input, "residual");
        this.skip(call, rangeSite);
        this.record(rangeSite, "R");
        if (range.end > block) this.skipUntil = range.end;
        return out;
      }
      const inputCopy = await this.math!.copy(call.input);
      this.hold(inputCopy);
      this.recordings.set(range.end, { site: rangeSite, decisions: decided, inputCopy });
    }
    const out = this.handled.has("block")
      ? await this.processSite(call, "residual")
      : await this.computePlain(call, "residual");
    const recording = this.recordings.get(block);
    if (recording === undefined) return out;
    this.recordings.delete(block);
    return this.finishRecording(recording, out);
  }

  /** A site the policy does not decide on: compute, measuring it when a signal reads it. */
  private async computePlain(call: SiteCall, kind: "branch" | "residual"): Promise<Tensor> {
    const out = await call.compute();
    const requests = this.signalRequests.filter((request) => request.source === call.site.key);
    if (requests.length > 0) {
      const value = kind === "branch" ? await this.math!.copy(out) : await this.math!.sub(out, call.input);
      await this.measure(requests, value);
    }
    return out;
  }

  /** A site the policy decides on (branch output or residual of a block / the whole stack). */
  private processSite(call: SiteCall, kind: "residual"): Promise<Tensor>;
  private processSite(
    call: SiteCall,
    kind: "branch" | "residual",
    sum: boolean,
  ): Promise<Tensor | WeightedSum>;
  private async processSite(
    call: SiteCall,
    kind: "branch" | "residual",
    sum = false,
  ): Promise<Tensor | WeightedSum> {
    const site = call.site;
    const decided = this.decideLanes(site, call.input, kind);
    if (decided.every((entry) => entry.decision === "reuse")) {
      const whole = decided.length === 1 && decided[0]!.lane.whole;
      const out =
        sum && whole && kind === "branch"
          ? await this.reuseAsSum(site, decided[0]!)
          : await this.reuseAll(site, decided, call.input, kind);
      this.skip(call, site);
      this.record(site, "R");
      return out;
    }
    const out = await call.compute();
    const value = kind === "branch" ? out : await this.math!.sub(out, call.input);
    // A branch computed for the whole batch through runBranch is kept as it is, and handed to the
    // model as a one-term weighted sum (whose tensors stay the hook's): no copy.
    const adopt = sum && kind === "branch" && decided.length === 1 && decided[0]!.lane.whole;
    try {
      await this.measureSite(site, value);
      if (await this.storeComputed(site, decided, value, adopt)) {
        this.record(site, "C");
        return { terms: [{ tensor: out, weight: 1 }] };
      }
      return await this.substituteReused(site, decided, out, call.input, kind);
    } finally {
      if (value !== out) this.backend!.dispose(value);
    }
  }

  private async finishRecording(recording: Recording, out: Tensor): Promise<Tensor> {
    const residual = await this.math!.sub(out, recording.inputCopy);
    try {
      await this.measureSite(recording.site, residual);
      await this.storeComputed(recording.site, recording.decisions, residual);
      return await this.substituteReused(
        recording.site,
        recording.decisions,
        out,
        recording.inputCopy,
        "residual",
      );
    } finally {
      this.backend!.dispose(residual);
      this.release(recording.inputCopy);
    }
  }

  // ---------------------------------------------------------------- decisions

  private decideLanes(site: SiteId, input: Tensor, kind: "branch" | "residual"): LaneDecision[] {
    const step = this.step!;
    return this.lanes.map((lane) => {
      const state = this.stateOf(site, lane);
      const query: DecisionQuery = {
        site,
        step,
        half: lane.half,
        depth: this.depth,
        lastComputedStep: state.lastComputedStep,
        consecutiveReuses: state.consecutiveReuses,
        signal: (name, at = step.index) => this.signalLog.get(lane.key)?.get(at)?.get(name),
      };
      let decision = this.policy.decide(query);
      if (decision !== "compute" && decision !== "reuse") {
        throw new DitcacheError(
          "INVALID_ARGUMENT",
          `${this.policy.name}.decide: expected "compute" or "reuse", got ${String(decision)}`,
        );
      }
      if (decision === "reuse") {
        const cached = state.history[0]?.value;
        if (this.policy.guards && guardForcesCompute(this.policy.guards, step, state.consecutiveReuses)) {
          this.forced.guard++;
          decision = "compute";
        } else if (cached === undefined) {
          if (state.budgetLimited) this.forced.budget++;
          else this.forced.noCache++;
          decision = "compute";
        } else if (!this.fits(cached, input, lane, kind)) {
          this.forced.shape++;
          decision = "compute";
        }
      }
      return { lane, state, decision };
    });
  }

  private fits(cached: Tensor, input: Tensor, lane: Lane, kind: "branch" | "residual"): boolean {
    if (cached.shape[0] !== lane.rows.length) return false;
    if (kind === "branch") return true;
    return (
      cached.shape.length === input.shape.length &&
      cached.shape.every((dim, i) => i === 0 || dim === input.shape[i])
    );
  }

  // ---------------------------------------------------------------- reuse

  /** The corrected value of one lane; `borrowed` when it is a history tensor the engine keeps. */
  private async corrected(
    site: SiteId,
    entry: LaneDecision,
    kind: "branch" | "residual",
  ): Promise<{ tensor: Tensor; borrowed: boolean }> {
    const context = this.correctionContext(site, entry, kind);
    const tensor = await this.corrector.correct(context);
    return { tensor, borrowed: context.history.some((item) => item.value === tensor) };
  }

  /** A branch reused for the whole batch, as the corrector's terms (a borrowed value: weight 1). */
  private async reuseAsSum(site: SiteId, entry: LaneDecision): Promise<Tensor | WeightedSum> {
    let out: Tensor | WeightedSum;
    if (this.corrector.correctTerms !== undefined) {
      out = { terms: await this.corrector.correctTerms(this.correctionContext(site, entry, "branch")) };
    } else {
      const { tensor, borrowed } = await this.corrected(site, entry, "branch");
      out = borrowed ? { terms: [{ tensor, weight: 1 }] } : tensor;
    }
    this.noteReuse(site, [entry]);
    return out;
  }

  /** What the corrector sees for one lane. */
  private correctionContext(
    site: SiteId,
    entry: LaneDecision,
    kind: "branch" | "residual",
  ): CorrectionContext {
    const { state, lane } = entry;
    const history = state.history;
    const source = history[0]!;
    const step = this.step!;
    return {
      site,
      key: site.key,
      half: lane.half,
      step,
      sourceStep: source.step,
      distance: step.index - source.step,
      cached: source.value,
      history,
      valueKind: kind,
      backend: this.backend!,
      math: this.math!,
    };
  }

  private async reuseAll(
    site: SiteId,
    decided: readonly LaneDecision[],
    input: Tensor,
    kind: "branch" | "residual",
  ): Promise<Tensor> {
    const parts: { tensor: Tensor; borrowed: boolean }[] = [];
    try {
      for (const entry of decided) parts.push(await this.corrected(site, entry, kind));
      this.noteReuse(site, decided);
      const single = parts.length === 1 && decided[0]!.lane.whole ? parts[0]! : undefined;
      if (kind === "residual") {
        if (single !== undefined) return await this.math!.add(input, single.tensor);
        const merged = await this.math!.select(
          parts.map((part) => part.tensor),
          this.rowSources(decided.map((entry) => entry.lane)),
        );
        try {
          return await this.math!.add(input, merged);
        } finally {
          this.backend!.dispose(merged);
        }
      }
      if (single !== undefined) {
        if (single.borrowed) return await this.math!.copy(single.tensor);
        parts.length = 0; // the corrector's fresh tensor goes to the model as is
        return single.tensor;
      }
      return await this.math!.select(
        parts.map((part) => part.tensor),
        this.rowSources(decided.map((entry) => entry.lane)),
      );
    } finally {
      for (const part of parts) if (!part.borrowed) this.backend!.dispose(part.tensor);
    }
  }

  /** After a compute where some lanes reused: replaces those lanes' rows by their cached values. */
  private async substituteReused(
    site: SiteId,
    decided: readonly LaneDecision[],
    out: Tensor,
    input: Tensor,
    kind: "branch" | "residual",
  ): Promise<Tensor> {
    const reused = decided.filter((entry) => entry.decision === "reuse");
    if (reused.length === 0) {
      this.record(site, "C");
      return out;
    }
    const parts: Tensor[] = [out];
    const sources: RowSource[] = [];
    const rowSource = new Map<number, RowSource>();
    try {
      for (const entry of reused) {
        const { tensor, borrowed } = await this.corrected(site, entry, kind);
        let laneOut = tensor;
        if (kind === "residual") {
          const laneInput = await this.math!.select(
            [input],
            entry.lane.rows.map((row) => ({ part: 0, row })),
          );
          laneOut = await this.math!.add(laneInput, tensor);
          this.backend!.dispose(laneInput);
          if (!borrowed) this.backend!.dispose(tensor);
        } else if (borrowed) {
          laneOut = await this.math!.copy(tensor);
        }
        parts.push(laneOut);
        for (const [i, row] of entry.lane.rows.entries())
          rowSource.set(row, { part: parts.length - 1, row: i });
      }
      for (let row = 0; row < this.step!.rows.length; row++)
        sources.push(rowSource.get(row) ?? { part: 0, row });
      this.noteReuse(site, reused);
      this.record(site, "H");
      return await this.math!.select(parts, sources);
    } finally {
      this.backend!.dispose(out);
      for (const part of parts.slice(1)) this.backend!.dispose(part);
    }
  }

  private noteReuse(site: SiteId, entries: readonly LaneDecision[]): void {
    for (const entry of entries) {
      entry.state.consecutiveReuses++;
      this.reusedLanes.add(entry.lane.key);
    }
    if (entries.length === this.lanes.length)
      this.reuseCounts.set(site.key, (this.reuseCounts.get(site.key) ?? 0) + 1);
  }

  // ---------------------------------------------------------------- storing

  /**
   * Keeps each computing lane's value in its history (a copy, or with `adopt` and a whole-batch
   * lane the value itself); returns whether `value` itself was kept, so it now belongs here.
   */
  private async storeComputed(
    site: SiteId,
    decided: readonly LaneDecision[],
    value: Tensor,
    adopt = false,
  ): Promise<boolean> {
    const step = this.step!.index;
    let adopted = false;
    for (const entry of decided) {
      if (entry.decision !== "compute") continue;
      const { state, lane } = entry;
      state.lastComputedStep = step;
      state.consecutiveReuses = 0;
      const bytes = (sizeOf(value.shape) / this.step!.rows.length) * lane.rows.length * 4;
      const evicted =
        state.history.length >= this.historyLength
          ? bytesOf(state.history[state.history.length - 1]!.value)
          : 0;
      if (this.currentBytes + bytes - evicted > this.budgetBytes) {
        this.dropHistory(state);
        state.budgetLimited = true;
        this.budgetRefusals++;
        this.onBudgetExceeded?.({ site: site.key, step, bytes, budgetBytes: this.budgetBytes });
        continue;
      }
      // Evict first, so the budget holds at every instant.
      while (state.history.length >= this.historyLength) this.release(state.history.pop()!.value);
      adopted = adopt && lane.whole;
      const kept = adopted
        ? value
        : lane.whole
          ? await this.math!.copy(value)
          : await this.math!.select(
              [value],
              lane.rows.map((row) => ({ part: 0, row })),
            );
      state.history.unshift({ step, value: kept });
      this.hold(kept);
      state.budgetLimited = false;
    }
    return adopted;
  }

  private dropHistory(state: SiteState): void {
    for (const item of state.history) this.release(item.value);
    state.history = [];
  }

  private hold(tensor: Tensor): void {
    this.currentBytes += bytesOf(tensor);
    this.peakBytes = Math.max(this.peakBytes, this.currentBytes);
  }

  private release(tensor: Tensor): void {
    this.currentBytes -= bytesOf(tensor);
    this.backend!.dispose(tensor);
  }

  // ---------------------------------------------------------------- signals

  private async measureIndicator(call: SiteCall): Promise<void> {
    const requests = this.signalRequests.filter((request) => request.source === "indicator");
    if (requests.length === 0 || call.site.block !== 0) return;
    if (call.indicator === undefined) {
      throw new DitcacheError(
        "UNSUPPORTED",
        `${this.policy.name}: the model offers no indicator on site ${call.site.key} (the policy needs the timestep-modulated input of block 0)`,
      );
    }
    await this.measure(requests, await call.indicator());
  }

  private async measureSite(site: SiteId, value: Tensor): Promise<void> {
    const requests = this.signalRequests.filter((request) => request.source === site.key);
    if (requests.length > 0) await this.measure(requests, await this.math!.copy(value));
  }

  /** Measures signals on a value the engine owns (and consumes). */
  private async measure(requests: readonly SignalRequest[], value: Tensor): Promise<void> {
    const step = this.step!.index;
    try {
      for (const request of requests) {
        for (const lane of this.lanes) {
          const laneValue = await this.math!.select(
            [value],
            lane.rows.map((row) => ({ part: 0, row })),
          );
          const key = `${request.name}|${lane.key}`;
          let reference = this.references.get(key);
          if (reference === undefined) {
            reference = {};
            this.references.set(key, reference);
          }
          const previous = reference.reference;
          if (
            previous !== undefined &&
            previous.shape.length === laneValue.shape.length &&
            previous.shape.every((d, i) => d === laneValue.shape[i])
          ) {
            const sums = await this.math!.rowAbsSums(laneValue, previous);
            let difference = 0;
            let base = 0;
            for (let i = 0; i < sums.difference.length; i++) {
              difference += sums.difference[i]!;
              base += sums.reference[i]!;
            }
            const relative = base > 0 ? difference / base : difference > 0 ? Number.MAX_VALUE : 0;
            this.logSignal(lane.key, step, request.name, relative);
          }
          this.hold(laneValue);
          if (request.reference === "previousStep") {
            if (previous !== undefined) this.release(previous);
            reference.reference = laneValue;
          } else {
            if (reference.pending !== undefined) this.release(reference.pending);
            reference.pending = laneValue;
          }
        }
      }
    } finally {
      this.backend!.dispose(value);
    }
  }

  private logSignal(lane: string, step: number, name: string, value: number): void {
    let byStep = this.signalLog.get(lane);
    if (byStep === undefined) {
      byStep = new Map();
      this.signalLog.set(lane, byStep);
    }
    let byName = byStep.get(step);
    if (byName === undefined) {
      byName = new Map();
      byStep.set(step, byName);
    }
    byName.set(name, value);
    let values = this.signalValues.get(name);
    if (values === undefined) {
      values = [];
      this.signalValues.set(name, values);
    }
    values.push(value);
  }

  private finishForward(): void {
    for (const request of this.signalRequests) {
      if (request.reference !== "lastFullStep") continue;
      for (const lane of this.lanes) {
        const reference = this.references.get(`${request.name}|${lane.key}`);
        if (reference?.pending === undefined) continue;
        if (!this.reusedLanes.has(lane.key) || reference.reference === undefined) {
          if (reference.reference !== undefined) this.release(reference.reference);
          reference.reference = reference.pending;
        } else {
          this.release(reference.pending);
        }
        reference.pending = undefined;
      }
    }
    for (const recording of this.recordings.values()) this.release(recording.inputCopy);
    this.recordings.clear();
    this.reusedLanes.clear();
    this.skipUntil = undefined;
    this.step = undefined;
  }

  // ---------------------------------------------------------------- ranges and lanes

  private rangePlan(site: SiteId): RangePlan {
    if (site.kind === "blocks" && site.block === 0) this.depth = site.end + 1;
    if (this.plan !== undefined) return this.plan;
    const depth = this.depth;
    if (depth === undefined) {
      throw new DitcacheError(
        "UNSUPPORTED",
        `${this.policy.name}: block ranges need the model depth, but the model called no "blocks" site starting at block 0`,
      );
    }
    const ranges = [...(this.policy.ranges?.(depth) ?? [{ start: 0, end: depth - 1 }])].sort(
      (a, b) => a.start - b.start,
    );
    let previousEnd = -1;
    for (const range of ranges) {
      if (
        !Number.isInteger(range.start) ||
        !Number.isInteger(range.end) ||
        range.start < 0 ||
        range.end >= depth ||
        range.end < range.start
      ) {
        invalidArgument(
          `${this.policy.name}.ranges`,
          [range.start, range.end],
          `ranges inside [0, ${depth - 1}]`,
        );
      }
      if (range.start <= previousEnd) {
        invalidArgument(`${this.policy.name}.ranges`, [range.start, range.end], "ranges that do not overlap");
      }
      previousEnd = range.end;
    }
    const fullStack = ranges.some((range) => range.start === 0 && range.end === depth - 1);
    const byStart = new Map<number, BlockRange>();
    for (const range of ranges)
      if (!(range.start === 0 && range.end === depth - 1)) byStart.set(range.start, range);
    this.plan = { fullStack, byStart };
    return this.plan;
  }

  private virtualRangeAt(block: number): BlockRange | undefined {
    if (this.plan === undefined) {
      if (this.depth === undefined) {
        throw new DitcacheError(
          "UNSUPPORTED",
          `${this.policy.name}: block ranges need the model depth, but the model called no "blocks" site starting at block 0`,
        );
      }
      this.rangePlan(siteId("blocks", 0, this.depth - 1));
    }
    return this.plan!.byStart.get(block);
  }

  private lanesOf(rows: readonly BatchHalf[]): Lane[] {
    const all = rows.map((_, i) => i);
    if (!this.policy.perHalf) return [{ key: rows.join(","), half: undefined, rows: all, whole: true }];
    const halves: BatchHalf[] = [];
    for (const row of rows) if (!halves.includes(row)) halves.push(row);
    return halves.map((half) => {
      const laneRows = all.filter((i) => rows[i] === half);
      return { key: half, half, rows: laneRows, whole: laneRows.length === rows.length };
    });
  }

  private rowSources(lanes: readonly Lane[]): RowSource[] {
    const sources: RowSource[] = [];
    lanes.forEach((lane, part) => {
      lane.rows.forEach((row, i) => {
        sources[row] = { part, row: i };
      });
    });
    return sources;
  }

  private stateOf(site: SiteId, lane: Lane): SiteState {
    const key = `${site.key}|${lane.key}`;
    let state = this.states.get(key);
    if (state === undefined) {
      state = { history: [], lastComputedStep: undefined, consecutiveReuses: 0, budgetLimited: false };
      this.states.set(key, state);
    }
    return state;
  }

  // ---------------------------------------------------------------- accounting

  private noteSite(site: SiteId): void {
    if (site.kind === "blocks" && site.block === 0) this.depth = site.end + 1;
    this.maxBlockSeen = Math.max(this.maxBlockSeen, site.end);
  }

  /** A call whose computation did not run. */
  private skip(call: SiteCall, reused: SiteId): void {
    this.macsSkipped += call.macs;
    const step = this.step!.index;
    let units = this.reusedUnits.get(step);
    if (units === undefined) {
      units = new Set();
      this.reusedUnits.set(step, units);
    }
    const covered = call.site.kind === "block" && reused.kind === "blocks" ? call.site : reused;
    if (covered.kind === "attn" || covered.kind === "mlp") units.add(`${covered.block}.${covered.kind}`);
    else
      for (let block = covered.block; block <= covered.end; block++)
        for (const branch of BRANCHES) units.add(`${block}.${branch}`);
  }

  private record(site: SiteId, cell: string): void {
    let entry = this.decisions.get(site.key);
    if (entry === undefined) {
      entry = { site, cells: new Map() };
      this.decisions.set(site.key, entry);
    }
    entry.cells.set(this.step!.index, cell);
  }

  private useBackend(backend: Backend): void {
    if (backend === null || typeof backend !== "object" || typeof backend.compile !== "function") {
      invalidArgument("backend", backend, "a Backend");
    }
    if (this.backend === undefined) {
      this.backend = backend;
      this.math = new TensorMath(backend);
    } else if (this.backend !== backend) {
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        `backend: expected the backend this engine already uses ("${this.backend.name}"), got another ("${backend.name}"); create one engine per run`,
      );
    }
  }

  private ensureOpen(): void {
    if (this.disposed)
      throw new DitcacheError(
        "INVALID_ARGUMENT",
        "CacheEngine: used after dispose(); create a new engine per run",
      );
  }

  // ---------------------------------------------------------------- public

  /** What the run did so far: decisions, caching level, MACs, signals, memory. JSON-serialisable. */
  summary(): CacheSummary {
    const depth = this.depth ?? this.maxBlockSeen + 1;
    const steps = [...this.stepsSeen].sort((a, b) => a - b);
    const columns = [...this.decisions.values()].sort(
      (a, b) =>
        a.site.block - b.site.block ||
        KIND_ORDER[a.site.kind] - KIND_ORDER[b.site.kind] ||
        a.site.end - b.site.end,
    );
    let reused = 0;
    for (const units of this.reusedUnits.values()) reused += units.size;
    const total = 2 * Math.max(depth, 0) * steps.length;
    const signals: Record<string, ReturnType<typeof signalStatistics>> = {};
    for (const [name, values] of this.signalValues) signals[name] = signalStatistics(values);
    const computed = this.macsFull - this.macsSkipped;
    return {
      policy: this.policy.spec,
      corrector: this.corrector.spec,
      steps: steps.length,
      depth: Math.max(depth, 0),
      sites: columns.map((column) => column.site.key),
      decisions: steps.map((step) => columns.map((column) => column.cells.get(step) ?? "-").join("")),
      cachingLevel: total > 0 ? reused / total : 0,
      macs: { computed, full: this.macsFull, ratio: this.macsFull > 0 ? computed / this.macsFull : 1 },
      reuseCounts: Object.fromEntries(
        columns.map((column) => [column.site.key, this.reuseCounts.get(column.site.key) ?? 0]),
      ),
      forcedComputes: { ...this.forced },
      signals,
      memory: {
        currentBytes: this.currentBytes,
        peakBytes: this.peakBytes,
        budgetBytes: Number.isFinite(this.budgetBytes) ? this.budgetBytes : null,
        budgetRefusals: this.budgetRefusals,
      },
    };
  }

  /** Frees every tensor the cache holds. The engine cannot be used afterwards; disposing twice is a no-op. */
  dispose(): void {
    if (this.disposed) return;
    if (this.backend !== undefined) {
      for (const state of this.states.values()) this.dropHistory(state);
      for (const reference of this.references.values()) {
        if (reference.reference !== undefined) this.release(reference.reference);
        if (reference.pending !== undefined) this.release(reference.pending);
      }
      for (const recording of this.recordings.values()) this.release(recording.inputCopy);
    }
    this.states.clear();
    this.references.clear();
    this.recordings.clear();
    this.disposed = true;
  }
}

/**
 * Creates the cache engine for ONE sampling run; pass it as the model's site hook.
 *
 * @example
 * const engine = createCacheEngine({ policy: parsePolicy("fora:interval=2"), corrector: parseCorrector("taylor:order=1") });
 * const images = await sample({ ..., hook: engine });
 * console.log(engine.summary().cachingLevel); // 0.5
 * engine.dispose();
 */
export function createCacheEngine(options: CacheEngineOptions): CacheEngine {
  return new CacheEngine(options);
}
