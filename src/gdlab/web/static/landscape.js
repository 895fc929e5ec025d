// gdlab explorer, tab 2: gradient descent on 1-D and 2-D landscapes, streamed from the server.
// The server does every computation (gdlab's engine on gdlab.landscapes); this page sends
// settings (the names of `gdlab landscape`'s options) and draws frames.
"use strict";

const NAMED = { "double-well": 1, bowl: 1, himmelblau: 2, rosenbrock: 2, rastrigin: 2, ackley: 2, beale: 2,
  "six-hump-camel": 2 };
const DEFAULT_START = { "double-well": [1.5], bowl: [2], himmelblau: [0, 0], rosenbrock: [-1.5, 2],
  rastrigin: [2.2, -1.7], ackley: [2.2, -1.7], beale: [1, 1], "six-hump-camel": [1.5, 1] };
const DEFAULTS = { function: "double-well", optimizer: "gd", lr: "0.01", momentum: "0.9", schedule: "constant",
  decay: "0.999", period: "50", period_mult: "1", multistart: "", seed: "0", speed: "200" };
const MOMENTUM_OPTIMIZERS = ["momentum", "nesterov"];
const MAX_RUNS = 512;
// Fields sent to a running run as `update`; any other change needs a new run.
const LIVE = ["lr", "momentum", "schedule", "decay", "period", "period_mult", "speed"];

const state = {
  ws: null, queue: [], run: null,          // run: {key, stopped, diverged, pending} of the server's run
  playing: false, land: null, starts: null, start: null, trace: [], latest: null,
  wantPlay: false, dirty: false, startId: 0, refused: false, highlight: null,
};

// ---------- settings <-> controls <-> URL ----------

function fieldValue(id) { return $(id).value.trim(); }

function functionText() {
  return fieldValue("function-name") === "expression" ? fieldValue("expression") : fieldValue("function-name");
}

// The dimension the page expects (the server's answer decides; an expression is 2-D when it uses y).
function dimOf(fn) { return NAMED[fn] || (/(^|[^A-Za-z_])y([^A-Za-z0-9_]|$)/.test(fn) ? 2 : 1); }

function config() {
  const optimizer = fieldValue("optimizer"), schedule = fieldValue("schedule");
  const fn = functionText(), dim = dimOf(fn);
  const cfg = { function: fn, optimizer, lr: Number(fieldValue("lr")), schedule, speed: Number(fieldValue("speed")),
    seed: Number(fieldValue("seed") || "0") };
  if (MOMENTUM_OPTIMIZERS.includes(optimizer)) cfg.momentum = Number(fieldValue("momentum"));
  if (fieldValue("multistart") !== "") cfg.multistart = Number(fieldValue("multistart"));
  else cfg.init = dim === 2 ? [Number(fieldValue("init-x")), Number(fieldValue("init-y"))] : [Number(fieldValue("init-x"))];
  if (schedule === "exponential" || schedule === "step") cfg.decay = Number(fieldValue("decay"));
  if (schedule === "warm-restarts") {
    cfg.period = Number(fieldValue("period"));
    cfg.period_mult = Number(fieldValue("period-mult"));
  }
  return cfg;
}

function structuralKey(cfg) {
  return JSON.stringify(Object.keys(cfg).filter((k) => !LIVE.includes(k)).sort().map((k) => [k, cfg[k]]));
}

function writeUrl() {
  const q = new URLSearchParams({
    function: functionText(), x: fieldValue("init-x"), optimizer: fieldValue("optimizer"), lr: fieldValue("lr"),
    momentum: fieldValue("momentum"), schedule: fieldValue("schedule"), decay: fieldValue("decay"),
    period: fieldValue("period"), period_mult: fieldValue("period-mult"), multistart: fieldValue("multistart"),
    seed: fieldValue("seed"), speed: fieldValue("speed"),
  });
  if (dimOf(functionText()) === 2) q.set("y", fieldValue("init-y"));
  if (state.wantPlay) q.set("run", "1");
  history.replaceState(null, "", "?" + q.toString());
}

