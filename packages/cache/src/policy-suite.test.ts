import { createCpuBackend } from "@ditcache/backend-cpu";
import { parseCorrector, parsePolicy } from "./registry.js";
import { describePolicySuite, describeRegisteredPolicySuites } from "./testing/index.js";

describeRegisteredPolicySuites(createCpuBackend);

describePolicySuite({
  name: "fora:interval=2 + taylor:order=2",
  create: () => parsePolicy("fora:interval=2"),
  corrector: () => parseCorrector("taylor:order=2"),
  createBackend: createCpuBackend,
});
