"""Any image of a digit -> the 28x28 input an MNIST model expects, the way MNIST itself was made.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio, then centred by
centre of mass in a 28x28 field (LeCun et al.). Real images (phone photos, scans, paint-program
drawings, 28x28 pixel art) first need their ink found, and their strokes brought to MNIST's width:

1. Contrast: how much darker (or lighter) each pixel is than the paper around it, in the colour channel
   where the ink stands out most. The paper's level is estimated locally (a closing on a coarse grid),
   so shadows, gradients and coloured paper drop out. The polarity (dark ink or light) is decided from
   the extremes on a drawing's uniform paper, and from what stands out locally in a photo (`light_ink`).
2. Ink: contrast above the paper's noise; lone pixels dropped (a 1 px stroke has neighbours, speckle
   has none); the digit is the clusters of grid cells holding most ink, so specks and page edges away
   from it are left out. Grey levels are kept, scaled so that the stroke's core is white.
3. Stroke width (2 x area / perimeter) relative to the digit's size: outside MNIST's range, strokes are
   dilated (thin mouse strokes, never erased) or eroded (fat markers) to MNIST's width.
4. MNIST's last steps: the 20 px box, the centre of mass at the centre of the 28x28 field.
"""

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from cnnlab.inference.decode import ImageError

WORK_SIDE = 800  # larger images are box-reduced first: time stays bounded, thin strokes stay visible
CLOSING_FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4)  # closings tried for the paper level (of the longer side)
RIM_SHARE, RIM_TOLERANCE = 0.25, 2.0  # beside a quarter of the ink, pixels as dark as it (2 grey levels): rims
PAPER_CELLS = 160  # the paper level is found on a grid of this many cells a side (max of each cell)
GRID_CELLS = 16  # ink clusters are found on a grid of this many cells a side
FLAT_PAPER, FLAT_SHARE = 0.05, 0.05  # a paper level within 5% of its median on 95% of the image is uniform
MIN_CONTRAST = 0.12  # ink is at least 12% darker (or lighter) than its paper: ~30 grey levels on white
NOISE_SIGMAS = 5.0  # ... and stands this many standard deviations above the paper's noise
NOISE_FLOOR = 3.0  # grey levels: contrast under this many sigmas (plus 1%) is paper, set to black
CORE_PERCENTILE = 90  # this percentile of the ink's contrast is the stroke's core, shown white
MASK_FRACTION = 0.3  # of the core's contrast: the pixels that count for the box and the clusters
UNIFORM_SHARE = 0.25  # one grey level on a quarter of the pixels: a drawing's or a scan's uniform paper
POLARITY_SIDE = 128  # a photo's polarity is judged on it reduced to at most 128 px a side (thin pen visible) ...
POLARITY_WINDOW = 0.125  # ... each pixel against the median of a window an eighth of the side around it ...
POLARITY_STRIDE = 2  # ... sampled at every other pixel (the cost of a 64 px side's full window) ...
POLARITY_MARGIN = 0.05  # ... counting where its log-brightness differs from it by more than this (~5%)
LINE_ANGLES = range(-15, 16)  # degrees: a page's lines in a photo, tilted by its perspective
LINE_LENGTH, LINE_BEYOND, LINE_CROSS = 0.6, 0.05, 5  # a line: 60% of the image long, past the digits both ways
EDGE_GRID = 128  # a page's edges are traced on a grid of at most this many cells a side ...
EDGE_SHARE = 0.25  # ... and left out when a quarter as much ink (the digit) lies away from the border
MIN_CLUSTER_SHARE = 0.25  # a cluster of ink with less than this share of the largest cluster's ink is left out
# MNIST's stroke width relative to the longer side of the digit's box (`stroke_width` / side), percentiles over
# the 60,000 training digits passed through `find_ink` and `crop_to_ink`. Strokes thinner than the 5th
# percentile are dilated to the median; fatter than the 99th, eroded to the 95th. The rest are left alone.
MNIST_WIDTH = {5: 0.063, 50: 0.097, 95: 0.149, 99: 0.179}
# The most ink and holes an MNIST digit has, measured on the 28x28 field (pixels at half of white and above)
# over the first 20,000 training digits: the stroke's length (half the mask's perimeter) at most 4.5 times the
# 20 px box (99.9th percentile 4.15), and at most 2 holes of 3 pixels or more (3 in 14 digits, never 4).
# A drawing, text or a scribble brought to 28x28 has more (`mnist_like`).
MNIST_LENGTH, MNIST_HOLES, HOLE_PIXELS = 4.5, 2, 3
WORK_BOX = 80  # strokes are re-drawn at 4x the 20 px box: quarter-pixel steps in the result
BOX, FIELD = 20, 28
MNIST_CENTRE = 14.0  # row and column of MNIST's centre of mass (mean over the training set: 14.00, 14.01)


