// gdlab explorer, tab 1: fit a Gaussian q to p by gradient descent on KL, streamed from the server.
// The server does every computation (gdlab's engine); this page sends settings and draws frames.
"use strict";

const PRESETS = {
  single: { target: "N(2, 1)", mean: 0, var: 5 },                          // the source text's start, N(0, 5)
  bimodal: { target: "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)", mean: 0.5, var: 1 }, // off-centre so reverse KL picks a side
  asymmetric: { target: "0.3*N(-2, 0.36) + 0.7*N(1.5, 0.16)", mean: 0, var: 5 },
  three: { target: "0.3*N(-3, 0.3) + 0.4*N(0, 0.3) + 0.3*N(3, 0.3)", mean: 0.5, var: 1 },
};
const DEFAULTS = { preset: "single", divergence: "forward", optimizer: "momentum", lr: "0.05", momentum: "0",
  schedule: "constant", decay: "0.999", period: "100", param: "mean_var", speed: "200" };
const MOMENTUM_OPTIMIZERS = ["momentum", "nesterov", "natural"];
// Fields whose change needs a new run; the others are sent as `update` to the running one.
const STRUCTURAL = ["target", "init", "optimizer", "param"];

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, queue: [], run: null,          // run: {key, stopped, diverged} of the server's run
  playing: false, divergence: "forward", target: null, landscape: null, start: null,
  trace: [], latest: null, wantPlay: false, dirty: false,
};

// ---------- settings <-> controls <-> URL ----------

function fieldValue(id) { return $(id).value.trim(); }

function config() {
  const optimizer = fieldValue("optimizer"), schedule = fieldValue("schedule");
  const cfg = {
    target: fieldValue("target"), init: `N(${fieldValue("init-mean")}, ${fieldValue("init-var")})`,
    divergence: state.divergence, optimizer, lr: Number(fieldValue("lr")),
    momentum: MOMENTUM_OPTIMIZERS.includes(optimizer) ? Number(fieldValue("momentum")) : 0,
    param: fieldValue("param"), schedule, speed: Number(fieldValue("speed")),
  };
  if (schedule === "exponential" || schedule === "step") cfg.decay = Number(fieldValue("decay"));
  if (schedule === "warm-restarts") cfg.period = Number(fieldValue("period"));
  return cfg;
}

function structuralKey(cfg) { return JSON.stringify(STRUCTURAL.map((k) => cfg[k])); }

function writeUrl() {
  const q = new URLSearchParams({
    preset: fieldValue("preset"), target: fieldValue("target"), init_mean: fieldValue("init-mean"),
    init_var: fieldValue("init-var"), divergence: state.divergence, optimizer: fieldValue("optimizer"),
    lr: fieldValue("lr"), momentum: fieldValue("momentum"), schedule: fieldValue("schedule"),
    decay: fieldValue("decay"), period: fieldValue("period"), param: fieldValue("param"), speed: fieldValue("speed"),
  });
  if (state.wantPlay) q.set("run", "1");
  history.replaceState(null, "", "?" + q.toString());
}

function readUrl() {
  const q = new URLSearchParams(location.search);
  const get = (k, d) => (q.has(k) ? q.get(k) : d);
  const preset = PRESETS[get("preset", DEFAULTS.preset)] ? get("preset", DEFAULTS.preset) : "custom";
  const base = PRESETS[preset] || PRESETS.single;
  $("preset").value = preset;
  $("target").value = get("target", base.target);
  $("init-mean").value = get("init_mean", String(base.mean));
  $("init-var").value = get("init_var", String(base.var));
  for (const id of ["optimizer", "lr", "momentum", "schedule", "decay", "period", "param", "speed"]) {
    $(id).value = get(id, DEFAULTS[id]);
  }
  setDivergence(get("divergence", DEFAULTS.divergence) === "reverse" ? "reverse" : "forward");
  return q.get("run") === "1";
}

function setDivergence(d) {
  state.divergence = d;
  $("btn-forward").setAttribute("aria-pressed", String(d === "forward"));
  $("btn-reverse").setAttribute("aria-pressed", String(d === "reverse"));
}

