// The demo page: reads the choices from /api/options, posts a request, follows its events and
// draws the result. No framework, no network beyond this server.

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const CORRECTOR_NAMES = { reuse: "none (plain reuse)", taylor: "TaylorSeer", goc: "GOC", eoc: "EOC" };
const RUN_TITLES = { uncached: "Uncached", cached: "Cached", reuse: "Cached, plain reuse" };

let options;
let current; // { id, source }

function svg(name, attributes = {}, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  parent?.appendChild(node);
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// ---- form ----------------------------------------------------------------------------------

function paramInput(name, spec) {
  const label = document.createElement("label");
  label.textContent = `${name} `;
  const hint = document.createElement("small");
  hint.textContent = spec.description;
  label.appendChild(hint);
  let input;
  if (spec.type === "boolean") {
    input = document.createElement("select");
    for (const value of ["", "true", "false"]) input.add(new Option(value === "" ? "default" : value, value));
  } else if (spec.type === "string" && spec.choices) {
    input = document.createElement("select");
    input.add(new Option("default", ""));
    for (const value of spec.choices) input.add(new Option(value, value));
  } else {
    input = document.createElement("input");
    input.placeholder = "default";
    if (spec.type === "integer" || spec.type === "number") {
      input.type = "number";
      input.step = spec.type === "integer" ? "1" : "any";
      if (spec.min !== undefined) input.min = String(spec.min);
      if (spec.max !== undefined) input.max = String(spec.max);
    } else {
      input.placeholder = "values separated by ;";
    }
  }
  input.dataset.param = name;
  label.appendChild(input);
  return label;
}

function fillParams(kind) {
  const list = kind === "policy" ? options.policies : options.correctors;
  const choice = list.find((entry) => entry.name === $(kind).value);
  const box = $(`${kind}-params`);
  box.replaceChildren(...Object.entries(choice?.params ?? {}).map(([name, spec]) => paramInput(name, spec)));
}

function setParams(kind, spec) {
  const [, rest = ""] = spec.split(/:(.*)/s);
  for (const part of rest.split(",")) {
    const [key, value] = part.split("=");
    const input = $(`${kind}-params`).querySelector(`[data-param="${CSS.escape(key ?? "")}"]`);
    if (input && value !== undefined) input.value = value;
  }
}

function specOf(kind) {
  const parts = [...$(`${kind}-params`).querySelectorAll("[data-param]")]
    .filter((input) => input.value.trim() !== "")
    .map((input) => `${input.dataset.param}=${input.value.trim()}`);
  return parts.length > 0 ? `${$(kind).value}:${parts.join(",")}` : $(kind).value;
}

function fillSelect(kind, list, chosen) {
  const select = $(kind);
  select.replaceChildren(
    ...list.map(
      (entry) =>
        new Option(
          kind === "corrector" ? (CORRECTOR_NAMES[entry.name] ?? entry.name) : entry.name,
          entry.name,
        ),
    ),
  );
  select.value = chosen.split(":")[0];
  select.addEventListener("change", () => {
    fillParams(kind);
    if (kind === "corrector") applyRequirements();
  });
  fillParams(kind);
  setParams(kind, chosen);
}

// A corrector with priors (EOC) fits only the setting it was calibrated for: switch to it.
function applyRequirements() {
  const choice = options.correctors.find((entry) => entry.name === $("corrector").value);
  const requires = choice?.requires;
  $("requires").hidden = !requires;
  if (!requires) return;
  $("requires").textContent =
    `${CORRECTOR_NAMES[choice.name] ?? choice.name} priors were calibrated for ${requires.policy}, ` +
    `${requires.sampler.toUpperCase()} ${requires.steps} steps, CFG ${requires.cfgScale}; the settings were set to match.`;
  $("policy").value = requires.policy.split(":")[0];
  fillParams("policy");
  setParams("policy", requires.policy);
  $("steps").value = String(requires.steps);
  $("sampler").value = requires.sampler;
  $("cfg").value = String(requires.cfgScale);
}

async function loadOptions() {
  const response = await fetch("/api/options");
  options = await response.json();
  const { model, limits, defaults } = options;
  $("model-info").textContent =
    `${model.name} · ${model.depth} blocks, hidden ${model.hiddenSize}, ${model.inputSize}×${model.inputSize}×${model.inChannels}, ` +
    `${model.numClasses} classes · backend ${model.backend}`;
  $("labels-hint").textContent =
    `1–${limits.maxLabels} labels in 0–${model.numClasses - 1}, separated by spaces or commas`;
  $("seed").max = String(limits.maxSeed);
  $("steps").max = String(limits.maxSteps);
  $("steps").value = String(defaults.steps);
  $("cfg").min = String(limits.minCfgScale);
  $("cfg").max = String(limits.maxCfgScale);
  $("cfg").value = String(defaults.cfgScale);
  fillSelect("policy", options.policies, defaults.policy);
  fillSelect("corrector", options.correctors, defaults.corrector);
  applyRequirements();
}

function readRequest() {
  const labels = $("labels")
    .value.split(/[\s,]+/)
    .filter((text) => text !== "")
    .map(Number);
  return {
    labels,
    seed: Number($("seed").value),
    steps: Number($("steps").value),
    sampler: $("sampler").value,
    cfgScale: Number($("cfg").value),
    policy: specOf("policy"),
    corrector: specOf("corrector"),
  };
}

// ---- running -------------------------------------------------------------------------------

function setRunning(running) {
  $("generate").disabled = running;
  $("cancel").disabled = !running;
  $("progress").hidden = !running && $("progress").hidden;
}

function progress(fraction, text) {
  $("progress").hidden = false;
  $("progress-fill").style.width = `${Math.round(fraction * 100)}%`;
  $("progress-text").textContent = text;
}

async function generate(event) {
  event.preventDefault();
  showError("");
  const response = await fetch("/api/generate", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(readRequest()),
  });
  const body = await response.json();
  if (!response.ok) {
    showError(body.message ?? `request failed (${response.status})`);
    return;
  }
  setRunning(true);
  progress(0, "Queued");
  const source = new EventSource(body.events);
  current = { id: body.id, source };
  const stop = () => {
    source.close();
    current = undefined;
    setRunning(false);
  };
  source.addEventListener("queued", (message) => {
    const { position } = JSON.parse(message.data);
    progress(0, `Queued, position ${position}`);
  });
  source.addEventListener("started", () => progress(0, "Starting"));
  source.addEventListener("progress", (message) => {
    const { phase, step, count, fraction } = JSON.parse(message.data);
    progress(fraction, `${RUN_TITLES[phase]} run: step ${step} of ${count}`);
  });
  source.addEventListener("result", (message) => {
    stop();
    progress(1, "Done");
    render(JSON.parse(message.data));
  });
  source.addEventListener("failed", (message) => {
    stop();
    showError(`Generation failed: ${JSON.parse(message.data).message}`);
  });
  source.addEventListener("cancelled", (message) => {
    stop();
    progress(0, `Cancelled: ${JSON.parse(message.data).reason}`);
  });
  source.onerror = () => {
    if (current?.source === source) {
      stop();
      showError("Lost the connection to the server.");
    }
  };
}

