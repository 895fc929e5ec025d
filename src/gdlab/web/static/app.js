// gdlab explorer, tab 1: fit a Gaussian q to p by gradient descent on KL, streamed from the server.
// The server does every computation (gdlab's engine); this page sends settings and draws frames.
//
// A "lane" is one run on its own WebSocket. Lane 0 is the run the controls set; in compare mode
// lanes 1 and 2 race it on the same p from the same q, each with its own optimizer, step size and
// momentum (the server runs one run per connection). Every control acts on every lane.
//
// Races between messages, and how they are avoided:
// * each start carries an id; a "started" with another lane's or an older id is stale and ignored
//   (a reset's "started" has no id: it answers the reset, sent only when no start is pending);
// * each update is answered by one "updated" (with the step it applied at) or one error, in order,
//   so a lane keeps a queue of the updates it sent; the run they belong to is the lane's epoch
//   (a start or a reset begins a new one) and an answer for an older epoch records nothing;
// * a direction switch is recorded at the step the server applied it, so the URL's
//   switches=reverse@0,forward@137 replays it exactly (the server ends a chunk at each switch).
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
const OPTIMIZER_NAMES = { gd: "gradient descent", momentum: "momentum", nesterov: "Nesterov", adam: "Adam",
  natural: "natural gradient" };
// Fields whose change needs a new run; the others are sent as `update` to the running one.
const STRUCTURAL = ["target", "init", "optimizer", "param"];
const LANE_COLOURS = ["#2b6cb0", "#d53f8c", "#b7791f"];
const MAX_LANES = 3;

const state = {
  playing: false, divergence: "forward", target: null, landscape: null, start: null,
  wantPlay: false, dirty: false, refused: false,
  compare: false, entries: [],             // entries: {optimizer, lr, momentum} of lanes 1 and 2
  edit: null,                              // a drag in progress on a plot (see "dragging")
};

function newLane(index) {
  return { index, ws: null, queue: [], closed: false, run: null, startId: 0, epoch: 0, updates: [],
    switches: [], replay: null, replayLeft: [], trace: [], latest: null, start: null, playing: false,
    ending: null, error: "" };
}
const lanes = [newLane(0)];
const main = lanes[0];
function activeLanes() { return state.compare ? lanes : [main]; }

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

// A lane's configuration: the controls', with its own optimizer, step size and momentum.
function laneConfig(lane) {
  const cfg = config();
  if (lane.index === 0) return cfg;
  const e = state.entries[lane.index - 1];
  cfg.optimizer = e.optimizer; cfg.lr = Number(e.lr);
  cfg.momentum = MOMENTUM_OPTIMIZERS.includes(e.optimizer) ? Number(e.momentum) : 0;
  return cfg;
}

function structuralKey(cfg) { return JSON.stringify(STRUCTURAL.map((k) => cfg[k])); }

function switchesText(list) { return list.map((s) => `${s.divergence}@${s.step}`).join(","); }

// "reverse@0,forward@137" -> [{step, divergence}], or null when it does not read as one.
function parseSwitches(text) {
  if (!text) return null;
  const list = [];
  for (const part of text.split(",")) {
    const m = /^(forward|reverse)@(\d+)$/.exec(part.trim());
    if (!m) return null;
    const step = Number(m[2]);
    if (list.length && step < list[list.length - 1].step) return null;
    list.push({ step, divergence: m[1] });
  }
  return list.length && list[0].step === 0 ? list : null;
}

function entriesText() {
  return state.entries.map((e) => `${e.optimizer}:${e.lr}:${MOMENTUM_OPTIMIZERS.includes(e.optimizer) ? e.momentum : 0}`).join(",");
}

function parseEntries(text) {
  const out = [];
  for (const part of (text || "").split(",").slice(0, MAX_LANES - 1)) {
    const [optimizer, lr, momentum] = part.split(":");
    if (!OPTIMIZER_NAMES[optimizer]) continue;
    out.push({ optimizer, lr: lr ?? "0.05", momentum: momentum ?? "0" });
  }
  return out;
}

