import { describe, expect, it } from "vitest";
import { startServer } from "./index.js";

describe("shutdown", () => {
  it("closes while a job runs on ONNX Runtime: the job stops at a step boundary, the process lives on", async () => {
    // Terminating the worker thread inside a native ONNX Runtime call aborts the whole process
    // ("terminate called after throwing an instance of 'Napi::Error'"), this test's with it.
    const server = await startServer({ port: 0, backend: "onnx", modelSource: { kind: "demo" } });
    let closed = false;
    try {
      const response = await fetch(`${server.url}/api/generate`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ labels: [0, 1, 2, 3, 4, 5, 6, 7], steps: 100, corrector: "taylor" }),
      });
      const job = (await response.json()) as { id: string; events: string; status: string };
      expect(job.status).toBe("running");
      // Wait until the worker is inside the sampling loop (a progress event).
      const events = await fetch(`${server.url}${job.events}`);
      const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      while (!seen.includes("event: progress")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += value;
      }
      expect(seen).toContain("event: progress");
      void reader.cancel().catch(() => {});
      await server.close();
      closed = true;
      // Still here: the worker stopped before it was terminated.
      expect(process.exitCode ?? 0).toBe(0);
    } finally {
      if (!closed) await server.close();
    }
  }, 120_000);
});
