import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "./index.js";
import {
  CHROMIUM_ARGS,
  CHROMIUM_PATH,
  calibrateTinyPriors,
  TINY_MODEL_SOURCE,
  TINY_PRIORS_SETTING,
} from "./testing/index.js";

const repository = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const SCREENSHOT = repository("out/server-e2e.png");

let server: RunningServer | undefined;
let context: BrowserContext | undefined;
let profile: string | undefined;

beforeAll(async () => {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `end-to-end test: no Chromium at ${CHROMIUM_PATH}; install Debian's package (apt-get install chromium) — this test does not skip`,
    );
  }
  profile = await mkdtemp(join(tmpdir(), "ditcache-e2e-"));
  // EOC needs priors calibrated for the model: make some for the tiny model, chosen server-side.
  const priors = join(profile, "tiny-priors.safetensors");
  await calibrateTinyPriors(priors);
  server = await startServer({
    port: 0,
    modelSource: TINY_MODEL_SOURCE,
    serverParams: { corrector: { eoc: { priors } } },
  });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS],
    viewport: { width: 1360, height: 1180 },
  });
});

afterAll(async () => {
  await context?.close().catch(() => {});
  await server?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

it("generates from the page: both grids, the speed-up, the heat map and the error chart", async () => {
  const page = await context!.newPage();
  const failures: string[] = [];
  page.on("pageerror", (error) => failures.push(error.message));
  // The page closes the event stream itself once the result is in; any other failure counts.
  page.on("requestfailed", (request) => {
    if (!request.url().endsWith("/events")) failures.push(`request failed: ${request.url()}`);
  });
  await page.goto(server!.url);
  await page.locator("#policy option[value=fora]").waitFor({ state: "attached" });

  // FORA every other step, with the best corrector on offer (EOC when registered).
  await page.selectOption("#policy", "fora");
  await page.fill('#policy-params [data-param="interval"]', "2");
  const correctors = await Promise.all(
    (await page.locator("#corrector option").all()).map((option) => option.getAttribute("value")),
  );
  const corrector = correctors.includes("eoc") ? "eoc" : "taylor";
  await page.selectOption("#corrector", corrector);
  await page.fill("#labels", "0 1 2 3 4 5 6 7");
  await page.fill("#steps", String(TINY_PRIORS_SETTING.steps));
  await page.click("#generate");

  await page.locator("#grid-uncached img").waitFor({ timeout: 90_000 });
  for (const phase of ["uncached", "cached", "reuse"]) {
    const size = await page.evaluate(
      `(() => { const image = document.querySelector("#grid-${phase} img"); return image.complete ? image.naturalWidth : 0; })()`,
    );
    expect(size, `${phase} grid`).toBeGreaterThan(0);
  }
  await expect.poll(() => page.textContent("#speedup")).toMatch(/^\d+\.\d\d×$/);
  expect(await page.textContent("#macs")).toMatch(/%$/);
  expect(await page.textContent("#psnr-label")).toContain(corrector);
  // 6 steps x 4 sites (2 blocks, attn + mlp), computed at even steps and reused at odd ones.
  expect(await page.locator('#heatmap rect[data-decision="C"]').count()).toBe(12);
  expect(await page.locator('#heatmap rect[data-decision="R"]').count()).toBe(12);
  expect(await page.locator("#error-chart polyline").count()).toBe(2);
  expect(failures).toEqual([]);

  await mkdir(repository("out"), { recursive: true });
  // The README's picture is of the demo model (scripts/screenshot.ts), not of this noise.
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
});

describe("EOC through the API (priors chosen by the server)", () => {
  const post = (body: unknown) =>
    fetch(`${server!.url}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  it("offers EOC with the setting its priors need, and never shows the priors path", async () => {
    const options = (await (await fetch(`${server!.url}/api/options`)).json()) as {
      defaults: { corrector: string };
      correctors: { name: string; params: Record<string, unknown>; requires?: unknown }[];
    };
    const entry = options.correctors.find((corrector) => corrector.name === "eoc");
    expect(entry?.requires).toEqual(TINY_PRIORS_SETTING);
    expect(Object.keys(entry!.params)).not.toContain("priors");
    expect(options.defaults.corrector).toBe("eoc");
    expect(JSON.stringify(options)).not.toContain(profile!);
  });

  it("refuses EOC for a setting its priors were not made for, and a priors path from the client", async () => {
    const wrongSteps = await post({ labels: [1], steps: 8, policy: "fora:interval=2", corrector: "eoc" });
    expect(wrongSteps.status).toBe(400);
    expect(await wrongSteps.json()).toMatchObject({
      field: "corrector",
      message: expect.stringMatching(/steps/),
    });
    const clientPath = await post({ labels: [1], steps: 6, corrector: "eoc:priors=/etc/passwd" });
    expect(clientPath.status).toBe(400);
    expect(await clientPath.json()).toMatchObject({
      field: "corrector",
      message: expect.stringMatching(/priors/),
    });
  });

  it("runs EOC and reports its spec without the server's priors path", async () => {
    const response = await post({ labels: [2, 3], ...TINY_PRIORS_SETTING, corrector: "eoc" });
    expect(response.status).toBe(202);
    const { result } = (await response.json()) as { result: string };
    const body = await expect
      .poll(async () => (await fetch(`${server!.url}${result}`)).status, { timeout: 60_000 })
      .toBe(200)
      .then(
        async () =>
          (await (await fetch(`${server!.url}${result}`)).json()) as { runs: { corrector?: string }[] },
      );
    expect(body.runs.map((run) => run.corrector)).toEqual([
      undefined,
      expect.stringMatching(/^eoc/),
      "reuse",
    ]);
    expect(JSON.stringify(body)).not.toContain(profile!);
  });
});
