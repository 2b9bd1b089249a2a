// The lab: draw a digit and watch it go through every stage of each served run (POST /activations),
// click a cell to see where it looks and the multiply-add that makes it (POST /explain).
import { drawingPad } from "./pad.js";
import { bars, cellAt, decodeStage, fmt, legend, make, mapCanvas, scaleFor } from "./render.js";
import { explorer } from "./explorer.js";
import { training } from "./training.js";

const MAX_MAPS = 32;  // deep stages have up to 132 channels: the first 32 are drawn
const state = { runs: [], results: [], input: null, selected: null, view: "layers", busy: false };
window.lab = state;  // for the browser tests, and for a curious learner's console

const SAME_SITE = { "X-Requested-With": "cnnlab" };  // the server refuses uploads without it: a cross-site form cannot set it
const $ = id => document.getElementById(id);

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map(d => d.msg).join("; ") : body.detail;
    throw new Error(detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

// ---- drawing -> activations of every run ----
let pending = null, inFlight = false, dirty = false;
const pad = drawingPad($("pad"), strokeEnded => schedule(strokeEnded ? 0 : 90));

// While the pen moves, a drawing goes out at most every 90 ms; at a stroke's end, at once.
function schedule(delay) {
  state.busy = true;  // until the last drawing's stages are shown
  if (delay === 0) clearTimeout(pending);
  else if (pending !== null) return;
  pending = setTimeout(() => { pending = null; send(); }, delay);
}

async function send() {
  if (inFlight) { dirty = true; return; }
  inFlight = true;
  try {
    const form = new FormData();
    form.append("file", await pad.png(), "drawing.png");
    const first = await getJSON("/activations?run=0", { method: "POST", headers: SAME_SITE, body: form });
    const rest = await Promise.all(state.runs.slice(1).map((_, i) => getJSON(`/activations?run=${i + 1}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pixels: first.input }) })));
    state.results = [first, ...rest];
    state.input = first.input;
    $("answer").textContent = "Hover over a map for its values; click a cell to see where it looks.";
    renderAll();
  } catch (err) {
    $("answer").textContent = err.message;
  } finally {
    inFlight = false;
    if (dirty) { dirty = false; schedule(0); } else if (pending === null) state.busy = false;
  }
}

$("clear").addEventListener("click", () => {
  pad.clear();
  Object.assign(state, { results: [], input: null, selected: null });
  $("answer").textContent = "Draw with the mouse or a finger; every layer updates as you draw.";
  closeInspector();
  renderAll();
});

// ---- tabs ----
for (const tab of document.querySelectorAll(".tabs button")) {
  tab.addEventListener("click", () => {
    state.view = tab.dataset.view;
    for (const t of document.querySelectorAll(".tabs button")) t.setAttribute("aria-selected", t === tab);
    for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${state.view}`;
    if (state.view !== "layers") closeInspector();
    renderAll();
  });
}

// ---- rendering ----
function renderAll() {
  renderSeen();
  renderPredictions();
  if (state.view === "layers") renderLayers();
  if (state.view === "kernels") renderKernels();
  explorerView.update(state);
}

function renderSeen() {
  if (uploading()) {
    const seen = state.results[0] && state.results[0].seen;
    $("seen-image").hidden = !seen;
    if (seen) $("seen-image").src = seen;
    return;
  }
  const g = $("seen").getContext("2d"), image = g.createImageData(28, 28);
  (state.input || Array.from({ length: 28 }, () => new Array(28).fill(0))).flat()
    .forEach((v, i) => image.data.set([v, v, v, 255], i * 4));
  g.putImageData(image, 0, 0);
}

function renderPredictions() {
  const box = $("predictions");
  box.replaceChildren();
  state.results.forEach((result, i) => {
    const top = result.predictions[0], card = make("div", "pred");
    card.dataset.run = i;
    const head = make("h3");
    head.append(make("span", "", state.runs[i].name), make("span", "top1", top.class));
    card.append(head);
    if (result.unsure) card.append(make("div", "unsure", "the model is unsure"));
    for (const p of result.predictions) {
      const row = make("div", "bar"), track = make("span", "track"), fill = make("i");
      fill.style.width = `${(p.probability * 100).toFixed(1)}%`;
      track.append(fill);
      row.append(make("span", "", p.class), track, make("span", "", `${(p.probability * 100).toFixed(1)}%`));
      card.append(row);
    }
    box.append(card);
  });
}

function runHead(run) {
  const head = make("div", "run-head");
  const acc = run.test_accuracy != null ? `, ${run.test_accuracy.toFixed(2)}% test accuracy` : "";
  head.append(make("h2", "", `${run.name}`), make("span", "meta", `${run.run} · ${run.parameters.toLocaleString()} parameters${acc}`));
  return head;
}

function columns(container) {
  container.style.setProperty("--runs", Math.max(1, state.runs.length));
  container.replaceChildren();
  return state.runs.map((run, i) => {
    const column = make("section", "card run");
    column.dataset.run = i;
    column.append(runHead(run));
    container.append(column);
    return column;
  });
}

function dims(stage, run) {
  const s = stage.shape;
  if (s.length === 3) return `${s[0]} map${s[0] > 1 ? "s" : ""} ${s[1]}×${s[2]}`;
  if (stage.name === "softmax") return `${s[0]} probabilities`;
  if (stage.values && s[0] === run.classes.length) return `${s[0]} logits`;
  return `${s[0]} values`;
}

function renderLayers() {
  columns($("columns")).forEach((column, i) => {
    const result = state.results[i];
    if (!result) { column.append(make("p", "empty", "Draw a digit to see it flow through every layer.")); return; }
    column.append(make("p", "shown", `Showing ${result.shown}.`));
    for (const note of result.notes || []) column.append(make("p", "note", note));
    result.stages.forEach((stage, s) => column.append(stageView(stage, i, s, result.stages[s - 1])));
  });
  markSelected();
}

function stageView(stage, runIndex, stageIndex, previous) {
  const box = make("section", "stage"), head = make("div", "stage-head"), title = make("div");
  Object.assign(box.dataset, { run: runIndex, stage: stage.name, index: stageIndex });
  title.append(make("b", "", stage.name), " ", make("span", "dims", dims(stage, state.runs[runIndex])));
  head.append(title);
  box.append(head);
  const values = decodeStage(stage);
  if (stage.shape.length === 3) {
    const scale = scaleFor(stage.lo, stage.hi);
    head.append(legend(scale));
    const [c, h, w] = stage.shape;
    if (stage.branches.length) {
      const grid = make("div", "branches");
      for (const branch of stage.branches) {
        const part = make("div", "branch"), [start, stop] = branch.channels;
        part.append(make("h4", "", `${branch.name} · ${stop - start}`),
          mapGrid(values, scale, stage, runIndex, stageIndex, start, stop, 30, branch));
        grid.append(part);
      }
      box.append(grid, make("div", "concat", `concatenated: ${stage.branches.map(b => b.channels[1] - b.channels[0]).join(" + ")} = ${c} channels of ${h}×${w}`));
    } else {
      box.append(mapGrid(values, scale, stage, runIndex, stageIndex, 0, Math.min(c, MAX_MAPS), 44));
      if (c > MAX_MAPS) box.append(make("div", "concat", `the first ${MAX_MAPS} of ${c} maps`));
    }
    box.dataset.count = box.querySelectorAll("canvas.map").length;
    box.dataset.size = `${h}x${w}`;
  } else if (stage.values) {
    box.append(bars(stage.values, state.runs[runIndex].classes));
    box.dataset.count = stage.values.length;
  } else {
    box.append(strip(values, stage, previous));
    box.dataset.count = values.length;
  }
  return box;
}

// Maps of at least `cell` CSS pixels, as many a row as fit.
function mapGrid(values, scale, stage, runIndex, stageIndex, start, stop, cell, branch = null) {
  const grid = make("div", "maps"), [, h, w] = stage.shape;
  grid.style.setProperty("--cell", `${cell}px`);
  for (let c = start; c < stop; c++) {
    const canvas = mapCanvas(values, c * h * w, h, w, scale, 0);
    canvas.classList.add("map");
    Object.assign(canvas.dataset, { run: runIndex, stage: stageIndex, channel: c });
    canvas.addEventListener("mousemove", e => {
      const [r, k] = cellAt(canvas, e);
      tip(e, `${stage.name} map ${c} (${r}, ${k}) ≈ ${fmt(values[c * h * w + r * w + k])}`);
    });
    canvas.addEventListener("mouseleave", () => { $("tip").hidden = true; });
    canvas.addEventListener("click", e => select({ runIndex, stageIndex, channel: c, cell: cellAt(canvas, e), branch }));
    grid.append(canvas);
  }
  return grid;
}

// A long vector (the flattened values) as rows of pixels: one row per map of the stage before it.
function strip(values, stage, previous) {
  const n = values.length, perMap = previous && previous.shape.length === 3 ? previous.shape[1] * previous.shape[2] : 0;
  const cols = perMap ? perMap * Math.ceil(32 / perMap) : 32, rows = Math.ceil(n / cols);
  const scale = scaleFor(stage.lo, stage.hi), canvas = mapCanvas(Float32Array.from({ length: rows * cols }, (_, i) => i < n ? values[i] : scale.lo), 0, rows, cols, scale, 0);
  canvas.className = "strip";
  canvas.addEventListener("mousemove", e => {
    const [r, k] = cellAt(canvas, e), i = r * cols + k;
    if (i < n) tip(e, `${stage.name}[${i}] ≈ ${fmt(values[i])}`);
  });
  canvas.addEventListener("mouseleave", () => { $("tip").hidden = true; });
  const box = make("div");
  box.append(canvas, make("div", "concat", perMap ? `${n} values: each row holds ${cols / perMap} map${cols > perMap ? "s" : ""} of ${perMap} values, in order` : `${n} values, ${cols} a row`));
  return box;
}

function tip(event, text) {
  const t = $("tip");
  t.textContent = text;
  t.hidden = false;
  t.style.left = `${Math.min(event.clientX + 12, window.innerWidth - t.offsetWidth - 8)}px`;
  t.style.top = `${event.clientY + 14}px`;
}

// ---- the inspector: where a cell looks, and the multiply-add behind it ----
function closeInspector() {
  state.selected = null;
  $("inspector").hidden = true;
  document.querySelector(".lab").classList.remove("inspecting");
  markSelected();
}

function markSelected() {
  for (const c of document.querySelectorAll("canvas.map.selected")) c.classList.remove("selected");
  const s = state.selected;
  if (!s) return;
  const canvas = document.querySelector(`canvas.map[data-run="${s.runIndex}"][data-stage="${s.stageIndex}"][data-channel="${s.channel}"]`);
  if (canvas) canvas.classList.add("selected");
}

async function select(selection) {
  selection.input = state.input;  // the drawing this cell belongs to
  state.selected = selection;
  markSelected();
  const { runIndex, stageIndex, channel, cell: [row, col], branch } = selection;
  const stage = state.results[runIndex].stages[stageIndex], [, h, w] = stage.shape;
  const box = $("inspector");
  box.hidden = false;
  document.querySelector(".lab").classList.add("inspecting");
  const close = make("button", "close", "×");
  close.addEventListener("click", closeInspector);
  const values = decodeStage(stage);
  box.replaceChildren(close, make("h2", "", `${stage.name}${branch ? ` · ${branch.name}` : ""} · map ${channel} · cell (${row}, ${col})`),
    make("p", "hint", `${state.runs[runIndex].name}: value ≈ ${fmt(values[channel * h * w + row * w + col])}`));
  box.append(receptiveField(stage.field, row, col));
  const module = branch ? branch.module : stage.conv ? stage.module : null;
  if (!module) {
    box.append(make("p", "hint", "This stage is not the output of one convolution (it went through pooling, ReLU, " +
      "BatchNorm or a block), so there is no single multiply-add to show: click a map of a conv stage."));
    return;
  }
  const arithmetic = make("div");
  arithmetic.append(make("p", "hint", "Computing the multiply-add…"));
  box.append(arithmetic);
  try {
    const e = await getJSON(`/explain?run=${runIndex}`, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ pixels: selection.input, module, channel: branch ? channel - branch.channels[0] : channel, row, col }) });
    if (state.selected !== selection) return;
    arithmetic.replaceChildren(...explanation(e, runIndex));
  } catch (err) {
    arithmetic.replaceChildren(make("p", "error", err.message));
  }
  box.scrollIntoView({ block: "nearest" });
}