function showOptionFields() {
  const sched = fieldValue("schedule"), opt = fieldValue("optimizer");
  $("decay-box").hidden = !(sched === "exponential" || sched === "step");
  $("period-box").hidden = sched !== "warm-restarts";
  const m = MOMENTUM_OPTIMIZERS.includes(opt);
  $("momentum").disabled = !m;
  document.querySelectorAll("[data-momentum]").forEach((b) => { b.disabled = !m; });
}

// ---------- inline validation ----------

const ERROR_FIELDS = { target: "target", init: "init", lr: "lr", momentum: "momentum", decay: "schedule",
  period: "schedule", schedule: "schedule", period_mult: "schedule", decay_steps: "schedule" };
const INPUTS = { target: ["target"], init: ["init-mean", "init-var"], lr: ["lr"], momentum: ["momentum"],
  schedule: ["decay", "period"], general: [] };

function setError(field, message) {
  const key = ERROR_FIELDS[field] || "general";
  $(key + "-error").textContent = message || "";
  for (const id of INPUTS[key]) $(id).setAttribute("aria-invalid", message ? "true" : "false");
}

function clearErrors() { for (const k of Object.keys(INPUTS)) setError(k === "general" ? null : k, ""); }

// Checks the page can make itself; the spec grammar is checked by the server (the CLI's parser).
function validate(cfg) {
  clearErrors();
  let ok = true;
  const bad = (field, msg) => { setError(field, msg); ok = false; };
  if (!cfg.target) bad("target", "target is empty; write a spec such as N(0, 1) or 0.5*N(-2, 1) + 0.5*N(2, 1).");
  const m = Number(fieldValue("init-mean")), v = Number(fieldValue("init-var"));
  if (fieldValue("init-mean") === "" || !Number.isFinite(m)) bad("init", "the start mean must be a finite number.");
  else if (fieldValue("init-var") === "" || !Number.isFinite(v) || v <= 0) bad("init", "the start variance must be a number > 0.");
  if (fieldValue("lr") === "" || !Number.isFinite(cfg.lr)) bad("lr", "step size must be a finite number (negative runs away).");
  if (MOMENTUM_OPTIMIZERS.includes(cfg.optimizer) &&
      (fieldValue("momentum") === "" || !(cfg.momentum >= 0 && cfg.momentum <= 0.999))) {
    bad("momentum", "momentum must be a number from 0 to 0.999.");
  }
  if ("decay" in cfg && !(cfg.decay > 0 && cfg.decay <= 1)) bad("decay", "decay must be in (0, 1].");
  if ("period" in cfg && !(Number.isInteger(cfg.period) && cfg.period >= 1)) bad("period", "period must be a whole number ≥ 1.");
  return ok;
}

// ---------- the WebSocket ----------

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
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
  if (!validate(cfg)) { state.run = null; return false; }
  state.run = { key: structuralKey(cfg), stopped: false, diverged: false, pending: true };
  state.startId = (state.startId || 0) + 1;
  state.refused = false;
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
      state.target = msg.target; state.landscape = msg.landscape; state.start = msg.start;
      state.trace = []; state.latest = null; hideBanner(); showReadouts(msg.start); render();
      break;
    case "frames":
      for (const f of msg.frames) state.trace[f.step] = f;   // a repeated step (direction switch) overwrites
      state.trace.length = msg.frames[msg.frames.length - 1].step + 1;
      state.latest = msg.frames[msg.frames.length - 1];
      showReadouts(state.latest); render();
      break;
    case "state":
      state.playing = msg.state === "playing"; showPlaying();
      break;
    case "stopped":
      state.playing = false; showPlaying();
      if (state.run) { state.run.stopped = true; state.run.diverged = msg.reason === "diverged"; }
      showBanner(msg.reason, msg.message);
      break;
    case "direction":
      setDivergence(msg.divergence); hideBanner(); render();
      break;
    case "error":
      if (msg.reply_to === "start" && msg.id === state.startId) { state.run = null; state.refused = true; }
      state.playing = false; showPlaying();
      setError(msg.field, msg.message);
      break;
    default:
      break;
  }
}

