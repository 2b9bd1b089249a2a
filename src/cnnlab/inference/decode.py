"""Decoding an uploaded or given image file safely: bombs, truncated and non-image bytes are refused.

Only the formats of a folder of images (data/folder.py FORMATS) are opened: not EPS, which PIL decodes by
running Ghostscript on the file. Two limits: no file may declare more than MAX_PIXELS (a bomb guard, checked
from the header before any decoding), and the decoded image may hold at most `max_pixels`. A JPEG is decoded
at a reduced scale (libjpeg's DCT scaling, `Image.draft`) when `max_side` allows it, so a 12-megapixel photo
costs the memory of a 0.75-megapixel one; other formats are decoded whole and then `reduce`d by an integer factor.
"""

import io
import warnings

from PIL import Image, UnidentifiedImageError

from cnnlab import CnnlabError
from cnnlab.data.folder import FORMATS, MAX_PIXELS, eight_bit

CONVERT_BEFORE_REDUCE = {"P": "RGBA", "1": "L"}  # modes Image.reduce lacks (RGBA keeps a palette's transparency)


class ImageError(CnnlabError):
    """An image file that cannot be read or holds no digit."""


class NotAnImageError(ImageError):
    """The bytes are not in any image format PIL reads."""


def load_image(
    data: bytes, name: str = "image", *, max_pixels: int = MAX_PIXELS, max_side: int | None = None
) -> Image.Image:
    """Decode `data` as an image, refusing bombs, truncated and non-image files.

    `max_pixels` caps the decoded image; `max_side`, when given, lets the decoder shrink the image by an
    integer factor as long as its longer side stays at least `max_side` pixels."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            declared = image.width * image.height
            if declared > MAX_PIXELS:
                raise ImageError(
                    f"{name}: {image.width:,}x{image.height:,} pixels is more than the "
                    f"{MAX_PIXELS:,} allowed (decompression bomb?)"
                )
            if max_side is not None:
                image.draft(None, _scaled_size(image.size, max_side))  # JPEG only; a no-op for other formats
            if image.width * image.height > max_pixels:
                raise ImageError(
                    f"{name}: {image.width:,}x{image.height:,} pixels is more than the "
                    f"{max_pixels:,} this decoder allows"
                )
            image.seek(0)  # first frame of an animated GIF
            image.load()
            decoded = eight_bit(image)  # reads the EXIF orientation of a 16-bit image, which may be corrupt
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name}: not an image PIL can read (PNG, JPEG, BMP, GIF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: too many pixels (decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name}: cannot decode ({str(e) or type(e).__name__}): truncated or corrupt?") from None
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
