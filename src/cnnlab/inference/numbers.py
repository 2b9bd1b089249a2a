"""Reading a number: one line of 1 to 12 handwritten digits, each read by the single-digit classifier.

The model stays a single-digit classifier; this is a pipeline around it:

1. The ink, found exactly as for one digit (`preprocess.page_ink`): paper, shadows and noise left out.
2. Marks: the ink's connected pieces. Specks and ink away from the line are left out; ink that is not
   one line (two lines, marks scattered over the page) is reported as such (`NotANumberError`).
3. Over-segmentation: a mark wider than a digit is cut at the narrow places of its column profile, so
   two touching digits become pieces; a digit drawn in two strokes is two marks.
4. The segmentation: a digit is a run of neighbouring pieces. Every plausible run is classified as a
   single digit is (`preprocess.digit_input`, one batch), and the split chosen is the one that maximises
   the product of the classifier's probabilities, with a penalty for implausible widths and heights
   (Casey and Lecolinet's "recognition-based segmentation", the lattice of Fujisawa et al. 1992).
5. The answer: the number as a string, each digit's top classes and its box in the image's pixels,
   and what is unsure: a digit under the threshold, or a split that another split nearly matches.
   One digit is answered exactly as `preprocess` and the classifier answer it.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from cnnlab.data.decode import ImageError
from cnnlab.inference.preprocess import (
    MASK_FRACTION,
    WORK_SIDE,
    PageInk,
    clusters,
    digit_input,
    mnist_like,
    page_ink,
    single_digit,
    stroke_width,
)

MAX_DIGITS = 12
MAX_MARKS = 60  # more marks than this on the line is text or scattered dirt, never a number
MAX_ASPECT = 40  # an image longer than this many times its width holds no readable line of digits
SPECK = 0.2  # a mark less than this share of the line's height, both ways, is a speck (or a dot of noise)
SMALL_SIDE = 64  # an image shorter than this is enlarged to it before its ink is split into digits
FINE_HEIGHT, FINE_TARGET = 48, 64  # a line lower than 48 working pixels is found again, 64 high if it can be
THIN_STROKE = 2.5  # px: the breaks in strokes thinner than this are bridged when the ink is split into marks
BORDER, EDGE_LENGTH, EDGE_RATIO = 0.08, 0.4, 2.5  # a page's edge: at a border, long (`_along_border`)
WORD_GAP, MAX_GAP, GROUP_SHARE = 0.8, 1.5, 0.3  # line heights between marks not of one number (`_apart`)
BIG = 0.5  # marks at least this share of the tallest make the line (its height, its band)
STACKED = 0.15  # ... or lie one above the other this share of the shorter apart, their columns shared
LINE_OVERLAP = 0.3  # two marks share a line when their rows overlap by this share of the shorter one
BAND_MARGIN = 0.35  # ink this share of the line's height above or below its band still belongs to it (a 5's bar)
FRAGMENT = 0.6  # a piece shorter than this share of the line's height is part of a digit, not one
MAX_PIECES = 4  # a digit is at most this many neighbouring pieces
PEN_LIFT = 0.2  # two marks this share of the line's height apart or closer may be one digit's strokes ...
FRAGMENT_REACH = 0.5  # ... and a fragment (a 5's bar) may be this far from the rest of its digit
JOIN_COST = 1.5  # log-probability lost when two full-height marks are read as one digit
SKIP_COST = 2.0  # log-probability lost when a fragment is left out (a dot, a speck beside the line)
# MNIST's widths: the 1st and 99th percentiles of width / height of the ink's box per class, over the 60,000
# training digits (ink above 30% of white). A candidate wider or narrower than that for a class loses
# ASPECT_PENALTY per unit of log(width / that width), for that class: two touching digits are not one wide
# digit, and a 1 with a long flag is narrower than any 7.
ASPECT_RANGE = {
    "0": (0.55, 1.43),
    "1": (0.15, 0.95),
    "2": (0.55, 1.67),
    "3": (0.45, 1.25),
    "4": (0.5, 1.25),
    "5": (0.5, 1.67),
    "6": (0.4, 1.11),
    "7": (0.45, 1.25),
    "8": (0.45, 1.25),
    "9": (0.4, 1.05),
}
ASPECT_PENALTY = 4.0
DIGIT_WIDTH = 0.75  # a digit's width, as a share of its height, when the line shows none apart
MAX_WIDTH = 1.5  # a digit wider than this many times the line's digit width is implausible ...
WIDTH_PENALTY = 6.0  # ... and loses this much log-probability per digit width above it
MIN_HEIGHT = 0.75  # a digit shorter than this share of the line's height is implausible ...
HEIGHT_PENALTY = 10.0  # ... and loses this much log-probability per line-height below it
CUT_MIN_WIDTH = 0.8  # marks wider than this share of the line's height are cut into pieces ...
CUT_SPACING = 0.2  # ... at narrow places of the slanted column profile at least this share apart
CUT_COST = 1.5  # log-probability lost by a cut for each stroke it crosses beyond one (a 0 cut in half: two)
WIDE = 0.9  # a mark this many line heights wide is cut at its narrowest place even when that is not narrow
CUT_DEPTH = 0.8  # a column narrower than this share of the mark's median column is a place to cut
UNLIKE_COST = 5.0  # log-probability lost by a candidate with more stroke or holes than any MNIST digit
SPLIT_MARGIN = math.log(2)  # another split within this much log-probability of the best makes its digits unsure
NOT_DIGITS_SHARE = 0.5  # when more than this share of 3 or more digits are unsure, the ink is no number


class NotANumberError(ImageError):
    """Ink that is not one line of digits: two lines, a drawing, text, dirt."""


class Classifier(Protocol):
    """What the reader needs of a model (`predict.Predictor` is one)."""

    @property
    def classes(self) -> Sequence[str]: ...

    def probabilities(self, inputs: np.ndarray) -> Any: ...  # (N, 28, 28) uint8 -> (N, classes): a tensor or an array


@dataclass(frozen=True)
class Digit:
    box: tuple[int, int, int, int]  # left, top, right, bottom (exclusive) in the image's pixels
    top: list[dict]  # the most probable classes: {"class", "index", "probability"}, as Predictor.top_k
    unsure: bool  # the top class's probability is under the threshold
    split_unsure: bool  # another split of the ink into digits is nearly as probable
    input: np.ndarray  # (28, 28) uint8: what the model saw


@dataclass(frozen=True)
class Reading:
    digits: list[Digit]  # left to right

    @property
    def number(self) -> str:
        """The digits' top classes, left to right, leading zeros kept."""
        return "".join(d.top[0]["class"] for d in self.digits)

    @property
    def unsure(self) -> bool:
        return any(d.unsure or d.split_unsure for d in self.digits)

    def as_json(self, scale: float = 1.0) -> dict:
        """The reading as `cnnlab predict --json` and POST /predict answer it: "number" (a string, "7" for one
        digit), "unsure" (any digit unsure) and "digits", each with its box in the image's pixels (`scale` of
        them per pixel read: an image decoded reduced), its top classes, and whether it is unsure: its top
        probability under the threshold, or ("split_unsure") another split of the ink nearly as probable."""
        return {
            "number": self.number,
            "unsure": self.unsure,
            "digits": [
                {
                    "box": [round(v * scale) for v in d.box],
                    "top": d.top,
                    "unsure": d.unsure or d.split_unsure,
                    "split_unsure": d.split_unsure,
                }
                for d in self.digits
            ],
        }


