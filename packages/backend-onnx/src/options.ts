import { invalidArgument } from "@ditcache/core";
import type { InferenceSession } from "onnxruntime-node";
import { DEFAULT_LOWERING, type OnnxLowering } from "./lowering.js";

/** Execution providers the backend can ask ONNX Runtime for. */
export type OnnxExecutionProvider = "cpu" | "webgpu" | "cuda";

/** Options of {@link createOnnxBackend}. */
export interface OnnxBackendOptions {
  /**
   * Where sessions run. 'cpu' and 'webgpu' ship inside onnxruntime-node for Linux x64; 'cuda'
   * needs the CUDA provider files that onnxruntime-node's install script downloads on request.
   * @defaultValue 'cpu'
   */
  executionProvider?: OnnxExecutionProvider;
  /** Threads one op may use. @defaultValue ONNX Runtime's choice: one per physical core */
  intraOpNumThreads?: number;
  /** Threads running independent ops at once (executionMode 'parallel' only). @defaultValue 1 */
  interOpNumThreads?: number;
  /** ONNX Runtime graph optimisation level. @defaultValue 'all' */
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /**
   * Whether ORT keeps CPU memory in an arena for reuse. Off by default: every unit is its own
   * session with its own arena, so the arenas keep each unit's activations for good, and the
   * arena's power-of-two growth rounds up the pre-packed weights; off, a DiT-B/2 process held
   * 2.75x instead of 3.85x its weights' size, at the same forward time within noise
   * (bench/memory.ts, bench/variants.ts). @defaultValue false
   */
  enableCpuMemArena?: boolean;
  /** Whether ORT plans buffer reuse from the static shapes. @defaultValue true */
  enableMemPattern?: boolean;
  /** Run independent branches of a graph concurrently. @defaultValue 'sequential' */
  executionMode?: "sequential" | "parallel";
  /**
   * Whether intra-op threads spin while waiting for work during a run (they always stop when a
   * run ends: every unit has its own session and thread pool, and threads still spinning for
   * the last unit would steal cores from the next). Off by default: spinning saves well under
   * 1% of a DiT unit's time on an idle machine and costs far more when cores are shared.
   * @defaultValue false
   */
  allowSpinning?: boolean;
  /**
   * Extra ONNX Runtime session config entries (`session.*` keys of
   * onnxruntime_session_options_config_keys.h), applied last so they override the above.
   * @defaultValue {}
   */
  sessionConfigEntries?: Readonly<Record<string, string>>;
  /** ORT log level: 0 verbose ... 4 fatal. @defaultValue 3 (errors only) */
  logSeverityLevel?: 0 | 1 | 2 | 3 | 4;
  /** How some ops become ONNX nodes; the defaults are the fastest measured. @defaultValue {@link DEFAULT_LOWERING} */
  lowering?: OnnxLowering;
  /**
   * What happens to the host (JS) copy of a unit's params once a session holds them. 'keep':
   * nothing, any input shape can be compiled later. 'release': it is dropped right after the
   * unit's first session is built, so the freed memory is reused for the next units' ORT copies
   * and a model's weights sit in memory once (ORT's pre-packed copy) instead of twice; compiling
   * such a unit for new input shapes (another batch size) then throws UNSUPPORTED. For apps
   * that run one batch size, e.g. a CFG pair per image. See also `OnnxBackend.releaseHostParams`.
   * @defaultValue 'keep'
   */
  hostParams?: "keep" | "release";
}

/** Options with every default filled in. */
export interface ResolvedOnnxOptions {
  readonly executionProvider: OnnxExecutionProvider;
  readonly session: InferenceSession.SessionOptions;
  readonly lowering: Required<OnnxLowering>;
  readonly hostParams: "keep" | "release";
}

const LEVELS = ["disabled", "basic", "extended", "all"] as const;
const PROVIDERS = ["cpu", "webgpu", "cuda"] as const;

/** Validates options (INVALID_ARGUMENT naming the field) and maps them to ORT session options. */
export function resolveOptions(options: OnnxBackendOptions = {}): ResolvedOnnxOptions {
  if (typeof options !== "object" || options === null)
    invalidArgument("options", options, "an options object");
  const executionProvider = options.executionProvider ?? "cpu";
  if (!PROVIDERS.includes(executionProvider)) {
    invalidArgument("options.executionProvider", executionProvider, `one of ${PROVIDERS.join(", ")}`);
  }
  const graphOptimizationLevel = options.graphOptimizationLevel ?? "all";
  if (!LEVELS.includes(graphOptimizationLevel)) {
    invalidArgument("options.graphOptimizationLevel", graphOptimizationLevel, `one of ${LEVELS.join(", ")}`);
  }
  for (const key of ["intraOpNumThreads", "interOpNumThreads"] as const) {
    const value = options[key];
    if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
      invalidArgument(`options.${key}`, value, "an integer >= 1");
    }
  }
  const executionMode = options.executionMode ?? "sequential";
  if (executionMode !== "sequential" && executionMode !== "parallel") {
    invalidArgument("options.executionMode", executionMode, '"sequential" or "parallel"');
  }
  for (const [key, value] of Object.entries(options.sessionConfigEntries ?? {})) {
    if (typeof value !== "string")
      invalidArgument(`options.sessionConfigEntries["${key}"]`, value, "a string");
  }
  const lowering = { ...DEFAULT_LOWERING, ...options.lowering };
  if (lowering.linear !== "matmul" && lowering.linear !== "gemm") {
    invalidArgument("options.lowering.linear", lowering.linear, '"matmul" or "gemm"');
  }
  if (lowering.gelu !== "onnx" && lowering.gelu !== "contrib") {
    invalidArgument("options.lowering.gelu", lowering.gelu, '"onnx" or "contrib"');
  }
  const hostParams = options.hostParams ?? "keep";
  if (hostParams !== "keep" && hostParams !== "release") {
    invalidArgument("options.hostParams", hostParams, '"keep" or "release"');
  }
  const session: InferenceSession.SessionOptions = {
    executionProviders: [executionProvider],
    graphOptimizationLevel,
    executionMode,
    enableCpuMemArena: options.enableCpuMemArena ?? false,
    enableMemPattern: options.enableMemPattern ?? true,
    interOpNumThreads: options.interOpNumThreads ?? 1,
    logSeverityLevel: options.logSeverityLevel ?? 3,
    extra: {
      "session.intra_op.allow_spinning": options.allowSpinning === true ? "1" : "0",
      "session.force_spinning_stop": "1",
      ...options.sessionConfigEntries,
    },
  };
  if (options.intraOpNumThreads !== undefined) session.intraOpNumThreads = options.intraOpNumThreads;
  return { executionProvider, session, lowering, hostParams };
}