function writeUrl() {
  const q = new URLSearchParams({
    preset: fieldValue("preset"), target: fieldValue("target"), init_mean: fieldValue("init-mean"),
    init_var: fieldValue("init-var"), divergence: state.divergence, optimizer: fieldValue("optimizer"),
    lr: fieldValue("lr"), momentum: fieldValue("momentum"), schedule: fieldValue("schedule"),
    decay: fieldValue("decay"), period: fieldValue("period"), param: fieldValue("param"), speed: fieldValue("speed"),
  });
  if (state.compare) q.set("compare", entriesText());
  for (const lane of activeLanes()) {
    if (lane.switches.length > 1) q.set(lane.index ? `switches${lane.index + 1}` : "switches", switchesText(lane.switches));
  }
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
  if (q.has("compare")) setEntries(true, parseEntries(q.get("compare")));
  for (const lane of activeLanes()) lane.replay = parseSwitches(q.get(lane.index ? `switches${lane.index + 1}` : "switches"));
  // With switches, the run starts in the first one's direction; the buttons show where it ends.
  const first = main.replay ? main.replay[0].divergence : get("divergence", DEFAULTS.divergence);
  setDivergence(first === "reverse" ? "reverse" : "forward");
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

// ---------- compare mode: the race entries ----------

function setEntries(on, entries) {
  state.compare = on;
  state.entries = entries.slice(0, MAX_LANES - 1);
  $("compare").checked = on;
  for (const lane of lanes.splice(1)) closeLane(lane);
  if (on) state.entries.forEach((_, i) => { const l = newLane(i + 1); lanes.push(l); connect(l); });
  drawEntries();
}

function drawEntries() {
  $("race").hidden = !state.compare;
  $("race-add").disabled = state.entries.length >= MAX_LANES - 1;
  $("race-first").style.setProperty("--lane", LANE_COLOURS[0]);
  const box = $("race-entries");
  box.textContent = "";
  state.entries.forEach((e, i) => {
    const n = i + 2;
    const row = document.createElement("div");
    row.className = "race-entry";
    row.style.setProperty("--lane", LANE_COLOURS[i + 1]);
    row.innerHTML = `<span class="swatch" aria-hidden="true"></span><b>${n}</b>
      <label for="race-opt-${n}" class="sr">Optimizer of run ${n}</label>
      <select id="race-opt-${n}">${Object.entries(OPTIMIZER_NAMES).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select>
      <label for="race-lr-${n}" class="sr">Step size of run ${n}</label>
      <input id="race-lr-${n}" type="number" step="any" title="step size" aria-describedby="race-error-${n}">
      <label for="race-mom-${n}" class="sr">Momentum of run ${n}</label>
      <input id="race-mom-${n}" type="number" step="any" min="0" max="0.999" title="momentum" aria-describedby="race-error-${n}">
      <button type="button" id="race-remove-${n}" class="chip" aria-label="remove run ${n}" title="remove run ${n}">×</button>
      <div class="field-error" id="race-error-${n}" role="alert"></div>`;
    box.appendChild(row);
    $(`race-opt-${n}`).value = e.optimizer; $(`race-lr-${n}`).value = e.lr; $(`race-mom-${n}`).value = e.momentum;
    $(`race-mom-${n}`).disabled = !MOMENTUM_OPTIMIZERS.includes(e.optimizer);
    for (const id of [`race-opt-${n}`, `race-lr-${n}`, `race-mom-${n}`]) {
      $(id).addEventListener("change", () => {
        e.optimizer = fieldValue(`race-opt-${n}`); e.lr = fieldValue(`race-lr-${n}`); e.momentum = fieldValue(`race-mom-${n}`);
        if (!MOMENTUM_OPTIMIZERS.includes(e.optimizer)) { e.momentum = "0"; $(`race-mom-${n}`).value = "0"; }
        $(`race-mom-${n}`).disabled = !MOMENTUM_OPTIMIZERS.includes(e.optimizer);
        structuralChange();
      });
    }
    $(`race-remove-${n}`).addEventListener("click", () => {
      const rest = state.entries.filter((_, k) => k !== i);
      setEntries(rest.length > 0, rest);
      structuralChange();
    });
  });
  drawTable();
}

function addEntry() {
  if (state.entries.length >= MAX_LANES - 1) return;
  const used = [fieldValue("optimizer"), ...state.entries.map((e) => e.optimizer)];
  const optimizer = ["gd", "momentum", "natural", "nesterov", "adam"].find((o) => !used.includes(o)) || "gd";
  setEntries(true, [...state.entries, { optimizer, lr: fieldValue("lr") || "0.05",
    momentum: optimizer === "momentum" || optimizer === "nesterov" ? "0.9" : "0" }]);
  structuralChange();
}

function entryError(lane, message) {
  if (lane.index === 0) return;
  lane.error = message || "";
  const el = $(`race-error-${lane.index + 1}`);
  if (el) el.textContent = lane.error;
}

function validateEntries() {
  let ok = true;
  state.entries.forEach((e, i) => {
    const lane = lanes[i + 1];
    const lr = Number(e.lr), m = Number(e.momentum);
    let msg = "";
    if (e.lr === "" || !Number.isFinite(lr)) msg = "step size must be a finite number.";
    else if (MOMENTUM_OPTIMIZERS.includes(e.optimizer) && (e.momentum === "" || !(m >= 0 && m <= 0.999))) {
      msg = "momentum must be a number from 0 to 0.999.";
    }
    if (lane) entryError(lane, msg);
    if (msg) ok = false;
  });
  return ok;
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
  if (state.compare && !validateEntries()) ok = false;
  return ok;
}

// ---------- the WebSockets ----------

function connect(lane) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  lane.ws = ws;
  ws.onopen = () => { for (const m of lane.queue.splice(0)) ws.send(m); };
  ws.onmessage = (ev) => { if (!lane.closed) onMessage(lane, JSON.parse(ev.data)); };
  ws.onclose = () => {
    if (lane.closed) return;
    lane.playing = false; lane.run = null; showPlaying();
    if (lane.index === 0) setError(null, "the connection to the server closed; reload the page to reconnect.");
    else entryError(lane, "the connection to the server closed; reload the page to reconnect.");
  };
}