function receptiveField(field, row, col) {
  const canvas = make("canvas"), zoom = 4;
  canvas.width = canvas.height = 28 * zoom;
  const g = canvas.getContext("2d");
  (state.input || []).flat().forEach((v, i) => {
    g.fillStyle = `rgb(${v},${v},${v})`;
    g.fillRect((i % 28) * zoom, Math.floor(i / 28) * zoom, zoom, zoom);
  });
  let text = "Receptive field: not known here (the stage follows a block with several paths or a shortcut).";
  canvas.id = "rf";
  if (field) {
    const top = field.offset[0] + row * field.stride[0], left = field.offset[1] + col * field.stride[1];
    const box = [top, left, top + field.size[0] - 1, left + field.size[1] - 1];
    const clipped = [Math.max(0, box[0]), Math.max(0, box[1]), Math.min(27, box[2]), Math.min(27, box[3])];
    text = `Looks at input rows ${clipped[0]}–${clipped[2]}, columns ${clipped[1]}–${clipped[3]}: a ${field.size[0]}×${field.size[1]} window` +
      (clipped.join() !== box.join() ? " (partly over the zero padding)" : "") +
      `, which moves ${field.stride[0]} pixel${field.stride[0] > 1 ? "s" : ""} per cell of this map.`;
    g.fillStyle = "rgba(249, 115, 22, .35)";
    g.fillRect(box[1] * zoom, box[0] * zoom, field.size[1] * zoom, field.size[0] * zoom);
    g.strokeStyle = "#f97316"; g.lineWidth = 2;
    g.strokeRect(box[1] * zoom + 1, box[0] * zoom + 1, field.size[1] * zoom - 2, field.size[0] * zoom - 2);
    canvas.dataset.box = box.join(",");
  }
  const rowBox = make("div", "rf-row");
  rowBox.append(canvas, make("p", "hint", text));
  return rowBox;
}

