// The lab: draw a digit (or take a test digit) and watch it go through every stage of each served run
// (POST /activations); click a cell to see where it looks and the multiply-add that makes it (inspector.js);
// where the model looks (where.js); kernels; the stride explorer; training curves, mistakes and snapshots.
// A number drawn on the wide pad or photographed is read first (numbers.js), then its digits go through the runs.
import { SAME_SITE, getJSON, postJSON } from "./api.js";
import { explorer } from "./explorer.js";
import { currentLanguage, onLanguage, startLanguage, t, translateStatic, useLanguage } from "./i18n.js";
import { inspector } from "./inspector.js";
import { numberView } from "./numbers.js";
import { drawingPad } from "./pad.js";
import { bars, cellAt, decodeStage, digitCanvas, exactValues, fmt, legend, make, mapCanvas, scaleFor } from "./render.js";
import { training } from "./training.js";
import { whereView } from "./where.js";

const MAX_MAPS = 32;  // deep stages have up to 132 channels: the first 32 are drawn
const NARROW = "(max-width: 760px)";  // the phone layout: one column, views below the pad
const state = { runs: [], results: [], input: null, source: null, selected: null, view: "layers", busy: false, mode: "digit" };
const PADS = { digit: [280, 280], number: [560, 280] };  // the pad's pixels: a square for a digit, wide for a number
window.lab = state;  // for the browser tests, and for a curious learner's console

const $ = id => document.getElementById(id);
const touchOnly = () => matchMedia("(hover: none)").matches;  // a phone: no hover, so no "hover" in the hints

// ---- an input -> the activations of every run ----
let pending = null, inFlight = false, dirty = null;
const pad = drawingPad($("pad"), strokeEnded => { state.source = { kind: "drawing" }; schedule(strokeEnded ? 0 : 90); });

// While the pen moves, a drawing goes out at most every 90 ms; at a stroke's end, at once.
function schedule(delay) {
  state.busy = true;  // until the last drawing's stages are shown
  if (delay === 0) clearTimeout(pending);
  else if (pending !== null) return;
  pending = setTimeout(() => { pending = null; send(); }, delay);
}

// The pad's drawing or a photo as a PNG (preprocessed by the server like any photo), or a digit's 28x28 pixels
// as they are. A number (the wide pad, or a photo in number mode) is read first; its chosen digit goes on.
async function send(pixels = null, photo = null) {
  if (inFlight) { dirty = pixels || "pad"; return; }
  inFlight = true;
  try {
    let first;
    if (!pixels && state.mode === "number") pixels = await readNumber(photo);
    if (pixels) {
      first = await postJSON("/activations?run=0", { pixels });
    } else {
      const form = new FormData();
      form.append("file", photo || await pad.png(), photo ? photo.name : "drawing.png");
      first = await getJSON("/activations?run=0", { method: "POST", headers: SAME_SITE, body: form });
    }
    if (photo && state.mode === "digit") { pad.clear(); pad.paint(first.input); }  // the photo as the model sees it, to draw on
    const rest = await Promise.all(state.runs.slice(1).map((_, i) => postJSON(`/activations?run=${i + 1}`, { pixels: first.input })));
    Object.assign(state, { results: [first, ...rest], input: first.input });
    hint();
    renderAll();
  } catch (err) {
    $("answer").textContent = err.message;
  } finally {
    inFlight = false;
    if (dirty) { const again = dirty; dirty = null; again === "pad" ? schedule(0) : send(again); }
    else if (pending === null) state.busy = false;
  }
}

// The number on the pad, or in a photo: read by POST /predict, shown with its boxes (numbers.js); returns the
// pixels of the digit to follow through the layers.
async function readNumber(photo) {
  const form = new FormData();
  form.append("file", photo || await pad.png(), photo ? photo.name : "number.png");
  try {
    number.show(await getJSON("/predict?run=0", { method: "POST", headers: SAME_SITE, body: form }), photo && await createImageBitmap(photo));
  } catch (err) {
    number.clear();  // no boxes of an earlier reading beside the error
    throw err;
  }
  return number.selected.input;
}

