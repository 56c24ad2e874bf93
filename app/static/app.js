// The logpx page: plain JavaScript over the HTTP API (docs/api.md), uPlot for the charts. No build step.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];
const SIDE = 28; // the drawing grid: the MNIST models' input
const state = { token: sessionStorage.getItem("logpx-token") || "", models: [], image: null, pixels: new Float32Array(SIDE * SIDE), charts: {} };
window.logpx = state; // for the browser tests and the curious

class ProblemError extends Error {
  constructor(problem, status) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.problem = problem;
    this.status = status;
  }
}

// Every call goes through here: the token when there is one, and every error as its problem+json detail.
async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let problem;
    try { problem = await response.json(); } catch { problem = { title: response.statusText, detail: `HTTP ${response.status}` }; }
    if (response.status === 401) $("#token-form").hidden = false;
    throw new ProblemError(problem, response.status);
  }
  return response;
}
const postJSON = (path, body, signal) => api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal }).then((r) => r.json());

function showError(view, error) {
  const box = $(`#view-${view} .error`);
  const p = error.problem;
  box.textContent = p ? `${p.title || "Error"}: ${p.detail || ""}${p.field ? ` (field ${p.field})` : ""}` : `Error: ${error.message || error}`;
  box.hidden = false;
}
const clearError = (view) => { $(`#view-${view} .error`).hidden = true; };
async function guarded(view, work) {
  clearError(view);
  try { await work(); } catch (error) { showError(view, error); }
}

// A long request (AIS takes minutes on a CPU): its button disabled, what is running and the time elapsed,
// and Cancel, which closes the request (the server drops it from its queue, or stops it at its next check
// between chunks and temperatures). ``work(signal, step)``: ``signal`` goes to every fetch, ``step(text)``
// names the phase.
async function running(view, work) {
  const status = $(`#view-${view} .busy`), button = $(`#view-${view} form button[type=submit]`);
  const controller = new AbortController(), started = performance.now();
  let phase = "working";
  const tick = () => { $(".elapsed", status).textContent = `${phase}: ${((performance.now() - started) / 1000).toFixed(1)} s`; };
  const timer = setInterval(tick, 200);
  $(".cancel", status).onclick = () => controller.abort();
  button.disabled = true;
  status.hidden = false;
  tick();
  try {
    await work(controller.signal, (text) => { phase = text; tick(); });
  } catch (error) {
    if (error.name !== "AbortError") throw error;
    throw new ProblemError({ title: "Cancelled", detail: `stopped waiting after ${((performance.now() - started) / 1000).toFixed(1)} s` }, 0);
  } finally {
    clearInterval(timer);
    button.disabled = false;
    status.hidden = true;
  }
}
const fmt = (v, digits = 3) => (v === null || v === undefined ? "null" : Number(v).toFixed(digits));
function verdictCell(verdict) {
  const span = document.createElement("span");
  span.className = `verdict ${verdict.level}`;
  span.textContent = verdict.level;
  return span;
}
function cells(row, values) {
  for (const v of values) {
    const td = row.insertCell();
    if (v instanceof Node) td.append(v); else td.textContent = v;
  }
  return row;
}

// Tabs: click, or the arrow keys between them.
function selectTab(tab) {
  for (const t of $$("[role=tab]")) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(`#${t.getAttribute("aria-controls")}`).hidden = !on;
  }
  tab.focus();
  if (tab.id === "tab-jobs") guarded("jobs", listJobs);
  if (tab.id === "tab-compare") guarded("compare", listComparisons);
}
for (const tab of $$("[role=tab]")) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const tabs = $$("[role=tab]");
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (step) selectTab(tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length]);
  });
}

// Models ---------------------------------------------------------------------------------------------------
async function loadModels() {
  const { models, skipped, default_model: preferred } = await (await api("/v1/models")).json();
  state.models = models;
  const body = $("#models-table tbody");
  body.replaceChildren();
  for (const m of models) {
    const row = cells(body.insertRow(), [m.name, m.status + (m.reason ? `: ${m.reason}` : ""), m.family || "", m.dataset || "", m.device || "", m.capabilities.join(", ")]);
    if (m.status === "ready") {
      row.className = "clickable";
      row.tabIndex = 0;
      row.addEventListener("click", () => guarded("models", () => showCard(m.name)));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") guarded("models", () => showCard(m.name)); });
    }
  }
  for (const s of skipped) cells(body.insertRow(), [s.file, `skipped: ${s.reason}`, "", "", "", ""]);
  // First offered: the server's default model where it can, else the first trained on MNIST (the canvas
  // draws MNIST-sized digits), else the first that can; a choice already made is kept.
  const fill = (selector, capability) => {
    for (const select of $$(selector)) {
      const before = select.value;
      const able = models.filter((m) => m.status === "ready" && m.capabilities.includes(capability));
      select.replaceChildren(...able.map((m) => new Option(m.name, m.name)));
      const first = able.find((m) => m.name === preferred) || able.find((m) => m.dataset === "mnist") || able[0];
      select.value = able.some((m) => m.name === before) ? before : (first ? first.name : "");
      showDataset(select);
    }
  };
  fill(".latent-models", "evidence");
  fill(".posterior-models", "posterior");
  fill(".job-models", "jobs");
  // A comparison's models: the default and the next of the same data set chosen to start with.
  for (const select of $$(".job-models-many")) {
    const able = models.filter((m) => m.status === "ready" && m.capabilities.includes("jobs"));
    const first = able.find((m) => m.name === preferred) || able.find((m) => m.dataset === "mnist") || able[0];
    const second = first && able.find((m) => m !== first && m.dataset === first.dataset);
    select.replaceChildren(...able.map((m) => new Option(`${m.name} (${m.dataset || "data set not named"})`, m.name, false, m === first || m === second)));
  }
}

