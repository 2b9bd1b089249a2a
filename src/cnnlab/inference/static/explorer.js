// The stride, padding and pooling explorer: a window slides over a padded input; the output size comes from
// the server's `cnnlab shape` (GET /shape), so the page shows the very formula and numbers the CLI prints (in the
// CLI's English: the formula box and the command are the CLI's own text).
import { t, translateStatic } from "./i18n.js";
import { exactValues, make, mapCanvas, scaleFor } from "./render.js";

const CONTROLS = [["size", "explorer.size", 1, 64, 8], ["kernel", "explorer.kernel", 1, 11, 3], ["stride", "explorer.stride", 1, 6, 1],
  ["padding", "explorer.padding", 0, 6, 0], ["dilation", "explorer.dilation", 1, 4, 1], ["pool", "explorer.pool", 0, 8, 0]];

export function explorer(container) {
  container.innerHTML = `
    <div class="explorer">
      <section class="card">
        <h2 data-i18n="explorer.title"></h2>
        <p class="hint" data-i18n="explorer.intro"></p>
        <div class="controls">${CONTROLS.map(([name, key, lo, hi, value]) =>
          `<label><span data-i18n="${key}"></span><input id="ex-${name}" type="number" min="${lo}" max="${hi}" value="${value}"></label>`).join("")}</div>
        <p><b id="ex-output">…</b></p>
        <pre class="formula" id="ex-formula"></pre>
        <p class="hint"><span data-i18n="explorer.same"></span> <code id="ex-command"></code></p>
      </section>
      <section class="card">
        <div class="stage-head"><h2 data-i18n="explorer.window"></h2><button id="ex-play" type="button"></button></div>
        <canvas id="ex-anim" width="520" height="330"></canvas>
        <p class="hint" id="ex-step"></p>
      </section>
      <section class="card wide">
        <h2 data-i18n="explorer.pooling"></h2>
        <div class="controls">
          <label><span data-i18n="explorer.map"></span><select id="pool-map"></select></label>
          <label><span data-i18n="explorer.poolsize"></span><select id="pool-size"><option>2</option><option>3</option><option>4</option></select></label>
        </div>
        <div class="pools" id="pools"><p class="hint" data-i18n="explorer.draw"></p></div>
      </section>
    </div>`;
  const $ = id => container.querySelector(`#${id}`);
  let geometry = null, step = 0, playing = true, lab = null, output = null;

  async function refresh() {
    const v = Object.fromEntries(CONTROLS.map(([name]) => [name, Number($(`ex-${name}`).value)]));
    if (!v.pool) delete v.pool;
    $("ex-command").textContent = `cnnlab shape --input ${v.size} --kernel ${v.kernel} --stride ${v.stride} ` +
      `--padding ${v.padding} --dilation ${v.dilation}${v.pool ? ` --pool ${v.pool}` : ""}`;
    const response = await fetch(`/shape?${new URLSearchParams(v)}`);
    const body = await response.json();
    if (!response.ok) {  // no output: the previous animation goes too
      const detail = Array.isArray(body.detail) ? body.detail.map(d => `${d.loc.at(-1)}: ${d.msg}`).join("; ") : body.detail;
      output = null;
      $("ex-output").className = "error";
      $("ex-formula").textContent = detail;
      geometry = null;
      words();
      draw();
      return;
    }
    output = body.output;
    $("ex-output").className = "";
    $("ex-output").dataset.output = body.output;
    $("ex-formula").textContent = body.text;
    geometry = { ...v, out: body.conv };  // the convolution's output (body.output is after pooling)
    step = 0;
    words();
    draw();
  }

  // Every string of the explorer, in the page's language.
  function words() {
    translateStatic(container);
    $("ex-output").textContent = output === null ? t("explorer.nooutput") : t("explorer.output", { size: output });
    $("ex-play").textContent = t(playing ? "explorer.pause" : "explorer.play");
  }

  function draw() {
    const canvas = $("ex-anim"), g = canvas.getContext("2d");
    g.clearRect(0, 0, canvas.width, canvas.height);
    if (!geometry) { $("ex-step").textContent = ""; return; }
    const { size, kernel, stride, padding, dilation, out } = geometry, padded = size + 2 * padding;
    const cell = Math.max(3, Math.min(26, Math.floor(300 / padded))), outCell = Math.max(3, Math.min(26, Math.floor(170 / out)));
    const r = Math.floor(step / out) % out, c = step % out;
    for (let y = 0; y < padded; y++) {
      for (let x = 0; x < padded; x++) {
        const inside = y >= padding && y < padding + size && x >= padding && x < padding + size;
        g.fillStyle = inside ? "#dfe6f3" : "#f6f7fa";
        g.fillRect(x * cell, y * cell, cell - 1, cell - 1);
      }
    }
    g.fillStyle = "rgba(194, 65, 12, .75)";
    for (let i = 0; i < kernel; i++) {
      for (let j = 0; j < kernel; j++) g.fillRect((c * stride + j * dilation) * cell, (r * stride + i * dilation) * cell, cell - 1, cell - 1);
    }
    const ox = padded * cell + 24;
    for (let y = 0; y < out; y++) {
      for (let x = 0; x < out; x++) {
        g.fillStyle = y === r && x === c ? "rgba(194, 65, 12, .9)" : y * out + x < step % (out * out) ? "#9db8e8" : "#e8ecf3";
        g.fillRect(ox + x * outCell, y * outCell, outCell - 1, outCell - 1);
      }
    }
    g.fillStyle = "#667085"; g.font = "12px system-ui";
    g.fillText(padding ? t("explorer.input.padded", { size, padding }) : t("explorer.input", { size }), 0, padded * cell + 16);
    g.fillText(t("explorer.out", { size: out }), ox, out * outCell + 16);
    const reach = dilation * (kernel - 1);
    $("ex-step").textContent = t("explorer.reads", { row: r, col: c, top: r * stride - padding, bottom: r * stride - padding + reach,
      left: c * stride - padding, right: c * stride - padding + reach });
  }

  setInterval(() => { if (playing && geometry) { step = (step + 1) % (geometry.out * geometry.out); draw(); } }, 400);
  $("ex-play").addEventListener("click", () => { playing = !playing; words(); });
  for (const [name] of CONTROLS) $(`ex-${name}`).addEventListener("input", refresh);
  for (const id of ["pool-map", "pool-size"]) $(id).addEventListener("change", () => pools());

  function pools() {
    const stage = lab && lab.results[0] && lab.results[0].stages && lab.results[0].stages.find(s => s.conv);
    const box = $("pools");
    if (!stage) return;
    const [channels, h, w] = stage.shape, values = exactValues(stage), k = Number($("pool-size").value);
    const select = $("pool-map"), chosen = select.value || "0";
    select.replaceChildren(...Array.from({ length: channels }, (_, i) => new Option(t("explorer.mapname", { stage: stage.name, index: i }), i)));
    select.value = chosen;
    const m = Number(select.value), map = values.slice(m * h * w, (m + 1) * h * w), oh = Math.floor(h / k), ow = Math.floor(w / k);
    const pooled = reduce => Float32Array.from({ length: oh * ow }, (_, i) => {
      const window = [];
      for (let y = 0; y < k; y++) for (let x = 0; x < k; x++) window.push(map[(Math.floor(i / ow) * k + y) * w + (i % ow) * k + x]);
      return reduce(window);
    });
    const scale = scaleFor(stage.lo, stage.hi), zoom = Math.max(2, Math.floor(120 / w));
    const figure = (values_, hh, ww, caption) => {
      const f = make("figure");
      f.append(mapCanvas(values_, 0, hh, ww, scale, Math.floor(zoom * w / ww)), caption);
      return f;
    };
    box.replaceChildren(figure(map, h, w, t("explorer.mapsize", { stage: stage.name, index: m, height: h, width: w })),
      figure(pooled(v => Math.max(...v)), oh, ow, t("explorer.max", { k, height: oh, width: ow })),
      figure(pooled(v => v.reduce((a, b) => a + b, 0) / v.length), oh, ow, t("explorer.average", { k, height: oh, width: ow })));
  }

  refresh();
  return { update(state) { lab = state; words(); pools(); } };
}