// A digit of the number clicked: through every run, and into the inspector as a digit opened from a mistake is.
async function pickDigit(pixels) {
  state.busy = true;
  await send(pixels);
  if (state.view === "layers") strongestCell();
}

// One digit on a square pad, or a number on a wide one: the pad is cleared, and everything found on it.
function useMode(mode) {
  state.mode = mode;
  document.querySelector(".lab").classList.toggle("number-mode", mode === "number");
  for (const button of document.querySelectorAll("#mode button")) button.setAttribute("aria-pressed", button.dataset.mode === mode);
  [$("pad").width, $("pad").height] = [$("pad-boxes").width, $("pad-boxes").height] = PADS[mode];
  $("pad-title").dataset.i18n = mode === "number" ? "pad.title.number" : "pad.title";
  $("pad-upload").dataset.i18n = mode === "number" ? "pad.upload.number" : "pad.upload";
  translateStatic($("pad-card"));
  $("clear").click();
}

for (const button of document.querySelectorAll("#mode button")) button.addEventListener("click", () => useMode(button.dataset.mode));

// A digit that did not come from the pen (a test image): on the pad, and through every run as it is.
export async function openDigit(pixels, source, inspect = false) {
  if (state.mode === "number") useMode("digit");
  pad.clear();
  pad.paint(pixels);
  state.source = source;
  state.busy = true;
  await send(pixels);
  if (inspect) strongestCell();
}

function hint() {
  const s = state.source;
  $("answer").textContent = s && s.kind === "test" ? t("pad.test", { index: s.index, label: s.label })
    : t(touchOnly() ? "pad.after.touch" : "pad.after");
}

function startHint() {
  if (state.mode === "number") return t("pad.hint.number");
  return t(touchOnly() ? "pad.hint.touch" : "pad.hint");
}

$("digit-file").addEventListener("change", () => {
  const file = $("digit-file").files[0];
  if (!file) return;
  state.source = { kind: "upload" };
  state.busy = true;
  send(null, file);
  $("digit-file").value = "";
});

$("clear").addEventListener("click", () => {
  pad.clear();
  number.clear();
  Object.assign(state, { results: [], input: null, selected: null, source: null });
  $("answer").textContent = startHint();
  inspect.close();
  renderAll();
});

$("random").addEventListener("click", async () => {
  try {
    const image = await getJSON("/runs/0/test");
    await openDigit(image.pixels, { kind: "test", index: image.index, label: image.class });
  } catch (err) {
    $("answer").textContent = err.status === 404 ? t("pad.test.none") : err.message;
  }
});

// ---- tabs: on a phone the view opens below the pad, so it is brought into sight ----
for (const tab of document.querySelectorAll(".tabs button")) {
  tab.addEventListener("click", () => showView(tab.dataset.view));
}

function showView(view) {
  state.view = view;
  for (const t of document.querySelectorAll(".tabs button")) t.setAttribute("aria-selected", t.dataset.view === view);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  if (view !== "layers") inspect.close();
  renderAll();
  if (matchMedia(NARROW).matches) $(`view-${view}`).scrollIntoView({ block: "start" });
}

// ---- rendering ----
function renderAll() {
  renderSeen();
  renderPredictions();
  if (state.view === "layers") renderLayers();
  if (state.view === "kernels") renderKernels();
  if (state.view === "where") where.update(state);
  explorerView.update(state);
}

function renderSeen() {
  if (uploading()) {
    const seen = state.results[0] && state.results[0].seen;
    $("seen-image").hidden = !seen;
    if (seen) $("seen-image").src = seen;
    return;
  }
  const g = $("seen").getContext("2d");
  g.drawImage(digitCanvas(state.input || Array.from({ length: 28 }, () => new Array(28).fill(0))), 0, 0);
}