// ---------- controls ----------

// A field the server refused keeps its message, and nothing runs, until the field changes.
function refusedField() { return state.refused; }

function play() {
  const cfg = config();
  state.wantPlay = true; writeUrl();
  if (refusedField()) return;
  if (!validate(cfg)) return;
  if (state.run && state.run.pending) { state.run.playWhenStarted = true; return; }  // its start is on the way
  if (!state.run || state.run.key !== structuralKey(cfg) || state.run.diverged || state.dirty) {
    state.dirty = false; startRun(true);
  } else if (state.run.stopped) {
    startRun(true);
  } else {
    send({ type: "resume" });
  }
}

function pause() { send({ type: "pause" }); }

function togglePlay() { if (state.playing) pause(); else play(); }

function singleStep() {
  const cfg = config();
  if (refusedField() || !validate(cfg)) return;
  if (!state.run || state.run.key !== structuralKey(cfg) || state.run.diverged || state.dirty) {
    state.dirty = false; if (!startRun(false)) return;
  }
  send({ type: "step", n: 1 });
}

function reset() {
  if (state.run && !state.run.pending) { send({ type: "reset" }); state.run.stopped = false; state.run.diverged = false; }
  else startRun(false);
  state.wantPlay = false; writeUrl(); hideBanner();
}

// A change of step size, momentum, schedule or speed goes to the running run without a reset.
function liveUpdate(fields) {
  writeUrl();
  const cfg = config();
  if (!validate(cfg)) return;
  if (!state.run || state.run.key !== structuralKey(cfg)) return;
  if (state.run.diverged) { state.dirty = true; return; }    // a diverged run restarts on play
  const msg = { type: "update" };
  for (const f of fields) if (f in cfg) msg[f] = cfg[f];
  if (fields.includes("schedule")) { msg.decay = cfg.decay ?? null; msg.period = cfg.period ?? null; }
  send(msg);
}

// A change of p, the start, the optimizer or the parameterization: preview the new run at step 0.
function structuralChange() {
  writeUrl();
  startRun(false);
  state.wantPlay = false;
}

function chooseDirection(d) {
  setDivergence(d); writeUrl();
  const cfg = config();
  if (!validate(cfg)) return;
  state.wantPlay = true; writeUrl();
  if (state.run && !state.run.pending && state.run.key === structuralKey(cfg) && !state.run.diverged && !state.dirty) {
    send({ type: "update", divergence: d });           // the server goes on from the current q
    if (!state.run.stopped && !state.playing) send({ type: "resume" });
    state.run.stopped = false;
  } else {
    state.dirty = false; startRun(true);
  }
}

function wire() {
  $("preset").addEventListener("change", () => {
    const p = PRESETS[fieldValue("preset")];
    if (p) { $("target").value = p.target; $("init-mean").value = p.mean; $("init-var").value = p.var; }
    structuralChange();
  });
  $("target").addEventListener("change", () => { $("preset").value = "custom"; structuralChange(); });
  for (const id of ["init-mean", "init-var", "optimizer", "param"]) {
    $(id).addEventListener("change", () => { showOptionFields(); structuralChange(); });
  }
  $("optimizer").addEventListener("change", () => { if (!MOMENTUM_OPTIMIZERS.includes(fieldValue("optimizer"))) $("momentum").value = "0"; });
  $("lr").addEventListener("change", () => liveUpdate(["lr"]));
  $("momentum").addEventListener("change", () => liveUpdate(["momentum"]));
  document.querySelectorAll("[data-momentum]").forEach((b) => b.addEventListener("click", () => {
    $("momentum").value = b.dataset.momentum; liveUpdate(["momentum"]);
  }));
  $("schedule").addEventListener("change", () => { showOptionFields(); liveUpdate(["schedule"]); });
  for (const id of ["decay", "period"]) $(id).addEventListener("change", () => liveUpdate(["schedule"]));
  $("speed").addEventListener("change", () => liveUpdate(["speed"]));
  $("btn-forward").addEventListener("click", () => chooseDirection("forward"));
  $("btn-reverse").addEventListener("click", () => chooseDirection("reverse"));
  $("play").addEventListener("click", togglePlay);
  $("step").addEventListener("click", singleStep);
  $("reset").addEventListener("click", reset);
  $("download-csv").addEventListener("click", downloadCsv);
  $("save-png").addEventListener("click", savePng);
  document.addEventListener("keydown", (ev) => {
    const tag = (ev.target && ev.target.tagName) || "";
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;   // typing in a field is not a command
    if (ev.key === " " && tag !== "BUTTON") { ev.preventDefault(); togglePlay(); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); singleStep(); }
  });
}