@dataclass(frozen=True)
class PageInk:
    """The ink of a whole image, found at the working resolution (at most WORK_SIDE pixels a side)."""

    ink: np.ndarray  # (H, W) float32 in [0, 1]: paper and noise 0, the stroke's core 1
    strokes: np.ndarray  # (H, W) bool: the pixels that count for boxes and clusters (MASK_FRACTION of the core)
    scale: float  # the image's pixels per working pixel


def preprocess(image: Image.Image, name: str = "image") -> np.ndarray:
    """An image of one digit, of any size and mode -> 28x28 uint8, white ink on black, MNIST-style."""
    return digit_input(single_digit(page_ink(image, name)))


def page_ink(image: Image.Image, name: str = "image", *, work_side: int = WORK_SIDE) -> PageInk:
    """Steps 1 and 2 for a whole image (a digit, or a number's line of digits): the ink, away from paper,
    shadows, noise and a photo's page edges, found on the image box-reduced to at most `work_side` pixels a
    side. Raises ImageError when there is none."""
    reduced = _reduced(image, work_side)
    photo = not uniform_paper(np.asarray(reduced.convert("L")))
    ink, strokes = find_ink(paper_contrast(reduced), name, photo=photo)
    return PageInk(ink, strokes, image.width / reduced.width)


def single_digit(page: PageInk) -> np.ndarray:
    """The ink of the one digit on a page: the clusters holding most ink (`_digit_cells`), specks left out."""
    return page.ink * _digit_cells(page.ink * page.strokes)


def digit_input(ink: np.ndarray) -> np.ndarray:
    """The ink of one digit (any size, values in [0, 1]) -> the model's 28x28 uint8 input: steps 3 and 4."""
    return centre_by_mass(fit_box(crop_to_ink(ink)))


def paper_contrast(image: Image.Image) -> np.ndarray:
    """A working image in L, RGB or RGBA (`_reduced`) -> (H, W) float32: how much more ink than paper each
    pixel holds, 0 on paper, ~1 on black-on-white ink."""
    paper_bright = _paper_bright(image)
    fraction = _closing_fraction(paper_bright[0] if len(paper_bright) == 1 else np.mean(paper_bright, axis=0))
    contrast = [1.0 - channel / np.maximum(paper_level(channel, fraction), 1.0) for channel in paper_bright]
    return np.max(contrast, axis=0) if len(contrast) > 1 else contrast[0]


def _closing_fraction(grey: np.ndarray) -> float:
    """The narrowest closing (a fraction of the longer side) at least 3 strokes wide: shadows, page edges
    and folds wider than that stay paper, where a wider closing would take them for ink. (A page without
    ink shows none at the narrowest either, while a wide closing would see ink in light falling off
    towards the border.) A closing narrower than the stroke shows only its rims (`_rims`): wider then."""
    for fraction in (f for f in CLOSING_FRACTIONS[:-1] if f * max(grey.shape) >= 3):  # 3 px: a 1 px stroke fits
        contrast = 1.0 - grey / np.maximum(paper_level(grey, fraction), 1.0)
        ink = contrast > max(MIN_CONTRAST, 0.5 * contrast.max())
        if not ink.any():
            return fraction
        if 3 * stroke_width(ink.astype(np.float32)) <= fraction * max(grey.shape) and not _rims(grey, ink):
            return fraction
    return CLOSING_FRACTIONS[-1]


def _rims(grey: np.ndarray, ink: np.ndarray) -> bool:
    """Whether the ink found is only the rims of strokes wider than the closing: then the pixels beside the
    ink are as dark as the ink next to them (the stroke's inside), where beside a stroke lies paper. The
    lab's #111 brush (not quite black) on its 280 px pad was seen as outlines before."""
    beside = (_max_filter(ink.astype(np.uint8), 1) > 0) & ~ink
    darkest_ink = -_max_filter(np.where(ink, -grey, -np.inf), 1)
    return bool(np.count_nonzero(beside & (grey <= darkest_ink + RIM_TOLERANCE)) > RIM_SHARE * np.count_nonzero(beside))


