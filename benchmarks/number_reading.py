"""Reading whole numbers (issue 25): exact-number and per-digit accuracy by kind, what is refused, and speed.

The development set is generated, never stored. Each number is made of REAL handwritten digits: MNIST
*test* digits (never its training images), or the 20 drawings of ../shared/data/real-digits. A writer is
drawn for each number (digit height, slant, spacing, how often neighbours touch), and its digits are placed
side by side the way people write: uneven sizes, each digit slanted, a baseline that wanders, gaps from
wide to none, neighbours touching or overlapping. The number is then put on the media of
benchmarks/real_digits.py: the lab's wide pad, thin mouse strokes, MNIST's own pixels, a strip 28 px high,
photographed paper (pen, marker, pencil, creases), coloured scans. Numbers drawn in Chromium by
benchmarks/draw_numbers.py join with --drawn DIR. Every image takes the path of `cnnlab predict`: encoded
file -> load_image -> read_number. Images that are not a number (two lines, drawings, text, dust) are
counted apart: they should be refused, not read.

    python benchmarks/number_reading.py RUN_DIR [RUN_DIR ...] [--per-kind 60] [--seed 0] [--drawn DIR]
        [--real ../shared/data/real-digits] [--json PATH] [--figure PNG] [--speed]
"""

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from real_digits import (
    MARKERS,
    PAPERS,
    PENS,
    canvas_colours,
    encode,
    hsv,
    paint,
    photograph,
    render,
    strokes,
)

from cnnlab import CnnlabError
from cnnlab.data.datasets import load_dataset
from cnnlab.data.decode import load_image
from cnnlab.files import write_json
from cnnlab.inference.numbers import NotANumberError, read_number
from cnnlab.inference.predict import UNSURE_BELOW, Predictor
from cnnlab.inference.preprocess import preprocess
from cnnlab.tables import format_table

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = {1: 4, 2: 14, 3: 12, 4: 18, 5: 10, 6: 10, 7: 6, 8: 8, 9: 4, 10: 8, 11: 3, 12: 3}  # weights
PAD = (560, 280)  # the lab's pad for a number (static/lab.js PADS)
DECODE_SIDE = 2048  # photos are decoded at a reduced scale, at least this long (a small number keeps its pixels)


# ---- glyphs: one real digit as ink coverage in [0, 1], cropped to its ink -------------------------------