// Beside each model selector, the data set the model was trained on (a job sent to the wrong one is costly).
function showDataset(select) {
  const label = $(`.dataset[data-for="${select.id}"]`);
  const model = state.models.find((m) => m.name === select.value);
  if (label) label.textContent = model ? `trained on ${model.dataset || "a data set its checkpoint does not name"}` : "";
}
for (const select of $$("select.latent-models, select.job-models")) select.addEventListener("change", () => showDataset(select));

// The bounds a training history records per epoch: the objective's and the held-out ones, not their settings
// (the held-out k is a constant, said once, not a curve).
const isBound = (key) => (key.startsWith("train_") || key.startsWith("valid_")) && key !== "valid_k";

async function showCard(name) {
  const detail = await (await api(`/v1/models/${encodeURIComponent(name)}`)).json();
  const meta = detail.metadata || {};
  $("#model-card").hidden = false;
  $("#card-title").textContent = name;
  const facts = $("#card-facts");
  facts.replaceChildren();
  const add = (k, v) => { const dt = document.createElement("dt"); dt.textContent = k; const dd = document.createElement("dd"); dd.textContent = v; facts.append(dt, dd); };
  add("family, likelihood", `${detail.family}, ${detail.likelihood}`);
  add("input shape", JSON.stringify(detail.input_shape));
  const data = meta.dataset || {};
  add("data set", data.name ? data.name + (data.train_images ? ` (${data.train_images} training images, ${data.valid_images} held out)` : " (its checkpoint records no split)") : "not stated");
  const bounds = Object.entries(meta.final_bounds || {}).filter(([k, v]) => isBound(k) && typeof v === "number");
  if (bounds.length) {
    const atK = meta.final_bounds.valid_k ? ` (held out at k = ${meta.final_bounds.valid_k}` + (meta.final_bounds.epoch ? `, epoch ${meta.final_bounds.epoch})` : ")") : "";
    add("final bounds", bounds.map(([k, v]) => `${k} ${fmt(v, 2)}`).join(", ") + atK);
  }
  if (detail.capabilities && detail.capabilities.includes("bdmc")) {
    // Certificates of AIS settings for this checkpoint file: what `steps: auto` runs (docs/estimators.md).
    const known = await (await api(`/v1/models/${encodeURIComponent(name)}/certificates`)).json();
    add("AIS certificates", known.certificates.length
      ? known.certificates.map((c) => `${c.plan}: gap ${fmt(c.mean_gap, 3)} ± ${fmt(c.gap_std_err, 3)}, 95% bound ${fmt(c.gap_bound, 3)} nats (${c.inputs} simulated inputs x ${c.chains} chains, ${c.created})`).join("; ")
      : `none yet: logpx certify --model ${name} (or choose "AIS, certified steps" when scoring)`);
  }
  const history = (meta.training && meta.training.history) || [];
  const keys = history.length ? Object.keys(history[0]).filter((k) => isBound(k) && typeof history[0][k] === "number") : [];
  $("#card-chart").replaceChildren();
  if (!keys.length) { $("#card-chart").textContent = "This checkpoint records no training history."; return; }
  const colours = ["#1f4e79", "#cf222e", "#1a7f37", "#9a6700", "#8250df"];
  state.charts.card = new uPlot({
    width: 640, height: 280, title: "training history",
    scales: { x: { time: false } },
    axes: [{ label: "epoch" }, { label: "nats per image", size: 60 }],
    series: [{ label: "epoch" }, ...keys.map((k, i) => ({ label: k, stroke: colours[i % colours.length], width: 2 }))],
  }, [history.map((h) => h.epoch), ...keys.map((k) => history.map((h) => h[k]))], $("#card-chart"));
}

// The image: drawn on the 28 x 28 grid, or a PNG file ------------------------------------------------------
const canvas = $("#draw");
const ctx = canvas.getContext("2d");
function render() {
  const image = ctx.createImageData(SIDE, SIDE);
  for (let i = 0; i < SIDE * SIDE; i++) {
    const v = Math.round(255 * state.pixels[i]);
    image.data.set([v, v, v, 255], 4 * i);
  }
  const small = document.createElement("canvas");
  small.width = small.height = SIDE;
  small.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
}
function paint(event) {
  const box = canvas.getBoundingClientRect();
  const cx = ((event.clientX - box.left) / box.width) * SIDE, cy = ((event.clientY - box.top) / box.height) * SIDE;
  for (let y = Math.floor(cy - 2); y <= cy + 2; y++) {
    for (let x = Math.floor(cx - 2); x <= cx + 2; x++) {
      if (x < 0 || y < 0 || x >= SIDE || y >= SIDE) continue;
      const d2 = (x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2;
      state.pixels[y * SIDE + x] = Math.min(1, state.pixels[y * SIDE + x] + Math.exp(-d2 / 0.9));
    }
  }
  state.image = { kind: "pixels" };
  render();
}
canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); paint(e); });
canvas.addEventListener("pointermove", (e) => { if (e.buttons) paint(e); });
$("#clear").addEventListener("click", () => { state.pixels.fill(0); state.image = null; $("#png").value = ""; render(); });
$("#png").addEventListener("change", async () => {
  const file = $("#png").files[0];
  if (!file) return;
  const bitmap = await createImageBitmap(file);
  const small = document.createElement("canvas");
  small.width = small.height = SIDE;
  const c = small.getContext("2d");
  c.drawImage(bitmap, 0, 0, SIDE, SIDE);
  const data = c.getImageData(0, 0, SIDE, SIDE).data;
  for (let i = 0; i < SIDE * SIDE; i++) state.pixels[i] = data[4 * i] / 255;
  state.image = { kind: "file", file }; // scored as the file itself, so the number is the API's for that file
  render();
});
function requireImage() {
  if (!state.image) throw new ProblemError({ title: "No image", detail: "draw a digit or choose a PNG file in the Score view first", field: "image" }, 0);
}
// The drawn image as the model's domain takes it: an 8-bit model's as integers 0..255 (scale byte), others' in [0, 1].
function pixelBody(model) {
  const entry = state.models.find((m) => m.name === model);
  if (entry && entry.domain === "uint8") return { inputs: [Array.from(state.pixels, (v) => Math.round(255 * v))], scale: "byte" };
  return { inputs: [Array.from(state.pixels)] };
}

