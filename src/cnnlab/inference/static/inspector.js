// The inspector: where a map cell looks on the input, and the multiply-add behind it (POST /explain), every
// number as the model computed it. On a phone it opens as a sheet over the bottom of the screen, in sight.
import { postJSON } from "./api.js";
import { t } from "./i18n.js";
import { exactValues, make, rgb, scaleFor } from "./render.js";

export function inspector({ state, box, layout }) {
  function close() {
    state.selected = null;
    box.hidden = true;
    layout.classList.remove("inspecting");
    mark();
  }

  function mark() {
    for (const c of document.querySelectorAll("canvas.map.selected")) c.classList.remove("selected");
    const s = state.selected;
    if (!s) return;
    const canvas = document.querySelector(`canvas.map[data-run="${s.runIndex}"][data-stage="${s.stageIndex}"][data-channel="${s.channel}"]`);
    if (canvas) canvas.classList.add("selected");
  }

  async function select(selection) {
    selection.input = state.input;  // the digit this cell belongs to
    state.selected = selection;
    mark();
    const { runIndex, stageIndex, channel, cell: [row, col], branch } = selection;
    const stage = state.results[runIndex].stages[stageIndex], [, h, w] = stage.shape;
    box.hidden = false;
    layout.classList.add("inspecting");
    const shut = make("button", "close", "×");
    shut.setAttribute("aria-label", t("inspector.close"));
    shut.addEventListener("click", close);
    const within = branch ? channel - branch.channels[0] : channel;  // a branch's maps are numbered within it
    const title = branch ? t("inspector.title.branch", { stage: stage.name, branch: branch.name, channel: within, row, col })
      : t("inspector.title", { stage: stage.name, channel, row, col });
    const value = exactValues(stage)[channel * h * w + row * w + col];
    const header = make("p", "hint", t("inspector.value", { run: state.runs[runIndex].name, value: value.toFixed(6) }));
    header.id = "cell-value";
    header.dataset.value = value;
    box.replaceChildren(shut, make("h2", "", title), header, receptiveField(branch ? branch.field : stage.field, row, col));
    box.scrollIntoView({ block: "nearest" });
    const module = branch ? branch.module : stage.conv ? stage.module : null;
    if (!module) {
      box.append(make("p", "hint", t("inspector.noconv")));
      return;
    }
    const arithmetic = make("div");
    arithmetic.append(make("p", "hint", t("inspector.computing")));
    box.append(arithmetic);
    try {
      const e = await postJSON(`/explain?run=${runIndex}`, { pixels: selection.input, module, channel: within, row, col });
      if (state.selected !== selection) return;
      arithmetic.replaceChildren(...explanation(e, state.runs[runIndex]));
    } catch (err) {
      arithmetic.replaceChildren(make("p", "error", err.message));
    }
  }

  function receptiveField(field, row, col) {
    const canvas = make("canvas"), zoom = 4, g = canvas.getContext("2d");
    canvas.width = canvas.height = 28 * zoom;
    (state.input || []).flat().forEach((v, i) => {
      g.fillStyle = `rgb(${v},${v},${v})`;
      g.fillRect((i % 28) * zoom, Math.floor(i / 28) * zoom, zoom, zoom);
    });
    let text = t("rf.unknown");
    canvas.id = "rf";
    if (field) {
      const top = field.offset[0] + row * field.stride[0], left = field.offset[1] + col * field.stride[1];
      const edges = [top, left, top + field.size[0] - 1, left + field.size[1] - 1];
      const clipped = [Math.max(0, edges[0]), Math.max(0, edges[1]), Math.min(27, edges[2]), Math.min(27, edges[3])];
      text = t("rf.window", { top: clipped[0], bottom: clipped[2], left: clipped[1], right: clipped[3], height: field.size[0],
        width: field.size[1], stride: field.stride[0], count: field.stride[0],
        padding: clipped.join() !== edges.join() ? t("rf.padding") : "" });
      g.fillStyle = "rgba(249, 115, 22, .35)";
      g.fillRect(edges[1] * zoom, edges[0] * zoom, field.size[1] * zoom, field.size[0] * zoom);
      g.strokeStyle = "#f97316"; g.lineWidth = 2;
      g.strokeRect(edges[1] * zoom + 1, edges[0] * zoom + 1, field.size[1] * zoom - 2, field.size[0] * zoom - 2);
      canvas.dataset.box = edges.join(",");
    }
    const rowBox = make("div", "rf-row");
    rowBox.append(canvas, make("p", "hint", text));
    return rowBox;
  }

  // Language changed: the open cell again, in the new words.
  const refresh = () => { if (state.selected) select(state.selected); };
  return { select, close, mark, refresh };
}