function readUrl() {
  const q = new URLSearchParams(location.search);
  const get = (k, d) => (q.has(k) ? q.get(k) : d);
  const fn = get("function", DEFAULTS.function);
  if (NAMED[fn]) { $("function-name").value = fn; $("expression").value = ""; }
  else { $("function-name").value = "expression"; $("expression").value = fn; }
  const start = DEFAULT_START[fn] || [1, 1];
  $("init-x").value = get("x", String(start[0]));
  $("init-y").value = get("y", start.length > 1 ? String(start[1]) : "0");
  for (const [id, key] of [["optimizer", "optimizer"], ["lr", "lr"], ["momentum", "momentum"], ["schedule", "schedule"],
    ["decay", "decay"], ["period", "period"], ["period-mult", "period_mult"], ["multistart", "multistart"],
    ["seed", "seed"], ["speed", "speed"]]) {
    $(id).value = get(key, DEFAULTS[key]);
  }
  return q.get("run") === "1";
}

function showOptionFields() {
  const sched = fieldValue("schedule"), opt = fieldValue("optimizer");
  $("decay-box").hidden = !(sched === "exponential" || sched === "step");
  $("period-box").hidden = sched !== "warm-restarts";
  $("expression-box").hidden = fieldValue("function-name") !== "expression";
  const two = dimOf(functionText()) === 2;
  $("init-y-box").hidden = !two;
  $("y-readout").hidden = !two;
  const m = MOMENTUM_OPTIMIZERS.includes(opt);
  $("momentum").disabled = !m;
  document.querySelectorAll("[data-momentum]").forEach((b) => { b.disabled = !m; });
}

// ---------- inline validation ----------

const ERROR_FIELDS = { function: "function", box: "function", init: "init", multistart: "multistart",
  seed: "multistart", lr: "lr", momentum: "momentum", schedule: "schedule", decay: "schedule",
  decay_steps: "schedule", period: "schedule", period_mult: "schedule", alpha: "schedule" };
const INPUTS = { function: ["expression"], init: ["init-x", "init-y"], multistart: ["multistart", "seed"],
  lr: ["lr"], momentum: ["momentum"], schedule: ["decay", "period", "period-mult"], general: [] };

function setError(field, message) {
  const key = ERROR_FIELDS[field] || "general";
  $(key + "-error").textContent = message || "";
  for (const id of INPUTS[key]) $(id).setAttribute("aria-invalid", message ? "true" : "false");
}

function clearErrors() { for (const k of Object.keys(INPUTS)) setError(k === "general" ? null : k, ""); }

// Checks the page can make itself; the expression grammar is checked by the server (gdlab.expressions).
function validate(cfg) {
  clearErrors();
  let ok = true;
  const bad = (field, msg) => { setError(field, msg); ok = false; };
  if (!cfg.function) bad("function", "the expression is empty; write one in x (and y), e.g. x**4 - 3*x**2 + x.");
  if (cfg.init) {
    const ids = cfg.init.length === 2 ? ["init-x", "init-y"] : ["init-x"];
    if (ids.some((id) => fieldValue(id) === "" || !Number.isFinite(Number(fieldValue(id))))) {
      bad("init", "the start must be finite numbers (or click on the plot).");
    }
  }
  if ("multistart" in cfg && !(Number.isInteger(cfg.multistart) && cfg.multistart >= 1 && cfg.multistart <= MAX_RUNS)) {
    bad("multistart", `multistart must be a whole number from 1 to ${MAX_RUNS} (empty for one start).`);
  } else if (!(Number.isInteger(cfg.seed) && cfg.seed >= 0 && cfg.seed <= 4294967295)) {
    bad("seed", "seed must be a whole number from 0 to 4294967295.");
  }
  if (fieldValue("lr") === "" || !Number.isFinite(cfg.lr)) bad("lr", "step size must be a finite number (negative runs away).");
  if ("momentum" in cfg && (fieldValue("momentum") === "" || !(cfg.momentum >= 0 && cfg.momentum <= 0.999))) {
    bad("momentum", "momentum must be a number from 0 to 0.999.");
  }
  if ("decay" in cfg && !(cfg.decay > 0 && cfg.decay <= 1)) bad("decay", "decay must be in (0, 1].");
  if ("period" in cfg && !(Number.isInteger(cfg.period) && cfg.period >= 1)) bad("period", "period must be a whole number ≥ 1.");
  else if ("period_mult" in cfg && !(cfg.period_mult >= 1 && cfg.period_mult <= 100)) bad("period_mult", "period multiplier must be from 1 to 100.");
  return ok;
}

