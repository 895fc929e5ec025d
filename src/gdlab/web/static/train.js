// gdlab explorer, tab 3: supervised training (gdlab.train streamed from the server).
// The server does every computation; this page sends settings and draws frames. A compare run
// gets its own WebSocket, as each connection owns one run.
"use strict";

const DEFAULTS = { data: "blobs", model: "logistic", n_points: "200", separation: "2", noise: "0.25", seed: "0",
  test_size: "0.2", l2: "", optimizer: "gd", lr: "0.5", momentum: "", damping: "", batch_size: "full",
  epochs: "", max_steps: "", compare: "none", speed: "100" };
// control id <-> URL key <-> config field
const FIELDS = [["data", "data"], ["model", "model"], ["n-points", "n_points"], ["separation", "separation"],
  ["noise", "noise"], ["seed", "seed"], ["test-size", "test_size"], ["l2", "l2"], ["optimizer", "optimizer"],
  ["lr", "lr"], ["momentum", "momentum"], ["damping", "damping"], ["batch-size", "batch_size"], ["epochs", "epochs"],
  ["max-steps", "max_steps"], ["compare", "compare"], ["speed", "speed"]];
const TOY = ["blobs", "moons"];
const DATA_ROWS = { breast_cancer: 569, digits: 1797, iris: 150, wine: 178, diabetes: 442 };
const MODEL_FOR = { blobs: "logistic", moons: "logistic", breast_cancer: "logistic", digits: "softmax", iris: "softmax",
  wine: "softmax", diabetes: "linear" };
const MOMENTUM_OPTIMIZERS = ["momentum", "nesterov", "natural"];
const DAMPING_OPTIMIZERS = ["natural", "natural-diag"];
const LIVE = ["lr", "momentum", "damping"];      // sent as `update` to a running run
const COLORS = { a: "#2b6cb0", b: "#dd6b20" };

const slot = () => ({ ws: null, queue: [], startId: 0, run: null, trace: [], latest: null, start: null,
  started: null, playing: false, stopped: null, refused: false });
const state = { runs: { a: slot(), b: slot() }, wantPlay: false, nTrain: null };
window.trainState = state;          // read by the browser tests (frames as the page holds them)

// ---------- settings <-> controls <-> URL ----------

const val = (id) => $(id).value.trim();

function writeUrl() {
  const q = new URLSearchParams();
  for (const [id, key] of FIELDS) q.set(key, val(id));
  if (state.wantPlay) q.set("run", "1");
  history.replaceState(null, "", "?" + q.toString());
}

function readUrl() {
  const q = new URLSearchParams(location.search);
  for (const [id, key] of FIELDS) {
    const v = q.has(key) ? q.get(key) : DEFAULTS[key];
    const el = $(id);
    if (el.tagName === "SELECT" && ![...el.options].some((o) => o.value === v)) el.value = DEFAULTS[key];
    else el.value = v;
  }
  return q.get("run") === "1";
}

function showOptionFields() {
  const data = val("data"), opt = val("optimizer");
  $("toy-box").hidden = !TOY.includes(data);
  $("separation-box").hidden = data !== "blobs";
  $("noise-box").hidden = data !== "moons";
  $("momentum-box").hidden = !MOMENTUM_OPTIMIZERS.includes(opt);
  $("damping-box").hidden = !DAMPING_OPTIMIZERS.includes(opt);
  $("plot-boundary").hidden = !TOY.includes(data);
}

// ---------- the batch-size slider: 1, 2, 4, ... rows, then the full batch ----------

function guessTrainRows() {
  const n = TOY.includes(val("data")) ? Number(val("n-points")) : DATA_ROWS[val("data")];
  const t = Number(val("test-size"));
  return Math.max(1, Math.floor((n || 200) * (1 - (t >= 0 && t < 1 ? t : 0.2))));
}

