import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../../..");
const model = join(root, "packages/dit/src/__fixtures__/tiny-dit.safetensors");
const folders: string[] = [];
afterAll(() => {
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

interface Finished {
  readonly code: number | null;
  readonly stderr: string;
  readonly stdout: string;
}

/**
 * Runs the CLI from source, waits until `ready` shows on stderr (the command is inside its long
 * loop, signal handlers installed), sends `signal`, and resolves when the process ends.
 */
function interruptAfter(args: string[], ready: RegExp, signal: NodeJS.Signals): Promise<Finished> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "apps/cli/src/main.ts", ...args],
    {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  let stdout = "";
  let sent = false;
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
    if (!sent && ready.test(stderr)) {
      sent = true;
      child.kill(signal);
    }
  });
  // Never leave a runaway child behind when the signal is not honoured: the test then fails on the code.
  const guard = setTimeout(() => child.kill("SIGKILL"), 90_000);
  return new Promise((done, failed) => {
    child.on("error", failed);
    child.on("close", (code) => {
      clearTimeout(guard);
      done({ code, stderr, stdout });
    });
  });
}

function freshFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), "ditcache-signals-"));
  folders.push(folder);
  return folder;
}

/** The lines the CLI printed besides its progress bars. */
function messages(stderr: string): string[] {
  return stderr.split("\n").filter((line) => line.trim() !== "" && !/\[[#.]+\] \d+\/\d+/.test(line));
}

describe("interrupting the CLI", () => {
  // Long enough that the signal always lands inside the loop: 1000 DDIM steps of 10 images.
  const sampleArgs = (out: string) => [
    "sample",
    "--model",
    model,
    "--backend",
    "cpu",
    "--steps",
    "1000",
    "--labels",
    "0-9",
    "--out",
    out,
  ];

  it("sample + SIGINT: exit 130, one line, no output and no temporary file", async () => {
    const folder = freshFolder();
    const result = await interruptAfter(
      sampleArgs(join(folder, "out.safetensors")),
      /sampling 10 image/,
      "SIGINT",
    );
    expect(result.code).toBe(130);
    expect(messages(result.stderr)).toEqual([
      "ditcache: interrupted by SIGINT; no partial output was written",
    ]);
    expect(result.stdout).toBe("");
    expect(readdirSync(folder)).toEqual([]);
  });

  it("sample + SIGTERM: exit 143, one line, nothing left in the output folder", async () => {
    const folder = freshFolder();
    const result = await interruptAfter(sampleArgs(join(folder, "out.png")), /sampling 10 image/, "SIGTERM");
    expect(result.code).toBe(143);
    expect(messages(result.stderr)).toEqual([
      "ditcache: interrupted by SIGTERM; no partial output was written",
    ]);
    expect(readdirSync(folder)).toEqual([]);
  });

  it("calibrate + SIGINT: exit 130, one line, no priors file", async () => {
    const folder = freshFolder();
    const args = [
      "calibrate",
      "--model",
      model,
      "--backend",
      "cpu",
      "--steps",
      "50",
      "--samples",
      "1000",
      "--out",
      join(folder, "priors.safetensors"),
    ];
    const result = await interruptAfter(args, /pass 1\/\d/, "SIGINT");
    expect(result.code).toBe(130);
    expect(messages(result.stderr)).toEqual([
      "ditcache: interrupted by SIGINT; no partial output was written",
    ]);
    expect(readdirSync(folder)).toEqual([]);
  });
});