// ---------- the WebSocket ----------

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/landscape`);
  state.ws = ws;
  ws.onopen = () => { for (const m of state.queue.splice(0)) ws.send(m); };
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  ws.onclose = () => {
    state.playing = false; state.run = null; showPlaying();
    setError(null, "the connection to the server closed; reload the page to reconnect.");
  };
}

function send(msg) {
  const text = JSON.stringify(msg);
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(text); else state.queue.push(text);
}

function startRun(play) {
  const cfg = config();
  state.refused = false;
  if (!validate(cfg)) { state.run = null; return false; }
  state.dirty = false;                       // this start carries every current setting
  state.run = { key: structuralKey(cfg), stopped: false, diverged: false, pending: true };
  state.startId += 1;
  send({ type: "start", config: cfg, play, id: state.startId });
  return true;
}

function onMessage(msg) {
  switch (msg.type) {
    case "started":
      if (msg.id !== state.startId) break;   // an earlier start, overtaken by a later one: stale
      clearErrors();
      if (state.run) {
        state.run.pending = false;
        if (state.run.playWhenStarted) send({ type: "resume" });
      }
      state.land = msg.landscape; state.starts = msg.starts; state.start = msg.start;
      state.trace = [msg.start]; state.latest = msg.start; state.highlight = null;
      $("y-readout").hidden = state.land.dim !== 2;
      hideBanner(); showReadouts(msg.start); render();
      break;
    case "frames":
      if (!state.run || state.run.pending) break;            // frames of a run being replaced
      for (const f of msg.frames) state.trace[f.step] = f;
      state.trace.length = msg.frames[msg.frames.length - 1].step + 1;
      state.latest = msg.frames[msg.frames.length - 1];
      showReadouts(state.latest); render();
      break;
    case "state":
      state.playing = msg.state === "playing"; showPlaying();
      if (msg.step === 0 && state.start && state.run && !state.run.pending) {   // after a reset
        state.trace = [state.start]; state.latest = state.start; showReadouts(state.start); render();
      }
      break;
    case "stopped":
      state.playing = false; showPlaying();
      if (state.run) { state.run.stopped = true; state.run.diverged = msg.reason === "diverged"; }
      showBanner(msg.reason, msg.message);
      break;
    case "error":
      if (msg.reply_to === "start" && msg.id !== null && msg.id !== state.startId) break;   // stale
      if (msg.reply_to === "start") { state.run = null; state.refused = true; state.land = null; clearPlots(); }
      state.playing = false; showPlaying();
      setError(msg.field, msg.message);
      break;
    default:
      break;
  }
}

// ---------- controls ----------

function play() {
  const cfg = config();
  state.wantPlay = true; writeUrl();
  if (state.refused) return;                 // the server refused a field: nothing runs until it changes
  if (!validate(cfg)) return;
  if (state.run && state.run.pending && !state.dirty && state.run.key === structuralKey(cfg)) {
    state.run.playWhenStarted = true; return;                // its start is on the way
  }
  if (!state.run || state.run.key !== structuralKey(cfg) || state.run.diverged || state.run.stopped || state.dirty) {
    state.dirty = false; startRun(true);
  } else {
    send({ type: "resume" });
  }
}

function pause() { send({ type: "pause" }); }

function togglePlay() { if (state.playing) pause(); else play(); }

function singleStep() {
  const cfg = config();
  if (state.refused || !validate(cfg)) return;
  if (!state.run || state.run.key !== structuralKey(cfg) || state.run.diverged || state.dirty) {
    state.dirty = false; if (!startRun(false)) return;
  }
  send({ type: "step", n: 1 });
}

function reset() {
  if (state.run && !state.run.pending && !state.dirty && state.run.key === structuralKey(config())) {
    send({ type: "reset" }); state.run.stopped = false; state.run.diverged = false;
  } else { state.dirty = false; startRun(false); }
  state.wantPlay = false; writeUrl(); hideBanner();
}

// A change of step size, momentum, schedule or speed goes to the running run without a reset.
function liveUpdate(fields) {
  writeUrl();
  const cfg = config();
  if (!validate(cfg)) return;
  if (state.refused) { startRun(false); return; }
  if (!state.run || state.run.key !== structuralKey(cfg)) return;
  if (state.run.pending) { state.dirty = true; return; }     // its start is on the way with the old value
  if (state.run.diverged || state.run.stopped) { state.dirty = true; return; }    // restarts on play
  const msg = { type: "update" };
  for (const f of fields) if (f in cfg) msg[f] = cfg[f];
  if (fields.includes("schedule")) {
    msg.decay = cfg.decay ?? null; msg.period = cfg.period ?? null; msg.period_mult = cfg.period_mult ?? null;
  }
  send(msg);
}

// A change of the function, the start(s) or the optimizer: preview the new run at step 0.
function structuralChange() {
  state.wantPlay = false;
  writeUrl();
  startRun(false);
}

function chooseFunction() {
  const name = fieldValue("function-name");
  if (DEFAULT_START[name]) {
    const s = DEFAULT_START[name];
    $("init-x").value = s[0]; $("init-y").value = s.length > 1 ? s[1] : 0;
  } else if (!fieldValue("expression")) {
    $("expression").value = "x**4 - 3*x**2 + x"; $("init-x").value = 2;
  }
  showOptionFields(); structuralChange();
  if (name === "expression") $("expression").focus();
}

// A click on the function's plot sets the start there (and makes it one run).
function clickToStart(ev) {
  const el = $("plot-main");
  const full = el._fullLayout;
  if (!full || !state.land) return;
  const rect = el.getBoundingClientRect();
  const xa = full.xaxis, ya = full.yaxis;
  const px = ev.clientX - rect.left - xa._offset, py = ev.clientY - rect.top - ya._offset;
  if (px < 0 || px > xa._length || py < 0 || py > ya._length) return;     // outside the plotting area
  const x = xa.p2l(px), y = ya.p2l(py);
  const round = (v) => String(Number(v.toPrecision(4)));
  $("init-x").value = round(x);
  if (state.land.dim === 2) $("init-y").value = round(y);
  $("multistart").value = "";
  structuralChange();
}

function wire() {
  $("function-name").addEventListener("change", chooseFunction);
  $("expression").addEventListener("change", () => { showOptionFields(); structuralChange(); });
  for (const id of ["init-x", "init-y", "multistart", "seed", "optimizer"]) {
    $(id).addEventListener("change", () => { showOptionFields(); structuralChange(); });
  }
  $("lr").addEventListener("change", () => liveUpdate(["lr"]));
  $("momentum").addEventListener("change", () => liveUpdate(["momentum"]));
  document.querySelectorAll("[data-momentum]").forEach((b) => b.addEventListener("click", () => {
    $("momentum").value = b.dataset.momentum; liveUpdate(["momentum"]);
  }));
  $("schedule").addEventListener("change", () => { showOptionFields(); liveUpdate(["schedule"]); });
  for (const id of ["decay", "period", "period-mult"]) $(id).addEventListener("change", () => liveUpdate(["schedule"]));
  $("speed").addEventListener("change", () => liveUpdate(["speed"]));
  $("play").addEventListener("click", togglePlay);
  $("step").addEventListener("click", singleStep);
  $("reset").addEventListener("click", reset);
  $("download-csv").addEventListener("click", downloadCsv);
  $("save-png").addEventListener("click", savePng);
  $("plot-main").addEventListener("click", clickToStart);
  wireKeys(togglePlay, singleStep);
}

// ---------- display ----------

function showReadouts(f) {
  $("x").textContent = fmt(f.x[0]);
  $("y").textContent = f.x.length > 1 ? fmt(f.x[1]) : "–";
  $("f").textContent = fmt(f.f);
  $("step-count").textContent = String(f.step);
  $("lr-now").textContent = f.lr === null || f.lr === undefined ? "–" : String(Number(f.lr.toPrecision(6)));
  $("best-f").textContent = fmt(f.best_f);
  const total = state.land ? state.land.global_minima.length : 0;
  $("found").textContent = f.found === null || f.found === undefined || !total ? "–" : `${f.found} of ${total}`;
}

function showPlaying() { $("play").textContent = state.playing ? "Pause" : "Play"; }

function showBanner(reason, message) {
  const b = $("banner");
  b.className = reason; b.textContent = message; b.hidden = false;
}

function hideBanner() { $("banner").hidden = true; $("banner").textContent = ""; }

function clearPlots() { for (const id of ["plot-main", "plot-f", "plot-lr"]) Plotly.purge(id); }

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; draw(); });
}

const LAYOUT = { margin: { l: 55, r: 10, t: 30, b: 40 }, showlegend: true, legend: { orientation: "h", y: -0.2 },
  font: { size: 11 } };
const PLOT_CONFIG = { displaylogo: false, responsive: true };
const RUN_COLOURS = ["#e53e3e", "#dd6b20", "#d69e2e", "#38a169", "#319795", "#3182ce", "#5a67d8", "#805ad5", "#d53f8c"];

// The points of run k (multistart) or of the one run, step by step: [{step, x, f}].
function pathOf(k) {
  const out = [];
  for (const r of state.trace) {
    if (!r) continue;
    if (r.runs) out.push({ step: r.step, x: r.runs.x[k], f: r.runs.f[k] });
    else out.push({ step: r.step, x: r.x, f: r.f });
  }
  return out;
}

function fOf1d(x) {           // f on the curve, by the grid (for 1-D markers of minima)
  const g = state.land.grid;
  let best = 0;
  for (let i = 1; i < g.x.length; i++) if (Math.abs(g.x[i] - x) < Math.abs(g.x[best] - x)) best = i;
  return g.f[best];
}

function draw() {
  if (!state.land) return;
  const L = state.land, dim = L.dim;
  const nRuns = state.starts.length;
  const multi = nRuns > 1 || (state.latest && state.latest.runs);
  const traces = [];
  const point = (p) => (dim === 2 ? { x: p.x[0], y: p.x[1] } : { x: p.x[0], y: p.f });
  const cur = state.latest || state.start;
  const hl = state.highlight !== null && state.trace[state.highlight] ? state.trace[state.highlight] : null;
  if (dim === 1) {
    traces.push({ x: L.grid.x, y: L.grid.f, mode: "lines", name: `f: ${L.formula}`, hoverinfo: "skip",
      line: { color: "#4a5568", width: 2 } });
  } else {
    const finite = L.grid.f.flat().filter((v) => v !== null);
    const lo = Math.min(...finite);
    const z = L.grid.f.map((row) => row.map((v) => (v === null ? null : Math.log10(1 + v - lo))));
    traces.push({ type: "contour", x: L.grid.x, y: L.grid.y, z, colorscale: "Viridis", ncontours: 30, hoverinfo: "skip",
      name: "f", showlegend: false, contours: { coloring: "heatmap" },
      colorbar: { title: { text: "log10(1 + f − min f)", side: "right" }, thickness: 10 } });
  }
  for (let k = 0; k < nRuns; k++) {
    const path = pathOf(k).filter((p) => p.x && p.x.every((v) => v !== null) && p.f !== null);
    const pts = path.map(point);
    const best = cur && cur.best_run === k;
    traces.push({ x: pts.map((p) => p.x), y: pts.map((p) => p.y), customdata: path.map((p) => p.step),
      mode: nRuns > 1 ? "lines" : "lines+markers", name: nRuns > 1 ? (best ? `run ${k} (lowest now)` : `run ${k}`) : "path",
      showlegend: nRuns === 1 || best, hovertemplate: "step %{customdata}<br>(%{x:.4g}, %{y:.4g})<extra></extra>",
      line: { color: nRuns > 1 ? RUN_COLOURS[k % RUN_COLOURS.length] : (dim === 2 ? "#fff" : "#2b6cb0"), width: best ? 2.5 : 1.2 },
      marker: { size: 4 } });
  }
  const startPts = state.starts.map((s, k) => (dim === 2 ? { x: s[0], y: s[1] } : { x: s[0], y: pathOf(k)[0] ? pathOf(k)[0].f : null }));
  traces.push({ x: startPts.map((p) => p.x), y: startPts.map((p) => p.y), mode: "markers", name: nRuns > 1 ? "starts" : "start",
    hoverinfo: "skip", marker: { symbol: "circle-open", color: dim === 2 ? "#fff" : "#2b6cb0", size: 8, line: { width: 2 } } });
  if (cur && cur.x.every((v) => v !== null) && cur.f !== null) {
    const now = cur.runs ? cur.runs.x.map((x, k) => ({ x, f: cur.runs.f[k] })).filter((p) => p.x.every((v) => v !== null) && p.f !== null)
      : [{ x: cur.x, f: cur.f }];
    const pts = now.map(point);
    traces.push({ x: pts.map((p) => p.x), y: pts.map((p) => p.y), mode: "markers", name: "now", hoverinfo: "skip",
      marker: { color: "#e53e3e", size: 9, line: { color: "#fff", width: 1 } } });
  }
  const mins = (ms) => ms.map((m) => (dim === 2 ? { x: m.x[0], y: m.x[1] } : { x: m.x[0], y: m.f }));
  const g = mins(L.global_minima), l = mins(L.local_minima);
  traces.push({ x: g.map((p) => p.x), y: g.map((p) => p.y), mode: "markers", name: "global minimum", hoverinfo: "skip",
    marker: { symbol: "star", size: 14, color: "#38a169", line: { color: "#1a202c", width: 1 } } });
  if (l.length) {
    traces.push({ x: l.map((p) => p.x), y: l.map((p) => p.y), mode: "markers", name: "local minimum", hoverinfo: "skip",
      marker: { symbol: "x", size: 12, color: "#dd6b20", line: { color: "#1a202c", width: 1 } } });
  }
  if (hl) {
    const now = hl.runs ? hl.runs.x.map((x, k) => ({ x, f: hl.runs.f[k] })) : [{ x: hl.x, f: hl.f }];
    const pts = now.filter((p) => p.x.every((v) => v !== null) && p.f !== null).map(point);
    traces.push({ x: pts.map((p) => p.x), y: pts.map((p) => p.y), mode: "markers", name: `step ${hl.step}`, hoverinfo: "skip",
      marker: { symbol: "diamond", color: "#d53f8c", size: 13, line: { color: "#fff", width: 1.5 } } });
  }
  const box = L.box;
  const layoutMain = { ...LAYOUT, dragmode: false, hovermode: "closest",
    title: { text: `${L.name}: ${multi ? nRuns + " starts" : "one start"} (click to set the start)`, x: 0.02 },
    xaxis: { title: "x", range: box[0] }, uirevision: L.name };
  if (dim === 2) layoutMain.yaxis = { title: "y", range: box[1] };
  else layoutMain.yaxis = { title: "f(x)" };
  Plotly.react("plot-main", traces, layoutMain, PLOT_CONFIG);

  const rows = state.trace.filter(Boolean);
  const steps = rows.map((r) => r.step);
  const mark = (ys) => (hl ? [{ x: [hl.step], y: [ys(hl)], mode: "markers", name: `step ${hl.step}`, hoverinfo: "skip",
    marker: { symbol: "diamond", color: "#d53f8c", size: 11 } }] : []);
  Plotly.react("plot-f", [
    { x: steps, y: rows.map((r) => r.f), name: multi ? "f of the lowest run now" : "f", line: { color: "#2b6cb0", width: 2 } },
    { x: steps, y: rows.map((r) => r.best_f), name: "best f so far", line: { color: "#38a169", dash: "dot" } },
    ...mark((r) => r.f),
  ], { ...LAYOUT, title: { text: "f against step", x: 0.02 }, xaxis: { title: "step" }, yaxis: { title: "f" },
    hovermode: "x unified" }, PLOT_CONFIG);
  Plotly.react("plot-lr", [
    { x: steps, y: rows.map((r) => r.lr), name: "learning rate", line: { color: "#4a5568" },
      hovertemplate: "step %{x}: lr %{y:.4g}<extra></extra>" },
    ...mark((r) => r.lr),
  ], { ...LAYOUT, title: { text: "learning rate (hover: that step on the path)", x: 0.02 }, xaxis: { title: "step" },
    yaxis: { title: "lr", range: lrRange(rows) }, hovermode: "x" }, PLOT_CONFIG);
}

// From 0 (or the lowest negative rate) to a little above the highest: a constant rate is a flat line, not an axis around it.
function lrRange(rows) {
  const v = rows.map((r) => r.lr).filter((x) => x !== null && x !== undefined);
  if (!v.length) return undefined;
  const lo = v.reduce((a, b) => Math.min(a, b), 0), hi = v.reduce((a, b) => Math.max(a, b), 0);
  const pad = 0.1 * (hi - lo || 1);
  return [lo < 0 ? lo - pad : 0, hi + pad];
}

// Linked views: a step under the pointer on the lr or f plot is marked on the path, and a
// point of the path under the pointer is marked on the lr and f plots. A click keeps it.
let pinned = false;
function highlight(step) { if (state.highlight !== step) { state.highlight = step; render(); } }
function linkPlots() {
  const fromStepPlot = (ev) => { if (!pinned && ev.points && ev.points.length) highlight(ev.points[0].x); };
  const fromPath = (ev) => {
    const p = ev.points && ev.points.find((q) => q.customdata !== undefined);
    if (!pinned && p) highlight(p.customdata);
  };
  for (const id of ["plot-lr", "plot-f"]) {
    $(id).on("plotly_hover", fromStepPlot);
    $(id).on("plotly_click", (ev) => { pinned = false; fromStepPlot(ev); pinned = true; });
    $(id).on("plotly_unhover", () => { if (!pinned) highlight(null); });
  }
  $("plot-main").on("plotly_hover", fromPath);
  $("plot-main").on("plotly_unhover", () => { if (!pinned) highlight(null); });
}

// ---------- downloads ----------

// One row per step and run: step, run, x (, y), f, lr.
function downloadCsv() {
  const rows = state.trace.filter(Boolean);
  const dim = state.land ? state.land.dim : 1;
  const header = ["step", "run", "x", ...(dim === 2 ? ["y"] : []), "f", "lr"];
  const cell = (v) => (v === null || v === undefined ? "nan" : String(v));
  const lines = [header.join(",")];
  for (const r of rows) {
    const runs = r.runs ? r.runs.x.map((x, k) => [k, x, r.runs.f[k]]) : [[0, r.x, r.f]];
    for (const [k, x, f] of runs) lines.push([r.step, k, ...x, f, r.lr].map(cell).join(","));
  }
  downloadCsvLines("gdlab-landscape-trace.csv", lines);
}

// The function with its paths on top, f and lr below, in one PNG.
function savePng() {
  const w = 640, h = 400;
  return downloadPlotsPng("gdlab-landscape.png",
    [["plot-main", 0, 0, 2 * w, h], ["plot-f", 0, h, w, h], ["plot-lr", w, h, w, h]], 2 * w, 2 * h);
}

// ---------- start ----------

function main() {
  const autoplay = readUrl();
  showOptionFields();
  wire();
  for (const id of ["plot-main", "plot-f", "plot-lr"]) Plotly.newPlot(id, [], { ...LAYOUT }, PLOT_CONFIG);
  linkPlots();
  connect();
  if (autoplay) play(); else startRun(false);
  writeUrl();
}

main();