async function cancel() {
  if (current) await fetch(`/api/jobs/${current.id}`, { method: "DELETE" });
}

// ---- result --------------------------------------------------------------------------------

const format = {
  ratio: (value) => `${value.toFixed(2)}×`,
  percent: (value) => `${(value * 100).toFixed(0)}%`,
  psnr: (value) => (value === null ? "identical" : `${value.toFixed(1)} dB`),
};

function render(result) {
  $("results").hidden = false;
  const runs = Object.fromEntries(result.runs.map((run) => [run.phase, run]));
  $("speedup").textContent = format.ratio(result.speedup);
  $("macs").textContent = format.percent(result.macsRatio);
  $("level").textContent = format.percent(result.cachingLevel);
  $("psnr").textContent = format.psnr(runs.cached.psnr);
  $("psnr-label").textContent = `PSNR vs uncached (${runs.cached.corrector})`;
  $("psnr-reuse-card").hidden = !runs.reuse;
  if (runs.reuse) $("psnr-reuse").textContent = format.psnr(runs.reuse.psnr);

  $("grids").replaceChildren(
    ...result.runs.map((run) => {
      const figure = document.createElement("figure");
      figure.id = `grid-${run.phase}`;
      const caption = document.createElement("figcaption");
      caption.textContent = `${RUN_TITLES[run.phase]} · ${(run.milliseconds / 1000).toFixed(2)} s`;
      const spec = document.createElement("p");
      spec.className = "spec";
      spec.textContent =
        run.phase === "uncached" ? "every block computed" : `${run.policy} + ${run.corrector}`;
      const image = new Image();
      image.alt = `${RUN_TITLES[run.phase]} images`;
      image.src = run.image;
      image.addEventListener("load", () => {
        // Whole multiples only (pixelated): small latents such as MNIST's 32 px become legible.
        const scale = Math.max(1, Math.floor(300 / image.naturalWidth));
        image.width = image.naturalWidth * scale;
      });
      figure.append(caption, image, spec);
      return figure;
    }),
  );
  $("heatmap").replaceChildren(heatmap(result.sites, result.decisions));
  $("error-chart").replaceChildren(errorChart(result.runs.filter((run) => run.phase !== "uncached")));
  const reuse = result.reuseSpeedup === null ? "" : `, plain reuse ${format.ratio(result.reuseSpeedup)}`;
  $("timings").textContent =
    `Uncached ${runs.uncached.milliseconds.toFixed(0)} ms, cached ${runs.cached.milliseconds.toFixed(0)} ms` +
    `${runs.reuse ? `, plain reuse ${runs.reuse.milliseconds.toFixed(0)} ms` : ""}; speed-up ${format.ratio(result.speedup)}${reuse}.`;
}

