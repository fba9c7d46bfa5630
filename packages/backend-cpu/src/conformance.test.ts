import { describeOpConformance } from "@ditcache/core/testing";
import { createCpuBackend } from "./index.js";

describeOpConformance("cpu", () => createCpuBackend());
