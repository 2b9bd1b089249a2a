// The drawing pad: dark ink on white paper, like a pen; `onChange` is called while drawing and at each stroke's end.

export function drawingPad(canvas, onChange) {
  const g = canvas.getContext("2d");
  let drawing = false, last = null;

  function clear() {
    g.fillStyle = "#fff";
    g.fillRect(0, 0, canvas.width, canvas.height);
  }
  function point(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  }
  function stroke(from, to) {
    g.strokeStyle = "#111"; g.lineWidth = 18; g.lineCap = "round"; g.lineJoin = "round";
    g.beginPath(); g.moveTo(...from); g.lineTo(...to); g.stroke();
  }
  // A digit that did not come from the pen (a test image: 28x28, white ink on black) shown as the pen would
  // have drawn it; a stroke drawn after it adds to it.
  function paint(pixels) {
    const size = pixels.length, cell = canvas.width / size;
    pixels.forEach((row, y) => row.forEach((v, x) => {
      g.fillStyle = `rgb(${255 - v},${255 - v},${255 - v})`;
      g.fillRect(x * cell, y * cell, cell + 0.5, cell + 0.5);
    }));
  }
  canvas.addEventListener("pointerdown", e => {
    drawing = true; last = point(e); stroke(last, last);
    canvas.setPointerCapture(e.pointerId);
    onChange(false);
  });
  canvas.addEventListener("pointermove", e => {
    if (!drawing) return;
    const p = point(e); stroke(last, p); last = p;
    onChange(false);
  });
  for (const type of ["pointerup", "pointercancel"]) {
    canvas.addEventListener(type, () => { if (drawing) { drawing = false; onChange(true); } });
  }
  clear();
  return {
    clear,
    paint,
    png: () => new Promise(resolve => canvas.toBlob(resolve, "image/png")),
  };
}