function sliderSizes() {
  const n = state.nTrain || guessTrainRows();
  const sizes = [];
  for (let b = 1; b <= n; b *= 2) sizes.push(b);
  return [...sizes, 0];          // 0: the full batch
}

function syncSlider() {
  const sizes = sliderSizes(), text = val("batch-size").toLowerCase();
  const b = text === "full" ? 0 : Number(text);
  $("batch-slider").max = String(sizes.length - 1);
  let pos = sizes.indexOf(b);
  if (pos < 0) pos = Number.isFinite(b) && b > 0 ? sizes.findIndex((s) => s >= b || s === 0) : sizes.length - 1;
  $("batch-slider").value = String(pos);
  $("batch-label").textContent = b === 0 || text === "full" ? "full batch (batch GD)" : `${text} rows (mini-batch SGD)`;
}

// ---------- validation: the page's own checks, then the server's (gdlab's) ----------

const ERROR_IDS = { data: "data", model: "model", n_points: "n-points", separation: "separation", noise: "noise",
  seed: "seed", test_size: "test-size", l2: "l2", C: "l2", lr: "lr", momentum: "momentum", damping: "damping",
  batch_size: "batch-size", epochs: "epochs", max_steps: "max-steps", speed: "general" };

function setError(field, message) {
  const id = ERROR_IDS[field] || "general";
  const box = $(id + "-error") || $("general-error");
  box.textContent = message || "";
  const input = $(id);
  if (input && input.tagName !== "DIV") input.setAttribute("aria-invalid", message ? "true" : "false");
}

function clearErrors() {
  for (const f of Object.keys(ERROR_IDS)) setError(f, "");
  setError("general", ""); $("compare-error").textContent = "";
}

// The configuration of run A, or null after showing inline errors.
function config() {
  clearErrors();
  let ok = true;
  const bad = (field, msg) => { setError(field, msg); ok = false; };
  const num = (id, field, { int = false, min = -Infinity, max = Infinity, optional = false, what = "a number" } = {}) => {
    const text = val(id);
    if (text === "" && optional) return null;
    const x = Number(text);
    if (text === "" || !Number.isFinite(x) || (int && !Number.isInteger(x)) || x < min || x > max) {
      bad(field, `${field} must be ${what}, got "${text}".`);
      return null;
    }
    return x;
  };
  const data = val("data"), optimizer = val("optimizer");
  const cfg = { data, model: val("model"), optimizer, seed: num("seed", "seed", { int: true, min: 0, max: 2 ** 32 - 1, what: "a whole number ≥ 0" }),
    test_size: num("test-size", "test_size", { min: 0, max: 0.999999, what: "a fraction in [0, 1)" }),
    l2: num("l2", "l2", { min: 0, optional: true, what: "a number ≥ 0 (0 is no penalty), or empty" }),
    lr: num("lr", "lr", { optional: true, what: "a finite number, or empty for the default" }),
    epochs: num("epochs", "epochs", { int: true, min: 1, optional: true, what: "a whole number ≥ 1, or empty" }),
    max_steps: num("max-steps", "max_steps", { int: true, min: 0, max: 1000000, optional: true, what: "a whole number from 0 to 1,000,000, or empty" }),
    speed: Number(val("speed")) };
  if (TOY.includes(data)) {
    cfg.n_points = num("n-points", "n_points", { int: true, min: 10, max: 20000, what: "a whole number from 10 to 20,000" });
    if (data === "blobs") cfg.separation = num("separation", "separation", { min: 0, max: 20, what: "a number from 0 to 20" });
    else cfg.noise = num("noise", "noise", { min: 0, max: 2, what: "a number from 0 to 2" });
  }
  if (MOMENTUM_OPTIMIZERS.includes(optimizer)) {
    cfg.momentum = num("momentum", "momentum", { min: 0, max: 1, optional: true, what: "a number from 0 to 1, or empty" });
  }
  if (DAMPING_OPTIMIZERS.includes(optimizer)) {
    cfg.damping = num("damping", "damping", { min: 0, optional: true, what: "a number ≥ 0, or empty" });
  }
  const b = val("batch-size").toLowerCase();
  if (b === "full") cfg.batch_size = 0;
  else cfg.batch_size = num("batch-size", "batch_size", { int: true, min: 0, max: 2 ** 31 - 2, what: "a whole number of rows ≥ 1, or 0 / full for batch gradient descent" });
  for (const k of Object.keys(cfg)) if (cfg[k] === null) delete cfg[k];
  return ok ? cfg : null;
}

