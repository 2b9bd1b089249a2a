"""Any image of a digit -> the 28x28 input an MNIST model expects, the way MNIST itself was made.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio, then centred by
centre of mass in a 28x28 field (LeCun et al.). `preprocess` does the same to any photo or scan:
grayscale, ink made bright on dark, background removed, cropped to the ink, longer side scaled to 20 px,
pasted so that the centre of mass lands on the centre. Bad files get a per-file error, never a crash.
"""
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from cnnlab.inference.decode import ImageError

INK_THRESHOLD = 40       # after background removal, the brightest pixel must reach this to count as ink


def _grayscale(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # transparent background = paper: composite onto white
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    return image if image.mode == "L" else ImageOps.grayscale(image.convert("RGB"))


def preprocess(image: Image.Image, name: str = "image") -> np.ndarray:
    """An image of any size and mode -> 28x28 uint8, white ink on black, MNIST-style."""
    image = _grayscale(image)
    # A median filter removes speckle (photo noise, paper grain) that would stretch the ink's bounding box.
    image = image.filter(ImageFilter.MedianFilter(5 if min(image.size) >= 100 else 3))
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > 127:  # light paper, dark ink: invert so ink is bright
        pixels, border = 255 - pixels, 255 - border
    pixels = np.clip(pixels - np.percentile(border, 90), 0, None)  # remove the background and its noise
    if pixels.max() < INK_THRESHOLD:
        raise ImageError(f"{name}: no ink found (a blank or uniform image)")
    rows, cols = np.nonzero(pixels > 0.25 * pixels.max())
    crop = pixels[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    crop = crop * (255.0 / crop.max())
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    digit = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.LANCZOS), dtype=np.float32)
    field = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    field[top:top + size[1], left:left + size[0]] = digit
    total = field.sum()
    ys, xs = np.indices(field.shape)
    shift_y = int(round(13.5 - (ys * field).sum() / total))
    shift_x = int(round(13.5 - (xs * field).sum() / total))
    field = np.roll(field, (shift_y, shift_x), axis=(0, 1))  # the digit fits in 20 px: rolling loses no ink
    return np.clip(field, 0, 255).astype(np.uint8)


