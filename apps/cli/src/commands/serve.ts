import type { BackendSpec } from "@ditcache/pipeline";
import { startServer } from "@ditcache/server";
import { type Command, intOption } from "../args.js";

/** `ditcache serve`: the demo server and web page. */
export const serveCommand: Command = {
  name: "serve",
  summary: "start the demo web page and JSON API (binds 127.0.0.1 by default)",
  options: {
    host: {
      type: "string",
      default: "127.0.0.1",
      help: "interface to bind (0.0.0.0 exposes it to the network)",
    },
    port: { type: "string", default: "7860", help: "TCP port" },
    backend: { type: "string", default: "onnx", help: "cpu | onnx | tfjs:wasm …" },
    model: { type: "string", default: "demo", help: '"demo" or a .safetensors weights file' },
    "max-waiting": { type: "string", default: "8", help: "queued jobs before new requests get 429" },
  },
  async run(values) {
    const model = String(values.model);
    const server = await startServer({
      host: String(values.host),
      port: intOption(values, "port", 0, 65535),
      backend: String(values.backend) as BackendSpec,
      modelSource: model === "demo" ? { kind: "demo" } : { kind: "file", path: model },
      queue: { maxWaiting: intOption(values, "max-waiting", 0, 1000) },
    });
    console.log(`ditcache demo server on ${server.url} (Ctrl-C to stop)`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    await server.close();
  },
};