function closeLane(lane) {
  lane.closed = true;
  if (lane.ws) lane.ws.close();
}

function send(lane, msg) {
  if (msg.type === "update") lane.updates.push({ epoch: lane.epoch, divergence: msg.divergence });
  const text = JSON.stringify(msg);
  if (lane.ws && lane.ws.readyState === WebSocket.OPEN) lane.ws.send(text); else lane.queue.push(text);
}

function startLane(lane, play) {
  const cfg = laneConfig(lane);
  lane.run = { key: structuralKey(cfg), stopped: false, diverged: false, pending: true };
  lane.startId += 1; lane.epoch += 1; lane.ending = null; entryError(lane, "");
  const replay = lane.replay;
  lane.replay = null;                         // a link's switches replay once, in its first run
  if (replay && replay[0].divergence === cfg.divergence) cfg.switches = replay.slice(1);
  lane.switches = [{ step: 0, divergence: cfg.divergence }, ...(cfg.switches || [])];
  lane.replayLeft = (cfg.switches || []).slice();
  send(lane, { type: "start", config: cfg, play, id: lane.startId });
}

// Start every lane afresh (a new race); false when a field is refused.
function startRun(play) {
  const cfg = config();
  if (!validate(cfg)) { for (const l of activeLanes()) l.run = null; return false; }
  state.refused = false;
  for (const l of activeLanes()) startLane(l, play);
  return true;
}

function onMessage(lane, msg) {
  const isMain = lane.index === 0;
  switch (msg.type) {
    case "started":
      // an earlier start, overtaken by a later one, is stale; a reset's answer carries no id
      if (msg.id !== undefined && msg.id !== null && msg.id !== lane.startId) break;
      if (lane.run) {
        lane.run.pending = false;
        if (lane.run.playWhenStarted) { lane.run.playWhenStarted = false; send(lane, { type: "resume" }); }
      }
      lane.start = msg.start; lane.trace = []; lane.latest = null; lane.ending = null;
      if (isMain) {
        clearErrors();
        if (!(state.edit && state.edit.handle.kind === "mode")) state.target = msg.target;   // not under a drag
        state.landscape = msg.landscape; state.start = msg.start;
        hideBanner(); showReadouts(msg.start); drawModes();
      }
      render();
      break;
    case "frames":
      for (const f of msg.frames) lane.trace[f.step] = f;   // a repeated step (direction switch) overwrites
      lane.trace.length = msg.frames[msg.frames.length - 1].step + 1;
      lane.latest = msg.frames[msg.frames.length - 1];
      // a replayed switch is applied by the server; the buttons follow it as its frames arrive
      while (lane.replayLeft.length && lane.latest.step >= lane.replayLeft[0].step) {
        const s = lane.replayLeft.shift();
        if (isMain) { setDivergence(s.divergence); hideBanner(); }
      }
      if (isMain) showReadouts(lane.latest);
      render();
      break;
    case "state":
      lane.playing = msg.state === "playing"; showPlaying();
      break;
    case "stopped":
      lane.playing = false; showPlaying();
      if (lane.run) { lane.run.stopped = true; lane.run.diverged = msg.reason === "diverged"; }
      lane.ending = msg;
      if (isMain) showBanner(msg.reason, msg.message);
      render();
      break;
    case "direction":
      if (isMain) { setDivergence(msg.divergence); hideBanner(); }
      lane.ending = null;
      render();
      break;
    case "updated": {
      const sent = lane.updates.shift();
      if (sent && sent.divergence && sent.epoch === lane.epoch) {
        // the server dropped the replays still to come; a later switch at the same step leaves the
        // run as that switch alone would (the stopping window restarts at the same q), so it replaces it
        // (at step 0 it is the direction the run starts in)
        lane.switches = lane.switches.filter((s) => s.step < msg.step);
        lane.switches.push({ step: msg.step, divergence: sent.divergence });
        lane.replayLeft = [];
        writeUrl();
      }
      break;
    }
    case "error":
      if (msg.reply_to === "update") lane.updates.shift();
      if (msg.reply_to === "start" && msg.id === lane.startId) { lane.run = null; if (isMain) state.refused = true; }
      lane.playing = false; showPlaying();
      if (isMain) setError(msg.field, msg.message); else entryError(lane, msg.message);
      break;
    default:
      break;
  }
}