// Score -----------------------------------------------------------------------------------------------------
$("#score-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded("score", () => running("score", async (signal, step) => {
    requireImage();
    const model = $("#score-model").value, k = Number($("#score-k").value), seed = Number($("#score-seed").value);
    const choice = $("#score-sampler").value, sampler = choice === "importance" ? "importance" : "ais";
    const steps = choice === "ais-auto" ? "auto" : Number($("#score-steps").value);
    const body = $("#score-table tbody");
    body.replaceChildren();
    const chosen = $$("#score-form input[name=estimator]:checked");
    for (const [index, box] of chosen.entries()) {
      const name = box.value, order = name === "jvi" ? 1 : undefined;
      step(`${name} k=${k}${sampler === "ais" ? `, AIS ${steps} steps` : ""} (${index + 1} of ${chosen.length})`);
      let out;
      if (state.image.kind === "file") {
        const form = new FormData();
        form.append("files", state.image.file);
        for (const [key, value] of Object.entries({ estimator: name, k, seed, sampler, ...(order ? { order } : {}), ...(sampler === "ais" ? { steps } : {}) })) form.append(key, String(value));
        out = await (await api(`/v1/models/${encodeURIComponent(model)}/evidence/images`, { method: "POST", body: form, signal })).json();
      } else {
        out = await postJSON(`/v1/models/${encodeURIComponent(model)}/evidence`, {
          ...pixelBody(model), estimator: { name, k, ...(order ? { order } : {}) }, seed,
          sampler: sampler === "ais" ? { name: "ais", steps } : { name: "importance" },
        }, signal);
      }
      const r = out.results[0];
      const value = document.createElement("span");
      value.className = "log-px";
      value.dataset.value = String(r.log_px);
      value.textContent = fmt(r.log_px);
      const why = document.createElement("div");
      why.append(r.verdict.reasons.join("; ") || "no reason for doubt");
      const advice = document.createElement("div");
      advice.className = "advice";
      advice.textContent = r.verdict.advice;
      why.append(advice);
      if (r.verdict.rerun) why.append(rerunButton(r.verdict.rerun), command(scoreCommand(model, r.verdict.rerun)));
      const ran = out.estimator.sampler, cert = out.estimator.certificate;
      if (cert) why.append(` Certified: ${cert.plan}, BDMC gap bound ${fmt(cert.gap_bound, 3)} nats on ${cert.inputs} simulated inputs (${cert.created}).`);
      const label = `${name}${order ? `:${order}` : ""} k=${k} (${ran.name}${ran.name === "ais" ? ` ${ran.steps} steps` : ""})`;
      const shown = document.createElement("span");
      shown.append(value);
      if (r.bits_per_dim != null) {  // image models: bits per dimension beside the nats (GET the model for how)
        const bits = document.createElement("small");
        bits.className = "bits";
        bits.textContent = ` ${fmt(r.bits_per_dim, 4)} bits/dim`;
        shown.append(bits);
      }
      const row = cells(body.insertRow(), [label, shown, fmt(r.std_err), fmt(r.diagnostics && r.diagnostics.khat, 2), verdictCell(r.verdict), why]);
      row.cells[1].className = row.cells[2].className = "num";
    }
  }));
});

// The advice as what runs it: a plan in the grammar every door takes (docs/estimators.md), and the command.
function planText({ estimator: e, sampler: s }) {
  const spec = `${e.name}:${e.k}${e.order ? `:${e.order}` : ""}`;
  return s && s.name === "ais" ? `${spec}@ais:${s.steps}:${s.leapfrog}` : spec;
}
function scoreCommand(model, rerun) {
  const { estimator: e, sampler: s } = rerun;
  return `logpx score IMAGE --model ${model} --estimator ${e.name} --k ${e.k}${e.order ? ` --order ${e.order}` : ""}` +
    (s && s.name === "ais" ? ` --sampler ais:${s.steps}:${s.leapfrog}` : "");
}
function command(text) {
  const code = document.createElement("code");
  code.className = "command";
  code.textContent = text;
  return code;
}

