"""The one image decoder: every image file cnnlab opens (predict, the lab's uploads, folder training) comes through
`load_image`, with one set of limits. Bombs, truncated and non-image bytes are refused with an ImageError.

Only the formats of a folder of images (FORMATS) are opened: not EPS, which PIL decodes by running Ghostscript
on the file. A file is read bounded (MAX_FILE_BYTES); no file may declare more than MAX_PIXELS (a bomb guard,
checked from the header before any decoding); a caller may cap the decoded pixels lower (`max_pixels`: the
server's). A JPEG is decoded at a reduced scale (libjpeg's DCT scaling, `Image.draft`) when the caller needs
fewer pixels (`max_side`, `cover`), so a 12-megapixel photo costs the memory of a 0.75-megapixel one.
"""

import io
import typing
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data.idx import DataError
from cnnlab.files import read_bounded

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")  # PIL's other decoders are never exposed
MAX_FILE_BYTES = 64 * 1024 * 1024  # larger than any photo a phone takes
MAX_PIXELS = 40_000_000  # a 40-megapixel photo is fine; a 50,000 x 50,000 "image" is a decompression bomb
CONVERT_BEFORE_REDUCE = {"P": "RGBA", "1": "L"}  # modes Image.reduce lacks (RGBA keeps a palette's transparency)

# PIL warns, without refusing, past its own limit of 89 million pixels; MAX_PIXELS is lower and is checked before
# any decoding, so the warning would only print noise beside our one-line error. A filter set once here, not
# catch_warnings around each decode: that is not thread-safe, and folders and the server decode in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(DataError):
    """An image file that cannot be read, or (preprocess.py) holds no digit."""


class NotAnImageError(ImageError):
    """The bytes are not in any image format cnnlab reads."""


class ImageLimits(typing.TypedDict, total=False):
    """The limits `load_image` takes by keyword."""

    max_pixels: int
    max_side: int | None
    cover: tuple[int, int] | None


def read_image(path: str | Path, **limits: typing.Unpack[ImageLimits]) -> Image.Image:
    """The image in file `path`, read bounded and decoded by `load_image` (`limits`: its keyword arguments)."""
    return load_image(read_bounded(path, MAX_FILE_BYTES), str(path), **limits)


def load_image(
    data: bytes,
    name: str = "image",
    *,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = None,
    cover: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode `data` (8-bit, its first frame), refusing bombs, truncated and non-image files.

    `max_pixels` caps the decoded image. The decoder may shrink the image by an integer factor: with `max_side`,
    while its longer side stays at least `max_side` pixels (the lab's uploads: a digit needs no more); with
    `cover` (H, W), only a JPEG, and only while it still covers H x W (folder training fits it to H x W)."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        if image.width * image.height > MAX_PIXELS:
            raise ImageError(
                f"{name}: {image.width:,}x{image.height:,} pixels is more than the {MAX_PIXELS:,} allowed, "
                "a decompression bomb?"
            )
        if max_side is not None:
            image.draft(None, _scaled_size(image.size, max_side))  # JPEG only; a no-op for other formats
        elif cover is not None:
            image.draft(None, (max(cover), max(cover)))
        if image.width * image.height > max_pixels:
            raise ImageError(
                f"{name}: {image.width:,}x{image.height:,} pixels is more than the {max_pixels:,} this decoder allows"
            )
        image.seek(0)  # first frame of an animated GIF
        image.load()
        decoded = eight_bit(image)  # reads the EXIF orientation of a 16-bit image, which may be corrupt
    except ImageError:
        raise
    except UnidentifiedImageError:
        known = f"{', '.join(FORMATS[:-1])} and {FORMATS[-1]}"
        raise NotAnImageError(f"{name}: not an image: cnnlab reads {known}") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: too many pixels, a decompression bomb?") from None
    except Exception as e:  # PIL's decoders raise many kinds of error on broken bytes
        detail = (str(e).strip().splitlines() or [""])[0][:120]
        what = f"{type(e).__name__}: {detail}" if detail else type(e).__name__
        raise ImageError(f"{name}: truncated or corrupt: {what}") from None
    return _reduce(decoded, max_side) if max_side else decoded


def _reduce(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink by an integer factor (box average) while the longer side stays at least `max_side`."""
    factor = max(image.size) // max_side
    if factor < 2:
        return image
    if image.mode in CONVERT_BEFORE_REDUCE:
        image = image.convert(CONVERT_BEFORE_REDUCE[image.mode])
    return image.reduce(factor)


def _scaled_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The smallest size the decoder may scale down to: the longer side no shorter than `max_side`."""
    scale = min(1.0, max_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def upright(image: Image.Image) -> Image.Image:
    """The image turned by its EXIF orientation, or as it is when its EXIF data is corrupt (the pixels are fine)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # PIL's EXIF parser raises many kinds of error on broken bytes
        return image


def eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale images as 8-bit "L", by their high byte: PIL's own conversion clips them at
    255, which turns a 16-bit scan white. A 32-bit image whose values fit in 8 bits keeps them. Other modes
    are returned as they are."""
    if image.mode != "I" and not image.mode.startswith("I;16"):
        return image
    image = upright(image)  # the new image below would drop the EXIF orientation
    pixels = np.asarray(image)
    if image.mode.startswith("I;16") or pixels.max(initial=0) > 255:
        pixels = np.clip(pixels, 0, 65535) >> 8
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")
