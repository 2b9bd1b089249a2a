// Training curves of every run, polled from its metrics.jsonl while it trains (the engine rewrites the file
// each epoch; an unchanged file answers 304), and the confusion matrix of a finished run.
import { lineChart, make } from "./render.js";

const POLL_MS = 2000;

export function training(container, runs) {
  container.style.setProperty("--runs", runs.length);
  container.replaceChildren(...runs.map((run, i) => {
    const card = make("section", "card run"), head = make("div", "run-head");
    card.dataset.run = i;
    head.append(make("h2", "", `${run.name} · ${run.run}`), make("span", "live"));
    card.append(head, make("div", "curves"), make("h3", "", "Confusion matrix on the test set"),
      make("div", "confusion-box hint", "Waiting for the run to finish…"));
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
  box.className = "confusion-box";
  box.replaceChildren(confusionTable(body), make("p", "hint",
    `${body.accuracy.toFixed(2)}% correct; green: right, orange: mistaken (log shading)`));
}

// Rows: true class, columns: predicted; each cell shaded by its count (log scale), through the CSSOM.
function confusionTable({ classes, matrix }) {
  const max = Math.max(...matrix.flat()), table = make("table", "confusion"), head = make("tr");
  head.append(make("th"), ...classes.map(name => make("th", "", name)));
  table.append(make("caption", "hint", "rows: true class · columns: predicted"), head);
  matrix.forEach((row, i) => {
    const line = make("tr");
    line.append(make("th", "", classes[i]), ...row.map((n, j) => {
      const t = n ? 0.12 + 0.88 * Math.log1p(n) / Math.log1p(max) : 0, cell = make("td", "", n ? `${n}` : "");
      cell.style.background = i === j ? `rgba(31, 157, 92, ${t})` : `rgba(194, 65, 12, ${Math.min(1, t * 1.6)})`;
      cell.style.color = t > 0.6 ? "#fff" : "#1b2230";
      return cell;
    }));
    table.append(line);
  });
  return table;
}