// The verdict's advice as a request: one click puts it in the form (AIS takes a while on a CPU, so the user
// starts it). The form has no leapfrog field: the advice uses the API's default of 10.
function rerunButton(rerun) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "rerun";
  const { estimator, sampler } = rerun;
  button.textContent = `Use the advice: ${estimator.name} k=${estimator.k}` + (sampler.name === "ais" ? `, AIS ${sampler.steps} steps` : "");
  button.addEventListener("click", () => {
    for (const box of $$("#score-form input[name=estimator]")) box.checked = box.value === estimator.name;
    $("#score-k").value = String(estimator.k);
    $("#score-sampler").value = sampler.name;
    if (sampler.steps) $("#score-steps").value = String(sampler.steps);
    $("#score-form button[type=submit]").focus();
  });
  return button;
}

// Convergence -----------------------------------------------------------------------------------------------
const KS = [2, 5, 10, 30, 100, 300, 1000, 3000];
$("#convergence-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded("convergence", () => running("convergence", async (signal, step) => {
    requireImage();
    const model = $("#conv-model").value, replicates = Number($("#conv-replicates").value), aisSteps = Number($("#conv-ais").value);
    const chains = Number($("#conv-chains").value);
    const estimators = KS.flatMap((k) => [{ name: "iwae", k }, { name: "jvi", k, order: 1 }]);
    step(`IWAE and JVI at k = 2 ... 3000, ${replicates} replicates (1 of ${aisSteps > 0 ? 2 : 1})`);
    const out = await postJSON(`/v1/models/${encodeURIComponent(model)}/compare`, { ...pixelBody(model), estimators, replicates, seed: 0 }, signal);
    const series = { iwae: [], jvi: [] };
    out.estimators.forEach((e) => series[e.estimator.name].push({ k: e.estimator.k, mean: e.mean[0], sd: e.sd[0], verdict: e.verdicts[0] }));
    let ais = null;
    if (aisSteps > 0) {
      step(`AIS, ${chains} chains of ${aisSteps} steps (2 of 2)`);
      const a = await postJSON(`/v1/models/${encodeURIComponent(model)}/evidence`, { ...pixelBody(model), estimator: { name: "iwae", k: chains }, sampler: { name: "ais", steps: aisSteps }, seed: 0 }, signal);
      ais = a.results[0];
    }
    drawConvergence(series, ais);
    const head = $("#convergence-table thead"), body = $("#convergence-table tbody");
    head.replaceChildren(cells(document.createElement("tr"), ["k", "IWAE mean +- sd", "IWAE verdict", "JVI mean +- sd", "JVI verdict"]));
    body.replaceChildren();
    series.iwae.forEach((s, i) => {
      const j = series.jvi[i];
      cells(body.insertRow(), [String(s.k), `${fmt(s.mean)} +- ${fmt(s.sd)}`, verdictCell(s.verdict), `${fmt(j.mean)} +- ${fmt(j.sd)}`, verdictCell(j.verdict)]);
    });
    if (ais) cells(body.insertRow(), [`AIS ${aisSteps} steps, ${chains} chains`, `${fmt(ais.log_px)} +- ${fmt(ais.std_err)}`, verdictCell(ais.verdict), "", ais.verdict.reasons.join("; ")]);
  }));
});

// uPlot lists every series in its legend; a band's edges are drawing aids, not series to read values from.
function hideFromLegend(chart, labels) {
  chart.series.forEach((series, i) => {
    if (labels.includes(series.label)) chart.root.querySelectorAll(".u-legend .u-series")[i].style.display = "none";
  });
}

function drawConvergence(series, ais) {
  const k = series.iwae.map((s) => s.k);
  const band = (list, sign) => list.map((s) => (s.mean === null ? null : s.mean + sign * (s.sd || 0)));
  const flat = (v) => k.map(() => v);
  const data = [k, series.iwae.map((s) => s.mean), band(series.iwae, -1), band(series.iwae, 1),
    series.jvi.map((s) => s.mean), band(series.jvi, -1), band(series.jvi, 1)];
  const seriesOpts = [{ label: "k" },
    { label: "IWAE-k", stroke: "#1f4e79", width: 2 }, { label: "IWAE - sd", stroke: "rgba(31,78,121,0.3)" }, { label: "IWAE + sd", stroke: "rgba(31,78,121,0.3)" },
    { label: "JVI-k (order 1)", stroke: "#cf222e", width: 2 }, { label: "JVI - sd", stroke: "rgba(207,34,46,0.3)" }, { label: "JVI + sd", stroke: "rgba(207,34,46,0.3)" }];
  const bands = [{ series: [3, 2], fill: "rgba(31,78,121,0.15)" }, { series: [6, 5], fill: "rgba(207,34,46,0.15)" }];
  if (ais && ais.log_px !== null) {
    data.push(flat(ais.log_px), flat(ais.log_px - ais.std_err), flat(ais.log_px + ais.std_err));
    seriesOpts.push({ label: "AIS", stroke: "#1a7f37", width: 2, dash: [6, 4] }, { label: "AIS - se", stroke: "rgba(26,127,55,0.3)" }, { label: "AIS + se", stroke: "rgba(26,127,55,0.3)" });
    bands.push({ series: [9, 8], fill: "rgba(26,127,55,0.15)" });
  }
  if (state.charts.convergence) state.charts.convergence.destroy();
  state.charts.convergence = new uPlot({
    width: 760, height: 360, title: "log p(x) estimates against k",
    scales: { x: { time: false, distr: 3 } },
    axes: [{ label: "k (log scale)" }, { label: "nats", size: 60 }],
    series: seriesOpts, bands,
  }, data, $("#convergence-chart"));
  hideFromLegend(state.charts.convergence, ["IWAE - sd", "IWAE + sd", "JVI - sd", "JVI + sd", "AIS - se", "AIS + se"]);
}

