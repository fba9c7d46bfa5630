import { describeOpConformance } from "@ditcache/core/testing";
import { createTfjsBackend } from "./index.js";

// The shared op suite on both engines that install offline (tfjs-node(-gpu) cannot be installed here).
describeOpConformance("tfjs-cpu", () => createTfjsBackend({ engine: "cpu" }), { tolerance: 1e-5 });
describeOpConformance("tfjs-wasm", () => createTfjsBackend({ engine: "wasm" }), { tolerance: 1e-5 });