const DECISION_COLORS = { C: "#1f4e79", R: "#f2b34f", H: "#8fb3d9", "-": "#e5e7eb" };
const DECISION_NAMES = { C: "computed", R: "reused", H: "partly reused", "-": "not called" };

function heatmap(sites, decisions) {
  const cell = Math.max(6, Math.min(22, Math.floor(560 / Math.max(1, sites.length))));
  const rowHeight = Math.max(4, Math.min(14, Math.floor(320 / Math.max(1, decisions.length))));
  const left = 44;
  const top = 34;
  const width = Math.max(240, left + sites.length * cell + 10);
  const height = top + decisions.length * rowHeight + 34;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    class: "heatmap",
  });
  svg("title", {}, root).textContent = "Cache decisions: steps (rows) by sites (columns)";
  // attn and mlp columns come in pairs per block: label the block once, between them.
  const paired = sites.some((site) => site.endsWith(".attn"));
  sites.forEach((site, column) => {
    if (paired && !site.endsWith(".attn")) return;
    const x = left + column * cell + (paired ? cell : cell / 2);
    const label = svg("text", { x, y: top - 8, "text-anchor": "middle", class: "tick" }, root);
    label.textContent = site.replace(/^block(\d+)\.attn$/, "b$1");
  });
  decisions.forEach((row, step) => {
    if (step % Math.ceil(decisions.length / 10) === 0) {
      const label = svg(
        "text",
        { x: left - 6, y: top + step * rowHeight + rowHeight - 1, "text-anchor": "end", class: "tick" },
        root,
      );
      label.textContent = String(step);
    }
    [...row].forEach((decision, column) => {
      const rect = svg(
        "rect",
        {
          x: left + column * cell,
          y: top + step * rowHeight,
          width: cell - 1,
          height: rowHeight - 1,
          fill: DECISION_COLORS[decision] ?? "#999",
          "data-decision": decision,
        },
        root,
      );
      svg("title", {}, rect).textContent =
        `step ${step}, ${sites[column]}: ${DECISION_NAMES[decision] ?? decision}`;
    });
  });
  const axis = svg("text", { x: 4, y: top - 8, class: "tick" }, root);
  axis.textContent = "step";
  let x = left;
  for (const decision of ["C", "R"]) {
    svg("rect", { x, y: height - 20, width: 12, height: 12, fill: DECISION_COLORS[decision] }, root);
    const text = svg("text", { x: x + 16, y: height - 10, class: "tick" }, root);
    text.textContent = DECISION_NAMES[decision];
    x += 90;
  }
  return root;
}