// Posterior of a 2-D latent model ------------------------------------------------------------------------------
$("#posterior-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded("posterior", () => running("posterior", async (signal, step) => {
    requireImage();
    step("log p(z | x) on an 80 x 80 grid");
    const out = await postJSON(`/v1/models/${encodeURIComponent($("#post-model").value)}/posterior`, { ...pixelBody($("#post-model").value), grid: 80, seed: 0 }, signal);
    drawPosterior(out);
    $("#posterior-facts").replaceChildren(
      `The posterior p(z | x) shaded by its log density over the 10 nats below its mode, and q(z | x)'s 2-sigma ellipse in red. ` +
      `log p(x) by quadrature on this grid: ${fmt(out.log_px)} nats; q(z | x) mean (${fmt(out.q_mean[0], 2)}, ${fmt(out.q_mean[1], 2)}); verdict `,
      verdictCell(out.verdict), ` ${out.verdict.reasons.join("; ")}`);
    state.posterior = out;
  }));
});

// Round tick positions between lo and hi: steps of 1, 2 or 5 times a power of ten, about ``count`` of them.
function ticks(lo, hi, count = 5) {
  const raw = (hi - lo) / count, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(Number(t.toFixed(10)));
  return out;
}
const shade = (t) => `rgb(${Math.round(255 - 224 * t)}, ${Math.round(255 - 177 * t)}, ${Math.round(255 - 134 * t)})`;

function drawPosterior(out) {
  const c = $("#posterior"), g = c.getContext("2d"), n = out.z1.length;
  const left = 56, top = 30, size = c.height - top - 50, bar = left + size + 34;
  const max = Math.max(...out.log_density.flat());
  g.clearRect(0, 0, c.width, c.height);
  const cell = size / n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      g.fillStyle = shade(Math.max(0, 1 + (out.log_density[i][j] - max) / 10)); // over the 10 nats below the mode
      g.fillRect(left + i * cell, top + (n - 1 - j) * cell, cell + 0.5, cell + 0.5); // z1 across, z2 up
    }
  }
  const [lo1, hi1, lo2, hi2] = [out.z1[0], out.z1[n - 1], out.z2[0], out.z2[n - 1]];
  const px = (z1) => left + ((z1 - lo1) / (hi1 - lo1)) * size, py = (z2) => top + size - ((z2 - lo2) / (hi2 - lo2)) * size;
  // q(z | x): the 2-sigma ellipse of its covariance (eigenvectors of a symmetric 2 x 2 matrix).
  const [[a, b], [, d]] = out.q_cov;
  const mid = (a + d) / 2, r = Math.sqrt(((a - d) / 2) ** 2 + b * b);
  const angle = 0.5 * Math.atan2(2 * b, a - d);
  g.save();
  g.beginPath();
  g.rect(left, top, size, size);
  g.clip();
  g.beginPath();
  for (let s = 0; s <= 64; s++) {
    const t = (2 * Math.PI * s) / 64;
    const u = 2 * Math.sqrt(mid + r) * Math.cos(t), v = 2 * Math.sqrt(Math.max(mid - r, 0)) * Math.sin(t);
    const z1 = out.q_mean[0] + u * Math.cos(angle) - v * Math.sin(angle), z2 = out.q_mean[1] + u * Math.sin(angle) + v * Math.cos(angle);
    if (s === 0) g.moveTo(px(z1), py(z2)); else g.lineTo(px(z1), py(z2));
  }
  g.strokeStyle = "#cf222e";
  g.lineWidth = 2;
  g.stroke();
  g.restore();
  // Axes with their ticks, and the colour scale.
  g.strokeStyle = g.fillStyle = "#1b1f24";
  g.lineWidth = 1;
  g.font = "12px system-ui";
  g.strokeRect(left, top, size, size);
  g.textAlign = "center";
  for (const t of ticks(lo1, hi1)) {
    g.beginPath(); g.moveTo(px(t), top + size); g.lineTo(px(t), top + size + 5); g.stroke();
    g.fillText(String(t), px(t), top + size + 18);
  }
  g.fillText("z1", left + size / 2, top + size + 36);
  g.textAlign = "right";
  for (const t of ticks(lo2, hi2)) {
    g.beginPath(); g.moveTo(left - 5, py(t)); g.lineTo(left, py(t)); g.stroke();
    g.fillText(String(t), left - 8, py(t) + 4);
  }
  g.save();
  g.translate(14, top + size / 2);
  g.rotate(-Math.PI / 2);
  g.textAlign = "center";
  g.fillText("z2", 0, 0);
  g.restore();
  for (let y = 0; y < size; y++) { g.fillStyle = shade(1 - y / size); g.fillRect(bar, top + y, 14, 1); }
  g.strokeRect(bar, top, 14, size);
  g.fillStyle = "#1b1f24";
  g.textAlign = "left";
  for (const t of [0, -2, -4, -6, -8, -10]) g.fillText(String(t), bar + 18, top + (-t / 10) * size + 4);
  g.fillText("log p(z | x) below its mode, nats; red: q(z | x), 2 sigma", left, 18);
}

// Jobs ----------------------------------------------------------------------------------------------------------
$("#job-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded("jobs", async () => {
    const form = new FormData();
    form.append("model", $("#job-model").value);
    form.append("data", $("#job-data").files[0]);
    if ($("#job-labels").files[0]) form.append("labels", $("#job-labels").files[0]);
    for (const spec of $("#job-estimators").value.split(/\s+/).filter(Boolean)) form.append("estimators", spec);
    form.append("seed", $("#job-seed").value);
    const job = await (await api("/v1/jobs", { method: "POST", body: form })).json();
    watch(job.id);
  });
});

