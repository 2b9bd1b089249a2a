"""Image decoding for the lab's server and the digit preprocessor: the one decoder is data/decode.py (predict and
folder training use it too); these are its names as those modules import them."""

from cnnlab.data.decode import MAX_PIXELS, ImageError, NotAnImageError, load_image

__all__ = ["MAX_PIXELS", "ImageError", "NotAnImageError", "load_image"]
