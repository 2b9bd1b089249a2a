// Where it looks: occlusion sensitivity and Grad-CAM (POST /attribution) for the digit on the pad (drawn, a test
// image, or an upload's 28x28), for the predicted class or a clicked one, each with a sentence on what it
// measures and one on where it misleads. Every printed number is the model's own.
import { postJSON } from "./api.js";
import { t } from "./i18n.js";
import { cellAt, digitCanvas, fmt, legend, make, mapCanvas, rgb, scaleFor } from "./render.js";

const ZOOM = 8;  // a 28x28 map shown at 224 px
const METHODS = [["occlusion", "where.occlusion"], ["grad-cam", "where.gradcam"]];

export function whereView(container, { columns }) {
  const choices = [];  // per run: { method, layer, target }
  const answers = new Map();  // request -> its answer (a drawing's stroke or a language switch asks nothing again)
  let lab = null;

  function update(state) {
    lab = state;
    columns(container).forEach((column, i) => {
      const run = state.runs[i];
      choices[i] = choices[i] || { method: "occlusion", layer: run.grad_cam_layer, target: null };
      if (run.input !== "draw") {
        column.append(make("p", "error", t("where.image_run", { channels: run.channels, height: run.input_size[0], width: run.input_size[1] })));
        return;
      }
      if (!state.input || !state.results[i]) { column.append(make("p", "empty", t("where.empty"))); return; }
      const body = make("div", "where-body"), source = state.source || { kind: "drawing" };
      column.append(make("p", "shown source", t(`where.source.${source.kind}`, source)), controls(i, run, state.results[i]), body);
      show(i, body);
    });
  }

  function controls(i, run, result) {
    const choice = choices[i], box = make("div", "where-controls"), methods = make("div", "toggle");
    for (const [method, key] of METHODS) {
      if (method === "grad-cam" && !run.convolutions.length) continue;
      const button = make("button", method === choice.method ? "on" : "", t(key));
      button.dataset.method = method;
      button.addEventListener("click", () => { choice.method = method; update(lab); });
      methods.append(button);
    }
    box.append(labelled(t("where.method"), methods));
    if (choice.method === "grad-cam") {
      const select = make("select");
      select.replaceChildren(...run.convolutions.map(name => new Option(name, name, false, name === choice.layer)));
      select.addEventListener("change", () => { choice.layer = select.value; update(lab); });
      box.append(labelled(t("where.layer"), select));
    }
    const classes = make("div", "classes"), predicted = result.predictions[0].index;
    run.classes.forEach((name, c) => {
      const chosen = (choice.target ?? predicted) === c, button = make("button", chosen ? "on" : "", name);
      if (c === predicted) button.classList.add("predicted");
      button.dataset.target = c;
      button.addEventListener("click", () => { choice.target = c === predicted ? null : c; update(lab); });
      classes.append(button);
    });
    box.append(labelled(t("where.class"), classes), make("p", "hint", t("where.class.hint")));
    return box;
  }

  async function show(i, body) {
    const choice = choices[i], request = { pixels: lab.input, method: choice.method, target: choice.target,
      layer: choice.method === "grad-cam" ? choice.layer : null };
    const key = JSON.stringify([i, request]);
    body.append(make("p", "hint", t("where.computing")));
    try {
      if (!answers.has(key)) answers.set(key, await postJSON(`/attribution?run=${i}`, request));
      if (answers.size > 40) answers.delete(answers.keys().next().value);
      body.replaceChildren(...picture(answers.get(key)));
    } catch (err) {
      body.replaceChildren(make("p", "error", err.message));
    }
  }

  function picture(a) {
    const heat = Float32Array.from(a.heat.flat()), [h, w] = [a.heat.length, a.heat[0].length];
    const lo = Math.min(...heat), hi = Math.max(...heat);
    const scale = a.method === "occlusion" ? scaleFor(Math.min(lo, -1e-9), hi) : scaleFor(0, hi || 1);
    const canvas = overlay(lab.input, heat, h, w, scale);
    canvas.classList.add("heat");
    Object.assign(canvas.dataset, { method: a.method, target: a.target });
    canvas.addEventListener("pointermove", e => {
      const [r, k] = cellAt(canvas, e);
      canvas.title = t("where.tip", { row: r, col: k, value: fmt(heat[r * w + k]) });
    });
    const name = a.class, figure = make("div", "where-figure");
    figure.append(canvas, legend(scale));
    const what = a.method === "occlusion"
      ? [t("where.occlusion.what", { patch: a.patch, name }), t("where.occlusion.caveat")]
      : [t("where.gradcam.what", { count: a.channels, layer: a.layer, name }),
        t("where.gradcam.caveat", { layer: a.layer, height: a.coarse.length, width: a.coarse[0].length })];
    const probability = make("p", "probability", t("where.probability", { name, value: a.probability.toFixed(6) }));
    probability.dataset.probability = a.probability;
    const parts = [probability, figure];
    if (a.method === "grad-cam") parts.push(coarse(a));
    return [...parts, make("p", "what", what[0]), make("p", "hint caveat", what[1])];
  }

  // Grad-CAM as computed, at the layer's own resolution, before it is blown up to the input's size.
  function coarse(a) {
    const values = Float32Array.from(a.coarse.flat()), [h, w] = [a.coarse.length, a.coarse[0].length];
    const box = make("div", "coarse"), canvas = mapCanvas(values, 0, h, w, scaleFor(0, Math.max(...values) || 1), 0);
    box.append(canvas, make("span", "hint", t("where.coarse", { layer: a.layer, height: h, width: w })));
    return box;
  }

  // The digit in grey under the map, the map's colour at 60%.
  function overlay(pixels, heat, h, w, scale) {
    const canvas = make("canvas"), g = canvas.getContext("2d");
    canvas.width = w * ZOOM; canvas.height = h * ZOOM;
    g.imageSmoothingEnabled = false;
    g.drawImage(digitCanvas(pixels), 0, 0, canvas.width, canvas.height);
    g.globalAlpha = 0.6;
    for (let i = 0; i < h * w; i++) {
      g.fillStyle = rgb(scale.colour(heat[i]));
      g.fillRect((i % w) * ZOOM, Math.floor(i / w) * ZOOM, ZOOM, ZOOM);
    }
    return canvas;
  }

  return { update };
}

function labelled(text, control) {
  const label = make("div", "labelled");
  label.append(make("span", "hint", text), control);
  return label;
}
