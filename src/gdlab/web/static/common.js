// gdlab explorer: what every tab's page shares (loaded before the tab's own script).
"use strict";

const $ = (id) => document.getElementById(id);

// A number as the readouts show it: fixed digits, exponents for the very small and very large;
// ``missing`` for a value the server sent as null (NaN or infinite, or not computed).
function fmt(x, digits = 4, missing = "NaN") {
  if (x === null || x === undefined) return missing;
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(2);
  if (Math.abs(x) >= 1e6) return x.toExponential(3);
  return x.toFixed(digits);
}

function download(name, url) {
  const a = document.createElement("a");
  a.href = url; a.download = name; document.body.appendChild(a); a.click(); a.remove();
}

// lines: the CSV's rows, the header first.
function downloadCsvLines(name, lines) {
  download(name, URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" })));
}

// parts: [plot id, x, y, width, height] drawn into one white canvas of width × height, saved as name.
async function downloadPlotsPng(name, parts, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, height);
  for (const [id, x, y, w, h] of parts) {
    const url = await Plotly.toImage(id, { format: "png", width: w, height: h });
    const img = new Image();
    await new Promise((ok) => { img.onload = ok; img.src = url; });
    ctx.drawImage(img, x, y);
  }
  download(name, canvas.toDataURL("image/png"));
}

// space = play/pause, → = one step; typing in a field is not a command.
function wireKeys(togglePlay, singleStep) {
  document.addEventListener("keydown", (ev) => {
    const tag = (ev.target && ev.target.tagName) || "";
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;
    if (ev.key === " " && tag !== "BUTTON") { ev.preventDefault(); togglePlay(); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); singleStep(); }
  });
}
