import { randomUUID } from "node:crypto";
import type { JobRequest, JobResult, ModelInfo, RunPhase, RunReport } from "./protocol.js";
import type { ModelWorker, RunningTask } from "./worker-pool.js";

/** Where a job is. */
export type JobStatus = "queued" | "running" | "done" | "failed" | "cancelled";

/** A server-sent event of a job. */
export type JobEvent =
  | { readonly event: "queued"; readonly data: { readonly position: number } }
  | { readonly event: "started"; readonly data: { readonly phases: readonly RunPhase[] } }
  | {
      readonly event: "progress";
      readonly data: {
        readonly phase: RunPhase;
        readonly step: number;
        readonly count: number;
        /** Fraction of the whole job done, 0..1. */
        readonly fraction: number;
      };
    }
  | { readonly event: "result"; readonly data: JobResult }
  | { readonly event: "failed"; readonly data: { readonly code: string; readonly message: string } }
  | { readonly event: "cancelled"; readonly data: { readonly reason: string } };

/** Limits of {@link JobQueue}. */
export interface QueueLimits {
  /** Jobs waiting beyond the running ones; one more is refused (HTTP 429). @defaultValue 8 */
  maxWaiting?: number;
  /** Finished jobs whose results are kept for GET /result (oldest dropped first). @defaultValue 32 */
  maxFinished?: number;
}

/** One job's state. */
export interface Job {
  readonly id: string;
  readonly request: JobRequest;
  readonly policy: string;
  readonly corrector: string;
  readonly phases: readonly RunPhase[];
  status: JobStatus;
  result?: JobResult;
  error?: { code: string; message: string };
  /** Events so far, with only the latest progress event kept (for late subscribers). */
  readonly history: JobEvent[];
  readonly listeners: Set<(event: JobEvent) => void>;
  running?: RunningTask;
}

const TERMINAL: readonly JobStatus[] = ["done", "failed", "cancelled"];

/** True once a job will not change any more. */
export function isFinished(job: Job): boolean {
  return TERMINAL.includes(job.status);
}

/**
 * A bounded first-in first-out queue of generation jobs over model workers: each worker runs
 * one job at a time; jobs beyond the workers wait, and beyond `maxWaiting` are refused.
 */
export class JobQueue {
  readonly #workers: readonly ModelWorker[];
  readonly #jobs = new Map<string, Job>();
  readonly #waiting: Job[] = [];
  readonly #finished: string[] = [];
  readonly #maxWaiting: number;
  readonly #maxFinished: number;

  readonly #present: (run: RunReport) => RunReport;

  /**
   * @param present - Rewrites each run's report before clients see it (e.g. to drop the server's
   *   own spec parameters).
   */
  constructor(
    workers: readonly ModelWorker[],
    limits: QueueLimits = {},
    present: (run: RunReport) => RunReport = (run) => run,
  ) {
    this.#workers = workers;
    this.#present = present;
    this.#maxWaiting = limits.maxWaiting ?? 8;
    this.#maxFinished = limits.maxFinished ?? 32;
  }

  /** The model the workers hold. */
  get model(): ModelInfo {
    return this.#workers[0]!.model;
  }

  /** Jobs waiting and running. */
  get stats(): { waiting: number; running: number; maxWaiting: number; workers: number } {
    return {
      waiting: this.#waiting.length,
      running: this.#workers.filter((worker) => worker.busy).length,
      maxWaiting: this.#maxWaiting,
      workers: this.#workers.length,
    };
  }

  /** Queues a request (specs already validated and resolved); undefined when the queue is full. */
  submit(request: JobRequest, policy: string, corrector: string, withReuse: boolean): Job | undefined {
    const idle = this.#workers.some((worker) => !worker.busy);
    if (!idle && this.#waiting.length >= this.#maxWaiting) return undefined;
    const job: Job = {
      id: randomUUID(),
      request,
      policy,
      corrector,
      phases: withReuse ? ["uncached", "cached", "reuse"] : ["uncached", "cached"],
      status: "queued",
      history: [],
      listeners: new Set(),
    };
    this.#jobs.set(job.id, job);
    this.#waiting.push(job);
    this.#emit(job, { event: "queued", data: { position: this.#waiting.length } });
    this.#dispatch();
    return job;
  }

  /** A job by id, while it is kept. */
  get(id: string): Job | undefined {
    return this.#jobs.get(id);
  }

  /** Listens to a job's events: first its history, then live ones. Returns the unsubscribe. */
  subscribe(job: Job, listener: (event: JobEvent) => void): () => void {
    for (const event of job.history) listener(event);
    if (isFinished(job)) return () => {};
    job.listeners.add(listener);
    return () => job.listeners.delete(listener);
  }

  /** Cancels a waiting or running job; a running one stops after its current step. */
  cancel(id: string, reason: string): boolean {
    const job = this.#jobs.get(id);
    if (job === undefined || isFinished(job)) return false;
    if (job.status === "queued") {
      this.#waiting.splice(this.#waiting.indexOf(job), 1);
      this.#announcePositions();
    }
    job.running?.cancel();
    this.#settle(job, "cancelled", { event: "cancelled", data: { reason } });
    return true;
  }

  /** Cancels everything (server shutdown). */
  cancelAll(reason: string): void {
    for (const job of [...this.#jobs.values()]) this.cancel(job.id, reason);
  }

  #emit(job: Job, event: JobEvent): void {
    const last = job.history.at(-1);
    if (event.event === last?.event && (event.event === "progress" || event.event === "queued"))
      job.history.pop();
    job.history.push(event);
    for (const listener of job.listeners) listener(event);
  }

  #settle(job: Job, status: JobStatus, event: JobEvent): void {
    job.status = status;
    this.#emit(job, event);
    job.listeners.clear();
    this.#finished.push(job.id);
    while (this.#finished.length > this.#maxFinished) this.#jobs.delete(this.#finished.shift()!);
  }

  #announcePositions(): void {
    for (const [index, job] of this.#waiting.entries()) {
      this.#emit(job, { event: "queued", data: { position: index + 1 } });
    }
  }

  #dispatch(): void {
    for (const worker of this.#workers) {
      if (worker.busy) continue;
      const job = this.#waiting.shift();
      if (job === undefined) return;
      this.#announcePositions();
      this.#start(worker, job);
    }
  }

  #start(worker: ModelWorker, job: Job): void {
    job.status = "running";
    this.#emit(job, { event: "started", data: { phases: job.phases } });
    job.running = worker.run({
      id: job.id,
      request: job.request,
      policy: job.policy,
      corrector: job.corrector,
      onProgress: (phase, step, count) => {
        if (job.status !== "running") return;
        const done = job.phases.indexOf(phase) + step / count;
        this.#emit(job, {
          event: "progress",
          data: { phase, step, count, fraction: done / job.phases.length },
        });
      },
    });
    void job.running.outcome.then((outcome) => {
      job.running = undefined;
      if (job.status === "running") {
        if (outcome.ok) {
          job.result = {
            id: job.id,
            request: job.request,
            model: worker.model,
            ...outcome.result,
            runs: outcome.result.runs.map(this.#present),
          };
          this.#settle(job, "done", { event: "result", data: job.result });
        } else {
          job.error = { code: outcome.code, message: outcome.message };
          this.#settle(job, "failed", { event: "failed", data: job.error });
        }
      }
      this.#dispatch();
    });
  }
}