function numberGrid(matrix, scale) {
  const grid = make("div", "grid-num");
  grid.style.gridTemplateColumns = `repeat(${matrix[0].length}, auto)`;
  for (const v of matrix.flat()) {
    const cell = make("span", "", v.toFixed(2)), colour = scale.colour(v);
    cell.style.background = rgb(colour);
    cell.style.color = colour[0] * 0.3 + colour[1] * 0.59 + colour[2] * 0.11 < 120 ? "#fff" : "#111";
    grid.append(cell);
  }
  return grid;
}

// A number with a true minus sign, in parentheses when negative, for sums written out.
const signed = (v, digits = 4) => (v < 0 ? `(−${(-v).toFixed(digits)})` : v.toFixed(digits));

function explanation(e, run) {
  const channels = e.weights.length, partial = e.products.map(p => p.flat().reduce((a, b) => a + b, 0));
  const shown = channels === 1 ? 0 : partial.reduce((best, v, i) => Math.abs(v) > Math.abs(partial[best]) ? i : best, 0);
  const wMax = Math.max(...e.weights.flat(2).map(Math.abs)) || 1, xMax = Math.max(...e.patch.flat(2).map(Math.abs)) || 1;
  const grids = make("div", "grids"), kernel = make("div"), patch = make("div");
  kernel.append(make("h3", "", channels === 1 ? t("arith.kernel") : t("arith.kernel.channel", { channel: shown })),
    numberGrid(e.weights[shown], scaleFor(-wMax, wMax)));
  patch.append(make("h3", "", channels === 1 ? t("arith.patch") : t("arith.patch.channel", { channel: shown })),
    numberGrid(e.patch[shown], scaleFor(-xMax, xMax)));
  grids.append(kernel, patch);
  const [kh, kw] = [e.weights[0].length, e.weights[0][0].length];
  const note = channels === 1
    ? t("arith.note.one", { mean: run.mean[0] !== undefined ? run.mean[0].toFixed(4) : run.mean.toFixed(4),
      std: run.std[0] !== undefined ? run.std[0].toFixed(4) : run.std.toFixed(4), height: kh, width: kw })
    : t("arith.note.many", { channels, height: kh, width: kw });
  return [grids, make("h3", "", t("arith.title")), sum(e, partial), check(e), make("p", "hint", note)];
}

function sum(e, partial) {
  const box = make("div", "sum");
  box.id = "arithmetic";
  Object.assign(box.dataset, { sum: e.sum, activation: e.activation, bias: e.bias });
  if (e.weights.length === 1) {
    e.weights[0].flat().forEach((w, i) => {
      const x = e.patch[0].flat()[i], term = make("span", "term", `${signed(w)}·${signed(x)}`);
      term.dataset.product = e.products[0].flat()[i];
      term.title = `= ${e.products[0].flat()[i].toFixed(6)}`;
      box.append(i ? " + " : "", term);
    });
  } else {
    partial.forEach((v, c) => {
      const term = make("span", "term", `${t("arith.channel", { channel: c })} ${signed(v, 6)}`);
      term.dataset.product = v;
      box.append(c ? " + " : "", term);
    });
  }
  const total = make("span", "total", e.sum.toFixed(6));
  total.id = "total";
  box.append(` + ${t("arith.bias")} ${signed(e.bias, 6)} = `, total);
  return box;
}

function check(e) {
  const line = make("p"), ok = Math.abs(e.sum - e.activation) < 1e-4;
  line.append(`${t("arith.check", { module: e.module, value: e.activation.toFixed(6) })} `,
    make("span", ok ? "match" : "error", t(ok ? "arith.same" : "arith.differs")));
  if (e.after) line.append(make("br"), t("arith.after", { name: e.after.name, value: e.after.value.toFixed(6) }));
  return line;
}
