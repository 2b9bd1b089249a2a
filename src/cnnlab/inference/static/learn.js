// Watch it learn: the first convolution's kernels and one test digit's feature maps, as training went on
// (GET /runs/{i}/snapshots, written by engine/snapshots.py), replayed with a slider; polled while the run trains.
import { t } from "./i18n.js";
import { decodeStage, digitCanvas, make, mapCanvas, scaleFor } from "./render.js";

const POLL_MS = 2000, STEP_MS = 450;

export function learn(index) {
  const node = make("section", "learn"), title = make("h3"), caption = make("p", "hint"), deep = make("p", "hint");
  const slider = make("input"), play = make("button", "quiet"), step = make("span", "step"), frame = make("div", "learn-frame");
  Object.assign(slider, { type: "range", min: 0, max: 0, value: 0 });
  const controls = make("div", "learn-controls");
  controls.append(play, slider, step);
  node.append(title, caption, controls, frame, deep);
  let body = null, tag = null, playing = false, timer = null, training = null, following = true;

  slider.addEventListener("input", () => { following = Number(slider.value) === Number(slider.max); draw(); });
  play.addEventListener("click", () => (playing ? stop() : start()));

  function start() {
    if (!body || !body.snapshots.length) return;
    if (Number(slider.value) >= Number(slider.max)) slider.value = 0;
    playing = true;
    timer = setInterval(() => {
      if (Number(slider.value) >= Number(slider.max)) { stop(); return; }
      slider.value = Number(slider.value) + 1;
      draw();
    }, STEP_MS);
    refresh();
  }

  function stop() {
    playing = false;
    clearInterval(timer);
    refresh();
  }

  function refresh() {
    title.textContent = t("learn.title");
    caption.textContent = t("learn.caption");
    deep.textContent = t("learn.deep");
    play.textContent = t(playing ? "learn.pause" : "learn.play");
    draw();
  }

  function draw() {
    const snapshots = body ? body.snapshots : [];
    node.dataset.snapshots = snapshots.length;
    controls.hidden = !snapshots.length;
    if (!snapshots.length) {
      frame.replaceChildren(make("p", "hint", t(training === false ? "learn.none" : "learn.waiting")));
      return;
    }
    const shot = snapshots[Number(slider.value)];
    node.dataset.step = shot.step;
    step.textContent = t("learn.step", { step: shot.step.toLocaleString(), epoch: shot.epoch });
    frame.replaceChildren(kernels(shot), maps(shot));
  }

  // One colour scale for every snapshot, so that the kernels are seen to grow, not only to change.
  function kernels(shot) {
    const limit = Math.max(...body.snapshots.flatMap(s => s.kernels.flat(2).map(Math.abs))) || 1, scale = scaleFor(-limit, limit);
    const box = make("div", "learn-part"), grid = make("div", "learn-kernels");
    grid.append(...shot.kernels.map(k => mapCanvas(Float32Array.from(k.flat()), 0, k.length, k[0].length, scale, 0)));
    box.append(make("span", "hint", t("learn.kernels")), grid);
    return box;
  }

  function maps(shot) {
    const [count, h, w] = shot.maps.shape, values = decodeStage(shot.maps), scale = scaleFor(shot.maps.lo, shot.maps.hi);
    const box = make("div", "learn-part"), grid = make("div", "learn-maps");
    const probe = typeof body.probe === "string" ? Object.assign(make("img"), { src: body.probe, alt: "" }) : digitCanvas(body.probe);
    probe.classList.add("probe");
    for (let c = 0; c < count; c++) grid.append(mapCanvas(values, c * h * w, h, w, scale, 0));
    box.append(make("span", "hint", t("learn.maps", { label: body.label ?? "?" })), probe, grid);
    return box;
  }

  async function poll() {
    try {
      const response = await fetch(`/runs/${index}/snapshots`, { headers: tag ? { "If-None-Match": tag } : {} });
      if (response.status === 200) {
        tag = response.headers.get("ETag");
        body = await response.json();
        slider.max = Math.max(0, body.snapshots.length - 1);
        if (following && !playing) slider.value = slider.max;  // live: the newest, unless the learner is replaying
        draw();
      }
    } catch (err) { /* the server restarting: the next poll tries again */ }
    if (training !== false) setTimeout(poll, POLL_MS);
  }

  // The curves say whether the run still trains: while it does, new snapshots are polled for.
  function live(isTraining) {
    const before = training;
    training = isTraining;
    if (before === null || (before && !isTraining)) poll();  // the first time, and once more when training ends
    else draw();
  }

  refresh();
  return { node, refresh, live };
}