@dataclass(frozen=True)
class _Pieces:
    """The line's ink cut into pieces, ordered left to right."""

    labels: np.ndarray  # (H, W) int32: 1..n the piece of each ink pixel, 0 elsewhere
    boxes: np.ndarray  # (n + 1, 4) int: left, top, right, bottom (exclusive) of each label (row 0 unused)
    marks: np.ndarray  # (n + 1,) int: the connected mark each piece was cut from
    order: np.ndarray  # the labels, left to right
    height: float  # the line's height in working pixels
    width: float  # a digit's width on this line, in working pixels (`_digit_width`)
    cuts: dict[tuple[int, int], int]  # (left piece, right piece) of each cut -> the strokes it crosses


def read_number(
    image: Image.Image, *, classifier: Classifier, unsure_below: float, name: str = "image", top_k: int = 3
) -> Reading:
    """Read the line of digits in `image`. Raises ImageError when there is no ink, NotANumberError when the
    ink is not one line of at most MAX_DIGITS digits."""
    if min(image.size) == 0:
        raise ImageError(f"{name}: an empty image ({image.width}x{image.height} pixels)")
    if max(image.size) > MAX_ASPECT * min(image.size):
        raise NotANumberError(
            f"{name}: {image.width:,}x{image.height:,} pixels is too long and thin for a line of digits "
            f"(at most {MAX_ASPECT}:1)"
        )
    page, pieces, scale, origin = _line_ink(image, name)
    costs, inputs = _candidates(page, pieces)
    runs = list(costs)
    probabilities = np.stack(
        [_weighted(p, classifier.classes, _aspect(seen)) for p, seen in zip(_probabilities(classifier, inputs), inputs)]
    )
    scores = {run: _score(probabilities[k], pieces, run) - costs[run] for k, run in enumerate(runs)}
    path, ambiguous = _choose(pieces, scores, {run: seen for run, seen in zip(runs, inputs)}, name)
    answer = lambda seen, p, box, split_unsure: Digit(
        box, _top(p, classifier.classes, top_k), bool(p.max() < unsure_below), split_unsure, seen
    )
    if len(path) == 1:  # one digit: the single-digit answer, unchanged (`preprocess`)
        longest = max(image.size)  # found as a single digit is (no crop, enlargement, or other reduction)?
        same = (
            origin == (0, 0)
            and scale == page.scale
            and -(-longest // WORK_SIDE) == -(-longest // _work_side(image.size))
        )
        page = page if same else page_ink(image, name)
        ink = single_digit(page)
        seen = digit_input(ink)
        box = _ink_box(ink, page.scale)
        return Reading([answer(seen, _probabilities(classifier, [seen])[0], box, path[0] in ambiguous)])
    digits = []
    for run in path:
        k = runs.index(run)
        box = _scaled(_union(pieces.boxes[pieces.order[run[0] : run[1]]]), scale, origin)
        digits.append(answer(inputs[k], probabilities[k] / probabilities[k].sum(), box, run in ambiguous))
    if len(digits) >= 3 and sum(d.unsure for d in digits) > NOT_DIGITS_SHARE * len(digits):
        raise NotANumberError(f"{name}: ink that does not read as digits (a drawing, letters or text?)")
    return Reading(digits)


def _choose(pieces: "_Pieces", scores: dict, inputs: dict, name: str) -> tuple[list, set]:
    """The best split (`_best_split`), a candidate whose input has more stroke or holes than any MNIST
    digit (`mnist_like`) losing UNLIKE_COST; checked on the best split's digits only, then chosen again,
    until its digits pass. NotANumberError when the best split keeps such a digit, or too many digits."""
    skips = {(i, i + 1): -SKIP_COST for i, label in enumerate(pieces.order) if _fragment(pieces, label)}
    unlike: set[Run] = set()
    checked: set[Run] = set()
    while True:
        penalised = {run: score - UNLIKE_COST * (run in unlike) for run, score in scores.items()}
        path, ambiguous = _best_split(penalised, skips, len(pieces.order))
        fresh = [run for run in path if run not in checked]
        checked.update(fresh)
        found = {run for run in fresh if not mnist_like(inputs[run])}
        if not found:
            break
        unlike |= found
    if unlike & set(path):
        raise NotANumberError(f"{name}: ink that does not look like digits (a drawing or a scribble?)")
    if len(path) > MAX_DIGITS:
        raise NotANumberError(f"{name}: {len(path)} marks in a row: more than {MAX_DIGITS} digits, or text")
    return path, ambiguous


def _line_ink(image: Image.Image, name: str) -> tuple[PageInk, "_Pieces", float, tuple[int, int]]:
    """The page's ink (found as for a single digit) and its pieces, and how boxes in their working pixels
    map to the image's (scale and origin). A small image (under SMALL_SIDE pixels) is enlarged first, so
    that cuts between its touching digits fall between pixels of the original; a line under FINE_HEIGHT
    working pixels high in an image that has more is found again in the image cropped around it, reduced
    less (a small number in a large photo, a long line)."""
    enlarged = -(-SMALL_SIDE // max(1, min(image.size))) if min(image.size) < SMALL_SIDE else 1
    if enlarged > 1:
        image = image.resize((image.width * enlarged, image.height * enlarged), Image.Resampling.BICUBIC)
    page = page_ink(image, name, work_side=_work_side(image.size))
    pieces = _pieces(page, name)
    if pieces.height >= FINE_HEIGHT or page.scale <= 1:
        return page, pieces, page.scale / enlarged, (0, 0)
    left, top, right, bottom = _union(pieces.boxes[1:])
    margin = pieces.height
    box = _scaled((int(left - margin), int(top - margin), int(right + margin), int(bottom + margin)), page.scale)
    box = (max(0, box[0]), max(0, box[1]), min(image.width, box[2]), min(image.height, box[3]))
    crop = image.crop(box)
    side = round(max(crop.size) * FINE_TARGET / (pieces.height * page.scale))  # the line FINE_TARGET high
    fine = page_ink(crop, name, work_side=int(np.clip(side, WORK_SIDE, 2 * WORK_SIDE)))
    return fine, _pieces(fine, name), fine.scale / enlarged, (box[0] // enlarged, box[1] // enlarged)


def _work_side(size: tuple[int, int]) -> int:
    """The longest side a number's ink is found at: as many pixels as a single digit's WORK_SIDE square at
    most (the same time and memory), so that a long line is reduced less and its thin strokes stay whole."""
    return int(np.clip(WORK_SIDE * math.sqrt(max(size) / max(min(size), 1)), WORK_SIDE, 2 * WORK_SIDE))


def _probabilities(classifier: Classifier, inputs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(classifier.probabilities(np.stack(inputs)), dtype=np.float64)


def _top(probabilities: np.ndarray, classes: Sequence[str], k: int) -> list[dict]:
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class": classes[i], "index": int(i), "probability": round(float(probabilities[i]), 6)} for i in best]


def _boxes(labels: np.ndarray, count: int) -> np.ndarray:
    """(count + 1, 4): left, top, right, bottom (exclusive) of each label 1..count; row 0 unused."""
    ys, xs = np.nonzero(labels)
    found = labels[ys, xs]
    boxes = np.zeros((count + 1, 4), dtype=np.int64)
    boxes[:, :2] = np.iinfo(np.int64).max
    np.minimum.at(boxes[:, 0], found, xs)
    np.minimum.at(boxes[:, 1], found, ys)
    np.maximum.at(boxes[:, 2], found, xs + 1)
    np.maximum.at(boxes[:, 3], found, ys + 1)
    return boxes


def _pieces(page: PageInk, name: str) -> _Pieces:
    """The marks of the line (`_line`), wide ones cut along the writing's slant (`_cut`), as pieces ordered
    left to right."""
    thin = stroke_width(page.strokes.astype(np.float32)) < THIN_STROKE
    marks = clusters(page.strokes, reach=2 if thin else 1)  # a thin stroke's breaks are bridged
    count = int(marks.max())
    mark_boxes = _boxes(marks, count)
    mass = np.bincount(marks.ravel(), weights=page.ink.ravel(), minlength=count + 1)
    kept, height = _line(mark_boxes, mass, page.ink.shape, name)
    labels = np.where(kept[marks], marks, 0)
    if (_inside_loops(labels, count) & kept).any():  # a speck in a 0 is no longer kept
        raise NotANumberError(f"{name}: ink inside a closed loop: a drawing, not a line of digits")
    slope = _slope(labels, kept & (mark_boxes[:, 3] - mark_boxes[:, 1] >= FRAGMENT * height))
    mark_of, cuts = list(range(count + 1)), {}  # the mark each piece is cut from; cuts -> strokes crossed
    for mark in np.flatnonzero(kept & (mark_boxes[:, 2] - mark_boxes[:, 0] > CUT_MIN_WIDTH * height)):
        left, top, right, bottom = mark_boxes[mark]
        window = labels[top:bottom, left:right]
        pieces, crossings = _cut(window == mark, slope, height)
        previous = int(mark)
        for piece, crossed in zip(pieces[1:], crossings):
            cuts[(previous, len(mark_of))] = crossed
            previous = len(mark_of)
            window[piece] = previous
            mark_of.append(int(mark))
    present = np.zeros(len(mark_of), dtype=np.int64)
    present[labels.ravel()] = 1
    present[0] = 0
    number = np.cumsum(present) * present  # the pieces numbered 1..n again, 0 where there is no ink
    labels = number[labels].astype(np.int32)
    boxes = _boxes(labels, int(number.max()))
    marks_of = np.zeros(len(boxes), dtype=np.int64)
    marks_of[number[present > 0]] = np.asarray(mark_of)[present > 0]
    order = 1 + np.argsort((boxes[1:, 0] + boxes[1:, 2]) / 2, kind="stable")
    renumbered = {(int(number[a]), int(number[b])): c for (a, b), c in cuts.items() if number[a] and number[b]}
    return _Pieces(labels, boxes, marks_of, order, height, _digit_width(mark_boxes[kept], height), renumbered)


def _inside_loops(labels: np.ndarray, count: int) -> np.ndarray:
    """Which marks (bool per label 0..count) lie inside a loop of other ink, the paper around the ink out of
    their reach: a face's mouth, a window drawn in a house. No digit holds ink in its loops, and no digit of a
    line sits in another's."""
    solid = np.pad(labels > 0, 1)
    paper = clusters(~solid)  # the paper around all the ink is the cluster at the corner; the others are loops
    outside = paper == paper[0, 0]
    padded = np.pad(labels, 1)
    reached = np.zeros(count + 1, dtype=bool)
    for shift in ((0, 1), (0, -1), (1, 0), (-1, 0)):  # ink beside the paper around it
        reached[padded[solid & np.roll(outside, shift, axis=(0, 1))]] = True
    present = np.zeros(count + 1, dtype=bool)
    present[labels.ravel()] = True
    return present & ~reached


def _digit_width(boxes: np.ndarray, height: float) -> float:
    """The median width of the line's marks that look like one digit (tall, as wide as a digit other than 1,
    not as wide as two), or DIGIT_WIDTH of the line's height when there are none (all touching)."""
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    single = (heights >= FRAGMENT * height) & (widths >= 0.45 * height) & (widths <= height)
    return float(np.median(widths[single])) if single.any() else DIGIT_WIDTH * height


def _slope(labels: np.ndarray, tall: np.ndarray) -> float:
    """The writing's slant as dx/dy (negative when it leans right), the median over the tall marks of each
    one's second moments (the deskewing of MNIST's own tools)."""
    ys, xs = np.nonzero(tall[labels])
    which = labels[ys, xs]
    slopes = []
    for mark in np.unique(which):
        y, x = ys[which == mark].astype(np.float64), xs[which == mark].astype(np.float64)
        if y.var() > 0:
            slopes.append(((x - x.mean()) * (y - y.mean())).mean() / y.var())
    return float(np.clip(np.median(slopes), -0.6, 0.6)) if slopes else 0.0


def _line(boxes: np.ndarray, mass: np.ndarray, shape: tuple[int, ...], name: str) -> tuple[np.ndarray, float]:
    """Which marks make the line (bool per label) and its height; NotANumberError when the ink is not one line.
    A page's edge along the image's border (`_along_border`) is left out first."""
    left, top, right, bottom = boxes[1:].T
    heights, widths = bottom - top, right - left
    mass = np.where(_along_border(boxes[1:], shape), 0.0, mass[1:])
    heavy = mass >= 0.2 * mass.max()
    big = (heights >= BIG * heights[heavy].max()) & (mass > 0)
    if big.sum() > MAX_MARKS:
        raise NotANumberError(f"{name}: {int(big.sum())} marks scattered over the image, not one line of digits")
    lines = _rows_shared(boxes[1:][big])
    line_mass = np.bincount(lines, weights=mass[big])
    if (line_mass >= 0.15 * line_mass.max()).sum() > 1:
        count = int((line_mass >= 0.15 * line_mass.max()).sum())
        raise NotANumberError(f"{name}: ink on {count} lines, not one line of digits")
    in_line = np.flatnonzero(big)[lines == np.argmax(line_mass)]
    height = float(np.median(heights[in_line]))
    band = (top[in_line].min() - BAND_MARGIN * height, bottom[in_line].max() + BAND_MARGIN * height)
    speck = (heights < SPECK * height) & (widths < SPECK * height)
    kept = (bottom > band[0]) & (top < band[1]) & ~speck & (mass > 0)
    return np.concatenate([[False], _apart(kept, boxes[1:], mass, height)]), height


def _apart(kept: np.ndarray, boxes: np.ndarray, mass: np.ndarray, height: float) -> np.ndarray:
    """The kept marks less those away from the number: groups of fragments only (no mark FRAGMENT of the
    line's height) more than WORD_GAP line heights from the rest (bits of a page's corner), and groups
    more than MAX_GAP away from the rest with less than GROUP_SHARE of the heaviest group's ink (a page's
    edge, dirt; a group as heavy is part of the number, written with a space)."""
    kept = kept.copy()
    for gap in (WORD_GAP, MAX_GAP):
        order = np.flatnonzero(kept)[np.argsort(boxes[kept, 0], kind="stable")]
        reach = np.maximum.accumulate(boxes[order, 2])
        group = np.concatenate([[0], np.cumsum(boxes[order[1:], 0] - reach[:-1] > gap * height)])
        if gap == WORD_GAP:
            tallest = np.zeros(group.max() + 1)
            np.maximum.at(tallest, group, boxes[order, 3] - boxes[order, 1])
            kept[order[tallest[group] < FRAGMENT * height]] = False
            continue
        group_mass = np.bincount(group, weights=mass[order])
        kept[order[group_mass[group] < GROUP_SHARE * group_mass.max()]] = False
    return kept


def _along_border(boxes: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Marks that run along a border of the image as a page's edge or a desk's does: near it (BORDER), as
    long as EDGE_LENGTH of it, and, beside a left or right border, EDGE_RATIO times as tall as the other
    marks, or beside the top or bottom, thinner than they are tall (a tight crop's digits touch the
    borders too, and are as tall as each other; a strip's touching digits are as tall as the rest)."""
    height, width = shape[:2]
    left, top, right, bottom = boxes.T
    tall, wide = bottom - top, right - left
    margin = BORDER * max(height, width)
    beside = (left <= margin) | (right >= width - margin)
    over = (top <= margin) | (bottom >= height - margin)
    long = (beside & (tall >= EDGE_LENGTH * height)) | (over & (wide >= EDGE_LENGTH * width))
    if long.all() or not long.any():
        return np.zeros_like(long)
    others = tall[~long]
    return (beside & long & (tall >= EDGE_RATIO * others.max())) | (over & long & (tall <= 0.5 * np.median(others)))


def _rows_shared(boxes: np.ndarray) -> np.ndarray:
    """The line of each mark: marks whose rows overlap by LINE_OVERLAP of the shorter share a line (chained,
    so a line may climb), and so do marks one above the other, their columns shared, less than STACKED of
    the shorter apart (an 8 drawn as two loops); numbered 0..n-1."""
    left, top, right, bottom = boxes.T
    overlap = np.minimum(bottom[:, None], bottom[None]) - np.maximum(top[:, None], top[None])
    shorter = np.minimum((bottom - top)[:, None], (bottom - top)[None])
    columns = np.minimum(right[:, None], right[None]) > np.maximum(left[:, None], left[None])
    linked = (overlap >= LINE_OVERLAP * shorter) | (columns & (overlap >= -STACKED * shorter))
    line = np.arange(len(top))
    while True:
        joined = np.where(linked, line[None], len(top)).min(axis=1)
        joined = joined[joined]
        if np.array_equal(joined, line):
            return np.unique(line, return_inverse=True)[1]
        line = joined


def _cut(mark: np.ndarray, slope: float, height: float) -> tuple[list[np.ndarray], list[int]]:
    """A wide mark (bool window) cut into pieces (bool masks, left to right) along the writing's slant, at
    the narrowest places of its slanted column profile (ink pixels per slanted column), at least
    CUT_SPACING of the line's height apart and from its ends; and how many strokes each cut crosses."""
    ys, xs = np.nonzero(mark)
    slanted = np.round(xs - slope * (ys - mark.shape[0] / 2)).astype(np.int64)
    slanted -= slanted.min()
    profile = np.bincount(slanted).astype(np.float64)
    smooth = np.convolve(profile, np.ones(3) / 3, mode="same")
    spacing = max(2, round(CUT_SPACING * height))
    depth = CUT_DEPTH * np.median(smooth[smooth > 0])
    candidates = [
        c
        for c in range(spacing, len(profile) - spacing)
        if smooth[c] <= depth and smooth[c] <= smooth[max(0, c - 2) : c + 3].min()
    ]
    if not candidates and len(profile) > 2 * spacing and len(profile) > WIDE * height:  # two digits pressed together
        candidates = [spacing + int(np.argmin(smooth[spacing:-spacing]))]
    chosen: list[int] = []
    for c in sorted(candidates, key=lambda c: (smooth[c], c)):
        if all(abs(c - other) >= spacing for other in chosen):
            chosen.append(c)
    chosen.sort()
    piece = np.searchsorted(chosen, slanted, side="right")
    masks = []
    for k in range(len(chosen) + 1):
        masks.append(np.zeros_like(mark))
        masks[-1][ys[piece == k], xs[piece == k]] = True
    crossings = [1 + int(np.count_nonzero(np.diff(np.sort(ys[slanted == c])) > 1)) for c in chosen]
    return masks, crossings


Run = tuple[int, int]  # pieces order[i:j]: one digit, or a fragment left out


def _candidates(page: PageInk, pieces: _Pieces) -> tuple[dict[Run, float], list[np.ndarray]]:
    """Every run of at most MAX_PIECES neighbouring pieces that could be one digit (`_join_cost`), with what
    costs it that, and what the model would see of each."""
    runs, inputs = {}, []
    for i in range(len(pieces.order)):
        for j in range(i + 1, min(i + MAX_PIECES, len(pieces.order)) + 1):
            ids = pieces.order[i:j]
            cost = _join_cost(pieces, ids)
            if cost is None:
                break
            left, top, right, bottom = _union(pieces.boxes[ids])
            member = np.zeros(len(pieces.boxes), dtype=bool)
            member[ids] = True
            runs[(i, j)] = cost
            inputs.append(digit_input(page.ink[top:bottom, left:right] * member[pieces.labels[top:bottom, left:right]]))
    return runs, inputs


def _join_cost(pieces: _Pieces, ids: np.ndarray) -> float | None:
    """What reading these pieces as one digit costs beyond the classifier's word: None when a gap between
    them is wider than a pen's lift (PEN_LIFT), or FRAGMENT_REACH beside a fragment such as a 5's bar;
    JOIN_COST for each further full-height mark, less as it overlaps the rest (a 4's two strokes);
    nothing for pieces of one mark cut apart."""
    boxes = pieces.boxes[ids]
    short = boxes[:, 3] - boxes[:, 1] < FRAGMENT * pieces.height
    order = np.argsort(boxes[:, 0], kind="stable")
    cost, reach = 0.0, order[0]  # the piece that reaches furthest right so far
    for k in order[1:]:
        gap = (boxes[k, 0] - boxes[reach, 2]) / pieces.height
        same_mark = (pieces.marks[ids[k]] == pieces.marks[ids[order[: list(order).index(k)]]]).any()
        if not same_mark and gap > (FRAGMENT_REACH if short[k] or short[reach] else PEN_LIFT):
            return None
        if not same_mark and not short[k]:
            width = min(boxes[k, 2] - boxes[k, 0], boxes[reach, 2] - boxes[reach, 0]) / pieces.height
            cost += JOIN_COST * float(np.clip(1 + gap / max(width, 1e-3), 0.0, 1.0))
        reach = k if boxes[k, 2] > boxes[reach, 2] else reach
    inside = set(ids.tolist())
    crossed = sum(c - 1 for (a, b), c in pieces.cuts.items() if (a in inside) != (b in inside))
    return cost + 0.5 * CUT_COST * crossed  # each side of a cut pays half


def _fragment(pieces: _Pieces, label: int) -> bool:
    return bool(pieces.boxes[label, 3] - pieces.boxes[label, 1] < FRAGMENT * pieces.height)


def _union(boxes: np.ndarray) -> tuple[int, int, int, int]:
    return int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max())


def _score(probabilities: np.ndarray, pieces: _Pieces, run: Run) -> float:
    """How likely the run is one digit: the log of its best class's probability weighted by its width
    (`_weighted`), less what a height no digit of this line has (MIN_HEIGHT) and a width no digit of this
    line has (MAX_WIDTH) cost."""
    left, top, right, bottom = _union(pieces.boxes[pieces.order[run[0] : run[1]]])
    penalty = WIDTH_PENALTY * max(0.0, (right - left) / pieces.width - MAX_WIDTH)
    return (
        math.log(max(float(probabilities.max()), 1e-12))
        - penalty
        - HEIGHT_PENALTY * max(0.0, MIN_HEIGHT - (bottom - top) / pieces.height)
    )


def _aspect(seen: np.ndarray) -> float:
    """Width / height of the ink's box in a 28x28 input (ink above 30% of white), measured as ASPECT_RANGE was
    on MNIST: after the strokes are brought to MNIST's width, so that a 1 written with a fine pen in a large
    image is not narrower than any MNIST 1 for its thin line alone."""
    rows, cols = np.nonzero(seen > 0.3 * 255)
    if len(rows) == 0:
        return 1.0
    return float(cols.max() - cols.min() + 1) / float(rows.max() - rows.min() + 1)


def _weighted(probabilities: np.ndarray, classes: Sequence[str], aspect: float) -> np.ndarray:
    """The classifier's probabilities, each class's weighted by how plausible the digit's width / height
    (`_aspect`) is for it (ASPECT_RANGE); not normalised: their sum says how plausible the digit is at all."""
    low = np.array([ASPECT_RANGE.get(c, (0.0, math.inf))[0] for c in classes])
    high = np.array([ASPECT_RANGE.get(c, (0.0, math.inf))[1] for c in classes])
    outside = np.maximum(0.0, np.log(aspect / high)) + np.maximum(0.0, np.log(low / max(aspect, 1e-6)))
    return probabilities * np.exp(-ASPECT_PENALTY * outside)


def _best_split(scores: dict[Run, float], skips: dict[Run, float], count: int) -> tuple[list[Run], set[Run]]:
    """The digits (runs) that, with the fragments left out (`skips`), cover the pieces with the highest total
    score: the best path through the lattice; and those of them that another split nearly matches (a path
    within SPLIT_MARGIN through a run or a skip that overlaps them)."""
    edges = sorted(
        [(run, score, True) for run, score in scores.items()] + [(run, cost, False) for run, cost in skips.items()]
    )
    forward = [0.0] + [-math.inf] * count
    back: list[tuple[Run, bool]] = [((0, 0), False)] * (count + 1)
    for run, score, digit in sorted(edges, key=lambda edge: edge[0][1]):
        if forward[run[0]] + score > forward[run[1]]:
            forward[run[1]], back[run[1]] = forward[run[0]] + score, (run, digit)
    backward = [-math.inf] * count + [0.0]
    for run, score, _ in sorted(edges, key=lambda edge: -edge[0][0]):
        backward[run[0]] = max(backward[run[0]], score + backward[run[1]])
    path, taken, j = [], set(), count
    while j > 0:
        run, digit = back[j]
        path += [run] if digit else []
        taken.add((run, digit))
        j = run[0]
    path.reverse()
    best = forward[count]
    rivals = [
        run
        for run, score, digit in edges
        if (run, digit) not in taken and forward[run[0]] + score + backward[run[1]] >= best - SPLIT_MARGIN
    ]
    return path, {run for run in path if any(r[0] < run[1] and run[0] < r[1] for r in rivals)}


def _ink_box(ink: np.ndarray, scale: float) -> tuple[int, int, int, int]:
    """The box of the ink `crop_to_ink` keeps, in the image's pixels."""
    rows, cols = np.nonzero(ink > MASK_FRACTION * ink.max())
    return _scaled((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1), scale)


def _scaled(
    box: tuple[int, int, int, int], scale: float, origin: tuple[int, int] = (0, 0)
) -> tuple[int, int, int, int]:
    """A box in working pixels -> the image's pixels."""
    left, top, right, bottom = (round(v * scale) for v in box)
    return left + origin[0], top + origin[1], right + origin[0], bottom + origin[1]