// ---------- controls ----------

// A field the server refused keeps its message, and nothing runs, until the field changes.
function refusedField() { return state.refused; }

function anyPlaying() { return activeLanes().some((l) => l.playing); }

const finished = (l) => l.run.stopped || l.run.diverged;

function play() {
  const cfg = config();
  state.wantPlay = true; writeUrl();
  if (refusedField()) return;
  if (!validate(cfg)) return;
  const ls = activeLanes(), dirty = state.dirty;
  const fresh = dirty || ls.some((l) => !l.run || (!l.run.pending && l.run.key !== structuralKey(laneConfig(l)))) ||
    ls.every((l) => !l.run.pending && finished(l));
  state.dirty = false;
  if (fresh) { startRun(true); return; }
  for (const l of ls) {
    if (l.run.pending) l.run.playWhenStarted = true;             // its start is on the way
    else if (!finished(l)) send(l, { type: "resume" });
  }
}

function pause() {
  for (const l of activeLanes()) {
    if (l.run && l.run.pending) l.run.playWhenStarted = false;
    if (l.index === 0 || l.run) send(l, { type: "pause" });
  }
}

function togglePlay() { if (anyPlaying()) pause(); else play(); }

function singleStep() {
  const cfg = config();
  if (refusedField() || !validate(cfg)) return;
  const ls = activeLanes();
  if (state.dirty || ls.some((l) => !l.run || l.run.key !== structuralKey(laneConfig(l))) || ls.every((l) => l.run.diverged)) {
    state.dirty = false; if (!startRun(false)) return;
  }
  for (const l of ls) send(l, { type: "step", n: 1 });
}

function reset() {
  const ls = activeLanes();
  if (ls.every((l) => l.run && !l.run.pending)) {
    for (const l of ls) {
      send(l, { type: "reset" });
      l.run.stopped = false; l.run.diverged = false; l.epoch += 1; l.ending = null;
      l.switches = [{ step: 0, divergence: state.divergence }]; l.replayLeft = [];
    }
  } else startRun(false);
  state.wantPlay = false; writeUrl(); hideBanner();
}

// A change of step size, momentum, schedule or speed goes to the running runs without a reset
// (a compared run keeps its own step size and momentum).
function liveUpdate(fields) {
  writeUrl();
  const cfg = config();
  if (!validate(cfg)) return;
  for (const l of activeLanes()) {
    const own = l.index === 0 ? fields : fields.filter((f) => f !== "lr" && f !== "momentum");
    if (!own.length || !l.run || l.run.key !== structuralKey(laneConfig(l))) continue;
    if (l.run.diverged) { if (l.index === 0) state.dirty = true; continue; }   // a diverged run restarts on play
    const msg = { type: "update" };
    for (const f of own) if (f in cfg) msg[f] = cfg[f];
    if (own.includes("schedule")) { msg.decay = cfg.decay ?? null; msg.period = cfg.period ?? null; }
    send(l, msg);
  }
}

// A change of p, the start, an optimizer or the parameterization: preview the new runs at step 0.
function structuralChange() {
  writeUrl();
  startRun(false);
  state.wantPlay = false;
  writeUrl();
}

function chooseDirection(d) {
  setDivergence(d); writeUrl();
  const cfg = config();
  if (!validate(cfg)) return;
  state.wantPlay = true; writeUrl();
  const ls = activeLanes();
  const usable = (l) => l.run && !l.run.pending && l.run.key === structuralKey(laneConfig(l));
  if (state.dirty || !ls.every(usable) || main.run.diverged) { state.dirty = false; startRun(true); return; }
  for (const l of ls) {
    if (l.run.diverged) continue;                      // a compared run that ran away stays so
    l.replayLeft = [];
    send(l, { type: "update", divergence: d });        // the server goes on from the current q
    if (!l.run.stopped && !l.playing) send(l, { type: "resume" });
    l.run.stopped = false;
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
  $("compare").addEventListener("change", () => {
    if ($("compare").checked) addEntry(); else { setEntries(false, []); structuralChange(); }
  });
  $("race-add").addEventListener("click", addEntry);
  $("mode-add").addEventListener("click", () => addMode());
  $("start-reset").addEventListener("click", resetStart);
  wireDragging();
  wireKeys(togglePlay, singleStep);
}

// ---------- display ----------

function showReadouts(f) {
  $("kl-forward").textContent = fmt(f.kl_forward);
  $("kl-reverse").textContent = fmt(f.kl_reverse);
  $("mean").textContent = fmt(f.mean);
  $("var").textContent = fmt(f.var);
  $("step-count").textContent = String(f.step);
  $("lr-now").textContent = f.lr === null || f.lr === undefined ? "–" : String(Number(f.lr.toPrecision(6)));
}

function showBanner(reason, message) {
  const b = $("banner");
  b.className = reason; b.textContent = message; b.hidden = false;
}

function hideBanner() { $("banner").hidden = true; $("banner").textContent = ""; }

function showPlaying() { $("play").textContent = anyPlaying() ? "Pause" : "Play"; }

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; draw(); drawTable(); });
}

