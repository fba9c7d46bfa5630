import { createRequire } from "node:module";
import path from "node:path";
import { DitcacheError, invalidArgument } from "@ditcache/core";
import * as tf from "@tensorflow/tfjs-core";
import { type TfjsBackend, TfjsBackendImpl } from "./tfjs-backend.js";

/**
 * A tfjs engine: 'cpu' (plain JavaScript kernels), 'wasm' (XNNPACK + SIMD in WebAssembly, runs
 * offline from the files in `@tensorflow/tfjs-backend-wasm/dist`), 'node' and 'node-gpu'
 * (libtensorflow through `@tensorflow/tfjs-node` / `@tensorflow/tfjs-node-gpu`, optional peers).
 */
export type TfjsEngine = "cpu" | "wasm" | "node" | "node-gpu";

/** Options of {@link createTfjsBackend}. */
export interface TfjsBackendOptions {
  /**
   * Which tfjs engine runs the ops.
   * @defaultValue the best one available, tried in the order 'node-gpu', 'node', 'wasm', 'cpu'
   */
  engine?: TfjsEngine;
}

/** Every engine, best first: the order the default tries. */
export const TFJS_ENGINES: readonly TfjsEngine[] = ["node-gpu", "node", "wasm", "cpu"];

/** The name tfjs registers each engine's backend under. */
const TFJS_BACKEND_NAME: Record<TfjsEngine, string> = {
  cpu: "cpu",
  wasm: "wasm",
  node: "tensorflow",
  "node-gpu": "tensorflow",
};

const NODE_PACKAGE = { node: "@tensorflow/tfjs-node", "node-gpu": "@tensorflow/tfjs-node-gpu" } as const;

const require = createRequire(import.meta.url);

// One initialisation per engine, shared by concurrent callers; a failure is remembered.
const initialisations = new Map<TfjsEngine, Promise<void>>();
// Which of tfjs-node / tfjs-node-gpu this process loaded, if any.
let nodeBinding: "node" | "node-gpu" | undefined;

function initialise(engine: TfjsEngine): Promise<void> {
  let pending = initialisations.get(engine);
  if (pending === undefined) {
    pending = load(engine);
    initialisations.set(engine, pending);
  }
  return pending;
}

async function load(engine: TfjsEngine): Promise<void> {
  if (engine === "cpu") {
    await import("@tensorflow/tfjs-backend-cpu");
  } else if (engine === "wasm") {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    // Load the .wasm binaries from the installed package, never from a CDN: works offline.
    wasm.setWasmPaths(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + path.sep);
  } else {
    await loadNodeBinding(engine);
  }
  const name = TFJS_BACKEND_NAME[engine];
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (error) {
    throw unavailable(engine, `its tfjs backend "${name}" failed to initialise: ${String(error)}`, error);
  }
  if (!ok || tf.getBackend() !== name)
    throw unavailable(engine, `its tfjs backend "${name}" failed to initialise`);
}

async function loadNodeBinding(engine: "node" | "node-gpu"): Promise<void> {
  const specifier = NODE_PACKAGE[engine];
  // Both packages register tfjs's single "tensorflow" backend: only one can be loaded per process.
  if (nodeBinding !== undefined && nodeBinding !== engine) {
    const loaded = NODE_PACKAGE[nodeBinding];
    throw unavailable(
      engine,
      `${loaded} is already loaded in this process and owns tfjs's "tensorflow" backend`,
    );
  }
  try {
    require.resolve(specifier);
  } catch {
    throw unavailable(
      engine,
      `${specifier} is not installed; install it with \`npm install ${specifier}@${tf.version_core}\` ` +
        "(its install script downloads the libtensorflow shared library, so it needs network access to storage.googleapis.com)",
    );
  }
  try {
    await import(specifier);
    nodeBinding = engine;
  } catch (error) {
    throw unavailable(engine, `${specifier} is installed but failed to load: ${firstLine(error)}`, error);
  }
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n", 1)[0] ?? message;
}

function unavailable(engine: TfjsEngine, reason: string, cause?: unknown): DitcacheError {
  return new DitcacheError("BACKEND_UNAVAILABLE", `tfjs engine "${engine}" is unavailable: ${reason}`, {
    cause,
  });
}

/**
 * Creates a {@link TfjsBackend} on one tfjs engine, initialising the engine on first use.
 *
 * tfjs has ONE global engine with one current backend. Creating backends on two engines in one
 * process is allowed: each backend makes its engine current again before it creates tensors or
 * runs a unit, and refuses tensors of another engine instead of letting tfjs copy them across
 * silently. Code that calls tfjs directly must not rely on `tf.getBackend()` staying put.
 *
 * @throws DitcacheError BACKEND_UNAVAILABLE when the engine cannot be loaded (for 'node' /
 * 'node-gpu': the package is missing, with the install command, or failed to load); without an
 * `engine`, only when no engine works, listing why each failed.
 *
 * @example
 * const backend = await createTfjsBackend({ engine: "wasm" });
 * const x = backend.tensor(new Float32Array([1, 2, 3]), [3]);
 */
export async function createTfjsBackend(options: TfjsBackendOptions = {}): Promise<TfjsBackend> {
  if (typeof options !== "object" || options === null)
    invalidArgument("options", options, "an options object");
  const { engine } = options;
  if (engine !== undefined) {
    if (!TFJS_ENGINES.includes(engine))
      invalidArgument("options.engine", engine, `one of ${TFJS_ENGINES.join(", ")}`);
    await initialise(engine);
    return new TfjsBackendImpl(engine, TFJS_BACKEND_NAME[engine]);
  }
  const failures: string[] = [];
  for (const candidate of TFJS_ENGINES) {
    try {
      await initialise(candidate);
      return new TfjsBackendImpl(candidate, TFJS_BACKEND_NAME[candidate]);
    } catch (error) {
      failures.push(`${candidate}: ${firstLine(error)}`);
    }
  }
  throw new DitcacheError("BACKEND_UNAVAILABLE", `no tfjs engine could be loaded (${failures.join("; ")})`);
}