function numberGrid(matrix, scale) {
  const grid = make("div", "grid-num");
  grid.style.gridTemplateColumns = `repeat(${matrix[0].length}, auto)`;
  for (const v of matrix.flat()) {
    const cell = make("span", "", v.toFixed(2));
    const [r, g, b] = scale.colour(v);
    cell.style.background = `rgb(${r},${g},${b})`;
    cell.style.color = r * 0.3 + g * 0.59 + b * 0.11 < 120 ? "#fff" : "#111";
    grid.append(cell);
  }
  return grid;
}

// A number with a true minus sign, in parentheses when negative, for sums written out.
const signed = (v, digits = 4) => (v < 0 ? `(−${(-v).toFixed(digits)})` : v.toFixed(digits));

function explanation(e, runIndex) {
  const run = state.runs[runIndex], channels = e.weights.length;
  const partial = e.products.map(p => p.flat().reduce((a, b) => a + b, 0));
  const shown = channels === 1 ? 0 : partial.reduce((best, v, i) => Math.abs(v) > Math.abs(partial[best]) ? i : best, 0);
  const wMax = Math.max(...e.weights.flat(2).map(Math.abs)) || 1, xMax = Math.max(...e.patch.flat(2).map(Math.abs)) || 1;
  const grids = make("div", "grids"), kernel = make("div"), patch = make("div");
  kernel.append(make("h3", "", channels === 1 ? "kernel weights w" : `kernel weights w, input channel ${shown}`),
    numberGrid(e.weights[shown], scaleFor(-wMax, wMax)));
  patch.append(make("h3", "", channels === 1 ? "input patch x" : `input patch x, channel ${shown}`),
    numberGrid(e.patch[shown], scaleFor(-xMax, xMax)));
  grids.append(kernel, patch);
  const sum = make("div", "sum");
  sum.id = "arithmetic";
  Object.assign(sum.dataset, { sum: e.sum, activation: e.activation, bias: e.bias });
  if (channels === 1) {
    e.weights[0].flat().forEach((w, i) => {
      const x = e.patch[0].flat()[i], term = make("span", "term", `${signed(w)}·${signed(x)}`);
      term.dataset.product = e.products[0].flat()[i];
      term.title = `= ${e.products[0].flat()[i].toFixed(6)}`;
      sum.append(i ? " + " : "", term);
    });
  } else {
    partial.forEach((v, c) => {
      const term = make("span", "term", `Σ(ch ${c}) ${signed(v, 6)}`);
      term.dataset.product = v;
      sum.append(c ? " + " : "", term);
    });
  }
  const total = make("span", "total", e.sum.toFixed(6));
  total.id = "total";
  sum.append(` + bias ${signed(e.bias, 6)} = `, total);
  const check = make("p");
  const ok = Math.abs(e.sum - e.activation) < 1e-4;
  check.append(`PyTorch's ${e.module} computed ${e.activation.toFixed(6)} `, make("span", ok ? "match" : "error", ok ? "✓ the same" : "✗ differs"));
  if (e.after) check.append(make("br"), `then ${e.after.name}: ${e.after.value.toFixed(6)}, the value this stage shows`);
  const note = make("p", "hint", channels === 1
    ? `x is the pixel scaled to [0, 1] and normalised: (pixel/255 − ${run.mean.toFixed(4)}) / ${run.std.toFixed(4)}. ` +
      `${e.weights[0].length}×${e.weights[0][0].length} products, added, plus the bias.`
    : `${channels} input channels × ${e.weights[0].length}×${e.weights[0][0].length} weights: each channel's products are summed (shown: the channel that contributes most).`);
  return [grids, make("h3", "", "the multiply-add"), sum, check, note];
}