def cropped(coverage: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    rows, cols = np.nonzero(coverage > threshold)
    return coverage[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def sheared(coverage: np.ndarray, slant: float) -> np.ndarray:
    """The glyph leaning right by `slant` radians (the bottom stays, the top moves), cropped again."""
    height, width = coverage.shape
    shift = np.tan(slant) * height
    wide = int(np.ceil(width + abs(shift))) + 2
    image = Image.fromarray(coverage.astype(np.float32), "F")
    x0 = -shift if shift > 0 else 0.0
    moved = image.transform(
        (wide, height), Image.AFFINE, (1, np.tan(slant), x0 - np.tan(slant) * height, 0, 1, 0), Image.BILINEAR
    )
    return cropped(np.asarray(moved))


def bitmap_glyph(ink: np.ndarray, height: float, slant: float) -> np.ndarray:
    """A digit's own pixels (MNIST's grey strokes, or a real drawing) scaled to `height` and slanted."""
    ink = cropped(ink)
    size = (max(1, round(ink.shape[1] * height / ink.shape[0])), max(1, round(height)))
    scaled = np.asarray(Image.fromarray(ink.astype(np.float32), "F").resize(size, Image.BILINEAR))
    return sheared(np.clip(scaled, 0, 1), slant)


def stroked_glyph(digit: np.ndarray, height: float, slant: float, pen: float) -> np.ndarray:
    """An MNIST digit's skeleton re-drawn with a round pen `pen` px wide, `height` px tall, slanted."""
    points = strokes(digit)
    rows = points[:, [1, 3]]
    points = points * max(1.0, height - pen) / max(float(np.ptp(rows)), 1e-3)
    middle = (points[:, [1, 3]].min() + points[:, [1, 3]].max()) / 2
    points[:, [0, 2]] += (middle - points[:, [1, 3]]) * np.tan(slant)  # lean: the top moves right
    pad = pen / 2 + 2
    points -= np.tile(np.minimum(points[:, :2], points[:, 2:]).min(0) - pad, 2)
    size = (int(np.ceil(points[:, [0, 2]].max() + pad)) + 1, int(np.ceil(points[:, [1, 3]].max() + pad)) + 1)
    extent = max(size)
    return cropped(render(points / extent, size, (0, 0, extent), pen))


# ---- a writer, and a number as a writer puts it down ----------------------------------------------------


@dataclass(frozen=True)
class Writer:
    height: float  # px, the digits' mean height
    slant: float  # radians, leaning right
    gap: float  # mean gap between neighbouring digits' ink, in heights
    touch: float  # probability that two neighbours touch or overlap
    sizes: float  # spread of the digits' heights (fraction)
    wander: float  # spread of the baseline (fraction of the height)
    climb: float  # the baseline's slope


def writer(rng, height: float) -> Writer:
    return Writer(
        height=height,
        slant=rng.normal(0.08, 0.12),
        gap=rng.uniform(0.04, 0.45),
        touch=rng.choice([0.0, 0.1, 0.3]),
        sizes=rng.uniform(0.0, 0.12),
        wander=rng.uniform(0.0, 0.06),
        climb=rng.normal(0, 0.03),
    )


def placements(sizes: list[tuple[int, int]], rng, w: Writer) -> list[tuple[int, int]]:
    """Where the writer puts each glyph of (width, height): the left and top of its ink box, from (0, 0)."""
    placed, x = [], 0.0
    for k, (width, height) in enumerate(sizes):
        if k:
            gap = rng.uniform(-0.12, 0.0) if rng.random() < w.touch else max(0.02, rng.normal(w.gap, 0.07))
            x += gap * w.height
        bottom = w.height * (1 + rng.normal(0, w.wander)) - w.climb * x
        placed.append((round(x), round(bottom - height)))
        x += width
    return [(left - min(p[0] for p in placed), top - min(p[1] for p in placed)) for left, top in placed]


def compose(glyphs: list[np.ndarray], rng, w: Writer, margin: int) -> tuple[np.ndarray, list[tuple]]:
    """The glyphs side by side on one coverage image with `margin` px around; and each digit's ink box
    (left, top, right, bottom, exclusive)."""
    placed = placements([(g.shape[1], g.shape[0]) for g in glyphs], rng, w)
    width = max(left + g.shape[1] for (left, _), g in zip(placed, glyphs)) + 2 * margin
    height = max(top + g.shape[0] for (_, top), g in zip(placed, glyphs)) + 2 * margin
    coverage = np.zeros((height, width), dtype=np.float32)
    boxes = []
    for (left, top), glyph in zip(placed, glyphs):
        left, top = left + margin, top + margin
        region = coverage[top : top + glyph.shape[0], left : left + glyph.shape[1]]
        np.maximum(region, glyph, out=region)
        rows, cols = np.nonzero(glyph > 0.25)
        boxes.append((left + cols.min(), top + rows.min(), left + cols.max() + 1, top + rows.max() + 1))
    return coverage, boxes


# ---- the real digits a number is made of ---------------------------------------------------------------


class Sources:
    """MNIST test digits by label, each used once in a seeded order; the real drawings by folder."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, real: Path | None, rng):
        self.images = images
        self.pools = {str(d): list(rng.permutation(np.flatnonzero(labels == d))) for d in range(10)}
        self.drawings = real_drawings(real) if real else {}

    def mnist(self, digit: str) -> np.ndarray:
        pool = self.pools[digit]
        pool.append(pool.pop(0))  # round the pool: a digit is reused only after all others of its label
        return self.images[pool[-1]]


def real_drawings(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """{source folder: {digit: ink coverage}}: each drawing's ink against its background, alpha composited."""
    found: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted(folder.glob("*/[0-9].png")):
        image = Image.open(path).convert("RGBA")
        back = Image.new(
            "RGBA", image.size, (255, 255, 255, 255) if path.parent.name != "7eraflops" else (0, 0, 0, 255)
        )
        grey = np.asarray(Image.alpha_composite(back, image).convert("L"), dtype=np.float32)
        ink = np.abs(grey - np.median(grey)) / 255
        found.setdefault(path.parent.name, {})[path.stem] = cropped(ink / max(ink.max(), 1e-3), 0.2)
    return found


# ---- kinds: (digits, sources, rng) -> (encoded file, each digit's box in its pixels, or None) ------------


def _glyphs(digits, src, rng, w: Writer, pen=None, bitmap=False) -> list[np.ndarray]:
    glyphs = []
    for d in digits:
        height = w.height * (1 + np.clip(rng.normal(0, w.sizes), -0.25, 0.25))
        slant = w.slant + rng.normal(0, 0.04)
        glyph = (
            bitmap_glyph(src.mnist(d) / 255, height, slant)
            if bitmap
            else stroked_glyph(src.mnist(d), height, slant, pen)
        )
        glyphs.append(glyph)
    return glyphs


def _digit_height(digits: str, room: float, rng, low: float, high: float) -> float:
    """A height for the digits that lets the number fit `room` px of width (a digit and its gap ~0.9 of it)."""
    return min(rng.uniform(low, high), room / (0.9 * len(digits)))


def _on_canvas(coverage, boxes, size, rng, colours, free=0.0) -> tuple[np.ndarray, list]:
    """The number's coverage placed at random on a canvas of `size` (shrunk first if it does not fit), `free`
    of each side left empty (a photo's perspective must not crop it)."""
    room = (1 - 2 * free) * np.asarray(size)
    scale = min(1.0, 0.96 * room[0] / coverage.shape[1], 0.96 * room[1] / coverage.shape[0])
    if scale < 1:
        shape = (max(1, round(coverage.shape[1] * scale)), max(1, round(coverage.shape[0] * scale)))
        coverage = np.asarray(Image.fromarray(coverage, "F").resize(shape, Image.BILINEAR))
        boxes = [tuple(round(v * scale) for v in box) for box in boxes]
    left = int(rng.integers(free * size[0], size[0] - free * size[0] - coverage.shape[1] + 1))
    top = int(rng.integers(free * size[1], size[1] - free * size[1] - coverage.shape[0] + 1))
    page = np.zeros((size[1], size[0]), dtype=np.float32)
    page[top : top + coverage.shape[0], left : left + coverage.shape[1]] = coverage
    return paint(page, *colours), [(a + left, b + top, c + left, d + top) for a, b, c, d in boxes]


def lab_pad(digits, src, rng):
    """The lab's pad for a number: a 560x280 white canvas, a round #111 pen of 18 px (less for small digits)."""
    w = writer(rng, _digit_height(digits, PAD[0] - 40, rng, 110, 190))
    coverage, boxes = compose(_glyphs(digits, src, rng, w, pen=min(18.0, 0.12 * w.height)), rng, w, 4)
    pixels, boxes = _on_canvas(coverage, boxes, PAD, rng, ((17, 17, 17), (255, 255, 255)))
    return encode(pixels), boxes


def thin_canvas(digits, src, rng):
    """A paint program: 1-3 px mouse strokes, any colours, on a canvas a little larger than the number."""
    w = writer(rng, _digit_height(digits, 1400, rng, 30, 160))
    pen = 1.0 if rng.random() < 0.4 else rng.uniform(1.5, 3.0)
    coverage, boxes = compose(_glyphs(digits, src, rng, w, pen=pen), rng, w, 2)
    size = (int(coverage.shape[1] * rng.uniform(1.05, 1.6)) + 8, int(coverage.shape[0] * rng.uniform(1.1, 2.5)) + 8)
    pixels, boxes = _on_canvas(coverage, boxes, size, rng, canvas_colours(rng))
    return encode(pixels), boxes


def mnist_pixels(digits, src, rng):
    """MNIST's own grey strokes, 28 to 100 px high, side by side, either polarity."""
    w = writer(rng, _digit_height(digits, 1200, rng, 28, 100))
    coverage, boxes = compose(_glyphs(digits, src, rng, w, bitmap=True), rng, w, int(rng.integers(2, 12)))
    size = (coverage.shape[1] + int(rng.integers(0, 30)), coverage.shape[0] + int(rng.integers(0, 30)))
    pixels, boxes = _on_canvas(coverage, boxes, size, rng, canvas_colours(rng))
    return encode(pixels), boxes


def tiny(digits, src, rng):
    """A strip 28 px high with 16-22 px digits (MNIST's pixels), neighbours often touching; two digits in
    one 28x28 square a quarter of the time."""
    square = len(digits) == 2 and rng.random() < 0.5
    w = writer(rng, rng.uniform(14, 18) if square else rng.uniform(16, 22))
    w = Writer(**{**w.__dict__, "gap": min(w.gap, 0.15), "touch": max(w.touch, 0.3)})
    coverage, boxes = compose(_glyphs(digits, src, rng, w, bitmap=True), rng, w, 1)
    size = (28, 28) if square else (coverage.shape[1] + 4, 28)
    pixels, boxes = _on_canvas(coverage, boxes, size, rng, canvas_colours(rng))
    return encode(pixels), boxes


def _photo_page(digits, src, rng, ink, pen_share, texture=0.0, crease=False) -> bytes:
    """The number written on paper with a pen `pen_share` of the digits' height wide, photographed."""
    size = [(640, 480), (1024, 768), (1600, 1200), (1200, 1600), (768, 1024)][rng.integers(0, 5)]
    w = writer(rng, _digit_height(digits, rng.uniform(0.35, 0.9) * size[0], rng, 0.08 * size[1], 0.3 * size[1]))
    coverage, _ = compose(_glyphs(digits, src, rng, w, pen=max(1.0, pen_share * w.height)), rng, w, 2)
    page, _ = _on_canvas(coverage, [], size, rng, ((255, 255, 255), (0, 0, 0)), free=0.08)
    coverage = page[..., 0] / 255
    if texture:  # graphite left on the paper's grain
        grain = Image.fromarray(rng.uniform(0, 255, (size[1] // 2 + 1, size[0] // 2 + 1)).astype(np.uint8))
        grain = np.asarray(grain.resize(size, Image.BILINEAR), dtype=np.float32)[: size[1], : size[0]] / 255
        coverage = coverage * (1 - texture * grain)
    return photograph(paint(coverage, ink, PAPERS[rng.choice(list(PAPERS))]), rng, crease)


def photo_pen(digits, src, rng):
    return _photo_page(digits, src, rng, PENS[rng.choice(list(PENS))], rng.uniform(0.03, 0.07)), None


def photo_marker(digits, src, rng):
    return _photo_page(digits, src, rng, MARKERS[rng.choice(list(MARKERS))], rng.uniform(0.08, 0.15)), None


def photo_pencil(digits, src, rng):
    grey = int(rng.integers(70, 130))
    return _photo_page(digits, src, rng, (grey,) * 3, rng.uniform(0.03, 0.06), texture=rng.uniform(0.2, 0.5)), None


def photo_crease(digits, src, rng):
    return _photo_page(digits, src, rng, PENS["black"], rng.choice([0.04, 0.1]), crease=True), None


def coloured(digits, src, rng):
    """Coloured ink on coloured paper, scanned."""
    while True:
        ink = hsv(rng.uniform(0, 1), rng.uniform(0.6, 1.0), rng.uniform(0.35, 0.8))
        paper = hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.4), rng.uniform(0.85, 1.0))
        if max(abs(a - b) for a, b in zip(ink, paper)) >= 90:
            break
    w = writer(rng, _digit_height(digits, 1000, rng, 40, 150))
    coverage, boxes = compose(_glyphs(digits, src, rng, w, pen=max(1.0, rng.uniform(0.03, 0.12) * w.height)), rng, w, 4)
    size = (int(coverage.shape[1] * rng.uniform(1.1, 1.5)), int(coverage.shape[0] * rng.uniform(1.3, 3)))
    pixels, boxes = _on_canvas(coverage, boxes, size, rng, (ink, paper))
    pixels = pixels + rng.normal(0, 2.0, pixels.shape)
    return encode(pixels, "JPEG", quality=int(rng.integers(70, 95))), boxes


def drawings(digits, src, rng):
    """The 20 real drawings of ../shared/data/real-digits (one folder per number), in their own colours."""
    name = rng.choice(sorted(src.drawings))
    w = writer(rng, _digit_height(digits, 1500, rng, 60, 200))
    glyphs = [
        bitmap_glyph(src.drawings[name][d], w.height * (1 + rng.normal(0, w.sizes)), rng.normal(0, 0.04))
        for d in digits
    ]
    coverage, boxes = compose(glyphs, rng, w, 10)
    size = (coverage.shape[1] + int(rng.integers(20, 200)), coverage.shape[0] + int(rng.integers(20, 200)))
    colours = ((255, 255, 255), (0, 0, 0)) if name == "7eraflops" else ((0, 0, 0), (255, 255, 255))
    pixels, boxes = _on_canvas(coverage, boxes, size, rng, colours)
    return encode(pixels), boxes


KINDS = {  # name -> (digits, sources, rng) -> (encoded file, boxes or None)
    "lab pad, 560x280": lab_pad,
    "canvas, 1-3 px stroke": thin_canvas,
    "MNIST pixels": mnist_pixels,
    "28 px high": tiny,
    "photo, pen": photo_pen,
    "photo, marker": photo_marker,
    "photo, pencil": photo_pencil,
    "photo, creased paper": photo_crease,
    "coloured ink and paper": coloured,
    "real drawings (real-digits)": drawings,
}


# ---- not a number: what should be refused, never read as one --------------------------------------------

WORDS = "the quick brown fox jumps over lazy dog hello world cnnlab digits lecture kernel stride padding".split()


def two_lines(src, rng):
    """Two numbers, one above the other, on a canvas or photographed."""
    lines = []
    for _ in range(2):
        digits = "".join(rng.choice(list("0123456789"), int(rng.integers(2, 6))))
        w = writer(rng, rng.uniform(60, 120))
        lines.append(compose(_glyphs(digits, src, rng, w, pen=max(2.0, 0.08 * w.height)), rng, w, 4)[0])
    gap = int(rng.uniform(0.1, 0.6) * lines[0].shape[0])
    width = max(line.shape[1] for line in lines)
    stacked = np.zeros((lines[0].shape[0] + gap + lines[1].shape[0], width), dtype=np.float32)
    stacked[: lines[0].shape[0], : lines[0].shape[1]] = lines[0]
    stacked[lines[0].shape[0] + gap :, : lines[1].shape[1]] = lines[1]
    size = (width + 60, stacked.shape[0] + 60)
    pixels, _ = _on_canvas(stacked, [], size, rng, ((20, 20, 20), PAPERS[rng.choice(list(PAPERS))]))
    return photograph(pixels, rng) if rng.random() < 0.5 else encode(pixels)


def doodle(src, rng):
    """A drawing: a house, a face, a spiral, a star, a scribble or a cloud of loops, with a pen or a brush."""
    size = (int(rng.integers(300, 900)), int(rng.integers(250, 600)))
    image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(image)
    pen = int(rng.integers(2, 18))
    s, (cx, cy) = min(size) * rng.uniform(0.3, 0.45), (size[0] / 2, size[1] / 2)
    kind = rng.integers(0, 6)
    if kind == 0:  # a house
        draw.rectangle((cx - s, cy - s * 0.3, cx + s, cy + s), outline=255, width=pen)
        draw.line([(cx - s, cy - s * 0.3), (cx, cy - s), (cx + s, cy - s * 0.3)], fill=255, width=pen)
        draw.rectangle((cx - s * 0.2, cy + s * 0.3, cx + s * 0.2, cy + s), outline=255, width=pen)
    elif kind == 1:  # a face
        draw.ellipse((cx - s, cy - s, cx + s, cy + s), outline=255, width=pen)
        for dx in (-0.4, 0.4):
            draw.ellipse((cx + dx * s - 6, cy - 0.3 * s - 6, cx + dx * s + 6, cy - 0.3 * s + 6), fill=255)
        draw.arc((cx - 0.5 * s, cy - 0.2 * s, cx + 0.5 * s, cy + 0.5 * s), 20, 160, fill=255, width=pen)
    elif kind == 2:  # a spiral
        t = np.linspace(0, 6 * np.pi, 300)
        draw.line(
            list(zip(cx + s * t / (6 * np.pi) * np.cos(t), cy + s * t / (6 * np.pi) * np.sin(t))), fill=255, width=pen
        )
    elif kind == 3:  # a star
        t = np.linspace(0, 4 * np.pi, 6)
        draw.line(list(zip(cx + s * np.sin(t), cy - s * np.cos(t))), fill=255, width=pen)
    else:  # a scribble: a random smooth curve
        points = np.cumsum(rng.normal(0, s * 0.25, (40, 2)), axis=0)
        points = (points - points.mean(0)) / max(np.ptp(points), 1) * 1.6 * s + (cx, cy)
        draw.line([tuple(p) for p in points], fill=255, width=pen, joint="curve")
    pixels = paint(np.asarray(image, dtype=np.float32) / 255, *canvas_colours(rng))
    return photograph(pixels, rng) if rng.random() < 0.3 else encode(pixels)


def text(src, rng):
    """Printed words: one line or a paragraph, in a DejaVu font."""
    fonts = sorted(Path("/usr/share/fonts").rglob("DejaVu*.ttf"))
    font = ImageFont.truetype(str(fonts[rng.integers(0, len(fonts))]), int(rng.integers(24, 70)))
    lines = [" ".join(rng.choice(WORDS, int(rng.integers(1, 5)))) for _ in range(int(rng.integers(1, 4)))]
    image = Image.new("L", (1400, 120 + 100 * len(lines)), 0)
    ImageDraw.Draw(image).multiline_text((30, 30), "\n".join(lines), fill=255, font=font, spacing=20)
    pixels = paint(cropped(np.asarray(image, dtype=np.float32) / 255), (20, 20, 20), (250, 250, 250))
    pixels = np.pad(pixels, ((30, 30), (30, 30), (0, 0)), constant_values=250)
    return photograph(pixels, rng) if rng.random() < 0.3 else encode(pixels)


def dust(src, rng):
    """500 specks of dust on a white page, 1-3 px."""
    page = np.full((600, 800), 240.0)
    for _ in range(500):
        y, x = rng.integers(0, 597), rng.integers(0, 797)
        page[y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = rng.uniform(20, 120)
    return encode(np.dstack([page] * 3))


NOT_NUMBERS = {"two lines": two_lines, "a drawing": doodle, "printed text": text, "500 specks of dust": dust}


# ---- reading and scoring -------------------------------------------------------------------------------


def make_examples(src: Sources, kinds, per_kind: int, seed: int) -> list[dict]:
    """{kind, digits ("" for what is not a number), data, boxes} for `per_kind` images of each kind."""
    lengths, weights = list(LENGTHS), np.array(list(LENGTHS.values()), dtype=float)
    examples = []
    for k, kind in enumerate(kinds):
        rng = np.random.default_rng([seed, k])
        for _ in range(per_kind):
            if kind in NOT_NUMBERS:
                examples.append({"kind": kind, "digits": "", "data": NOT_NUMBERS[kind](src, rng), "boxes": None})
                continue
            digits = "".join(rng.choice(list("0123456789"), rng.choice(lengths, p=weights / weights.sum())))
            data, boxes = KINDS[kind](digits, src, rng)
            examples.append({"kind": kind, "digits": digits, "data": data, "boxes": boxes})
    for i, example in enumerate(examples):
        example["name"] = f"{example['kind']} #{i}"
    return examples


def read(predictor, example) -> dict:
    """What the reader answers: {"number", "unsure", "confident_one"} or {"refused"} or {"error"}."""
    try:
        image = load_image(example["data"], example["name"], max_side=DECODE_SIDE)
        reading = read_number(image, classifier=predictor, unsure_below=UNSURE_BELOW, name=example["name"])
    except NotANumberError as e:
        return {"refused": str(e)}
    except CnnlabError as e:
        return {"error": str(e)}
    return {"number": reading.number, "unsure": reading.unsure, "boxes": [d.box for d in reading.digits]}


def digits_right(truth: str, read: str) -> int:
    """The digits in place in an optimal alignment (Levenshtein) of what was read with the truth."""
    cost = np.arange(len(read) + 1)[None].repeat(len(truth) + 1, 0) * 1.0
    cost[:, 0] = np.arange(len(truth) + 1)
    matches = np.zeros_like(cost)
    for i in range(1, len(truth) + 1):
        for j in range(1, len(read) + 1):
            same = truth[i - 1] == read[j - 1]
            options = [
                (cost[i - 1, j - 1] + (not same), -(matches[i - 1, j - 1] + same)),
                (cost[i - 1, j] + 1, -matches[i - 1, j]),
                (cost[i, j - 1] + 1, -matches[i, j - 1]),
            ]
            best = min(options)
            cost[i, j], matches[i, j] = best[0], -best[1]
    return int(matches[-1, -1])


def score(examples, results) -> dict:
    """Exact numbers, digits right (of the longer of truth and reading), refusals, and the number answers
    that were wrong but stated without "unsure"; for what is not a number, the share refused."""
    numbers = [(e, r) for e, r in zip(examples, results) if e["digits"]]
    if not numbers:
        return {"images": len(results), "refused": sum("number" not in r for r in results)}
    answered = [(e, r) for e, r in numbers if "number" in r]
    return {
        "images": len(numbers),
        "exact": sum(r.get("number") == e["digits"] for e, r in numbers),
        "digits": sum(len(e["digits"]) for e, _ in numbers),
        "digits_right": sum(digits_right(e["digits"], r.get("number", "")) for e, r in numbers),
        "digits_read": sum(max(len(e["digits"]), len(r.get("number", ""))) for e, r in numbers),
        "refused": len(numbers) - len(answered),
        "unsure": sum(r["unsure"] for _, r in answered),
        "wrong_stated": sum(r["number"] != e["digits"] and not r["unsure"] for e, r in answered),
        "one_for_many": sum(len(e["digits"]) > 1 and len(r["number"]) == 1 and not r["unsure"] for e, r in answered),
    }


def row(kind: str, s: dict) -> list[str]:
    if "exact" not in s:
        return [
            f"{kind} ({s['images']})",
            "",
            "",
            "",
            "",
            "",
            f"{100 * s['refused'] / max(s['images'], 1):.0f}% refused",
        ]
    pct = lambda a, b: f"{100 * a / max(b, 1):.1f}%"
    return [
        f"{kind} ({s['images']})",
        pct(s["exact"], s["images"]),
        pct(s["digits_right"], s["digits_read"]),
        str(s["refused"]),
        pct(s["unsure"], s["images"]),
        str(s["wrong_stated"]),
        str(s["one_for_many"]),
    ]


def drawn_examples(folder: Path) -> list[dict]:
    """Numbers drawn in Chromium by benchmarks/draw_numbers.py: DIGITS-N.png, DIGITS the number drawn
    (the boxes drawn are in DIGITS-N.json)."""
    return [
        {
            "kind": "drawn in Chromium",
            "digits": p.stem.split("-")[0],
            "data": p.read_bytes(),
            "boxes": None,
            "name": p.name,
        }
        for p in sorted(folder.glob("*.png"))
    ]


def speed_inputs(src: Sources, rng) -> dict[str, bytes]:
    """ "2026" written apart (speed should not hang on a hard split), photographed at 12 megapixels
    (4032x3024, pen on paper) and drawn on the lab's pad."""
    w = Writer(height=380.0, slant=0.1, gap=0.3, touch=0.0, sizes=0.05, wander=0.02, climb=0.0)
    coverage, _ = compose(_glyphs("2026", src, rng, w, pen=22.0), rng, w, 4)
    page, _ = _on_canvas(coverage, [], (4032, 3024), rng, ((255, 255, 255), (0, 0, 0)), free=0.08)
    photo = photograph(paint(page[..., 0] / 255, PENS["blue ballpoint"], PAPERS["white"]), rng)
    w = Writer(height=120.0, slant=0.1, gap=0.3, touch=0.0, sizes=0.05, wander=0.02, climb=0.0)
    coverage, boxes = compose(_glyphs("2026", src, rng, w, pen=18.0), rng, w, 4)
    pad, _ = _on_canvas(coverage, boxes, PAD, rng, ((17, 17, 17), (255, 255, 255)))
    return {"4-digit 12 MP photo (4032x3024 JPEG)": photo, "4-digit lab pad (560x280 PNG)": encode(pad)}


def timings(predictor, inputs: dict[str, bytes], repeats: int = 15) -> list[list[str]]:
    """Median ms of decode alone, of decode + read, and of the single-digit path on the same file (decode +
    `preprocess` + the model: what one digit cost before numbers), measured side by side, one after the other."""
    rows = []
    for name, data in inputs.items():
        decode, total, single = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            image = load_image(data, name, max_side=DECODE_SIDE)
            decoded = time.perf_counter()
            try:
                number = read_number(image, classifier=predictor, unsure_below=UNSURE_BELOW, name=name).number
            except CnnlabError:  # a refusal takes its time too
                number = "refused"
            decode.append(decoded - start)
            total.append(time.perf_counter() - start)
            start = time.perf_counter()
            predictor.top_k(preprocess(load_image(data, name, max_side=DECODE_SIDE), name), 3)
            single.append(time.perf_counter() - start)
        read, one = statistics.median(total), statistics.median(single)
        rows.append(
            [name, f"{1000 * statistics.median(decode):.1f}", f"{1000 * read:.1f}", f"{1000 * one:.1f}"]
            + [f"{read / one:.2f}", number]
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument(
        "--data-dir",
        default=str(ROOT.parent / "shared" / "data" / "mnist"),
        help="MNIST, whose TEST digits make the numbers (default: ../shared/data/mnist)",
    )
    parser.add_argument(
        "--real",
        metavar="DIR",
        default=str(ROOT.parent / "shared" / "data" / "real-digits"),
        help="the real drawings numbers are also made of (default: ../shared/data/real-digits)",
    )
    parser.add_argument("--drawn", metavar="DIR", help="also read the numbers drawn in Chromium in DIR")
    parser.add_argument("--per-kind", type=int, default=60, metavar="N", help="images per kind (default: 60)")
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    parser.add_argument("--kinds", help="kinds to generate, separated by semicolons (default: all)")
    parser.add_argument("--speed", action="store_true", help="also time a 12 MP photo and the lab's pad")
    parser.add_argument("--json", metavar="PATH", help="save the results")
    args = parser.parse_args(argv)
    dataset = load_dataset("mnist", data_dir=args.data_dir, allow_download=False)
    real = Path(args.real) if Path(args.real).is_dir() else None
    src = Sources(
        dataset.test_images[:, 0].numpy(), dataset.test_labels.numpy(), real, np.random.default_rng(args.seed)
    )
    kinds = [k for k in [*KINDS, *NOT_NUMBERS] if real or k != "real drawings (real-digits)"]
    kinds = [k for k in kinds if not args.kinds or k in args.kinds.split(";")]
    start = time.perf_counter()
    examples = make_examples(src, kinds, args.per_kind, args.seed)
    examples += drawn_examples(Path(args.drawn)) if args.drawn else []
    print(f"{len(examples)} images generated in {time.perf_counter() - start:.0f} s")
    summary: dict = {}
    for run in args.runs:
        predictor = Predictor(run)
        start = time.perf_counter()
        results = [read(predictor, e) for e in examples]
        seconds = time.perf_counter() - start
        groups = list(dict.fromkeys(e["kind"] for e in examples))
        numbers = [i for i, e in enumerate(examples) if e["digits"]]
        scores = {
            kind: score(*zip(*[(e, r) for e, r in zip(examples, results) if e["kind"] == kind])) for kind in groups
        }
        scores["all numbers"] = score([examples[i] for i in numbers], [results[i] for i in numbers])
        summary[run] = scores
        print(f"\n{run}: {len(examples)} images read in {seconds:.0f} s")
        header = ["kind (images)", "exact", "digits", "refused", "unsure", "wrong, stated", "one digit for several"]
        print(format_table(header, [row(kind, s) for kind, s in scores.items()]))
        print_misses(examples, results)
        if args.speed:
            print("\nspeed (median ms; decode, then decode + read; 2-core machine, shared):")
            rows = timings(predictor, speed_inputs(src, np.random.default_rng(args.seed)))
            header = ["input", "decode", "decode + read", "one digit's path", "read / one digit", "read as"]
            print(format_table(header, rows))
            summary[run]["speed_ms"] = {r[0]: float(r[2]) for r in rows}
            summary[run]["speed_ratio_to_one_digit"] = {r[0]: float(r[4]) for r in rows}
    if args.json:
        write_json(args.json, {"per_kind": args.per_kind, "seed": args.seed, "results": summary})
    return 0


def _answer(result: dict) -> str:
    """A reading as the miss lists show it: the number, "?" when unsure, or refused / error."""
    if "number" in result:
        return result["number"] + ("?" if result["unsure"] else "")
    return "refused" if "refused" in result else "error"


def print_misses(examples, results, per_kind: int = 12) -> None:
    for kind in dict.fromkeys(e["kind"] for e in examples):
        misses = [
            f"{e['digits'] or '-'}->{_answer(r)}"
            for e, r in zip(examples, results)
            if e["kind"] == kind and r.get("number", "") != e["digits"]
        ]
        if misses and examples[[e["kind"] for e in examples].index(kind)]["digits"]:
            print(f"  {kind}: " + ", ".join(misses[:per_kind]) + (" ..." if len(misses) > per_kind else ""))
        elif misses:
            print(f"  {kind}: read as " + ", ".join(m.split("->")[1] for m in misses[:per_kind]))


if __name__ == "__main__":
    sys.exit(main())