// The job being watched lives in the address (#jobs/ID), so a reload or a shared link watches it again.
function watch(id) {
  if (location.hash !== `#jobs/${id}`) history.replaceState(null, "", `#jobs/${id}`);
  selectTab($("#tab-jobs"));
  guarded("jobs", async () => {
    showJob(await (await api(`/v1/jobs/${encodeURIComponent(id)}`)).json());
    listJobs();
    if (["queued", "running"].includes(state.job.state)) await watchJob(state.job.id);
    listJobs();
  });
}

async function listJobs() {
  const { jobs } = await (await api("/v1/jobs?limit=20")).json();
  const body = $("#jobs-list tbody");
  body.replaceChildren();
  for (const j of jobs) {
    const link = document.createElement("a");
    link.href = `#jobs/${j.id}`;
    link.textContent = j.id.slice(0, 8);
    link.title = j.id;
    const names = j.summary.map((s) => planText({ estimator: s.estimator, sampler: s.estimator.sampler })).join(" ");
    cells(body.insertRow(), [link, j.state, `${j.progress.done} / ${j.progress.total}`, j.model, names, new Date(j.created).toLocaleString()]);
  }
}
window.addEventListener("hashchange", () => {
  const match = location.hash.match(/^#jobs\/([0-9a-f-]+)$/);
  if (match && (!state.job || state.job.id !== match[1])) watch(match[1]);
  const comparison = location.hash.match(/^#comparisons\/([0-9a-f]+)$/);
  if (comparison && (!state.comparison || state.comparison.id !== comparison[1])) watchComparison(comparison[1]);
});

// Server-Sent Events through fetch (EventSource cannot send the bearer token).
async function watchJob(id) {
  const response = await api(`/v1/jobs/${id}/events`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const kind = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (kind === "progress") showJob(JSON.parse(data));
    }
  }
  showJob(await (await api(`/v1/jobs/${id}`)).json());
}

function showJob(job) {
  state.job = job;
  const p = job.progress;
  $("#job-line").textContent = `job ${job.id}: ${job.state}, ${p.done} of ${p.total} inputs (${Math.round(100 * p.fraction)}%)` +
    (p.eta_s ? `, about ${Math.ceil(p.eta_s)} s left` : "") +
    (job.runs_on ? `; runs ${job.runs_on.executor === "ray" ? `on Ray, ${job.runs_on.actors} actor(s) on ${job.runs_on.nodes} node(s)` : "in the server"}` : "") +
    (job.error ? `; ${job.error}` : "");
  $("#job-progress").value = p.fraction;
  const body = $("#job-summary tbody");
  body.replaceChildren();
  for (const s of job.summary) {
    const e = s.estimator;
    const counts = Object.entries(s.verdicts).filter(([, n]) => n).map(([level, n]) => { const v = verdictCell({ level }); v.textContent = `${n} ${level}`; return v; });
    const verdicts = document.createElement("span");
    verdicts.append(...counts);
    const advice = document.createElement("div");
    advice.append(s.advice || "");
    if (s.rerun) advice.append(jobRerunButton(s.rerun), command(`logpx job submit DATA --model ${job.model} --estimators ${planText(s.rerun)}`));
    cells(body.insertRow(), [`${e.name}:${e.k}${e.order ? `:${e.order}` : ""} (${e.sampler.name})`, fmt(s.mean), fmt(s.std_err), verdicts, advice]);
  }
  if (job.summary.length) drawKhat(job.summary[0].khat_histogram);
  $("#job-download").disabled = p.done === 0;
}

// A job's advice as a button: the advised plan goes into the form's estimators, for the same data set.
function jobRerunButton(rerun) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "rerun";
  button.textContent = `Use the advice: ${planText(rerun)}`;
  button.addEventListener("click", () => { $("#job-estimators").value = planText(rerun); $("#job-data").focus(); });
  return button;
}

function drawKhat(histogram) {
  const labels = ["< 0", ...histogram.edges.slice(1).map((e, i) => `${histogram.edges[i]}-${e}`), `>= ${histogram.edges[histogram.edges.length - 1]}`];
  const x = labels.map((_, i) => i);
  if (!state.charts.khat) {
    state.charts.khat = new uPlot({
      width: 760, height: 220, title: "k-hat over inputs (first estimator); over 0.7: do not trust importance sampling",
      legend: { show: false }, // one series, named by the axes
      // Half a bin beyond the first and last, so that no bar is cut at the edge.
      scales: { x: { time: false, range: () => [-0.5, labels.length - 0.5] } },
      axes: [{ values: (_, ticks) => ticks.map((t) => labels[t] || ""), label: "k-hat", splits: () => x }, { label: "inputs" }],
      series: [{ label: "bin" }, { label: "inputs", fill: "rgba(31,78,121,0.5)", stroke: "#1f4e79", paths: uPlot.paths.bars({ size: [0.8] }) }],
    }, [x, histogram.counts], $("#khat-chart"));
  } else {
    state.charts.khat.setData([x, histogram.counts]);
  }
}

$("#job-download").addEventListener("click", () => guarded("jobs", async () => {
  const blob = await (await api(`/v1/jobs/${state.job.id}/results?format=csv`)).blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `job-${state.job.id}.csv`;
  link.click();
  URL.revokeObjectURL(link.href);
}));