// ---- kernels: the first convolution's filters next to what each found in the drawing ----
function renderKernels() {
  columns($("kernel-columns")).forEach((column, i) => {
    const run = state.runs[i], result = state.results[i];
    if (!run.kernels) { column.append(make("p", "empty", "This model has no convolution.")); return; }
    const stage = result && result.stages.find(s => s.conv);
    column.append(make("p", "shown", `The first convolution's ${run.kernels.length} learned ${run.kernels[0].length}×${run.kernels[0][0].length} kernels ` +
      "(blue negative, red positive), each beside its feature map for your drawing: bright where the kernel's pattern is found."));
    const grid = make("div", "kernels"), m = Math.max(...run.kernels.flat(2).map(Math.abs));
    const kScale = scaleFor(-m, m), values = stage && decodeStage(stage), mScale = stage && scaleFor(stage.lo, stage.hi);
    run.kernels.forEach((kernel, k) => {
      const cell = make("div", "kernel"), size = kernel.length;
      const picture = mapCanvas(Float32Array.from(kernel.flat()), 0, size, kernel[0].length, kScale, 0);
      picture.title = kernel.map(r => r.map(v => v.toFixed(2)).join(" ")).join("\n");
      cell.append(picture);
      if (stage) {
        const [, h, w] = stage.shape;
        cell.append(mapCanvas(values, k * h * w, h, w, mScale, 0));
      }
      cell.append(make("span", "k", `kernel ${k}${stage ? ` → ${stage.name} map ${k}` : ""}`));
      grid.append(cell);
    });
    column.append(grid);
    if (!stage) column.append(make("p", "hint", "Draw a digit to see what each kernel responds to."));
  });
}