const LINE_COLORS = { cached: "#1f77b4", reuse: "#d62728" };

function errorChart(runs) {
  const width = 560;
  const height = 300;
  const margin = { left: 58, right: 16, top: 16, bottom: 58 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart" });
  svg("title", {}, root).textContent = "Per-step MSE of x_t against the uncached run";
  const positive = runs.flatMap((run) => run.errorCurve.filter((value) => value > 0));
  const steps = Math.max(1, ...runs.map((run) => run.errorCurve.length));
  if (positive.length === 0) {
    const text = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "tick" }, root);
    text.textContent = "No difference from the uncached run at any step";
    return root;
  }
  const low = Math.floor(Math.log10(Math.min(...positive)));
  const high = Math.ceil(Math.log10(Math.max(...positive))) || low + 1;
  const top = high === low ? low + 1 : high;
  const x = (step) =>
    margin.left + (steps > 1 ? (step / (steps - 1)) * (width - margin.left - margin.right) : 0);
  const y = (value) =>
    margin.top + ((top - Math.log10(value)) / (top - low)) * (height - margin.top - margin.bottom);
  for (let power = low; power <= top; power++) {
    svg(
      "line",
      { x1: margin.left, x2: width - margin.right, y1: y(10 ** power), y2: y(10 ** power), class: "grid" },
      root,
    );
    const label = svg(
      "text",
      { x: margin.left - 6, y: y(10 ** power) + 4, "text-anchor": "end", class: "tick" },
      root,
    );
    label.textContent = `1e${power}`;
  }
  const every = Math.max(1, Math.ceil(steps / 10));
  for (let step = 0; step < steps; step += every) {
    const label = svg(
      "text",
      { x: x(step), y: height - margin.bottom + 16, "text-anchor": "middle", class: "tick" },
      root,
    );
    label.textContent = String(step);
  }
  const axis = svg(
    "text",
    {
      x: (margin.left + width - margin.right) / 2,
      y: height - margin.bottom + 32,
      "text-anchor": "middle",
      class: "tick",
    },
    root,
  );
  axis.textContent = "step";
  let legendX = margin.left;
  // Plain reuse first and dashed, so the corrected line stays visible where the two agree.
  for (const run of [...runs].reverse()) {
    const points = run.errorCurve
      .map((value, step) => (value > 0 ? `${x(step).toFixed(1)},${y(value).toFixed(1)}` : undefined))
      .filter((point) => point !== undefined);
    const color = LINE_COLORS[run.phase] ?? "#555";
    const dash = run.phase === "reuse" ? "6 4" : "none";
    const stroke = { fill: "none", stroke: color, "stroke-width": 2, "stroke-dasharray": dash };
    svg("polyline", { points: points.join(" "), ...stroke, "data-phase": run.phase }, root);
    svg("line", { x1: legendX, x2: legendX + 18, y1: height - 12, y2: height - 12, ...stroke }, root);
    const text = svg("text", { x: legendX + 24, y: height - 8, class: "tick" }, root);
    text.textContent = run.phase === "reuse" ? "plain reuse" : `with ${run.corrector}`;
    legendX += 200;
  }
  return root;
}

// ---- start ---------------------------------------------------------------------------------

$("controls").addEventListener("submit", (event) => {
  generate(event).catch((error) => {
    setRunning(false);
    showError(String(error));
  });
});
$("cancel").addEventListener("click", () => {
  cancel().catch((error) => showError(String(error)));
});
loadOptions().catch((error) => showError(`Could not load the options: ${error}`));
