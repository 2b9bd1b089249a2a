"""Numbers drawn with a mouse in Chromium, for benchmarks/number_reading.py --drawn DIR (issue 25).

A plain HTML canvas (no server: the page is set from a string) draws with the pointer the way the lab's pad
does: round lines between successive pointer events. Playwright moves the mouse along the strokes of real
digits: the skeletons of MNIST *test* digits traced into pen paths, placed by a writer of
benchmarks/number_reading.py (height, slant, spacing, touching neighbours), with a shaking hand and a speed
that varies (fast strokes are few pointer events, joined by straight lines). Pens vary from 2 px to a
24 px brush, in dark inks or a pencil's grey. Each number is saved as DIGITS-N.png, DIGITS the number drawn.

    python benchmarks/draw_numbers.py OUT_DIR [--count 120] [--seed 0]
"""

import argparse
import base64
import shutil
import sys
from pathlib import Path

import numpy as np
from number_reading import LENGTHS, placements, writer
from PIL import Image
from playwright.sync_api import sync_playwright
from real_digits import thin

from cnnlab.data.datasets import load_dataset
from cnnlab.files import write_bytes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_lab import CHROMIUM_ARGS  # noqa: E402  (the browser tests' flags: one list for all)

PAGE = """<!doctype html><body style="margin:0"><canvas id="pad"></canvas><script>
const pad = document.getElementById("pad"), g = pad.getContext("2d");
let last = null;
window.setup = (width, height, pen, ink) => {
  pad.width = width; pad.height = height; pad.style.width = width + "px"; pad.style.height = height + "px";
  g.fillStyle = "#fff"; g.fillRect(0, 0, width, height);
  g.strokeStyle = ink; g.lineWidth = pen; g.lineCap = "round"; g.lineJoin = "round";
};
const at = e => [e.offsetX, e.offsetY];
const line = (a, b) => { g.beginPath(); g.moveTo(...a); g.lineTo(...b); g.stroke(); };
pad.addEventListener("pointerdown", e => { last = at(e); line(last, last); });
pad.addEventListener("pointermove", e => { if (last) { const p = at(e); line(last, p); last = p; } });
pad.addEventListener("pointerup", () => { last = null; });
</script></body>"""
INKS = ["#111111", "#1a1a1a", "#20308a", "#333333", "#555555"]  # black, ballpoint blue, a soft pencil's grey


def pen_paths(digit: np.ndarray) -> list[np.ndarray]:
    """A 28x28 MNIST digit -> its skeleton as pen paths, each (K, 2) points (x, y) in skeleton pixels
    (112 a side), traced from its ends (or anywhere on a loop) along unvisited neighbours."""
    big = np.asarray(Image.fromarray(digit).resize((112, 112), Image.BILINEAR))
    skeleton = thin(big > 0.4 * big.max())
    points = {(int(y), int(x)) for y, x in zip(*np.nonzero(skeleton))}
    around = lambda p: [(p[0] + dy, p[1] + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy or dx)]
    neighbours = {p: [q for q in around(p) if q in points] for p in points}
    used: set = set()
    paths = []
    while True:
        free = [p for p in points if any(frozenset((p, q)) not in used for q in neighbours[p])]
        if not free:
            break
        ends = [p for p in free if len(neighbours[p]) == 1]
        path = [min(ends or free)]
        while True:
            step = [q for q in neighbours[path[-1]] if frozenset((path[-1], q)) not in used]
            if not step:
                break
            used.add(frozenset((path[-1], step[0])))
            path.append(step[0])
        if len(path) > 2:
            paths.append(np.array([(x, y) for y, x in path], dtype=np.float64))
    return paths


def placed_paths(digits: str, images, pools, rng):
    """The pen paths of each digit, scaled, slanted and placed by a writer; the canvas size; the pen."""
    w = writer(rng, rng.uniform(50, 150))
    glyphs = []
    for d in digits:
        paths = pen_paths(images[pools[d].pop()])
        everything = np.concatenate(paths)
        scale = w.height * (1 + rng.normal(0, w.sizes)) / max(np.ptp(everything[:, 1]), 1)
        slant = np.tan(w.slant + rng.normal(0, 0.04))
        middle = everything[:, 1].mean()
        paths = [np.column_stack([(p[:, 0] + (middle - p[:, 1]) * slant) * scale, p[:, 1] * scale]) for p in paths]
        low = np.concatenate(paths).min(0)
        glyphs.append([p - low for p in paths])
    sizes = [tuple(np.ceil(np.concatenate(g).max(0)).astype(int)) for g in glyphs]
    margin = 40
    spots = placements(sizes, rng, w)
    strokes = [[p + (left + margin, top + margin) for p in g] for g, (left, top) in zip(glyphs, spots)]
    width = max(left + size[0] for (left, _), size in zip(spots, sizes)) + 2 * margin
    height = max(top + size[1] for (_, top), size in zip(spots, sizes)) + 2 * margin
    pen = float(np.clip(rng.choice([2, 4, 0.08 * w.height, 0.14 * w.height, 24]), 2, 0.16 * w.height))
    return strokes, (int(width), int(max(height, 1.4 * w.height))), pen


def draw(page, strokes, size, pen, ink, rng) -> bytes:
    """Draw the strokes with the mouse: a shaking hand, a speed that varies; the canvas as PNG bytes."""
    page.evaluate(f"setup({size[0]}, {size[1]}, {pen}, '{ink}')")
    shake = rng.uniform(0.0, 1.2)
    for digit in strokes:
        for path in digit:
            step = int(rng.integers(1, 6))  # every step-th skeleton point: fast strokes are straighter
            points = path[::step].tolist() + [path[-1].tolist()]
            x, y = points[0]
            page.mouse.move(x, y)
            page.mouse.down()
            for x, y in points[1:]:
                page.mouse.move(x + rng.normal(0, shake), y + rng.normal(0, shake))
            page.mouse.up()
    data = page.evaluate("pad.toDataURL('image/png')")
    return base64.b64decode(data.split(",", 1)[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", metavar="OUT_DIR")
    parser.add_argument("--count", type=int, default=120, help="numbers to draw (default: 120)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"), help="MNIST")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("Debian's chromium is not installed (make browser installs it)", file=sys.stderr)
        return 1
    dataset = load_dataset("mnist", data_dir=args.data_dir, allow_download=False)
    images, labels = dataset.test_images[:, 0].numpy(), dataset.test_labels.numpy()
    rng = np.random.default_rng(args.seed)
    pools = {str(d): list(rng.permutation(np.flatnonzero(labels == d))) for d in range(10)}
    lengths, weights = list(LENGTHS), np.array(list(LENGTHS.values()), dtype=float)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.set_content(PAGE)
        for n in range(args.count):
            digits = "".join(rng.choice(list("0123456789"), rng.choice(lengths, p=weights / weights.sum())))
            strokes, size, pen = placed_paths(digits, images, pools, rng)
            page.set_viewport_size({"width": max(size[0], 200), "height": max(size[1], 100)})
            png = draw(page, strokes, size, pen, INKS[rng.integers(0, len(INKS))], rng)
            write_bytes(Path(args.out) / f"{digits}-{n}.png", png)
        browser.close()
    print(f"{args.count} numbers drawn into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
