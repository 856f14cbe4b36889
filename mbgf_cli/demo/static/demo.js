// mbgf demo page: choose or drop a video, send it to /api/predict, show the top classes, MBGF's gate
// and, for a long video, the timeline chart (drawn here as SVG; the page loads nothing from elsewhere).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed"];
const state = { info: null, file: null, preview: null };

function megabytes(bytes) {
  return (bytes / 1048576).toPrecision(3).replace(/\.0+$|(\.\d*?)0+$/, "$1") + " MB";
}

function size(bytes) {
  return bytes < 1048576 ? `${Math.max(1, Math.round(bytes / 1024))} KB` : megabytes(bytes);
}

function showMessage(text, isError) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}

async function loadInfo() {
  try {
    const response = await fetch("api/info");
    state.info = await response.json();
  } catch (e) {
    showMessage("The server did not answer: is mbgf demo still running?", true);
    return;
  }
  const info = state.info;
  $("model").textContent = info.model;
  $("file").accept = ["video/*", ...info.extensions].join(",");
  const names = info.class_names;
  $("classes-hint").textContent = names.length
    ? `Empty: the checkpoint's ${names.length} classes (${names.slice(0, 3).join(", ")}${names.length > 3 ? ", …" : ""}).`
    : "This model has no classes of its own: type some.";
  updateButton();
}

// The checks the server makes too, here first so that a wrong file is not uploaded at all.
function fileProblem(file) {
  const dot = file.name.lastIndexOf(".");
  const extension = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
  if (!state.info.extensions.includes(extension)) {
    return `${file.name}: not a video file name (expected one of ${state.info.extensions.join(" ")})`;
  }
  if (file.size > state.info.max_upload_bytes) {
    return `${file.name}: the file is ${megabytes(file.size)}; this server takes files up to ` +
      `${megabytes(state.info.max_upload_bytes)} (mbgf demo --max-upload-mb)`;
  }
  if (file.size === 0) return `${file.name}: the file is empty (0 bytes)`;
  return null;
}

function chooseFile(file) {
  if (!file || !state.info) return;
  const problem = fileProblem(file);
  if (problem) {
    state.file = null;
    showMessage(problem, true);
  } else {
    state.file = file;
    showMessage("", false);
  }
  $("drop-text").textContent = `${file.name} (${size(file.size)})`;
  const preview = $("preview");
  if (state.preview) URL.revokeObjectURL(state.preview);
  state.preview = state.file ? URL.createObjectURL(file) : null;
  preview.hidden = !state.preview;
  if (state.preview) {
    preview.src = state.preview;
    preview.play().catch(() => {});
  } else {
    preview.removeAttribute("src");
  }
  updateButton();
}

function updateButton() {
  const needClasses = state.info && state.info.class_names.length === 0;
  $("run").disabled = !state.file || (needClasses && !$("classes").value.trim());
}

