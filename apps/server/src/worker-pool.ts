import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { DitcacheError } from "@ditcache/core";
import type {
  FromWorker,
  JobRequest,
  JobResult,
  ModelInfo,
  ModelSource,
  RunPhase,
  ToWorker,
} from "./protocol.js";
import type { WorkerSetup } from "./worker.js";

/** One job handed to a worker. */
export interface WorkerTask {
  readonly id: string;
  readonly request: JobRequest;
  readonly policy: string;
  readonly corrector: string;
  readonly onProgress: (phase: RunPhase, step: number, count: number) => void;
}

/** What a worker returns for a task. */
export type WorkerOutcome =
  | { readonly ok: true; readonly result: Omit<JobResult, "id" | "request" | "model"> }
  | { readonly ok: false; readonly code: string; readonly message: string };

/** A running task: its outcome, and a way to stop it after the current step. */
export interface RunningTask {
  readonly outcome: Promise<WorkerOutcome>;
  cancel(): void;
}

/** URL of tsx's ESM loader API (its "import" export), found through tsx's package.json. */
function tsxLoaderUrl(): string {
  const manifestPath = createRequire(import.meta.url).resolve("tsx/package.json");
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8")) as {
    exports: Record<string, { import: { default: string } }>;
  };
  return new URL(manifest.exports["./esm/api"]!.import.default, pathToFileURL(manifestPath)).href;
}

function spawn(setup: WorkerSetup): Worker {
  // Built: dist/worker.js. From source (tests, tsx): worker.ts through tsx's loader, with the
  // "source" export condition so workspace packages resolve to their sources as here.
  if (import.meta.url.endsWith(".ts")) {
    const workerUrl = new URL("./worker.ts", import.meta.url).href;
    const tsx = tsxLoaderUrl();
    const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(workerUrl)}); })`;
    return new Worker(code, { eval: true, workerData: setup, execArgv: ["--conditions=source"] });
  }
  return new Worker(new URL("./worker.js", import.meta.url), { workerData: setup });
}

/**
 * How long {@link ModelWorker.close} waits for a running task to stop at its next step before it
 * terminates the thread anyway.
 */
const CLOSE_GRACE_MS = 60_000;

/**
 * One worker thread holding one loaded model; runs one task at a time. Model code (even the
 * synchronous cpu backend) runs there, so the server's event loop stays free.
 */
export class ModelWorker {
  #worker: Worker;
  #task:
    | {
        id: string;
        onProgress: WorkerTask["onProgress"];
        settle: (outcome: WorkerOutcome) => void;
        outcome: Promise<WorkerOutcome>;
        cancel: () => void;
      }
    | undefined;
  #closed = false;

  private constructor(
    worker: Worker,
    /** The loaded model. */
    readonly model: ModelInfo,
    private readonly setup: WorkerSetup,
  ) {
    this.#worker = worker;
    this.#attach();
  }

  /** Starts a worker and waits until its model is loaded. */
  static async start(backend: string, modelSource: ModelSource): Promise<ModelWorker> {
    const setup: WorkerSetup = { backend, modelSource };
    const worker = spawn(setup);
    const model = await ModelWorker.#ready(worker);
    return new ModelWorker(worker, model, setup);
  }

  static #ready(worker: Worker): Promise<ModelInfo> {
    return new Promise<ModelInfo>((resolve, reject) => {
      const fail = (message: string) => {
        void worker.terminate();
        reject(new DitcacheError("BACKEND_UNAVAILABLE", `model worker: ${message}`));
      };
      worker.once("message", (message: FromWorker) => {
        worker.removeAllListeners("error");
        worker.removeAllListeners("exit");
        if (message.type === "ready") resolve(message.model);
        else fail(message.type === "load-error" ? message.message : `unexpected message ${message.type}`);
      });
      worker.once("error", (error) => fail(error.message));
      worker.once("exit", (code) => fail(`exited with code ${code} while loading`));
    });
  }

  #attach(): void {
    this.#worker.on("message", (message: FromWorker) => {
      const task = this.#task;
      if (task === undefined || !("id" in message) || message.id !== task.id) return;
      if (message.type === "progress") task.onProgress(message.phase, message.step, message.count);
      else if (message.type === "result") this.#finish({ ok: true, result: message.result });
      else if (message.type === "failed")
        this.#finish({ ok: false, code: message.code, message: message.message });
    });
    this.#worker.on("error", (error) => this.#crashed(error.message));
    this.#worker.on("exit", (code) => this.#crashed(`exited with code ${code}`));
  }

  #finish(outcome: WorkerOutcome): void {
    const task = this.#task;
    this.#task = undefined;
    task?.settle(outcome);
  }

  #crashed(reason: string): void {
    if (this.#closed) return;
    this.#finish({ ok: false, code: "INTERNAL", message: `model worker ${reason}` });
    // Start a fresh worker so the next job has one; a failure to load leaves the old state closed.
    this.#worker.removeAllListeners();
    this.#worker = spawn(this.setup);
    ModelWorker.#ready(this.#worker).then(
      () => this.#attach(),
      () => {
        this.#closed = true;
      },
    );
  }

  /** True while a task runs. */
  get busy(): boolean {
    return this.#task !== undefined;
  }

  /** Runs a task; the worker must be idle. */
  run(task: WorkerTask): RunningTask {
    if (this.#task !== undefined)
      throw new DitcacheError("INVALID_ARGUMENT", "worker: already running a task");
    if (this.#closed) throw new DitcacheError("BACKEND_UNAVAILABLE", "worker: closed");
    const cancelFlag = new SharedArrayBuffer(4);
    const cancel = () => Atomics.store(new Int32Array(cancelFlag), 0, 1);
    let settle!: (outcome: WorkerOutcome) => void;
    const outcome = new Promise<WorkerOutcome>((resolve) => {
      settle = resolve;
    });
    this.#task = { id: task.id, onProgress: task.onProgress, settle, outcome, cancel };
    const message: ToWorker = {
      type: "run",
      id: task.id,
      request: task.request,
      policy: task.policy,
      corrector: task.corrector,
      cancel: cancelFlag,
    };
    this.#worker.postMessage(message);
    return { outcome, cancel };
  }

  /**
   * Stops the thread: a running task is cancelled first and given up to a minute to stop at its
   * next step, because terminating the thread inside a native ONNX Runtime call aborts the whole
   * process.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const task = this.#task;
    if (task !== undefined) {
      task.cancel();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        task.outcome,
        new Promise((resolve) => {
          timer = setTimeout(resolve, CLOSE_GRACE_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#finish({ ok: false, code: "ABORTED", message: "server closed" });
    this.#worker.removeAllListeners();
    await this.#worker.terminate();
  }
}
