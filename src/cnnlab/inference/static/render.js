// Drawing numbers as pictures: colour scales, feature maps on canvases, bars, line charts (SVG). Pictures may
// be quantised; a number printed on the page is always the model's own value (`exactValues`).

// An element with a class and text. Every string from a run or its data (run, model and class names, error
// details) goes into the page this way, as text, never as HTML.
export const make = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

const bytesOf = base64 => Uint8Array.from(atob(base64), c => c.charCodeAt(0));

// For pictures: one byte a value over the stage's own range [lo, hi] (serve/lab.py quantised).
export function decodeStage(stage) {
  const bytes = bytesOf(stage.data), span = stage.hi - stage.lo;
  return Float32Array.from(bytes, b => stage.lo + (b / 255) * span);
}

// For numbers: every value as the model computed it (float32, little-endian; serve/lab.py exact).
export function exactValues(stage) {
  const bytes = bytesOf(stage.exact), view = new DataView(bytes.buffer);
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

const DIVERGING = [[33, 102, 172], [103, 169, 207], [209, 229, 240], [247, 247, 247], [253, 219, 199], [239, 138, 98], [178, 24, 43]];
const SEQUENTIAL = [[12, 7, 38], [72, 16, 110], [141, 41, 129], [212, 72, 104], [248, 138, 78], [252, 214, 121], [252, 253, 191]];

function interpolate(stops, t) {
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
}

// One colour scale per stage: blue-white-red around 0 when the stage has negative values (red: positive), else
// dark-to-bright.
export function scaleFor(lo, hi) {
  if (lo < 0) {
    const m = Math.max(-lo, hi) || 1;
    return { lo: -m, hi: m, colour: v => interpolate(DIVERGING, (v / m + 1) / 2) };
  }
  const span = hi - lo || 1;
  return { lo, hi, colour: v => interpolate(SEQUENTIAL, (v - lo) / span) };
}

export const rgb = colour => `rgb(${colour.join(",")})`;

export function legend(scale) {
  const box = make("div", "legend"), bar = make("canvas");
  bar.width = 64; bar.height = 1;
  const g = bar.getContext("2d");
  for (let x = 0; x < 64; x++) {
    g.fillStyle = rgb(scale.colour(scale.lo + (x / 63) * (scale.hi - scale.lo)));
    g.fillRect(x, 0, 1, 1);
  }
  box.append(fmt(scale.lo), bar, fmt(scale.hi));
  return box;
}

export function fmt(v) {
  const a = Math.abs(v);
  return a !== 0 && (a < 0.01 || a >= 1000) ? v.toExponential(1) : v.toFixed(a < 1 ? 3 : 2);
}

// A (h, w) map from `values` at `offset` as a canvas of h x w pixels, shown `zoom` times larger (0: sized by CSS).
export function mapCanvas(values, offset, h, w, scale, zoom) {
  const canvas = make("canvas");
  canvas.width = w; canvas.height = h;
  if (zoom) { canvas.style.width = `${w * zoom}px`; canvas.style.height = `${h * zoom}px`; }
  const g = canvas.getContext("2d"), image = g.createImageData(w, h);
  for (let i = 0; i < h * w; i++) image.data.set([...scale.colour(values[offset + i]), 255], i * 4);
  g.putImageData(image, 0, 0);
  return canvas;
}

// A 28x28 digit (0-255 ints, rows) on a canvas, white ink on black as MNIST stores it.
export function digitCanvas(pixels) {
  const canvas = make("canvas"), g = canvas.getContext("2d");
  canvas.width = canvas.height = pixels.length;
  const image = g.createImageData(pixels.length, pixels.length);
  pixels.flat().forEach((v, i) => image.data.set([v, v, v, 255], i * 4));
  g.putImageData(image, 0, 0);
  return canvas;
}

// The cell of a map canvas under a pointer event.
export function cellAt(canvas, event) {
  const r = canvas.getBoundingClientRect();
  return [Math.min(canvas.height - 1, Math.floor((event.clientY - r.top) / r.height * canvas.height)),
          Math.min(canvas.width - 1, Math.floor((event.clientX - r.left) / r.width * canvas.width))];
}

// Scores as bars from a zero line: up for positive, down for negative, on the stage's colour scale, each with
// its value; the largest one's label in green.
export function bars(values, labels, scale, digits = 2) {
  const box = make("div", "vector"), top = Math.max(0, ...values), bottom = Math.min(0, ...values);
  const span = top - bottom || 1, best = values.indexOf(Math.max(...values)), zero = (top / span) * 100;
  values.forEach((v, i) => {
    const cell = make("div", i === best ? "bar-cell best" : "bar-cell"), track = make("div", "track");
    const line = make("b", "zero"), bar = make("i");
    line.style.top = `${zero}%`;
    bar.style.top = `${v >= 0 ? ((top - v) / span) * 100 : zero}%`;
    bar.style.height = `${Math.max(0.5, (Math.abs(v) / span) * 100)}%`;
    bar.style.background = rgb(scale.colour(v));
    track.append(bar, line);
    cell.dataset.value = v;
    cell.append(track, make("span", "label", labels[i]), make("span", "value", v.toFixed(digits)));
    box.append(cell);
  });
  return box;
}

const SVG = "http://www.w3.org/2000/svg";
function el(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (parent) parent.append(node);
  return node;
}

// Round tick values between lo and hi, about `count` of them: steps of 1, 2 or 5 times a power of ten.
export function niceTicks(lo, hi, count = 5) {
  const raw = (hi - lo) / count, power = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map(m => m * power).find(s => s >= raw) || power;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

const tickText = v => (Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(0) : `${+v.toPrecision(6)}`);

// A line chart: series = [{points: [[x, y]...], colour, dashed, label}]; x is the epoch (whole-number ticks).
export function lineChart(title, series, { logY = false, xMax = null, xLabel = "epoch" } = {}) {
  const W = 420, H = 200, L = 46, R = 10, T = 30, B = 34;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  const all = series.flatMap(s => s.points);
  el("text", { x: 4, y: 14 }, svg).textContent = title;
  series.forEach((s, i) => {  // the legend, on the title's line
    const lx = W - R - 170 + i * 90;
    el("line", { x1: lx, x2: lx + 18, y1: 10, y2: 10, stroke: s.colour, "stroke-width": 2, "stroke-dasharray": s.dashed ? "5 4" : "" }, svg);
    el("text", { x: lx + 22, y: 14 }, svg).textContent = s.label;
  });
  if (!all.length) return svg;
  const f = v => (logY ? Math.log10(Math.max(v, 1e-6)) : v);
  const xs = all.map(p => p[0]), ys = all.map(p => f(p[1]));
  const x0 = Math.min(1, ...xs), x1 = Math.max(xMax || 0, ...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
  const found = logY ? logTicks(y0, y1) : niceTicks(y0, y1), ticks = found.length ? found : [y0, y1];
  y0 = Math.min(y0, ticks[0]); y1 = Math.max(y1, ticks.at(-1));
  const px = x => L + (x - x0) / (x1 - x0) * (W - L - R), py = y => T + (1 - (f(y) - y0) / (y1 - y0)) * (H - T - B);
  for (const tick of ticks) {
    const y = T + (1 - (tick - y0) / (y1 - y0)) * (H - T - B);
    el("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#e3e7ee" }, svg);
    el("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "tick" }, svg).textContent = tickText(logY ? 10 ** tick : tick);
  }
  const step = Math.max(1, Math.ceil((x1 - x0) / 8));
  for (let x = Math.ceil(x0); x <= x1; x += step) {
    el("text", { x: px(x), y: H - 18, "text-anchor": "middle", class: "tick epoch" }, svg).textContent = x;
  }
  el("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle" }, svg).textContent = xLabel;
  for (const s of series) {
    if (!s.points.length) continue;
    el("polyline", { points: s.points.map(p => `${px(p[0])},${py(p[1])}`).join(" "), fill: "none", stroke: s.colour,
      "stroke-width": 2, "stroke-dasharray": s.dashed ? "5 4" : "" }, svg);
    s.points.forEach(p => el("circle", { cx: px(p[0]), cy: py(p[1]), r: 2.5, fill: s.colour, class: "point" }, svg));
  }
  return svg;
}

// Ticks of a log10 axis: whole powers of ten, or 1-2-5 of them when the range spans less than two decades.
function logTicks(lo, hi) {
  const decades = niceTicks(Math.floor(lo), Math.ceil(hi), 4).filter(Number.isInteger);
  if (hi - lo >= 2) return decades;
  const ticks = [];
  for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) {
    for (const m of [1, 2, 5]) {
      const v = d + Math.log10(m);
      if (v >= lo - 1e-9 && v <= hi + 1e-9) ticks.push(v);
    }
  }
  return ticks.length >= 2 ? ticks : decades;
}