function normalPdf(x, m, v) { return Math.exp(-0.5 * (x - m) * (x - m) / v) / Math.sqrt(2 * Math.PI * v); }

const LAYOUT = { margin: { l: 50, r: 10, t: 30, b: 40 }, showlegend: true, legend: { orientation: "h", y: -0.25 },
  font: { size: 11 } };
const PLOT_CONFIG = { displaylogo: false, responsive: true };
// The density and landscape plots are dragged by hand (modes of p, q): no zoom box, no autoscale on double-click.
const EDIT_CONFIG = { ...PLOT_CONFIG, doubleClick: false };

function laneLabel(lane) {
  const cfg = lane.index === 0 ? { optimizer: fieldValue("optimizer") } : state.entries[lane.index - 1];
  return `${lane.index + 1}: ${OPTIMIZER_NAMES[cfg.optimizer] || cfg.optimizer}`;
}

// Where q is drawn: where a drag puts the start, else the lane's latest frame.
function qNow(lane) {
  if (state.edit && state.edit.start) return state.edit.start;
  return lane.latest || lane.start;
}

function draw() {
  if (!state.target || !state.landscape) return;
  const L = state.landscape, t = state.target, edit = state.edit;
  const ls = activeLanes(), multi = ls.length > 1;
  const lo = L.mean[0] - 1, hi = L.mean[L.mean.length - 1] + 1;
  const xs = Array.from({ length: 400 }, (_, i) => lo + (hi - lo) * i / 399);
  const p = xs.map((x) => t.weights.reduce((s, w, k) => s + w * normalPdf(x, t.means[k], t.vars[k]), 0));
  const optima = L.optima[state.divergence];
  const good = (c) => c && c.mean !== null && c.var !== null && c.var > 0;
  const qs = ls.map((lane) => {
    const c = qNow(lane);
    return { x: good(c) ? xs : [], y: good(c) ? xs.map((x) => normalPdf(x, c.mean, c.var)) : [],
      name: multi ? `q ${laneLabel(lane)}` : "q (fitted)", line: { color: LANE_COLOURS[lane.index], width: 2.5 } };
  });
  const q0 = qNow(main);
  const dens = [
    { x: xs, y: p, name: "p (target)", line: { color: "#2f855a", width: 2 }, fill: "tozeroy", fillcolor: "rgba(47,133,90,.12)" },
    ...qs,
    ...optima.map((o, k) => ({ x: xs, y: xs.map((x) => normalPdf(x, o.mean, o.var)), showlegend: k === 0,
      name: `optimum of ${state.divergence === "forward" ? "KL(p,q)" : "KL(q,p)"} (${o.global ? "global" : "local"})`,
      line: { color: o.global ? "#805ad5" : "#b794f4", dash: "dash", width: 1.2 } })),
    { x: t.means, y: t.means.map((m, k) => modePeak(t.weights[k], t.vars[k])), mode: "markers", name: "modes of p (drag)",
      marker: { color: "#2f855a", size: 11, symbol: "diamond", line: { color: "#fff", width: 1 } }, hoverinfo: "x" },
    { x: good(q0) ? [q0.mean] : [], y: good(q0) ? [modePeak(1, q0.var)] : [], mode: "markers", name: "q (drag to set the start)",
      marker: { color: LANE_COLOURS[0], size: 10, symbol: "circle", line: { color: "#fff", width: 1 } }, hoverinfo: "x" },
  ];
  const densLayout = { ...LAYOUT, title: { text: "p and q", x: 0.02 }, dragmode: false,
    xaxis: { title: "x", range: [lo, hi] }, yaxis: { title: "density", rangemode: "tozero" } };
  if (edit && edit.yrange) densLayout.yaxis = { ...densLayout.yaxis, range: edit.yrange, autorange: false };
  Plotly.react("plot-density", dens, densLayout, EDIT_CONFIG);

  const pos = (v) => (v !== null && v > 0 ? v : null);
  const klTraces = [];
  for (const lane of ls) {
    const rows = lane.trace.filter(Boolean), steps = rows.map((r) => r.step);
    if (!multi) {
      klTraces.push(
        { x: steps, y: rows.map((r) => pos(r.kl_forward)), name: "KL(p,q)", line: { color: "#dd6b20", width: state.divergence === "forward" ? 2.5 : 1 } },
        { x: steps, y: rows.map((r) => pos(r.kl_reverse)), name: "KL(q,p)", line: { color: "#3182ce", width: state.divergence === "reverse" ? 2.5 : 1 } });
    } else {
      klTraces.push({ x: steps, y: rows.map((r) => pos(r["kl_" + state.divergence])), name: laneLabel(lane),
        line: { color: LANE_COLOURS[lane.index], width: 2 } });
    }
  }
  const klName = state.divergence === "forward" ? "KL(p,q)" : "KL(q,p)";
  Plotly.react("plot-kl", klTraces, { ...LAYOUT, title: { text: multi ? `${klName} against step` : "KL against step", x: 0.02 },
    xaxis: { title: "step" }, yaxis: { title: "KL (log scale)", type: "log" }, hovermode: "x unified" }, PLOT_CONFIG);

  const z = L["kl_" + state.divergence].map((row) => row.map((v) => (v === null || !(v > 0) ? null : Math.log10(v))));
  const land = [
    { type: "contour", x: L.mean, y: L.log_var, z, colorscale: "Viridis", ncontours: 30, name: "log10 KL",
      colorbar: { title: { text: "log10 KL", side: "right" }, thickness: 10 }, showlegend: false,
      contours: { coloring: "heatmap" }, hoverinfo: multi ? "skip" : undefined },
  ];
  for (const lane of ls) {
    const path = lane.trace.filter((r) => r && r.mean !== null && r.var !== null && r.var > 0);
    const c = qNow(lane), ok = good(c);
    land.push(
      { x: path.map((r) => r.mean), y: path.map((r) => Math.log(r.var)), mode: "lines", name: multi ? `path ${lane.index + 1}` : "path",
        line: { color: multi ? LANE_COLOURS[lane.index] : "#fff", width: 2 }, showlegend: !multi },
      { x: ok ? [c.mean] : [], y: ok ? [Math.log(c.var)] : [], mode: "markers", name: multi ? `q ${laneLabel(lane)}` : "q now (drag to set the start)",
        marker: { color: multi ? LANE_COLOURS[lane.index] : "#e53e3e", size: 9, line: { color: "#fff", width: 1 } } });
  }
  land.push({ x: optima.map((o) => o.mean), y: optima.map((o) => Math.log(o.var)), mode: "markers", name: "optima",
    marker: { symbol: "x", color: "#fff", size: 9, line: { width: 1 } } });
  Plotly.react("plot-landscape", land, { ...LAYOUT, title: { text: `${klName} landscape`, x: 0.02 }, dragmode: false,
    xaxis: { title: "mean", range: [L.mean[0], L.mean[L.mean.length - 1]] },
    yaxis: { title: "log variance", range: [L.log_var[0], L.log_var[L.log_var.length - 1]] } }, EDIT_CONFIG);

  Plotly.react("plot-lr", ls.map((lane) => {
    const rows = lane.trace.filter(Boolean);
    return { x: rows.map((r) => r.step), y: rows.map((r) => r.lr), name: multi ? laneLabel(lane) : "learning rate",
      line: { color: multi ? LANE_COLOURS[lane.index] : "#4a5568" } };
  }), { ...LAYOUT, title: { text: "learning rate", x: 0.02 }, xaxis: { title: "step" }, yaxis: { title: "lr" } }, PLOT_CONFIG);
}

