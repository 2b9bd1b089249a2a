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

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from cnnlab.inference.decode import ImageError

WORK_SIDE = 800  # larger images are box-reduced first: time stays bounded, thin strokes stay visible
CLOSING_FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4)  # closings tried for the paper level (of the longer side)
PAPER_CELLS = 160  # the paper level is found on a grid of this many cells a side (max of each cell)
GRID_CELLS = 16  # ink clusters are found on a grid of this many cells a side
FLAT_PAPER, FLAT_SHARE = 0.05, 0.05  # a paper level within 5% of its median on 95% of the image is uniform
MIN_CONTRAST = 0.12  # ink is at least 12% darker (or lighter) than its paper: ~30 grey levels on white
NOISE_SIGMAS = 5.0  # ... and stands this many standard deviations above the paper's noise
NOISE_FLOOR = 3.0  # grey levels: contrast under this many sigmas (plus 1%) is paper, set to black
CORE_PERCENTILE = 90  # this percentile of the ink's contrast is the stroke's core, shown white
MASK_FRACTION = 0.3  # of the core's contrast: the pixels that count for the box and the clusters
UNIFORM_SHARE = 0.25  # one grey level on a quarter of the pixels: a drawing's or a scan's uniform paper
POLARITY_SIDE = 64  # a photo's polarity is judged on it reduced to at most 64 px a side (20 ms at most) ...
POLARITY_WINDOW = 0.25  # ... each pixel against the median of a window a quarter of the side around it ...
POLARITY_MARGIN = 0.05  # ... counting where its log-brightness differs from it by more than this (~5%)
EDGE_GRID = 128  # a page's edges are traced on a grid of at most this many cells a side ...
EDGE_SHARE = 0.25  # ... and left out when a quarter as much ink (the digit) lies away from the border
MIN_CLUSTER_SHARE = 0.25  # a cluster of ink with less than this share of the largest cluster's ink is left out
# MNIST's stroke width relative to the longer side of the digit's box (`stroke_width` / side), percentiles over
# the 60,000 training digits passed through `find_ink` and `crop_to_ink`. Strokes thinner than the 5th
# percentile are dilated to the median; fatter than the 99th, eroded to the 95th. The rest are left alone.
MNIST_WIDTH = {5: 0.063, 50: 0.097, 95: 0.149, 99: 0.179}
WORK_BOX = 80  # strokes are re-drawn at 4x the 20 px box: quarter-pixel steps in the result
BOX, FIELD = 20, 28
MNIST_CENTRE = 14.0  # row and column of MNIST's centre of mass (mean over the training set: 14.00, 14.01)


def preprocess(image: Image.Image, name: str = "image") -> np.ndarray:
    """An image of any size and mode -> 28x28 uint8, white ink on black, MNIST-style."""
    reduced = _reduced(image)
    photo = not uniform_paper(np.asarray(reduced.convert("L")))
    ink = find_ink(paper_contrast(reduced), name, photo=photo)
    digit = fit_box(crop_to_ink(ink))
    return centre_by_mass(digit)


def paper_contrast(image: Image.Image) -> np.ndarray:
    """(H, W) float32: how much more ink than paper each pixel holds, 0 on paper, ~1 on black-on-white ink."""
    paper_bright = _paper_bright(_reduced(image))
    fraction = _closing_fraction(paper_bright[0] if len(paper_bright) == 1 else np.mean(paper_bright, axis=0))
    contrast = [1.0 - channel / np.maximum(paper_level(channel, fraction), 1.0) for channel in paper_bright]
    return np.max(contrast, axis=0) if len(contrast) > 1 else contrast[0]


def _closing_fraction(grey: np.ndarray) -> float:
    """The narrowest closing (a fraction of the longer side) at least 3 strokes wide: shadows, page edges
    and folds wider than that stay paper, where a wider closing would take them for ink. (A page without
    ink shows none at the narrowest either, while a wide closing would see ink in light falling off
    towards the border.)"""
    for fraction in (f for f in CLOSING_FRACTIONS[:-1] if f * max(grey.shape) >= 3):  # 3 px: a 1 px stroke fits
        contrast = 1.0 - grey / np.maximum(paper_level(grey, fraction), 1.0)
        ink = contrast > max(MIN_CONTRAST, 0.5 * contrast.max())
        if not ink.any() or 3 * stroke_width(ink.astype(np.float32)) <= fraction * max(grey.shape):
            return fraction
    return CLOSING_FRACTIONS[-1]


def _reduced(image: Image.Image) -> Image.Image:
    """The image in L, RGB or RGBA, box-reduced by a whole factor to at most WORK_SIDE pixels a side."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB")
    factor = -(-max(image.size) // WORK_SIDE)
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


def _min_filter(pixels: np.ndarray, radius: int) -> np.ndarray:
    return -_max_filter(-pixels, radius)


def find_ink(contrast: np.ndarray, name: str = "image", *, photo: bool = False) -> np.ndarray:
    """(H, W) contrast -> (H, W) float32 ink in [0, 1]: paper and noise 0, the stroke's core 1, and any
    ink away from the digit removed (in a `photo`, also a page's edge along its border: `_page_edges`).
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
    if photo:
        ink = ink * ~_page_edges(ink * strokes)
    return ink * _digit_cells(ink * strokes)


def _page_edges(ink: np.ndarray) -> np.ndarray:
    """(H, W) bool: in a photo, the ink connected to the image's border (a page's edge, a strip of desk, a
    shadow's edge), when at least EDGE_SHARE as much lies away from it; else nothing (a digit cropped tight
    touches the border itself). Found on the ink max-pooled to at most EDGE_GRID cells a side."""
    cell = -(-max(ink.shape) // EDGE_GRID)
    mask = _cell_reduce(ink, cell, np.maximum) > 0
    labels = _clusters(mask, reach=1)
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


def _clusters(mask: np.ndarray, reach: int) -> np.ndarray:
    """(H, W) int labels of the clusters of set cells, cells at most `reach` cells apart joined (1: touching);
    0 where the mask is not set."""
    labels = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), 0)
    while True:  # every cell takes the largest label within reach, until each cluster holds one label
        spread = np.where(mask, _max_filter(labels, reach), 0)
        if np.array_equal(spread, labels):
            return labels
        labels = spread


def _digit_cells(ink: np.ndarray) -> np.ndarray:
    """(H, W) 0/1 float32: the grid cells of the ink clusters that make the digit, with one cell around them.

    Cells holding ink are joined into clusters when at most one empty cell lies between them; clusters
    with less than MIN_CLUSTER_SHARE of the largest cluster's ink (specks) are dropped. Ink in the outer
    ring of cells does not count towards that share, so a page's edge or a desk along the border of a
    photo loses to the digit, while a digit cropped tight to its ink still has its middle."""
    cell = _cell_size(ink.shape)
    mass = _cell_reduce(ink, cell, np.add)
    labels = _clusters(mass > 0, reach=2)
    inner = np.zeros_like(mass)
    inner[1:-1, 1:-1] = mass[1:-1, 1:-1]
    cluster_mass = np.bincount(labels.ravel(), weights=(inner if inner.any() else mass).ravel())
    cluster_mass[0] = 0
    kept = _max_filter((cluster_mass >= MIN_CLUSTER_SHARE * cluster_mass.max())[labels].astype(np.float32), 1)
    return np.repeat(np.repeat(kept, cell, axis=0), cell, axis=1)[: ink.shape[0], : ink.shape[1]]


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
