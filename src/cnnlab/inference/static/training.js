// Training curves of every run, polled from its metrics.jsonl while it trains (the engine rewrites the file
// each epoch; an unchanged file answers 304), and the confusion matrix of a finished run.
import { lineChart } from "./render.js";

const POLL_MS = 2000;

export function training(container, runs) {
  container.style.setProperty("--runs", runs.length);
  container.replaceChildren(...runs.map((run, i) => {
    const card = document.createElement("section");
    card.className = "card run";
    card.dataset.run = i;
    card.innerHTML = `<div class="run-head"><h2></h2><span class="live"></span></div>
      <div class="curves"></div><h3>Confusion matrix on the test set</h3><div class="confusion-box hint">Waiting for the run to finish…</div>`;
    card.querySelector("h2").textContent = `${run.name} · ${run.run}`;
    follow(card, i);
    return card;
  }));
}

async function follow(card, index) {
  let tag = null, confusionAsked = false;
  for (;;) {
    let body = null;
    try {
      const response = await fetch(`/runs/${index}/metrics`, { headers: tag ? { "If-None-Match": tag } : {} });
      if (response.status === 200) { tag = response.headers.get("ETag"); body = await response.json(); }
    } catch (err) { /* the server restarting: try again at the next poll */ }
    if (body) {
      draw(card, body);
      if (!body.training && !confusionAsked) { confusionAsked = true; confusion(card, index); }
    }
    await new Promise(resolve => setTimeout(resolve, POLL_MS));
  }
}

function draw(card, { rows, epochs, training }) {
  const points = key => rows.filter(r => r[key] != null).map(r => [r.epoch, r[key]]);
  const curves = card.querySelector(".curves");
  curves.dataset.epochs = rows.length;
  curves.replaceChildren(
    lineChart("loss (cross-entropy, log scale)", [
      { points: points("train_loss"), colour: "#2f6fde", label: "training" },
      { points: points("test_loss"), colour: "#c2410c", dashed: true, label: "test" }], { logY: true, xMax: epochs }),
    lineChart("accuracy (%)", [
      { points: points("train_accuracy"), colour: "#2f6fde", label: "training" },
      { points: points("test_accuracy"), colour: "#c2410c", dashed: true, label: "test" }], { xMax: epochs }));
  card.querySelector(".live").textContent = training ? `training: epoch ${rows.length} of ${epochs}, updating live`
    : `${rows.length} epoch${rows.length === 1 ? "" : "s"}, finished`;
}

async function confusion(card, index) {
  const box = card.querySelector(".confusion-box");
  box.textContent = "Computing on the test set…";
  const response = await fetch(`/runs/${index}/confusion`);
  const body = await response.json();
  if (!response.ok) { box.textContent = body.detail; return; }
  const max = Math.max(...body.matrix.flat());
  const table = document.createElement("table");
  table.className = "confusion";
  table.innerHTML = `<caption class="hint">rows: true class · columns: predicted</caption><tr><th></th>${body.classes.map(c => `<th>${c}</th>`).join("")}</tr>` +
    body.matrix.map((row, i) => `<tr><th>${body.classes[i]}</th>${row.map((n, j) => {
      const t = n ? 0.12 + 0.88 * Math.log1p(n) / Math.log1p(max) : 0;
      const colour = i === j ? `rgba(31, 157, 92, ${t})` : `rgba(194, 65, 12, ${Math.min(1, t * 1.6)})`;
      return `<td style="background:${colour};color:${t > 0.6 ? "#fff" : "#1b2230"}">${n || ""}</td>`;
    }).join("")}</tr>`).join("");
  box.className = "confusion-box";
  box.replaceChildren(table, Object.assign(document.createElement("p"), { className: "hint",
    textContent: `${body.accuracy.toFixed(2)}% correct; green: right, orange: mistaken (log shading)` }));
}