// The race table: each run's settings, the steps it took to converge (or how it ended) and its KL.
function drawTable() {
  const body = $("race-table").tBodies[0];
  $("race-table").hidden = !state.compare;
  if (!state.compare) return;
  body.textContent = "";
  for (const lane of activeLanes()) {
    const cfg = laneConfig(lane), e = lane.ending, last = lane.latest;
    const tr = body.insertRow();
    tr.style.setProperty("--lane", LANE_COLOURS[lane.index]);
    tr.dataset.lane = String(lane.index + 1);
    const cells = [
      `<span class="swatch" aria-hidden="true"></span>${lane.index + 1}`,
      OPTIMIZER_NAMES[cfg.optimizer] || cfg.optimizer,
      `lr ${cfg.lr}` + (MOMENTUM_OPTIMIZERS.includes(cfg.optimizer) ? `, momentum ${cfg.momentum}` : ""),
    ];
    for (const c of cells) tr.insertCell().innerHTML = c;
    const steps = tr.insertCell();
    steps.className = "steps";
    if (e) {
      steps.dataset.reason = e.reason; steps.dataset.steps = String(e.step);
      steps.textContent = e.reason === "converged" ? String(e.step) : `${e.reason === "diverged" ? "diverged" : "max_steps"} at ${e.step}`;
    } else {
      steps.dataset.reason = lane.run ? "running" : "none";
      steps.textContent = lane.error ? "refused" : last ? `… ${last.step}` : "–";
    }
    const kl = tr.insertCell();
    kl.className = "kl";
    kl.textContent = last ? fmt(last["kl_" + state.divergence]) : lane.start ? fmt(lane.start["kl_" + state.divergence]) : "–";
  }
}