// ---------- display ----------

function fmt(x, digits = 4) {
  if (x === null || x === undefined) return "NaN";
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(2);
  if (Math.abs(x) >= 1e6) return x.toExponential(3);
  return x.toFixed(digits);
}

function showReadouts(f) {
  $("kl-forward").textContent = fmt(f.kl_forward);
  $("kl-reverse").textContent = fmt(f.kl_reverse);
  $("mean").textContent = fmt(f.mean);
  $("var").textContent = fmt(f.var);
  $("step-count").textContent = String(f.step);
  $("lr-now").textContent = f.lr === null || f.lr === undefined ? "–" : String(Number(f.lr.toPrecision(6)));
}

function showPlaying() { $("play").textContent = state.playing ? "Pause" : "Play"; }

function showBanner(reason, message) {
  const b = $("banner");
  b.className = reason; b.textContent = message; b.hidden = false;
}

function hideBanner() { $("banner").hidden = true; $("banner").textContent = ""; }

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; draw(); });
}

function normalPdf(x, m, v) { return Math.exp(-0.5 * (x - m) * (x - m) / v) / Math.sqrt(2 * Math.PI * v); }

const LAYOUT = { margin: { l: 50, r: 10, t: 30, b: 40 }, showlegend: true, legend: { orientation: "h", y: -0.25 },
  font: { size: 11 } };
const PLOT_CONFIG = { displaylogo: false, responsive: true };

