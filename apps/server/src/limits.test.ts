import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "./index.js";
import { TINY_MODEL_SOURCE } from "./testing/index.js";

let server: RunningServer;
let port: number;

beforeAll(async () => {
  // Short deadlines so slow clients are cut off within the test; the defaults are 10 s / 60 s.
  server = await startServer({
    port: 0,
    modelSource: TINY_MODEL_SOURCE,
    requestTimeout: 300,
    connectionTimeout: 500,
  });
  port = Number(new URL(server.url).port);
});
afterAll(async () => {
  await server?.close();
});

/** Opens a raw connection, writes `head`, then lets `feed` trickle more; resolves with all the server said when it closes. */
function rawExchange(head: string, feed?: (socket: Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      received += chunk;
    });
    socket.on("error", (error: NodeJS.ErrnoException) =>
      error.code === "ECONNRESET" ? resolve(received) : reject(error),
    );
    socket.on("close", () => resolve(received));
    socket.write(head, () => feed?.(socket));
  });
}

const generateHead = (headers: string) =>
  `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n${headers}\r\n`;

describe("request limits", () => {
  it("answers 413 to a declared oversized body before reading it", async () => {
    const response = await rawExchange(generateHead("Content-Length: 104857600\r\nConnection: close\r\n"));
    expect(response).toMatch(/^HTTP\/1\.1 413 /);
    expect(response).toMatch(/"message":"body: larger than 16384 bytes"/);
  });

  it("answers 413 to a chunked body that grows past the limit", async () => {
    const chunk = "x".repeat(8192);
    const response = await rawExchange(
      generateHead("Transfer-Encoding: chunked\r\nConnection: close\r\n"),
      (socket) => {
        for (let i = 0; i < 4; i++) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        socket.write("0\r\n\r\n");
      },
    );
    expect(response).toMatch(/^HTTP\/1\.1 413 /);
  });

  it("cuts off a client that sends half a request and goes silent", async () => {
    const response = await rawExchange(`GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`);
    // Closed by the server (408 from the request deadline, or a bare close on the idle timeout).
    expect(response === "" || /^HTTP\/1\.1 408 /.test(response)).toBe(true);
  });

  it("cuts off a client that trickles its body byte by byte (slowloris)", async () => {
    let timer: NodeJS.Timeout | undefined;
    const response = await rawExchange(generateHead("Content-Length: 2000\r\n"), (socket) => {
      timer = setInterval(() => socket.writable && socket.write("{"), 50);
    });
    clearInterval(timer);
    expect(response).toMatch(/^HTTP\/1\.1 408 /);
  });

  it("still serves a well-behaved client", async () => {
    const response = await fetch(`${server.url}/api/health`);
    expect(response.status).toBe(200);
  });
});

describe("timeout options", () => {
  it("refuses a timeout that is not a positive integer of milliseconds", async () => {
    await expect(startServer({ port: 0, modelSource: TINY_MODEL_SOURCE, requestTimeout: 0 })).rejects.toThrow(
      /requestTimeout: expected milliseconds in \[1, 3600000\], got 0/,
    );
  });
});
