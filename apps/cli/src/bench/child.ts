import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { DitcacheError } from "@ditcache/core";
import type { BenchTask, CacheResult, ForwardResult } from "./tasks.js";

/** Environment variable through which `ditcache bench` hands a task to a child process of itself. */
export const TASK_ENV = "DITCACHE_BENCH_TASK";
const RESULT_PREFIX = "@@ditcache-bench-result ";

/** Prints a task's result where the parent looks for it. */
export function printTaskResult(result: unknown): void {
  console.log(`${RESULT_PREFIX}${JSON.stringify(result)}`);
}

/**
 * Runs a task in a fresh process of this same program (same node flags and loader, so it works
 * from source under tsx as well as from dist): its maxRSS is then the task's own peak.
 */
export function runTaskInChild<T extends ForwardResult | CacheResult>(task: BenchTask): Promise<T> {
  const script = process.argv[1];
  if (script === undefined)
    throw new DitcacheError("UNSUPPORTED", "bench: cannot find this program's entry script to start a child");
  return runForJson<T>(
    process.execPath,
    [...process.execArgv, script, "bench"],
    {
      ...process.env,
      [TASK_ENV]: JSON.stringify(task),
    },
    (stdout) => {
      const line = stdout.split("\n").find((candidate) => candidate.startsWith(RESULT_PREFIX));
      return line === undefined ? undefined : line.slice(RESULT_PREFIX.length);
    },
  );
}

/** What the PyTorch reference script prints (tools/reference/bench_torch.py). */
export interface TorchResult {
  readonly preset: string;
  readonly threads: number;
  readonly torch: string;
  readonly ms_forward_median: number;
  readonly ms_forward_min: number;
  readonly ms_ddim20: number | null;
  readonly gflops: number;
  readonly peak_rss_mb: number;
}

/** The Python of the repository's venv, when it exists. */
export function torchPython(root = process.cwd()): string | undefined {
  const path = `${root}/.venv/bin/python`;
  return existsSync(path) ? path : undefined;
}

/** How to get the PyTorch row when there is no venv. */
export const TORCH_SETUP_HINT =
  "PyTorch row skipped: no .venv; run `python3 -m venv .venv && .venv/bin/pip install torch numpy safetensors`";

/** Runs the PyTorch eager reference for a preset on the CPU. */
export function runTorch(
  python: string,
  options: { preset: string; threads: number; runs: number; ddim20: boolean },
): Promise<TorchResult> {
  const args = [
    "tools/reference/bench_torch.py",
    "--preset",
    options.preset,
    "--threads",
    String(options.threads),
    "--device",
    "cpu",
    "--warmup",
    "1",
    "--iters",
    String(options.runs),
    ...(options.ddim20 ? ["--ddim20"] : []),
  ];
  return runForJson<TorchResult>(python, args, process.env, (stdout) =>
    stdout
      .trim()
      .split("\n")
      .reverse()
      .find((line) => line.startsWith("{")),
  );
}

function runForJson<T>(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  pick: (stdout: string) => string | undefined,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const json = pick(stdout);
      if (code !== 0 || json === undefined) {
        const last = (stderr.trim().split("\n").at(-1) ?? "").trim();
        reject(
          new DitcacheError(
            "UNSUPPORTED",
            `bench: ${command} ${args.slice(-8).join(" ")} failed (exit ${code}): ${last}`,
          ),
        );
        return;
      }
      resolve(JSON.parse(json) as T);
    });
  });
}