function draw() {
  if (!state.target || !state.landscape) return;
  const L = state.landscape, t = state.target, cur = state.latest || state.start;
  const lo = L.mean[0] - 1, hi = L.mean[L.mean.length - 1] + 1;
  const xs = Array.from({ length: 400 }, (_, i) => lo + (hi - lo) * i / 399);
  const p = xs.map((x) => t.weights.reduce((s, w, k) => s + w * normalPdf(x, t.means[k], t.vars[k]), 0));
  const ok = cur && cur.mean !== null && cur.var !== null && cur.var > 0;
  const q = ok ? xs.map((x) => normalPdf(x, cur.mean, cur.var)) : [];
  const optima = L.optima[state.divergence];
  const dens = [
    { x: xs, y: p, name: "p (target)", line: { color: "#2f855a", width: 2 }, fill: "tozeroy", fillcolor: "rgba(47,133,90,.12)" },
    { x: ok ? xs : [], y: q, name: "q (fitted)", line: { color: "#2b6cb0", width: 2.5 } },
    ...optima.map((o, k) => ({ x: xs, y: xs.map((x) => normalPdf(x, o.mean, o.var)), showlegend: k === 0,
      name: `optimum of ${state.divergence === "forward" ? "KL(p,q)" : "KL(q,p)"} (${o.global ? "global" : "local"})`,
      line: { color: o.global ? "#805ad5" : "#b794f4", dash: "dash", width: 1.2 } })),
  ];
  Plotly.react("plot-density", dens, { ...LAYOUT, title: { text: "p and q", x: 0.02 }, xaxis: { title: "x" },
    yaxis: { title: "density", rangemode: "tozero" } }, PLOT_CONFIG);

  const rows = state.trace.filter(Boolean);
  const steps = rows.map((r) => r.step);
  const pos = (v) => (v !== null && v > 0 ? v : null);
  Plotly.react("plot-kl", [
    { x: steps, y: rows.map((r) => pos(r.kl_forward)), name: "KL(p,q)", line: { color: "#dd6b20", width: state.divergence === "forward" ? 2.5 : 1 } },
    { x: steps, y: rows.map((r) => pos(r.kl_reverse)), name: "KL(q,p)", line: { color: "#3182ce", width: state.divergence === "reverse" ? 2.5 : 1 } },
  ], { ...LAYOUT, title: { text: "KL against step", x: 0.02 }, xaxis: { title: "step" },
    yaxis: { title: "KL (log scale)", type: "log" }, hovermode: "x unified" }, PLOT_CONFIG);

  const z = L["kl_" + state.divergence].map((row) => row.map((v) => (v === null || !(v > 0) ? null : Math.log10(v))));
  const path = rows.filter((r) => r.mean !== null && r.var !== null && r.var > 0);
  Plotly.react("plot-landscape", [
    { type: "contour", x: L.mean, y: L.log_var, z, colorscale: "Viridis", ncontours: 30, name: "log10 KL",
      colorbar: { title: { text: "log10 KL", side: "right" }, thickness: 10 }, showlegend: false,
      contours: { coloring: "heatmap" } },
    { x: path.map((r) => r.mean), y: path.map((r) => Math.log(r.var)), mode: "lines", name: "path",
      line: { color: "#fff", width: 2 } },
    { x: ok ? [cur.mean] : [], y: ok ? [Math.log(cur.var)] : [], mode: "markers", name: "q now",
      marker: { color: "#e53e3e", size: 9 } },
    { x: optima.map((o) => o.mean), y: optima.map((o) => Math.log(o.var)), mode: "markers", name: "optima",
      marker: { symbol: "x", color: "#fff", size: 9, line: { width: 1 } } },
  ], { ...LAYOUT, title: { text: `${state.divergence === "forward" ? "KL(p,q)" : "KL(q,p)"} landscape`, x: 0.02 },
    xaxis: { title: "mean", range: [L.mean[0], L.mean[L.mean.length - 1]] },
    yaxis: { title: "log variance", range: [L.log_var[0], L.log_var[L.log_var.length - 1]] } }, PLOT_CONFIG);

  Plotly.react("plot-lr", [{ x: steps, y: rows.map((r) => r.lr), name: "learning rate", line: { color: "#4a5568" } }],
    { ...LAYOUT, title: { text: "learning rate", x: 0.02 }, xaxis: { title: "step" }, yaxis: { title: "lr" } }, PLOT_CONFIG);
}

// ---------- downloads ----------

function download(name, url) {
  const a = document.createElement("a");
  a.href = url; a.download = name; document.body.appendChild(a); a.click(); a.remove();
}

function downloadCsv() {
  const rows = state.trace.filter(Boolean);
  const nParams = rows.length ? rows[0].params.length : 2;
  const header = ["step", ...Array.from({ length: nParams }, (_, i) => `params_${i}`), "mean", "var",
    "kl_forward", "kl_reverse", "loss", "lr", "grad"];
  const cell = (v) => (v === null || v === undefined ? "nan" : String(v));
  const lines = [header.join(",")];
  for (const r of rows) {
    lines.push([r.step, ...r.params, r.mean, r.var, r.kl_forward, r.kl_reverse, r.loss, r.lr, r.grad].map(cell).join(","));
  }
  download("gdlab-trace.csv", URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" })));
}

// The four views side by side in one PNG.
async function savePng() {
  const ids = ["plot-density", "plot-landscape", "plot-kl", "plot-lr"];
  const w = 640, h = 400;
  const canvas = document.createElement("canvas");
  canvas.width = 2 * w; canvas.height = 2 * h;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < ids.length; i++) {
    const url = await Plotly.toImage(ids[i], { format: "png", width: w, height: h });
    const img = new Image();
    await new Promise((ok) => { img.onload = ok; img.src = url; });
    ctx.drawImage(img, (i % 2) * w, Math.floor(i / 2) * h);
  }
  download("gdlab-explorer.png", canvas.toDataURL("image/png"));
}

// ---------- start ----------

function main() {
  const autoplay = readUrl();
  showOptionFields();
  wire();
  connect();
  if (autoplay) play(); else startRun(false);
  writeUrl();
}

main();