function renderPredictions() {
  const box = $("predictions");
  box.replaceChildren();
  state.results.forEach((result, i) => {
    const top = result.predictions[0], card = make("div", "pred"), head = make("h3");
    card.dataset.run = i;
    head.append(make("span", "", state.runs[i].name), make("span", "top1", top.class));
    card.append(head);
    if (result.unsure) card.append(make("div", "unsure", t("pred.unsure")));
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
  const head = make("div", "run-head"), values = { run: run.run, parameters: run.parameters.toLocaleString() };
  const meta = run.test_accuracy != null ? t("run.meta.accuracy", { ...values, accuracy: run.test_accuracy.toFixed(2) })
    : t("run.meta", values);
  head.append(make("h2", "", run.name), make("span", "meta", meta));
  return head;
}

export function columns(container) {
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
  if (s.length === 3) return t("dims.maps", { count: s[0], height: s[1], width: s[2] });
  if (stage.name === "softmax") return t("dims.probabilities", { count: s[0] });
  if (stage.values && s[0] === run.classes.length) return t("dims.logits", { count: s[0] });
  return t("dims.values", { count: s[0] });
}

const stageName = name => (`stage.${name}` === t(`stage.${name}`) ? name : t(`stage.${name}`));  // code names stay

function renderLayers() {
  columns($("columns")).forEach((column, i) => {
    const result = state.results[i];
    if (!result) { column.append(make("p", "empty", t("layers.empty"))); return; }
    const [kept, total] = result.map_stages || [0, 0];
    column.append(make("p", "shown", kept === total ? t("layers.shown.all", { count: result.stages.length })
      : t("layers.shown.some", { kept, total })));
    for (const note of result.notes || []) column.append(make("p", "note", note));
    result.stages.forEach((stage, s) => column.append(stageView(stage, i, s, result.stages[s - 1])));
  });
  inspect.mark();
}

function stageView(stage, runIndex, stageIndex, previous) {
  const box = make("section", "stage"), head = make("div", "stage-head"), title = make("div");
  Object.assign(box.dataset, { run: runIndex, stage: stage.name, index: stageIndex });
  title.append(make("b", "", stageName(stage.name)), " ", make("span", "dims", dims(stage, state.runs[runIndex])));
  head.append(title);
  box.append(head);
  const pictures = decodeStage(stage), exact = exactValues(stage), scale = scaleFor(stage.lo, stage.hi);
  if (stage.shape.length === 3) {
    head.append(legend(scale));
    box.append(...mapsOf(stage, pictures, exact, scale, runIndex, stageIndex));
    box.dataset.count = box.querySelectorAll("canvas.map").length;
    box.dataset.size = `${stage.shape[1]}x${stage.shape[2]}`;
  } else if (stage.values) {
    box.append(...vectorOf(stage, runIndex));
    box.dataset.count = stage.values.length;
  } else {
    box.append(strip(pictures, exact, stage, previous));
    box.dataset.count = exact.length;
  }
  return box;
}

function mapsOf(stage, pictures, exact, scale, runIndex, stageIndex) {
  const [c, h, w] = stage.shape, draw = (start, stop, cell, branch) =>
    mapGrid({ pictures, exact, scale, stage, runIndex, stageIndex, start, stop, cell, branch });
  if (!stage.branches.length) {
    const grid = [draw(0, Math.min(c, MAX_MAPS), 44, null)];
    return c > MAX_MAPS ? [...grid, make("div", "concat", t("maps.first", { shown: MAX_MAPS, count: c }))] : grid;
  }
  const branches = make("div", "branches");
  for (const branch of stage.branches) {
    const part = make("div", "branch"), [start, stop] = branch.channels;
    part.append(make("h4", "", `${branch.name} · ${stop - start}`), draw(start, stop, 30, branch));
    branches.append(part);
  }
  const parts = stage.branches.map(b => b.channels[1] - b.channels[0]).join(" + ");
  return [branches, make("div", "concat", t("maps.concat", { parts, count: c, height: h, width: w }))];
}

// Maps of at least `cell` CSS pixels, as many a row as fit; a pointer over a map shows a value (a mouse only:
// a tap selects the cell instead of leaving a tooltip behind).
function mapGrid({ pictures, exact, scale, stage, runIndex, stageIndex, start, stop, cell, branch }) {
  const grid = make("div", "maps"), [, h, w] = stage.shape;
  grid.style.setProperty("--cell", `${cell}px`);
  for (let c = start; c < stop; c++) {
    const canvas = mapCanvas(pictures, c * h * w, h, w, scale, 0);
    canvas.classList.add("map");
    Object.assign(canvas.dataset, { run: runIndex, stage: stageIndex, channel: c });
    const shown = branch ? c - branch.channels[0] : c;  // a branch's maps are numbered within the branch
    hover(canvas, e => {
      const [r, k] = cellAt(canvas, e);
      return t("maps.tip", { stage: stageName(stage.name), channel: shown, row: r, col: k, value: fmt(exact[c * h * w + r * w + k]) });
    });
    canvas.addEventListener("click", e => inspect.select({ runIndex, stageIndex, channel: c, cell: cellAt(canvas, e), branch }));
    grid.append(canvas);
  }
  return grid;
}

function hover(canvas, text) {
  canvas.addEventListener("pointermove", e => { if (e.pointerType === "mouse") tip(e, text(e)); });
  for (const type of ["pointerleave", "pointerdown", "pointercancel"]) canvas.addEventListener(type, () => { $("tip").hidden = true; });
}

// The logits of fc as bars from zero, then the softmax with a warning that confidence is not correctness.
function vectorOf(stage, runIndex) {
  const classes = state.runs[runIndex].classes, labels = stage.values.map((_, i) => classes[i] ?? `${i}`);
  if (stage.name === "softmax") {
    const box = bars(stage.values.map(v => v * 100), labels, scaleFor(0, 100), 1);
    box.classList.add("probabilities");
    return [box, make("p", "hint", t("fc.softmax")), make("p", "hint warning", t("fc.warning"))];
  }
  const box = bars(stage.values, labels, scaleFor(Math.min(...stage.values), Math.max(...stage.values)));
  return [box, make("p", "hint", t("fc.logits"))];
}

// A long vector (the flattened values) as rows of pixels: one row per map of the stage before it.
function strip(pictures, exact, stage, previous) {
  const n = exact.length, perMap = previous && previous.shape.length === 3 ? previous.shape[1] * previous.shape[2] : 0;
  const cols = perMap ? perMap * Math.ceil(32 / perMap) : 32, rows = Math.ceil(n / cols);
  const scale = scaleFor(stage.lo, stage.hi);
  const canvas = mapCanvas(Float32Array.from({ length: rows * cols }, (_, i) => i < n ? pictures[i] : scale.lo), 0, rows, cols, scale, 0);
  canvas.className = "strip";
  hover(canvas, e => {
    const [r, k] = cellAt(canvas, e), i = r * cols + k;
    return i < n ? t("strip.tip", { stage: stageName(stage.name), index: i, value: fmt(exact[i]) }) : "";
  });
  const box = make("div");
  box.append(canvas, make("div", "concat", perMap ? t("strip.rows", { count: n, maps: cols / perMap, per: perMap })
    : t("strip.plain", { count: n, cols })));
  return box;
}

function tip(event, text) {
  const box = $("tip");
  box.textContent = text;
  box.hidden = !text;
  box.style.left = `${Math.min(event.clientX + 12, window.innerWidth - box.offsetWidth - 8)}px`;
  box.style.top = `${event.clientY + 14}px`;
}

// The strongest cell of the first convolution's maps, in the first run whose stages show a convolution alone
// (a block of convolution, batch norm and pooling has no one multiply-add): where a test digit opened from a
// mistake, or a number's digit, is inspected.
function strongestCell() {
  const runIndex = state.results.findIndex(r => r && r.stages.some(s => s.conv));
  if (runIndex < 0) return;
  const stages = state.results[runIndex].stages, stageIndex = stages.findIndex(s => s.conv);
  const stage = stages[stageIndex], values = exactValues(stage), [, h, w] = stage.shape;
  const best = values.reduce((b, v, i) => (v > values[b] ? i : b), 0);
  inspect.select({ runIndex, stageIndex, channel: Math.floor(best / (h * w)), cell: [Math.floor(best / w) % h, best % w], branch: null });
}

// ---- kernels: the first convolution's filters next to what each found in the drawing ----
function renderKernels() {
  columns($("kernel-columns")).forEach((column, i) => {
    const run = state.runs[i], result = state.results[i];
    if (!run.kernels) { column.append(make("p", "empty", t("kernels.none"))); return; }
    const stage = result && result.stages.find(s => s.conv);
    column.append(make("p", "shown", t("kernels.caption", { count: run.kernels.length, height: run.kernels[0].length, width: run.kernels[0][0].length })));
    const grid = make("div", "kernels"), m = Math.max(...run.kernels.flat(2).map(Math.abs));
    const kScale = scaleFor(-m, m), values = stage && decodeStage(stage), mScale = stage && scaleFor(stage.lo, stage.hi);
    run.kernels.forEach((kernel, k) => {
      const cell = make("div", "kernel"), picture = mapCanvas(Float32Array.from(kernel.flat()), 0, kernel.length, kernel[0].length, kScale, 0);
      picture.title = kernel.map(r => r.map(v => v.toFixed(4)).join(" ")).join("\n");
      cell.append(picture);
      if (stage) cell.append(mapCanvas(values, k * stage.shape[1] * stage.shape[2], stage.shape[1], stage.shape[2], mScale, 0));
      cell.append(make("span", "k", stage ? t("kernels.label.map", { index: k, stage: stageName(stage.name) }) : t("kernels.label", { index: k })));
      grid.append(cell);
    });
    column.append(grid);
    if (!stage) column.append(make("p", "hint", t("kernels.draw")));
  });
}

// ---- a run on colour or your own images: an upload box instead of the canvas, top classes by name ----
const uploading = () => state.runs.length > 0 && state.runs[0].input === "upload";  // the server serves no mix

function showUploadBox(run) {
  document.body.classList.add("uploading");
  document.querySelector(".pad-card").hidden = true;
  $("upload-card").hidden = false;
  $("seen").hidden = true;
  for (const view of ["layers", "kernels"]) document.querySelector(`.tabs [data-view="${view}"]`).hidden = true;
  showView("training");
  $("file").addEventListener("change", () => classify($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", e => {
    e.preventDefault();
    drop.classList.remove("over");
    classify(e.dataTransfer.files[0]);
  });
  seenHint(run);
}

const seenHint = run => { $("seen-hint").textContent = t("seen.image", { channels: run.channels, height: run.input_size[0], width: run.input_size[1] }); };

async function classify(file) {
  if (!file) return;
  state.busy = true;
  $("upload-answer").textContent = t("upload.busy", { name: file.name });
  try {
    state.results = await Promise.all(state.runs.map((_, i) => {
      const form = new FormData();
      form.append("file", file, file.name);
      return getJSON(`/predict?run=${i}`, { method: "POST", headers: SAME_SITE, body: form });
    }));
    state.source = { kind: "upload" };
    $("upload-answer").textContent = t("upload.done", { name: file.name });
  } catch (err) {
    state.results = [];
    $("upload-answer").textContent = err.message;
  } finally {
    state.busy = false;
    renderAll();
  }
}

// ---- start: the language first (every string comes from its catalog), then the runs ----
const inspect = inspector({ state, box: $("inspector"), layout: document.querySelector(".lab") });
const number = numberView({ overlay: $("pad-boxes"), card: $("number-card"), onPick: pickDigit });
const explorerView = explorer($("view-explorer"));
const where = whereView($("where-columns"), { columns });
let trainingView = null;

function aboutLine() {
  $("about").textContent = state.runs.map(r => t("runs.about", { name: r.name, run: r.run, dataset: r.dataset })).join(" · ");
}

onLanguage(() => {
  $("language").value = currentLanguage();
  if (!state.runs.length) return;
  aboutLine();
  if (uploading()) seenHint(state.runs[0]);
  if (state.results.length && !uploading()) hint();
  if (!state.results.length && !uploading()) $("answer").textContent = startHint();
  number.render();
  inspect.refresh();
  trainingView.refresh();
  renderAll();
});
$("language").addEventListener("change", () => useLanguage($("language").value));

startLanguage().then(async () => {
  $("language").value = currentLanguage();
  $("answer").textContent = startHint();
  state.runs = await getJSON("/runs");
  aboutLine();
  trainingView = training($("training-columns"), state.runs, { open: openDigit, show: showView });
  if (uploading()) showUploadBox(state.runs[0]);
  renderAll();
}).catch(err => { $("about").textContent = t("runs.failed", { detail: err.message }); });