def _reduced(image: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """The image in L, RGB or RGBA, box-reduced by a whole factor to at most `side` pixels a side."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    mode = "RGBA" if has_alpha else "L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB"
    image = image if image.mode == mode else image.convert(mode)  # converting to its own mode copies it
    factor = -(-max(image.size) // side)
    return image.reduce(factor) if factor > 1 else image


def _paper_bright(image: Image.Image) -> list[np.ndarray]:
    """The colour channels as float32 (H, W) arrays, turned if needed so that paper is light and ink dark."""
    if image.mode == "RGBA":
        rgba = np.asarray(image, dtype=np.float32)
        alpha = rgba[..., 3]
        if np.median(_border(alpha)) < 128:  # drawn on a transparent background: the alpha is the ink
            return [255.0 - alpha]
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    light = light_ink(np.asarray(image.convert("L")))
    grey = image.mode == "L" or ImageChops.difference(image, image.convert("L").convert("RGB")).getbbox() is None
    pixels = np.asarray(image.convert("L") if grey else image, dtype=np.float32)
    channels = [pixels] if grey else [pixels[..., c] for c in range(3)]
    return [255.0 - c for c in channels] if light else channels


def light_ink(grey: np.ndarray) -> bool:
    """Whether the ink is lighter than the paper, from a (H, W) uint8 grey image.

    On uniform paper (a drawing, a canvas, a 28x28 digit: one grey level covers UNIFORM_SHARE of the
    pixels), the side of the median on which the extreme pixels lie: a tight crop or a border touched by
    ink does not flip it. In a photo, a shadow can put most of the page below the lit paper, which then
    outshines faint pencil as an extreme. There, the polarity is the side on which more pixels stand out
    from the median around them (in log-brightness: light multiplies): ink is a minority of the pixels
    around it, while on either side of a shadow's edge the median is that side's own paper."""
    if uniform_paper(grey):
        smoothed = np.asarray(Image.fromarray(grey).filter(ImageFilter.BoxBlur(1)), dtype=np.float32)
        paper = np.median(smoothed)
        return bool(smoothed.max() - paper > paper - smoothed.min())
    cell = -(-max(grey.shape) // POLARITY_SIDE)
    small = np.log(np.asarray(Image.fromarray(grey).reduce(cell), dtype=np.float32) + 16)
    window = 2 * round(POLARITY_WINDOW * max(small.shape) / 2) + 1
    around = np.lib.stride_tricks.sliding_window_view(np.pad(small, window // 2, mode="edge"), (window, window))
    around = around[..., ::POLARITY_STRIDE, ::POLARITY_STRIDE]
    excess = small - np.median(around.reshape(*small.shape, -1), axis=2)
    return bool(np.maximum(excess - POLARITY_MARGIN, 0).sum() > np.maximum(-excess - POLARITY_MARGIN, 0).sum())


def uniform_paper(grey: np.ndarray) -> bool:
    """Whether a (H, W) uint8 grey image has a drawing's uniform paper rather than a photo's (one grey level
    covers UNIFORM_SHARE of the pixels: 31-100% on drawings, canvases and scans generated by
    benchmarks/real_digits.py, 1-17% on its photos)."""
    return bool(np.bincount(grey.ravel(), minlength=256).max() >= UNIFORM_SHARE * grey.size)


def _border(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def paper_level(channel: np.ndarray, fraction: float) -> np.ndarray:
    """The paper's brightness under each pixel of a paper-light channel: a closing (max filter, then min
    filter) by a square `fraction` of the image wide fills in every stroke narrower than that and keeps a
    shadow's edge where it is. It runs on the cells' maxima, a grid of PAPER_CELLS, upsampled smoothly."""
    height, width = channel.shape
    cell = -(-max(height, width) // PAPER_CELLS)
    cells = _cell_reduce(channel, cell, np.maximum)
    size = 2 * round(fraction * max(cells.shape) / 2) + 1
    closed = _running_min(_running_min(_running_max(_running_max(cells, size, 0), size, 1), size, 0), size, 1)
    median = np.median(closed)
    if np.mean(np.abs(closed - median) > FLAT_PAPER * median) < FLAT_SHARE:  # a canvas, a scan, a 28x28 digit:
        # one level, exact under any stroke, also under a blob of ink wider than the closing
        return np.full_like(channel, median)
    upsampled = Image.fromarray(closed, "F").resize(
        (closed.shape[1] * cell, closed.shape[0] * cell), Image.Resampling.BILINEAR
    )
    return np.asarray(upsampled)[:height, :width]


def _running_max(pixels: np.ndarray, size: int, axis: int) -> np.ndarray:
    """The maximum over a centred window of odd `size` along `axis`, edges repeated outwards, in O(1) per
    pixel (van Herk / Gil-Werman: prefix and suffix maxima within blocks of `size`)."""
    pixels = np.moveaxis(pixels, axis, -1)
    n, half = pixels.shape[-1], size // 2
    blocks = -(-(n + size - 1) // size)
    padded = np.pad(pixels, [(0, 0)] * (pixels.ndim - 1) + [(half, blocks * size - n - half)], mode="edge")
    shaped = padded.reshape(*padded.shape[:-1], blocks, size)
    forward = np.maximum.accumulate(shaped, axis=-1).reshape(padded.shape)
    backward = np.maximum.accumulate(shaped[..., ::-1], axis=-1)[..., ::-1].reshape(padded.shape)
    return np.moveaxis(np.maximum(backward[..., :n], forward[..., size - 1 : size - 1 + n]), -1, axis)


def _running_min(pixels: np.ndarray, size: int, axis: int) -> np.ndarray:
    return -_running_max(-pixels, size, axis)


def _cell_size(shape: tuple[int, ...]) -> int:
    return max(1, -(-max(shape) // GRID_CELLS))


def _cell_reduce(pixels: np.ndarray, cell: int, ufunc: np.ufunc) -> np.ndarray:
    """(H, W) -> (ceil(H / cell), ceil(W / cell)): each cell x cell square reduced by `ufunc` (np.maximum,
    np.add), zeros padding the last ones; strided slices, several times faster than a 4-d reshape."""
    rows, cols = -(-pixels.shape[0] // cell), -(-pixels.shape[1] // cell)
    padded = np.pad(pixels, ((0, rows * cell - pixels.shape[0]), (0, cols * cell - pixels.shape[1])))
    by_rows = functools.reduce(ufunc, (padded[k::cell] for k in range(cell)))
    return functools.reduce(ufunc, (by_rows[:, k::cell] for k in range(cell)))


def _max_filter(pixels: np.ndarray, radius: int) -> np.ndarray:
    """The maximum over the (2 radius + 1)^2 square around each pixel, edges repeated: rows, then columns
    (a square's maximum is separable), from shifted slices."""
    height, width = pixels.shape
    padded = np.pad(pixels, radius, mode="edge")
    rows = functools.reduce(np.maximum, (padded[k : k + height] for k in range(2 * radius + 1)))
    return functools.reduce(np.maximum, (rows[:, k : k + width] for k in range(2 * radius + 1)))


def find_ink(contrast: np.ndarray, name: str = "image", *, photo: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) contrast -> (H, W) float32 ink in [0, 1] (paper and noise 0, the stroke's core 1; in a `photo`,
    lines across the page and a page's edge along its border removed: `_long_lines`, `_page_edges`) and
    the (H, W) bool strokes of `PageInk`.
    Raises ImageError when there is none."""
    sample = contrast[:: max(1, contrast.shape[0] // 256), :: max(1, contrast.shape[1] // 256)]
    paper = np.median(sample)
    sigma = 1.4826 * np.median(np.abs(sample - paper))  # the paper's noise, robustly (MAD)
    contrast = contrast - paper
    candidates = contrast > max(NOISE_SIGMAS * sigma, MIN_CONTRAST)
    candidates &= _neighbours(candidates) > 0
    if not candidates.any():
        raise ImageError(f"{name}: no ink found (a blank or uniform image)")
    strong = contrast[candidates]
    core = np.percentile(strong[strong > 0.5 * np.percentile(strong, 99)], CORE_PERCENTILE)  # not creases, shadows
    floor = NOISE_FLOOR * sigma + 0.01
    ink = np.clip((contrast - floor) / max(core - floor, 1e-3), 0.0, 1.0)
    strokes = contrast > MASK_FRACTION * core
    if photo:  # a drawing's or a crop's straight strokes are its digits'; a photo's may be its paper's
        lines = _long_lines(candidates | (strokes & (contrast > floor)))
        ink = ink * ~(_max_filter(lines.astype(np.uint8), 1) > 0)  # squared paper, a fold, a ruled line
        ink = ink * ~_page_edges(ink * strokes)
    strokes &= ink > 0
    if not strokes.any():
        raise ImageError(f"{name}: no ink found (only lines across the page)")
    return ink, strokes


def _long_lines(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels of straight lines across the image (a page's squares, a fold, ruled lines)
    that no stroke crosses. A line is found by counting the mask along slanted rows and columns (a photo's
    perspective tilts them, LINE_ANGLES): at least LINE_LENGTH of the image long, and reaching LINE_BEYOND
    of it past the rest of the ink (`_past`: a digit's own straight stroke, a 7's bar or the 1s of a number,
    ends where the digits do). Where a stroke crosses a line, the ink LINE_CROSS pixels above and below it
    (left and right) is kept."""
    ys, xs = np.nonzero(mask)
    directions = ((xs, ys, mask.shape[1], (LINE_CROSS, 0)), (ys, xs, mask.shape[0], (0, LINE_CROSS)))
    found = [_along_lines(along, across, length) for along, across, length, _ in directions]
    rest = ~(found[0] | found[1])
    if not rest.any():
        return np.zeros_like(mask)  # nothing but lines: they are what there is to read
    on_line = np.zeros(len(ys), dtype=bool)
    strokes = np.zeros_like(mask)  # what is on no line: a stroke that crosses one
    strokes[ys[rest], xs[rest]] = True
    for (along, _, length, (dy, dx)), line in zip(directions, found):
        low, high = _dense_span(along[rest])
        beyond = LINE_BEYOND * length
        if line.any() and _past(along[line].min(), along[line].max(), low, high, beyond, length):
            crossed = _at(strokes, ys + dy, xs + dx) | _at(strokes, ys - dy, xs - dx)
            on_line |= line & ~crossed
    lines = np.zeros_like(mask)
    lines[ys[on_line], xs[on_line]] = True
    return lines


def _along_lines(along: np.ndarray, across: np.ndarray, length: int) -> np.ndarray:
    """Which of the points lie on a line at least LINE_LENGTH of `length` long, at one of LINE_ANGLES to
    the `along` axis (the points counted in slanted bins one pixel wide, and the bins beside them)."""
    found = np.zeros(len(along), dtype=bool)
    for slope in np.tan(np.radians(LINE_ANGLES)):
        offset = np.round(across - along * slope).astype(np.int64)
        offset -= offset.min()
        lines = np.bincount(offset) >= LINE_LENGTH * length
        found |= (lines | np.roll(lines, 1) | np.roll(lines, -1))[offset]
    return found


def _past(first: int, last: int, low: int, high: int, beyond: float, length: int) -> bool:
    """Whether lines from `first` to `last` reach `beyond` past the digits (from `low` to `high`) on both
    sides, or on one side where the digits come as near the image's border on the other (a digit at the
    top of a photo of squared paper)."""
    before, after = first <= low - beyond, last >= high + beyond
    at_border = low <= beyond, high >= length - beyond
    return (before or at_border[0]) and (after or at_border[1]) and (before or after)


def _dense_span(points: np.ndarray) -> tuple[int, int]:
    """Where the points lie densely along an axis (bins of 8 pixels holding a tenth of the densest one's):
    the digits, not the dots a page's squares leave where their lines cross."""
    counts = np.bincount(points // 8)
    dense = np.flatnonzero(counts >= 0.1 * counts.max())
    return 8 * int(dense[0]), 8 * int(dense[-1] + 1)


def _at(mask: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The mask at (ys, xs), False outside it."""
    inside = (ys >= 0) & (ys < mask.shape[0]) & (xs >= 0) & (xs < mask.shape[1])
    found = np.zeros(len(ys), dtype=bool)
    found[inside] = mask[ys[inside], xs[inside]]
    return found


def _page_edges(ink: np.ndarray) -> np.ndarray:
    """(H, W) bool: in a photo, the ink connected to the image's border (a page's edge, a strip of desk, a
    shadow's edge), when at least EDGE_SHARE as much lies away from it; else nothing (a digit cropped tight
    touches the border itself). Found on the ink max-pooled to at most EDGE_GRID cells a side."""
    cell = -(-max(ink.shape) // EDGE_GRID)
    mask = _cell_reduce(ink, cell, np.maximum) > 0
    labels = clusters(mask)
    reached = np.isin(labels, _border(labels)) & mask
    if (mask & ~reached).sum() < EDGE_SHARE * reached.sum():  # nothing like a digit away from the border
        reached[:] = False
    return np.repeat(np.repeat(reached, cell, axis=0), cell, axis=1)[: ink.shape[0], : ink.shape[1]]


def _neighbours(mask: np.ndarray) -> np.ndarray:
    """How many of each pixel's 8 neighbours are set."""
    padded = np.pad(mask, 1).astype(np.uint8)
    height, width = mask.shape
    return sum(  # type: ignore[return-value]  # eight arrays: never the empty sum's 0
        padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx
    )


def clusters(mask: np.ndarray, reach: int = 1) -> np.ndarray:
    """(H, W) int32 labels 1..n of the clusters of set pixels, pixels at most `reach` apart joined (1: the 8
    neighbours); 0 where the mask is not set. Works on the mask's runs (a stroke crossing a row is one run), so
    its cost follows the number of runs, not the clusters' length."""
    height, width = mask.shape
    changes = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(changes == 1)
    ends = np.nonzero(changes == -1)[1]  # exclusive; runs in row-major order
    labels = np.zeros(mask.shape, np.int32)
    if len(starts) == 0:
        return labels
    slack, stride = reach - 1, width + 2 * reach + 2
    same_row = (rows[1:] == rows[:-1]) & (starts[1:] - ends[:-1] <= slack)
    pairs = [np.flatnonzero(same_row) + np.array([[0], [1]])]
    for down in range(1, reach + 1):  # the runs of the row `down` below that come within reach of each run
        first = np.searchsorted(rows * stride + ends, (rows + down) * stride + starts - slack, "left")
        count = np.maximum(
            np.searchsorted(rows * stride + starts, (rows + down) * stride + ends + slack, "right") - first, 0
        )
        offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        pairs.append(np.stack([np.repeat(np.arange(len(starts)), count), np.repeat(first, count) + offsets]))
    a, b = np.concatenate(pairs, axis=1)
    root = np.arange(len(starts))
    while True:  # each run takes the lowest root among its neighbours', then its root's root, until stable
        joined = root.copy()
        np.minimum.at(joined, a, root[b])
        np.minimum.at(joined, b, root[a])
        joined = joined[joined]
        if np.array_equal(joined, root):
            break
        root = joined
    lengths = ends - starts
    pixels = np.repeat(rows * width + starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    labels.ravel()[pixels] = np.repeat(np.unique(root, return_inverse=True)[1] + 1, lengths)
    return labels


def _digit_cells(ink: np.ndarray) -> np.ndarray:
    """(H, W) 0/1 float32: the grid cells of the ink clusters that make the digit, with one cell around them.

    Cells holding ink are joined into clusters when at most one empty cell lies between them; clusters
    with less than MIN_CLUSTER_SHARE of the largest cluster's ink (specks) are dropped. Ink in the outer
    ring of cells does not count towards that share, so a page's edge or a desk along the border of a
    photo loses to the digit, while a digit cropped tight to its ink still has its middle."""
    cell = _cell_size(ink.shape)
    mass = _cell_reduce(ink, cell, np.add)
    labels = clusters(mass > 0, reach=2)
    inner = np.zeros_like(mass)
    inner[1:-1, 1:-1] = mass[1:-1, 1:-1]
    cluster_mass = np.bincount(labels.ravel(), weights=(inner if inner.any() else mass).ravel())
    cluster_mass[0] = 0
    kept = _max_filter((cluster_mass >= MIN_CLUSTER_SHARE * cluster_mass.max())[labels].astype(np.float32), 1)
    return np.repeat(np.repeat(kept, cell, axis=0), cell, axis=1)[: ink.shape[0], : ink.shape[1]]


def mnist_like(digit: np.ndarray) -> bool:
    """Whether a 28x28 uint8 input has no more stroke and no more holes than an MNIST digit has."""
    mask = digit >= 128
    solid = np.pad(mask, 1)
    perimeter = np.count_nonzero(solid[1:] != solid[:-1]) + np.count_nonzero(solid[:, 1:] != solid[:, :-1])
    pieces = np.bincount(clusters(~solid).ravel())[1:]  # the background's: the one around the digit, and holes
    return bool(perimeter / 2 <= MNIST_LENGTH * BOX) and int((pieces >= HOLE_PIXELS).sum()) - 1 <= MNIST_HOLES


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The ink's bounding box (pixels at MASK_FRACTION of the brightest and above)."""
    rows, cols = np.nonzero(ink > MASK_FRACTION * ink.max())
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def stroke_width(ink: np.ndarray) -> float:
    """The mean stroke width in pixels: a stroke of length L and width w has area L*w and perimeter ~2L."""
    solid = np.pad(ink >= 0.5 * ink.max(), 1)
    perimeter = int(np.count_nonzero(solid[1:] != solid[:-1]) + np.count_nonzero(solid[:, 1:] != solid[:, :-1]))
    return 2.0 * float(ink.sum()) / max(perimeter, 1)


def fit_box(ink: np.ndarray) -> np.ndarray:
    """The cropped ink scaled so that its longer side is BOX pixels, its strokes brought into MNIST's width."""
    relative = stroke_width(ink) / max(ink.shape)
    thin = relative < MNIST_WIDTH[5]
    if not thin and relative <= MNIST_WIDTH[99]:  # a digit already MNIST's size (18-20 px) is kept pixel for pixel
        return ink if BOX - 2 <= max(ink.shape) <= BOX else _resize(ink, BOX / max(ink.shape))
    canvas = _to_work_box(ink, keep_thin=thin)
    width = stroke_width(canvas)
    radius = round(((MNIST_WIDTH[50] if thin else MNIST_WIDTH[95]) * WORK_BOX - width) / 2)
    radius = max(radius, -int(width / 4))  # erode a fat stroke by at most half its width: no part vanishes
    morphed = _morph(canvas, radius)
    canvas = crop_to_ink(morphed if morphed.max() > 0 else canvas)  # a speck eroded away: keep it as it was
    return _resize(canvas, BOX / max(canvas.shape))


def _to_work_box(ink: np.ndarray, keep_thin: bool) -> np.ndarray:
    """The ink at WORK_BOX pixels on its longer side; a thin stroke is max-pooled first so it keeps its ink."""
    factor = -(-max(ink.shape) // WORK_BOX)
    if keep_thin and factor > 1:
        rows, cols = -(-ink.shape[0] // factor), -(-ink.shape[1] // factor)
        padded = np.pad(ink, ((0, rows * factor - ink.shape[0]), (0, cols * factor - ink.shape[1])))
        ink = padded.reshape(rows, factor, cols, factor).max(axis=(1, 3))
    return _resize(ink, WORK_BOX / max(ink.shape))


def _morph(ink: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level dilation (radius > 0) or erosion (radius < 0) by a disk, on a canvas grown by the radius."""
    size = abs(radius)
    if size == 0:
        return ink
    grown = np.pad(ink, size)
    height, width = grown.shape
    shifted = np.pad(grown, size)
    offsets = [
        (dy, dx)
        for dy in range(-size, size + 1)
        for dx in range(-size, size + 1)
        if dy * dy + dx * dx <= size * size + size
    ]
    disk = [shifted[size + dy : size + dy + height, size + dx : size + dx + width] for dy, dx in offsets]
    return np.max(disk, axis=0) if radius > 0 else np.min(disk, axis=0)


def _resize(ink: np.ndarray, scale: float) -> np.ndarray:
    height, width = ink.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(ink.astype(np.float32), "F").resize(size, Image.Resampling.LANCZOS))


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """The digit (at most BOX pixels a side, values in [0, 1]) in the 28x28 field, centre of mass at its centre."""
    digit = np.clip(digit, 0.0, 1.0) * 255.0
    height, width = digit.shape
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    top, left = (FIELD - height) // 2, (FIELD - width) // 2
    field[top : top + height, left : left + width] = digit
    total = field.sum()
    ys, xs = np.indices(field.shape)
    shift_y = int(np.clip(round(MNIST_CENTRE - (ys * field).sum() / total), -top, FIELD - top - height))
    shift_x = int(np.clip(round(MNIST_CENTRE - (xs * field).sum() / total), -left, FIELD - left - width))
    field = np.roll(field, (shift_y, shift_x), axis=(0, 1))  # the shift is clipped so that no ink wraps around
    return np.round(field).astype(np.uint8)