async function classify() {
  const file = state.file;
  const query = new URLSearchParams({ name: file.name, classes: $("classes").value });
  $("run").disabled = true;
  showMessage(`Classifying ${file.name}…`, false);
  let response, result;
  try {
    response = await fetch(`api/predict?${query}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" },
    });
    result = await response.json();
  } catch (e) {
    showMessage(`${file.name}: the server did not answer (is mbgf demo still running?)`, true);
    updateButton();
    return;
  }
  updateButton();
  if (!response.ok) {
    $("output").hidden = true;
    showMessage(result.error || `${file.name}: the server said ${response.status}`, true);
    return;
  }
  showMessage("", false);
  showResult(result);
}

function barRow(cells, fraction) {
  const row = document.createElement("tr");
  for (const [text, className] of cells) {
    const cell = row.insertCell();
    cell.textContent = text;
    cell.className = className;
  }
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.style.width = `${(100 * fraction).toFixed(1)}%`;
  row.insertCell().appendChild(bar);
  return row;
}

function showResult(result) {
  $("video-name").textContent = result.video;
  const rows = $("results").tBodies[0];
  rows.replaceChildren(...result.top.map((r) => {
    const row = barRow([[r.label, "label"], [r.probability.toFixed(3), "number probability"]], r.probability);
    row.className = "result";
    return row;
  }));
  const gates = result.gates || null;
  $("gates-box").hidden = !gates;
  if (gates) {
    $("gates").tBodies[0].replaceChildren(...Object.entries(gates).map(([branch, weight]) => {
      const row = barRow([[branch, "branch"], [weight.toFixed(3), "number weight"]], weight);
      row.className = "gate";
      return row;
    }));
  }
  const timeline = result.timeline || null;
  $("timeline-box").hidden = !timeline;
  if (timeline) drawTimeline($("timeline"), timeline);
  $("output").hidden = false;
}

// ---- the timeline chart: a line per class over window centres, for the classes that lead a window

function svg(name, attributes, parent) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function timelineSeries(windows) {
  const byClass = new Map();
  windows.forEach((w, index) => {
    for (const r of w.top) {
      if (!byClass.has(r.label)) byClass.set(r.label, { label: r.label, points: [], leads: false, best: 0 });
      const series = byClass.get(r.label);
      series.points.push({ index, t: (w.start + w.end) / 2, p: r.probability });
      series.best = Math.max(series.best, r.probability);
    }
    if (w.top.length) byClass.get(w.top[0].label).leads = true;
  });
  const leading = [...byClass.values()].filter((s) => s.leads).sort((a, b) => b.best - a.best);
  return leading.slice(0, COLOURS.length);
}

function drawTimeline(container, timeline) {
  const windows = timeline.windows;
  const width = 640, height = 220, left = 36, right = 180, top = 10, bottom = 28;
  const plotWidth = width - left - right, plotHeight = height - top - bottom;
  const t0 = windows.length ? windows[0].start : 0;
  const t1 = windows.length ? Math.max(...windows.map((w) => w.end)) : 1;
  const x = (t) => left + (plotWidth * (t - t0)) / Math.max(t1 - t0, 1e-9);
  const y = (p) => top + plotHeight * (1 - p);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "class probability over time" });
  for (const p of [0, 0.5, 1]) {
    svg("line", { x1: left, x2: left + plotWidth, y1: y(p), y2: y(p), class: p ? "grid" : "axis" }, chart);
    svg("text", { x: left - 6, y: y(p) + 4, "text-anchor": "end" }, chart).textContent = p.toFixed(1);
  }
  const step = Math.max(1, Math.ceil((t1 - t0) / 8));
  for (let t = Math.ceil(t0); t <= t1 + 1e-9; t += step) {
    svg("line", { x1: x(t), x2: x(t), y1: y(0), y2: y(0) + 4, class: "axis" }, chart);
    svg("text", { x: x(t), y: y(0) + 16, "text-anchor": "middle" }, chart).textContent = `${t}s`;
  }
  const legend = svg("g", { class: "legend" }, chart);
  timelineSeries(windows).forEach((series, n) => {
    const colour = COLOURS[n];
    const group = svg("g", { class: "series", "data-label": series.label }, chart);
    // A class missing from a window's top-k has no value there: its line breaks instead of guessing.
    let run = [];
    const flush = () => {
      if (run.length > 1) {
        svg("polyline", { points: run.map((q) => `${x(q.t)},${y(q.p)}`).join(" "), fill: "none",
          stroke: colour, "stroke-width": 2 }, group);
      }
      run = [];
    };
    series.points.forEach((q, i) => {
      if (i && q.index !== series.points[i - 1].index + 1) flush();
      run.push(q);
      svg("circle", { cx: x(q.t), cy: y(q.p), r: 2.5, fill: colour, "data-t": q.t, "data-p": q.p }, group);
    });
    flush();
    const rowY = top + 8 + 18 * n;
    svg("rect", { x: left + plotWidth + 14, y: rowY - 8, width: 12, height: 10, fill: colour }, legend);
    const name = svg("text", { x: left + plotWidth + 32, y: rowY + 1 }, legend);
    name.textContent = series.label.length > 24 ? `${series.label.slice(0, 23)}…` : series.label;
  });
  container.replaceChildren(chart);
  $("timeline-hint").textContent =
    `${windows.length} windows of ${state.info.window}s every ${state.info.stride}s; a line per class that leads a window.`;
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    chooseFile(e.dataTransfer.files[0]);
  });
  $("classes").addEventListener("input", updateButton);
  $("classes").addEventListener("keydown", (e) => { if (e.key === "Enter" && !$("run").disabled) classify(); });
  $("run").addEventListener("click", classify);
  loadInfo();
}

setUp();