// ---------- the modes of p and the start q, by hand ----------

function modePeak(w, v) { return w / Math.sqrt(2 * Math.PI * v); }

function num(x) { return String(Number(x.toPrecision(4))); }

// p's components as a spec in the CLI's grammar; weights rounded so that they add up to 1 exactly.
function specText(t) {
  const k = t.means.length;
  if (k === 1) return `N(${num(t.means[0])}, ${num(t.vars[0])})`;
  const total = t.weights.reduce((a, b) => a + b, 0);
  const units = t.weights.map((w) => Math.max(1, Math.round(10000 * w / total)));
  units[k - 1] = 10000 - units.slice(0, k - 1).reduce((a, b) => a + b, 0);
  return t.means.map((m, i) => `${units[i] / 10000}*N(${num(m)}, ${num(t.vars[i])})`).join(" + ");
}

function setTarget(t) {
  state.target = { ...t, text: specText(t) };
  $("target").value = state.target.text;
  $("preset").value = "custom";
  drawModes();
}

function drawModes() {
  const box = $("modes");
  box.textContent = "";
  const t = state.target;
  if (!t) return;
  t.means.forEach((m, k) => {
    const row = document.createElement("div");
    row.className = "mode";
    row.innerHTML = `<span>${num(t.weights[k])}·N(${num(m)}, ${num(t.vars[k])})</span>
      <button type="button" class="chip" id="mode-remove-${k + 1}" aria-label="remove mode ${k + 1} of p" title="remove this mode">×</button>`;
    box.appendChild(row);
    const btn = $(`mode-remove-${k + 1}`);
    btn.disabled = t.means.length < 2;
    btn.addEventListener("click", () => removeMode(k));
  });
}

function addMode(x) {
  const t = state.target;
  if (!t) return;
  const k = t.means.length;
  const spread = Math.max(...t.means.map((m, i) => m + 2 * Math.sqrt(t.vars[i])));
  const mean = x === undefined ? spread + 1 : x;
  const v = t.vars.reduce((a, b) => a + b, 0) / k;
  setTarget({ weights: [...t.weights.map((w) => w * k / (k + 1)), 1 / (k + 1)], means: [...t.means, mean], vars: [...t.vars, v] });
  structuralChange();
}

function removeMode(k) {
  const t = state.target;
  if (!t || t.means.length < 2) return;
  const keep = (_, i) => i !== k;
  const weights = t.weights.filter(keep), total = weights.reduce((a, b) => a + b, 0);
  setTarget({ weights: weights.map((w) => w / total), means: t.means.filter(keep), vars: t.vars.filter(keep) });
  structuralChange();
}

function resetStart() {
  const p = PRESETS[fieldValue("preset")] || { mean: 0, var: 5 };
  $("init-mean").value = p.mean; $("init-var").value = p.var;
  structuralChange();
}

// Pixel <-> data on a plot's main axes (plotly's own axis functions).
function plotPoint(gd, ev) {
  const fl = gd._fullLayout;
  if (!fl || !fl.xaxis) return null;
  const r = gd.getBoundingClientRect();
  const px = ev.clientX - r.left - fl._size.l, py = ev.clientY - r.top - fl._size.t;
  return { px, py, x: fl.xaxis.p2d(px), y: fl.yaxis.p2d(py), xa: fl.xaxis, ya: fl.yaxis };
}

const GRAB_PX = 14;

// The handle under the pointer: {kind: "mode", k} or {kind: "q"}, or null.
function handleAt(gd, pt) {
  const cands = [];
  if (gd.id === "plot-density") {
    const t = state.target;
    t.means.forEach((m, k) => cands.push({ kind: "mode", k, x: m, y: modePeak(t.weights[k], t.vars[k]) }));
    const c = qNow(main);
    if (c && c.var > 0) cands.push({ kind: "q", x: c.mean, y: modePeak(1, c.var) });
  } else {
    const c = qNow(main);
    if (c && c.var > 0) cands.push({ kind: "q", x: c.mean, y: Math.log(c.var) });
  }
  let best = null, bestD = GRAB_PX;
  for (const h of cands) {
    const d = Math.hypot(pt.xa.d2p(h.x) - pt.px, pt.ya.d2p(h.y) - pt.py);
    if (d <= bestD) { best = h; bestD = d; }
  }
  return best;
}

function clamp(x, lo, hi) { return Math.min(hi, Math.max(lo, x)); }

