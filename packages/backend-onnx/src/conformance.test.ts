import { describeOpConformance } from "@ditcache/core/testing";
import { createOnnxBackend } from "./index.js";

// One thread keeps the suite light on a shared machine; results do not depend on it.
describeOpConformance("onnx", () => createOnnxBackend({ intraOpNumThreads: 1 }));
