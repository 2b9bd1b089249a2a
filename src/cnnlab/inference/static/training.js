// Training, per run: the curves polled from metrics.jsonl while it trains (the engine rewrites the file each
// epoch; an unchanged file answers 304), the first kernels forming (learn.js), and, once it has finished, the
// confusion matrix, whose cells list their test images (mistakes.js).
import { t } from "./i18n.js";
import { learn } from "./learn.js";
import { cellImages } from "./mistakes.js";
import { lineChart, make } from "./render.js";

const POLL_MS = 2000;

export function training(container, runs, { open, show }) {
  container.style.setProperty("--runs", runs.length);
  const cards = runs.map((run, i) => card(run, i, { open, show }));
  container.replaceChildren(...cards.map(c => c.node));
  return { refresh: () => cards.forEach(c => c.refresh()) };
}

function card(run, index, actions) {
  const node = make("section", "card run"), head = make("div", "run-head"), live = make("span", "live");
  const curves = make("div", "curves"), title = make("h3"), box = make("div", "confusion-box hint"), cell = make("div", "cell-images");
  node.dataset.run = index;
  head.append(make("h2", "", `${run.name} · ${run.run}`), live);
  const replay = learn(index);
  const overfitting = make("p", "hint");
  node.append(head, curves, overfitting, replay.node, title, box, cell);
  const seen = { metrics: null, confusion: null, failed: false };
  const images = cellImages(cell, index, run, actions);

  function refresh() {
    title.textContent = t("confusion.title");
    overfitting.textContent = t("training.hint");
    if (seen.metrics) draw(seen.metrics);
    if (seen.confusion) table(seen.confusion);
    else box.textContent = t(seen.failed ? "confusion.unavailable" : seen.metrics && !seen.metrics.training ? "confusion.computing" : "confusion.waiting");
    replay.refresh();
    images.refresh();
  }

  function draw(body) {
    const { rows, epochs, training } = body, points = key => rows.filter(r => r[key] != null).map(r => [r.epoch, r[key]]);
    const series = (train, test) => [
      { points: points(train), colour: "#2f6fde", label: t("chart.training") },
      { points: points(test), colour: "#c2410c", dashed: true, label: t("chart.test") }];
    curves.dataset.epochs = rows.length;
    curves.replaceChildren(
      lineChart(t("chart.loss"), series("train_loss", "test_loss"), { logY: true, xMax: epochs, xLabel: t("chart.epoch") }),
      lineChart(t("chart.accuracy"), series("train_accuracy", "test_accuracy"), { xMax: epochs, xLabel: t("chart.epoch") }));
    live.textContent = training ? t("training.live", { epoch: rows.length, epochs }) : t("training.done", { count: rows.length });
  }

  function table(body) {
    box.className = "confusion-box";
    box.replaceChildren(confusionTable(body, images.show), make("p", "hint", t("confusion.summary", { accuracy: body.accuracy.toFixed(2) })));
  }

  async function follow() {
    let tag = null;
    for (;;) {
      try {
        const response = await fetch(`/runs/${index}/metrics`, { headers: tag ? { "If-None-Match": tag } : {} });
        if (response.status === 200) {
          tag = response.headers.get("ETag");
          seen.metrics = await response.json();
          draw(seen.metrics);
          replay.live(seen.metrics.training);
          if (!seen.metrics.training && !seen.confusion && !seen.failed) await confusion();
        }
      } catch (err) { /* the server restarting: try again at the next poll */ }
      await new Promise(resolve => setTimeout(resolve, POLL_MS));
    }
  }

  async function confusion() {
    box.textContent = t("confusion.computing");
    const response = await fetch(`/runs/${index}/confusion`);
    if (!response.ok) { seen.failed = true; box.textContent = t("confusion.unavailable"); return; }
    seen.confusion = await response.json();
    table(seen.confusion);
  }

  refresh();
  follow();
  return { node, refresh };
}

// Rows: true class, columns: predicted; each cell shaded by its count (log scale), through the CSSOM, and a
// button that lists its images.
function confusionTable({ classes, matrix }, onCell) {
  const max = Math.max(...matrix.flat()), table = make("table", "confusion"), head = make("tr");
  head.append(make("th"), ...classes.map(name => make("th", "", name)));
  table.append(make("caption", "hint", t("confusion.axes")), head);
  matrix.forEach((row, i) => {
    const line = make("tr");
    line.append(make("th", "", classes[i]), ...row.map((n, j) => {
      const tone = n ? 0.12 + 0.88 * Math.log1p(n) / Math.log1p(max) : 0, cell = make("td"), button = make("button", "count", n ? `${n}` : "");
      cell.style.background = i === j ? `rgba(31, 157, 92, ${tone})` : `rgba(194, 65, 12, ${Math.min(1, tone * 1.6)})`;
      button.style.color = tone > 0.6 ? "#fff" : "#1b2230";
      Object.assign(button.dataset, { true: i, predicted: j, count: n });
      button.setAttribute("aria-label", `${classes[i]} → ${classes[j]}: ${n}`);
      button.addEventListener("click", () => onCell(i, j, classes));
      cell.append(button);
      return cell;
    }));
    table.append(line);
  });
  return table;
}