// Compare models ---------------------------------------------------------------------------------------------
$("#compare-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded("compare", async () => {
    const chosen = $$("#cmp-models option").filter((o) => o.selected).map((o) => o.value);
    if (chosen.length < 2) throw new ProblemError({ title: "Two models or more", detail: "choose at least two models to compare (Ctrl or Shift selects several)", field: "models" }, 0);
    const form = new FormData();
    for (const name of chosen) form.append("models", name);
    form.append("data", $("#cmp-data").files[0]);
    if ($("#cmp-labels").files[0]) form.append("labels", $("#cmp-labels").files[0]);
    for (const spec of $("#cmp-estimators").value.split(/\s+/).filter(Boolean)) form.append("estimators", spec);
    form.append("seed", $("#cmp-seed").value);
    const out = await (await api("/v1/comparisons", { method: "POST", body: form })).json();
    watchComparison(out.id);
  });
});

// The comparison shown lives in the address (#comparisons/ID); it is polled until every model's job ends.
function watchComparison(id) {
  if (location.hash !== `#comparisons/${id}`) history.replaceState(null, "", `#comparisons/${id}`);
  selectTab($("#tab-compare"));
  guarded("compare", async () => {
    for (;;) {
      const out = await (await api(`/v1/comparisons/${encodeURIComponent(id)}`)).json();
      await showComparison(out);
      if (!["queued", "running"].includes(out.state)) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    listComparisons();
  });
}

async function listComparisons() {
  const { comparisons } = await (await api("/v1/comparisons?limit=20")).json();
  const body = $("#comparisons-list tbody");
  body.replaceChildren();
  for (const c of comparisons) {
    const link = document.createElement("a");
    link.href = `#comparisons/${c.id}`;
    link.textContent = c.id.slice(0, 8);
    link.title = c.id;
    cells(body.insertRow(), [link, c.state, `${c.done} / ${c.total}`, c.models.join(", "), c.estimators.join(" "), new Date(c.created).toLocaleString()]);
  }
}

async function showComparison(out) {
  state.comparison = out;
  $("#cmp-line").textContent = `comparison ${out.id}: ${out.state}, ${out.done} of ${out.total} inputs scored by every model (${out.models.join(", ")})`;
  $("#cmp-progress").value = out.total ? out.done / out.total : 0;
  const standings = $("#cmp-standings tbody");
  standings.replaceChildren();
  for (const s of out.standings) {
    const verdicts = document.createElement("span");
    verdicts.append(...Object.entries(s.verdicts).filter(([, n]) => n).map(([level, n]) => { const v = verdictCell({ level }); v.textContent = `${n} ${level}`; return v; }));
    const row = cells(standings.insertRow(), [s.estimator, s.model, fmt(s.mean), fmt(s.std_err), fmt(s.mc_std_err), verdicts]);
    row.cells[2].className = row.cells[3].className = row.cells[4].className = "num";
  }
  const differences = $("#cmp-differences tbody");
  differences.replaceChildren();
  for (const d of out.differences) {
    const why = document.createElement("div");
    why.append(d.verdict.reasons.slice(1).join("; "));
    if (d.verdict.advice) { const a = document.createElement("div"); a.className = "advice"; a.textContent = d.verdict.advice; why.append(a); }
    if (d.verdict.rerun) {
      const plan = planText(d.verdict.rerun);
      const button = document.createElement("button");
      button.type = "button";
      button.className = "rerun";
      button.textContent = `Use the advice: ${plan}`;
      button.addEventListener("click", () => { $("#cmp-estimators").value = plan; $("#cmp-data").focus(); });
      why.append(button, command(`logpx compare-models ${out.models.join(" ")} DATA --estimators ${plan}`));
    }
    const row = cells(differences.insertRow(), [d.estimator, `${d.a} - ${d.b}: ${fmt(d.mean)}`, `${fmt(d.std_err)} (${fmt(d.unpaired_std_err)})`,
      `[${fmt(d.interval[0])}, ${fmt(d.interval[1])}]`, d.a_better === null ? "" : `${Math.round(100 * d.a_better)}%`, verdictCell(d.verdict), why]);
    row.cells[1].className = row.cells[2].className = "num";
  }
  drawIntervals(out.differences);
  $("#cmp-download").disabled = out.done === 0;
  if (out.done > 0 && out.models.length >= 2) {
    const text = await (await api(`/v1/comparisons/${out.id}/results`)).text();
    const [head, ...lines] = text.trim().split("\n");
    const columns = head.split(",");
    const name = out.estimators[0];
    const ia = columns.indexOf(`${out.models[0]}.${name}.log_px`), ib = columns.indexOf(`${out.models[1]}.${name}.log_px`);
    const pairs = lines.map((l) => l.split(",")).map((c) => [c[ia] === "" ? NaN : Number(c[ia]), c[ib] === "" ? NaN : Number(c[ib])]).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
    state.comparisonPairs = pairs;
    drawScatter(pairs, out.models[0], out.models[1]);
    drawDifferences(pairs.map(([a, b]) => a - b), `${out.models[0]} - ${out.models[1]}`);
  }
}

function axes(g, box, xs, ys, xlabel, ylabel) {
  const [left, top, w, h] = box, [x0, x1] = xs, [y0, y1] = ys;
  g.strokeStyle = g.fillStyle = "#1b1f24";
  g.font = "11px system-ui";
  g.strokeRect(left, top, w, h);
  g.textAlign = "center";
  for (const t of ticks(x0, x1, 4)) { const x = left + ((t - x0) / (x1 - x0)) * w; g.fillText(String(t), x, top + h + 14); }
  g.fillText(xlabel, left + w / 2, top + h + 30);
  g.textAlign = "right";
  for (const t of ticks(y0, y1, 4)) { const y = top + h - ((t - y0) / (y1 - y0)) * h; g.fillText(String(t), left - 4, y + 4); }
  g.save(); g.translate(12, top + h / 2); g.rotate(-Math.PI / 2); g.textAlign = "center"; g.fillText(ylabel, 0, 0); g.restore();
}

function drawIntervals(differences) {
  const c = $("#cmp-intervals"), g = c.getContext("2d");
  const shown = differences.filter((d) => d.mean !== null && d.interval[0] !== null);
  c.height = 40 + 26 * Math.max(1, shown.length);
  g.clearRect(0, 0, c.width, c.height);
  if (!shown.length) return;
  const lo = Math.min(0, ...shown.map((d) => d.interval[0])), hi = Math.max(0, ...shown.map((d) => d.interval[1]));
  const pad = 0.1 * (hi - lo || 1), left = 300, w = c.width - left - 20;
  const x = (v) => left + ((v - (lo - pad)) / (hi - lo + 2 * pad)) * w;
  g.font = "12px system-ui";
  g.strokeStyle = "#5b6470";
  g.beginPath(); g.moveTo(x(0), 10); g.lineTo(x(0), c.height - 24); g.stroke();
  shown.forEach((d, i) => {
    const y = 24 + 26 * i;
    g.fillStyle = "#1b1f24";
    g.textAlign = "right";
    g.fillText(`${d.a} - ${d.b} (${d.estimator})`, left - 10, y + 4);
    g.strokeStyle = g.fillStyle = { reliable: "#1a7f37", caution: "#9a6700", unreliable: "#cf222e" }[d.verdict.level];
    g.lineWidth = 3;
    g.beginPath(); g.moveTo(x(d.interval[0]), y); g.lineTo(x(d.interval[1]), y); g.stroke();
    g.beginPath(); g.arc(x(d.mean), y, 4, 0, 2 * Math.PI); g.fill();
  });
  g.lineWidth = 1;
  g.fillStyle = "#1b1f24";
  g.textAlign = "center";
  for (const t of ticks(lo - pad, hi + pad, 6)) g.fillText(String(t), x(t), c.height - 8);
}

function drawScatter(pairs, a, b) {
  const c = $("#cmp-scatter"), g = c.getContext("2d"), box = [50, 16, c.width - 66, c.height - 66];
  g.clearRect(0, 0, c.width, c.height);
  if (!pairs.length) return;
  const all = pairs.flat(), lo = Math.min(...all), hi = Math.max(...all), span = hi - lo || 1;
  const r = [lo - 0.05 * span, hi + 0.05 * span];
  const px = (v) => box[0] + ((v - r[0]) / (r[1] - r[0])) * box[2], py = (v) => box[1] + box[3] - ((v - r[0]) / (r[1] - r[0])) * box[3];
  g.strokeStyle = "#d6dae0";
  g.beginPath(); g.moveTo(px(r[0]), py(r[0])); g.lineTo(px(r[1]), py(r[1])); g.stroke(); // a = b
  g.fillStyle = "rgba(31,78,121,0.55)";
  for (const [u, v] of pairs) { g.beginPath(); g.arc(px(u), py(v), 2.5, 0, 2 * Math.PI); g.fill(); }
  axes(g, box, r, r, `${a}: log p(x)`, `${b}: log p(x)`);
}

function drawDifferences(values, label) {
  const c = $("#cmp-histogram"), g = c.getContext("2d"), box = [50, 16, c.width - 66, c.height - 66];
  g.clearRect(0, 0, c.width, c.height);
  if (!values.length) return;
  const lo = Math.min(...values, 0), hi = Math.max(...values, 0), bins = 24, width = (hi - lo || 1) / bins;
  const counts = new Array(bins).fill(0);
  for (const v of values) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
  const top = Math.max(...counts);
  g.fillStyle = "rgba(31,78,121,0.5)";
  counts.forEach((n, i) => {
    const h = (n / top) * box[3];
    g.fillRect(box[0] + (i / bins) * box[2] + 1, box[1] + box[3] - h, box[2] / bins - 2, h);
  });
  g.strokeStyle = "#cf222e";
  const zero = box[0] + ((0 - lo) / (hi - lo || 1)) * box[2];
  g.beginPath(); g.moveTo(zero, box[1]); g.lineTo(zero, box[1] + box[3]); g.stroke();
  axes(g, box, [lo, hi], [0, top], `${label}, nats per input`, "inputs");
}

$("#cmp-download").addEventListener("click", () => guarded("compare", async () => {
  const blob = await (await api(`/v1/comparisons/${state.comparison.id}/results`)).blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = `comparison-${state.comparison.id}.csv`;
  link.click();
  URL.revokeObjectURL(link.href);
}));

// Start -------------------------------------------------------------------------------------------------------
$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value;
  sessionStorage.setItem("logpx-token", state.token);
  $("#token-form").hidden = true;
  guarded("models", loadModels);
});
render();
guarded("models", async () => {
  await loadModels();
  const match = location.hash.match(/^#jobs\/([0-9a-f-]+)$/);
  const comparison = location.hash.match(/^#comparisons\/([0-9a-f]+)$/);
  if (match) watch(match[1]);
  else if (comparison) watchComparison(comparison[1]);
  else guarded("jobs", listJobs);
});
