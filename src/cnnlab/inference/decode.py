"""Decoding an uploaded or given image file safely: bombs, truncated and non-image bytes are refused."""
import io
import warnings

from PIL import Image, UnidentifiedImageError

from cnnlab import CnnlabError

MAX_PIXELS = 40_000_000  # a 40-megapixel photo is fine; a 50,000 x 50,000 "image" is a decompression bomb


class ImageError(CnnlabError):
    """An image file that cannot be read or holds no digit."""


class NotAnImageError(ImageError):
    """The bytes are not in any image format PIL reads."""


def load_image(data: bytes, name: str = "image") -> Image.Image:
    """Decode `data` as an image, refusing bombs, truncated and non-image files."""
    if not data:
        raise ImageError(f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{name}: {image.width:,}x{image.height:,} pixels is more than the "
                                 f"{MAX_PIXELS:,} allowed (decompression bomb?)")
            image.seek(0)  # first frame of an animated GIF
            image.load()
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name}: not an image PIL can read (PNG, JPEG, BMP, GIF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: too many pixels (decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name}: cannot decode ({str(e) or type(e).__name__}): truncated or corrupt?") from None
    return image
