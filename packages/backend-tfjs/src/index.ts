export type { TfjsBackendOptions, TfjsEngine } from "./engines.js";
export { createTfjsBackend, TFJS_ENGINES } from "./engines.js";
export type { TfjsBackend } from "./tfjs-backend.js";