// Run B's configuration: run A's data and model with another optimizer or batch size.
function compareConfig(cfg) {
  const which = val("compare");
  if (which === "none" || !cfg) return null;
  const base = { ...cfg };
  for (const k of ["lr", "momentum", "damping"]) delete base[k];
  if (which === "full") return { ...cfg, batch_size: 0 };
  if (which === "natural") return { ...base, optimizer: "natural", batch_size: 0 };
  return { ...base, optimizer: "momentum", lr: 0.1, momentum: 0.9 };
}

const COMPARE_TITLES = { full: "batch GD (full batch)", natural: "natural gradient", momentum: "momentum 0.9" };

// ---------- the WebSockets ----------

function connect(name) {
  const r = state.runs[name];
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/train`);
  r.ws = ws;
  ws.onopen = () => { for (const m of r.queue.splice(0)) ws.send(m); };
  ws.onmessage = (ev) => onMessage(name, JSON.parse(ev.data));
  ws.onclose = () => {
    r.playing = false; r.run = null; showPlaying();
    setError("general", "the connection to the server closed; reload the page to reconnect.");
  };
}

function send(name, msg) {
  const r = state.runs[name], text = JSON.stringify(msg);
  if (r.ws && r.ws.readyState === WebSocket.OPEN) r.ws.send(text); else r.queue.push(text);
}

function startRun(play) {
  const cfg = config();
  if (!cfg) {                       // bad input: nothing runs until it is fixed
    for (const n of active()) send(n, { type: "pause" });
    state.runs.a.run = null; state.runs.b.run = null; return false;
  }
  const cmp = compareConfig(cfg);
  for (const [name, c] of [["a", cfg], ["b", cmp]]) {
    const r = state.runs[name];
    r.trace = []; r.latest = null; r.stopped = null; r.refused = false;
    if (!c) {
      if (r.run) send(name, { type: "pause" });
      r.run = null; r.started = null; continue;
    }
    r.startId += 1;
    r.run = { config: c, pending: true };
    send(name, { type: "start", config: c, play, id: r.startId });
  }
  hideBanners(); render();
  return true;
}

function onMessage(name, msg) {
  const r = state.runs[name];
  switch (msg.type) {
    case "started":
      if (msg.id !== undefined && msg.id !== null && msg.id !== r.startId) break;   // an overtaken start
      if (r.run) r.run.pending = false;
      r.started = msg; r.start = msg.start; r.trace = [msg.start]; r.latest = msg.start; r.stopped = null;
      if (name === "a") {
        state.nTrain = msg.data.n_train; syncSlider();
        const m = msg.metric === "rmse" ? "RMSE" : "Accuracy";
        $("metric-name").textContent = m + ":"; $("test-metric-name").textContent = "Test " + m.toLowerCase() + ":";
        $("b-metric-name").textContent = m + ":";
      }
      hideBanner(name); showReadouts(); render();
      break;
    case "frames":
      for (const f of msg.frames) r.trace[f.step] = f;
      r.trace.length = msg.frames[msg.frames.length - 1].step + 1;
      r.latest = msg.frames[msg.frames.length - 1];
      showReadouts(); render();
      break;
    case "state":
      r.playing = msg.state === "playing"; showPlaying();
      break;
    case "stopped":
      r.playing = false; r.stopped = msg; showPlaying();
      showBanner(name, msg.reason, msg.message);
      break;
    case "error":
      if (msg.reply_to === "start" && msg.id === r.startId) { r.run = null; r.refused = true; }
      r.playing = false; showPlaying();
      if (name === "a") setError(msg.field, msg.message);
      else $("compare-error").textContent = `the compared run: ${msg.message}`;
      break;
    default:
      break;
  }
}

// ---------- controls ----------

const active = () => ["a", "b"].filter((n) => state.runs[n].run);
const anyPlaying = () => active().some((n) => state.runs[n].playing);

function play() {
  state.wantPlay = true; writeUrl();
  const a = state.runs.a;
  if (!config()) { pause(); return; }
  if (!a.run || a.refused || a.stopped || a.dirty) { a.dirty = false; startRun(true); return; }
  for (const n of active()) if (!state.runs[n].stopped) send(n, { type: "resume" });
}

function pause() { for (const n of active()) send(n, { type: "pause" }); }

function togglePlay() { if (anyPlaying()) pause(); else play(); }

function singleStep() {
  const a = state.runs.a;
  if (!config()) return;
  if (!a.run || a.refused || a.dirty) { a.dirty = false; if (!startRun(false)) return; }
  for (const n of active()) send(n, { type: "step", n: 1 });
}

function reset() {
  state.wantPlay = false; writeUrl(); hideBanners();
  if (!state.runs.a.run || state.runs.a.dirty) { state.runs.a.dirty = false; startRun(false); return; }
  for (const n of active()) {
    const r = state.runs[n];
    r.trace = []; r.stopped = null;
    send(n, { type: "reset" });
  }
}

// Any change but the step size, momentum, damping and speed: preview the new run at step 0.
function structuralChange() {
  state.wantPlay = false; state.nTrain = null;
  showOptionFields(); syncSlider(); writeUrl();
  startRun(false);
}

function liveChange(field) {
  writeUrl();
  const cfg = config();
  const a = state.runs.a;
  if (!cfg) { pause(); a.dirty = true; return; }
  if (!a.run || a.refused || a.run.pending || (a.stopped && a.stopped.reason === "diverged")) { startRun(false); return; }
  const msg = { type: "update" };
  msg[field] = field in cfg ? cfg[field] : null;
  if (msg[field] === null) { a.dirty = true; return; }     // back to the default: a new run on play
  send("a", msg);
  if (val("compare") === "full") send("b", msg);            // the same optimizer, on the full batch
}

function wire() {
  for (const id of ["n-points", "separation", "noise", "seed", "test-size", "l2", "optimizer", "batch-size",
    "epochs", "max-steps", "compare"]) {
    $(id).addEventListener("change", structuralChange);
  }
  $("data").addEventListener("change", () => {
    const m = MODEL_FOR[val("data")];
    if (m) $("model").value = m;
    structuralChange();
  });
  $("model").addEventListener("change", structuralChange);
  for (const [id, field] of [["lr", "lr"], ["momentum", "momentum"], ["damping", "damping"]]) {
    $(id).addEventListener("change", () => liveChange(field));
  }
  $("batch-slider").addEventListener("input", () => {
    const b = sliderSizes()[Number($("batch-slider").value)];
    $("batch-size").value = b === 0 || b === undefined ? "full" : String(b);
    syncSlider();
  });
  $("batch-slider").addEventListener("change", structuralChange);
  $("speed").addEventListener("change", () => {
    writeUrl();
    for (const n of active()) if (!state.runs[n].pending) send(n, { type: "update", speed: Number(val("speed")) });
  });
  $("play").addEventListener("click", togglePlay);
  $("step").addEventListener("click", singleStep);
  $("reset").addEventListener("click", reset);
  $("download-csv").addEventListener("click", downloadCsv);
  $("save-png").addEventListener("click", savePng);
  wireKeys(togglePlay, singleStep);
}

// ---------- display ----------

const fmtValue = (x, digits = 4) => fmt(x, digits, "–");   // "–": not computed yet (e.g. no epoch ended)

const metricOf = (r, f, test = false) => {
  const m = (r.started && r.started.metric) || "accuracy";
  return f ? f[(test ? "test_" : "") + m] : null;
};

// The latest frame, with the test numbers of the latest epoch end.
function lastEpoch(r) {
  for (let i = r.trace.length - 1; i >= 0; i--) if (r.trace[i] && r.trace[i].epoch !== null && r.trace[i].epoch !== undefined) return r.trace[i];
  return null;
}

function showReadouts() {
  const a = state.runs.a, f = a.latest;
  if (f) {
    $("step-count").textContent = String(f.step);
    const e = lastEpoch(a);
    $("epoch").textContent = e ? String(Math.floor(e.epoch)) : "0";
    $("loss").textContent = fmtValue(f.full_loss);
    $("accuracy").textContent = fmtValue(metricOf(a, f));
    $("test-accuracy").textContent = fmtValue(metricOf(a, e, true));
    if (f.lr !== null && f.lr !== undefined) $("lr-now").textContent = String(Number(f.lr.toPrecision(6)));
    $("grad").textContent = fmtValue(f.grad);
  }
  const b = state.runs.b;
  $("readouts-b").hidden = !b.run;
  if (b.run) {
    $("b-title").textContent = `Compare (${COMPARE_TITLES[val("compare")] || ""}):`;
    $("b-step-count").textContent = b.latest ? String(b.latest.step) : "0";
    $("b-loss").textContent = fmtValue(b.latest && b.latest.full_loss);
    $("b-accuracy").textContent = fmtValue(metricOf(b, b.latest));
  }
}

function showPlaying() { $("play").textContent = anyPlaying() ? "Pause" : "Play"; }

function showBanner(name, reason, message) {
  const el = $(name === "a" ? "banner" : "banner-b");
  el.className = "banner " + reason;
  el.textContent = name === "a" ? message : `Compared run (${COMPARE_TITLES[val("compare")] || ""}): ${message}`;
  el.hidden = false;
}

function hideBanner(name) { const el = $(name === "a" ? "banner" : "banner-b"); el.hidden = true; el.textContent = ""; }
function hideBanners() { hideBanner("a"); hideBanner("b"); }

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; draw(); });
}

const LAYOUT = { margin: { l: 55, r: 10, t: 30, b: 40 }, showlegend: true, legend: { orientation: "h", y: -0.22 },
  font: { size: 11 } };
const PLOT_CONFIG = { displaylogo: false, responsive: true };

function runLabel(name) {
  if (name === "a") {
    const b = val("batch-size").toLowerCase();
    return `${val("optimizer")}, ${b === "full" || b === "0" ? "full batch" : "batch " + b}`;
  }
  return COMPARE_TITLES[val("compare")] || "compare";
}

// The line z = 0 in raw coordinates: sum_j w_j (x_j - m_j) / s_j + b = 0, clipped to the box.
function boundaryLine(params, data, box) {
  if (!params || params.length < 3 || params.some((v) => v === null)) return null;
  const [w0, w1, b] = params, [m0, m1] = data.mean, [s0, s1] = data.scale;
  const a0 = w0 / s0, a1 = w1 / s1, c = b - a0 * m0 - a1 * m1;
  if (Math.abs(a0) < 1e-300 && Math.abs(a1) < 1e-300) return null;
  if (Math.abs(a1) >= Math.abs(a0)) {
    return { x: [box.x0, box.x1], y: [box.x0, box.x1].map((x) => -(c + a0 * x) / a1) };
  }
  return { x: [box.y0, box.y1].map((y) => -(c + a1 * y) / a0), y: [box.y0, box.y1] };
}

function drawBoundary() {
  const a = state.runs.a;
  if (!a.started || !a.started.data.toy) return;
  const d = a.started.data;
  const all = d.X_train.concat(d.X_test);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const pad = 0.5;
  const box = { x0: Math.min(...xs) - pad, x1: Math.max(...xs) + pad, y0: Math.min(...ys) - pad, y1: Math.max(...ys) + pad };
  const traces = [];
  // p(y = 1 | x) of run A as a faint background
  const f = a.latest && a.latest.params ? a.latest : a.start;
  if (f && f.params && f.params.every((v) => v !== null)) {
    const n = 40, gx = [], gy = [];
    for (let i = 0; i < n; i++) { gx.push(box.x0 + (box.x1 - box.x0) * i / (n - 1)); gy.push(box.y0 + (box.y1 - box.y0) * i / (n - 1)); }
    const [w0, w1, b] = f.params;
    const z = gy.map((y) => gx.map((x) => 1 / (1 + Math.exp(-(w0 * (x - d.mean[0]) / d.scale[0] + w1 * (y - d.mean[1]) / d.scale[1] + b)))));
    traces.push({ type: "heatmap", x: gx, y: gy, z, zmin: 0, zmax: 1, colorscale: [[0, "#fde2cf"], [0.5, "#ffffff"], [1, "#d6e4f5"]],
      showscale: false, hoverinfo: "skip", name: "p(y=1|x)", showlegend: false });
  }
  const pts = (X, Y, label, symbol, opacity) => [0, 1].map((k) => ({
    x: X.filter((_, i) => Y[i] === k).map((p) => p[0]), y: X.filter((_, i) => Y[i] === k).map((p) => p[1]),
    mode: "markers", name: `class ${k} (${label})`, marker: { color: k ? "#2b6cb0" : "#c05621", size: 6, symbol, opacity } }));
  traces.push(...pts(d.X_train, d.y_train, "train", "circle", 0.8), ...pts(d.X_test, d.y_test, "test", "x", 0.7));
  for (const name of ["a", "b"]) {
    const r = state.runs[name];
    if (!r.run && name === "b") continue;
    const cur = r.latest && r.latest.params ? r.latest : r.start;
    const line = cur && boundaryLine(cur.params, d, box);
    traces.push({ x: line ? line.x : [], y: line ? line.y : [], mode: "lines", name: `boundary w·x + b = 0: ${runLabel(name)}`,
      line: { color: name === "a" ? "#1a202c" : COLORS.b, width: 2.5, dash: name === "a" ? "solid" : "dash" } });
  }
  Plotly.react("plot-boundary", traces, { ...LAYOUT, title: { text: "data and decision boundary", x: 0.02 },
    xaxis: { title: d.features[0], range: [box.x0, box.x1] }, yaxis: { title: d.features[1], range: [box.y0, box.y1] } }, PLOT_CONFIG);
}

function draw() {
  drawBoundary();
  const lossTraces = [], accTraces = [], gradTraces = [];
  for (const name of ["a", "b"]) {
    const r = state.runs[name];
    if (!r.run || !r.started) continue;
    const rows = r.trace.filter(Boolean), color = COLORS[name], label = runLabel(name);
    const steps = rows.map((f) => f.step);
    const pos = (v) => (v !== null && v !== undefined && v > 0 ? v : null);
    const minibatch = r.started.config.batch_size > 0;
    if (minibatch) {
      lossTraces.push({ x: steps, y: rows.map((f) => pos(f.loss)), name: `mini-batch loss: ${label}`,
        line: { color, width: 1 }, opacity: 0.35 });
    }
    lossTraces.push({ x: steps, y: rows.map((f) => pos(f.full_loss)), name: `train loss: ${label}`, line: { color, width: 2.5 } });
    const ep = rows.filter((f) => f.epoch !== null && f.epoch !== undefined);
    lossTraces.push({ x: ep.map((f) => f.step), y: ep.map((f) => pos(f.test_loss)), name: `test loss per epoch: ${label}`,
      mode: minibatch ? "lines+markers" : "lines", line: { color, width: 1.5, dash: "dot" }, marker: { size: 5 } });
    accTraces.push({ x: steps, y: rows.map((f) => metricOf(r, f)), name: `train: ${label}`, line: { color, width: 2 } });
    accTraces.push({ x: ep.map((f) => f.step), y: ep.map((f) => metricOf(r, f, true)), name: `test: ${label}`,
      mode: minibatch ? "lines+markers" : "lines", line: { color, width: 1.5, dash: "dot" }, marker: { size: 5 } });
    gradTraces.push({ x: steps, y: rows.map((f) => pos(f.grad)), name: `‖∇ loss‖: ${label}`, line: { color, width: 1.5 } });
    gradTraces.push({ x: steps, y: rows.map((f) => pos(f.lr)), name: `lr: ${label}`, line: { color, width: 1, dash: "dash" } });
  }
  const metric = (state.runs.a.started && state.runs.a.started.metric) || "accuracy";
  Plotly.react("plot-loss", lossTraces, { ...LAYOUT, title: { text: "loss against step", x: 0.02 },
    xaxis: { title: "step" }, yaxis: { title: "loss (log scale)", type: "log" }, hovermode: "x unified" }, PLOT_CONFIG);
  Plotly.react("plot-accuracy", accTraces, { ...LAYOUT, title: { text: `${metric} against step`, x: 0.02 },
    xaxis: { title: "step" }, yaxis: { title: metric }, hovermode: "x unified" }, PLOT_CONFIG);
  Plotly.react("plot-grad", gradTraces, { ...LAYOUT, title: { text: "gradient norm and learning rate", x: 0.02 },
    xaxis: { title: "step" }, yaxis: { title: "log scale", type: "log" }, hovermode: "x unified" }, PLOT_CONFIG);
}

// ---------- downloads ----------

function downloadCsv() {
  const names = ["a", "b"].filter((n) => state.runs[n].run && state.runs[n].started);
  const metric = (state.runs.a.started && state.runs.a.started.metric) || "accuracy";
  let nParams = 0;
  for (const n of names) for (const f of state.runs[n].trace) if (f && f.params) nParams = Math.max(nParams, f.params.length);
  const header = ["run", "step", "epoch", "loss", "full_loss", metric, "test_loss", "test_" + metric, "lr", "grad",
    "weight_norm", ...Array.from({ length: nParams }, (_, i) => `params_${i}`)];
  const cell = (v) => (v === null || v === undefined ? "" : String(v));
  const lines = [header.join(",")];
  for (const n of names) {
    const label = runLabel(n).replace(/,/g, ";");
    for (const f of state.runs[n].trace.filter(Boolean)) {
      const p = f.params || [];
      lines.push([label, f.step, f.epoch, f.loss, f.full_loss, f[metric], f.test_loss, f["test_" + metric], f.lr, f.grad,
        f.weight_norm, ...Array.from({ length: nParams }, (_, i) => p[i])].map(cell).join(","));
    }
  }
  downloadCsvLines("gdlab-train-trace.csv", lines);
}

function savePng() {
  const ids = ["plot-boundary", "plot-loss", "plot-accuracy", "plot-grad"].filter((id) => !$(id).hidden);
  const w = 640, h = 400, cols = 2;
  return downloadPlotsPng("gdlab-train.png", ids.map((id, i) => [id, (i % cols) * w, Math.floor(i / cols) * h, w, h]),
    cols * w, Math.ceil(ids.length / cols) * h);
}

// ---------- start ----------

function main() {
  const autoplay = readUrl();
  showOptionFields(); syncSlider();
  wire();
  connect("a"); connect("b");
  state.wantPlay = autoplay;
  if (autoplay) startRun(true); else startRun(false);
  writeUrl();
}

main();
