import { parentPort, workerData } from "node:worker_threads";
import { DitcacheError } from "@ditcache/core";
import type { DiTModel } from "@ditcache/dit";
import { createBackend } from "@ditcache/pipeline";
import { compareRuns } from "./compare.js";
import { describeModel, loadModel } from "./model-source.js";
import type { FromWorker, ModelSource, ToWorker } from "./protocol.js";
import { prepareRegistry } from "./registry-setup.js";

/** What the main thread gives a worker when it starts it. */
export interface WorkerSetup {
  readonly backend: string;
  readonly modelSource: ModelSource;
}

const port = parentPort!;
const post = (message: FromWorker): void => port.postMessage(message);

/**
 * One tiny uncached and cached run before the first job, so the first measured run does not pay
 * for JIT compilation (cpu) or graph compilation (onnx) that the runs after it skip.
 */
async function warmUp(model: DiTModel): Promise<void> {
  const request = {
    labels: [0],
    seed: 0,
    steps: 2,
    sampler: "ddim",
    cfgScale: 4,
    policy: "",
    corrector: "",
  } as const;
  await compareRuns(model, request, { policy: "fora:interval=2", corrector: "taylor" });
}

async function main(): Promise<void> {
  const setup = workerData as WorkerSetup;
  let model: DiTModel;
  try {
    prepareRegistry();
    const backend = await createBackend(setup.backend);
    model = await loadModel(setup.modelSource, backend);
    await warmUp(model);
    post({ type: "ready", model: describeModel(setup.modelSource, model, setup.backend) });
  } catch (error) {
    post({ type: "load-error", message: error instanceof Error ? error.message : String(error) });
    return;
  }

  port.on("message", (message: ToWorker) => {
    // The CPU backend never yields to the event loop during a run, so cancellation arrives
    // through shared memory, read after every step.
    const flag = new Int32Array(message.cancel);
    const controller = new AbortController();
    const check = () => {
      if (Atomics.load(flag, 0) !== 0 && !controller.signal.aborted) controller.abort(new Error("cancelled"));
    };
    check();
    compareRuns(model, message.request, {
      policy: message.policy,
      corrector: message.corrector,
      signal: controller.signal,
      warmUp: true,
      onProgress: (phase, step, count) => {
        check();
        post({ type: "progress", id: message.id, phase, step, count });
      },
    }).then(
      (result) => post({ type: "result", id: message.id, result }),
      (error: unknown) =>
        post({
          type: "failed",
          id: message.id,
          code: DitcacheError.isInstance(error) ? error.code : "INTERNAL",
          message: error instanceof Error ? error.message : String(error),
        }),
    );
  });
}

void main();
