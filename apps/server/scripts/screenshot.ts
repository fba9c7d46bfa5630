/**
 * Refreshes the README's picture of the demo page (docs/images/server.png) from a real run: the
 * embedded demo model on backend-onnx, ten digits, FORA 50% with EOC and its shipped priors,
 * driven through the page by Debian's Chromium like a user would.
 *
 *   pnpm exec tsx --conditions=source apps/server/scripts/screenshot.ts [--out docs/images/server.png]
 *
 * It generates twice and pictures the second result (the first also builds units only cached runs
 * use). The page must show digits in all three grids, a speed-up and a PSNR; otherwise the script
 * fails and leaves the old picture in place (the new one is written to a temporary file and renamed).
 * Each run is timed once, so the speed-ups on the picture move by several percent between takes.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { startServer } from "../src/index.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "../src/testing/index.js";

const repository = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));

const { values } = parseArgs({ options: { out: { type: "string", default: "docs/images/server.png" } } });
const out = resolve(repository("."), values.out!);
if (!existsSync(CHROMIUM_PATH)) {
  console.error(
    `screenshot: no Chromium at ${CHROMIUM_PATH}; install Debian's package (apt-get install chromium)`,
  );
  process.exit(1);
}

const profile = await mkdtemp(join(tmpdir(), "ditcache-screenshot-"));
const server = await startServer({ port: 0, backend: "onnx", modelSource: { kind: "demo" } });
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM_PATH,
  headless: true,
  args: [...CHROMIUM_ARGS],
  viewport: { width: 1360, height: 1180 },
});
try {
  const page = await context.newPage();
  // Collected, then checked: a throw in the listener would escape this try and skip server.close().
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  await page.goto(server.url);
  await page.locator("#corrector option[value=eoc]").waitFor({ state: "attached" });
  await page.selectOption("#policy", "fora");
  await page.fill('#policy-params [data-param="interval"]', "2");
  // Choosing EOC sets steps, sampler and CFG to what the shipped priors were calibrated for.
  await page.selectOption("#corrector", "eoc");
  await page.fill("#labels", "0 1 2 3 4 5 6 7 8 9");
  await page.fill("#seed", "0");
  console.log(`screenshot: generating on ${server.url} (demo model, onnx, FORA 50% + EOC)`);
  await page.click("#generate");
  await page.locator("#grid-reuse img").waitFor({ timeout: 300_000 });
  // Again, as a user would: the first cached runs also build the units only they use (the
  // corrected reuse's gated sums), which the page would otherwise count as the cache's time.
  const first = await page.textContent("#timings");
  await page.click("#generate");
  // Polled from here: the page's content security policy forbids evaluating strings in it.
  const deadline = Date.now() + 300_000;
  for (;;) {
    const timings = await page.textContent("#timings");
    if (timings && timings !== first) break;
    if (Date.now() > deadline) throw new Error("screenshot: no second result within 5 minutes");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await page.locator("#error-chart polyline").first().waitFor({ timeout: 60_000 });
  if (pageErrors.length > 0) throw new Error(`screenshot: the page threw: ${pageErrors.join("; ")}`);
  const speedup = await page.textContent("#speedup");
  const psnr = await page.textContent("#psnr");
  if (!/^\d+\.\d\d×$/.test(speedup ?? "") || !/dB$/.test(psnr ?? ""))
    throw new Error(`screenshot: the page shows speed-up ${speedup} and PSNR ${psnr}; expected numbers`);
  await mkdir(dirname(out), { recursive: true });
  const partial = `${out}.partial.png`;
  await page.screenshot({ path: partial, fullPage: true });
  await rename(partial, out);
  console.log(`screenshot: ${out} (speed-up ${speedup}, PSNR vs uncached ${psnr})`);
} finally {
  await context.close().catch(() => {});
  await server.close();
  await rm(profile, { recursive: true, force: true });
}