let lastPress = null;

function wireDragging() {
  for (const id of ["plot-density", "plot-landscape"]) {
    const gd = $(id);
    gd.addEventListener("pointerdown", (ev) => {
      if (!state.target || !state.landscape) return;
      const pt = plotPoint(gd, ev);
      const h = pt && handleAt(gd, pt);
      if (ev.button === 2) {                         // right-click on a mode of p removes it
        if (id === "plot-density" && h && h.kind === "mode") { ev.preventDefault(); ev.stopPropagation(); removeMode(h.k); }
        return;
      }
      if (ev.button !== 0) return;
      if (!h) {
        // a double-click on the density plot adds a mode of p there (plotly covers the page while a
        // button is down, so the browser's dblclick does not reach the plot: time the presses here)
        const inside = pt && pt.px >= 0 && pt.py >= 0 && pt.px <= pt.xa._length && pt.py <= pt.ya._length;
        const last = lastPress;
        lastPress = { t: ev.timeStamp, x: ev.clientX, y: ev.clientY };
        if (id === "plot-density" && inside && last && ev.timeStamp - last.t < 450 &&
            Math.hypot(ev.clientX - last.x, ev.clientY - last.y) < 6) {
          lastPress = null;
          ev.preventDefault(); ev.stopPropagation();
          addMode(Number(pt.x.toPrecision(3)));
        }
        return;
      }
      ev.preventDefault(); ev.stopPropagation();
      const c = qNow(main);
      state.edit = { gd, handle: h, yrange: id === "plot-density" ? pt.ya.range.slice() : null,
        start: h.kind === "q" ? { mean: c.mean, var: c.var } : null, moved: false };
      gd.classList.add("dragging");
    }, true);
    if (id === "plot-density") gd.addEventListener("contextmenu", (ev) => ev.preventDefault());   // right-click edits p
  }
  window.addEventListener("pointermove", (ev) => {
    const e = state.edit;
    if (!e) return;
    const pt = plotPoint(e.gd, ev);
    if (!pt) return;
    e.moved = true;
    const x = clamp(pt.x, -1e3, 1e3);
    if (e.gd.id === "plot-landscape") {
      e.start = { mean: x, var: Math.exp(clamp(pt.y, -12, 12)) };
    } else {
      // the handle follows the pointer: sideways is the mean, height the peak (up = narrower)
      const peak = Math.max(pt.y, 1e-3 * e.yrange[1]);
      if (e.handle.kind === "mode") {
        const t = state.target, k = e.handle.k;
        const vars = t.vars.slice(), means = t.means.slice();
        means[k] = x; vars[k] = clamp((t.weights[k] / (Math.sqrt(2 * Math.PI) * peak)) ** 2, 1e-3, 1e3);
        setTarget({ weights: t.weights, means, vars });
      } else {
        e.start = { mean: x, var: clamp((1 / (Math.sqrt(2 * Math.PI) * peak)) ** 2, 1e-3, 1e3) };
      }
    }
    if (e.start) { $("init-mean").value = num(e.start.mean); $("init-var").value = num(e.start.var); }
    render();
  });
  const finish = () => {
    const e = state.edit;
    if (!e) return;
    state.edit = null;
    e.gd.classList.remove("dragging");
    if (e.moved) structuralChange();       // the preview restarts at step 0 from the new p or q
    else render();
  };
  window.addEventListener("pointerup", finish);
  window.addEventListener("pointercancel", finish);
}

// ---------- downloads ----------

function downloadCsv() {
  const rows = main.trace.filter(Boolean);
  const nParams = rows.length ? rows[0].params.length : 2;
  const header = ["step", ...Array.from({ length: nParams }, (_, i) => `params_${i}`), "mean", "var",
    "kl_forward", "kl_reverse", "loss", "lr", "grad"];
  const cell = (v) => (v === null || v === undefined ? "nan" : String(v));
  const lines = [header.join(",")];
  for (const r of rows) {
    lines.push([r.step, ...r.params, r.mean, r.var, r.kl_forward, r.kl_reverse, r.loss, r.lr, r.grad].map(cell).join(","));
  }
  downloadCsvLines("gdlab-trace.csv", lines);
}

// The four views side by side in one PNG.
function savePng() {
  const w = 640, h = 400;
  const ids = ["plot-density", "plot-landscape", "plot-kl", "plot-lr"];
  return downloadPlotsPng("gdlab-explorer.png", ids.map((id, i) => [id, (i % 2) * w, Math.floor(i / 2) * h, w, h]),
    2 * w, 2 * h);
}

// ---------- start ----------

function boot() {
  wire();
  const autoplay = readUrl();
  showOptionFields();
  drawEntries();
  connect(main);
  if (autoplay) play(); else startRun(false);
  writeUrl();
}

boot();