// ---- a run on colour or your own images: an upload box instead of the canvas, top classes by name ----
const uploading = () => state.runs.length > 0 && state.runs[0].input === "upload";  // the server serves no mix

function showUploadBox(run) {
  document.body.classList.add("uploading");
  document.querySelector(".pad-card").hidden = true;
  $("upload-card").hidden = false;
  $("seen").hidden = true;
  $("seen-hint").textContent = `${run.channels}×${run.input_size[0]}×${run.input_size[1]}, scaled and centre-cropped as in training`;
  for (const view of ["layers", "kernels"]) document.querySelector(`.tabs [data-view="${view}"]`).hidden = true;
  document.querySelector('.tabs [data-view="training"]').click();
  $("file").addEventListener("change", () => classify($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", e => {
    e.preventDefault();
    drop.classList.remove("over");
    classify(e.dataTransfer.files[0]);
  });
}

async function classify(file) {
  if (!file) return;
  state.busy = true;
  $("upload-answer").textContent = `Classifying ${file.name}…`;
  try {
    state.results = await Promise.all(state.runs.map((_, i) => {
      const form = new FormData();
      form.append("file", file, file.name);
      return getJSON(`/predict?run=${i}`, { method: "POST", headers: SAME_SITE, body: form });
    }));
    $("upload-answer").textContent = `${file.name}: the top classes are below what the model sees.`;
  } catch (err) {
    state.results = [];
    $("upload-answer").textContent = err.message;
  } finally {
    state.busy = false;
    renderAll();
  }
}

// ---- start ----
const explorerView = explorer($("view-explorer"));
getJSON("/runs").then(runs => {
  state.runs = runs;
  $("about").textContent = runs.map(r => `${r.name} (${r.run}) on ${r.dataset}`).join(" · ");
  training($("training-columns"), runs);
  if (uploading()) showUploadBox(runs[0]);
  renderAll();
}).catch(err => { $("about").textContent = `Could not load the runs: ${err.message}`; });
