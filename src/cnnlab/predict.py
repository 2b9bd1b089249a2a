"""`cnnlab predict`: classify image files the way MNIST itself was made.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio, then centred by
centre of mass in a 28x28 field (LeCun et al.). `preprocess` does the same to any photo or scan:
grayscale, ink made bright on dark, background removed, cropped to the ink, longer side scaled to 20 px,
pasted so that the centre of mass lands on the centre. Bad files get a per-file error, never a crash.
"""
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # a 40-megapixel photo is fine; a 50,000 x 50,000 "image" is a decompression bomb
INK_THRESHOLD = 40       # after background removal, the brightest pixel must reach this to count as ink


class ImageError(CnnlabError):
    """An image file that cannot be read or holds no digit."""


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
        raise ImageError(f"{name}: not an image PIL can read (PNG, JPEG, BMP, GIF, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name}: too many pixels (decompression bomb?)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name}: cannot decode ({str(e) or type(e).__name__}): truncated or corrupt?") from None
    return image


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


def expand_paths(paths) -> list[Path]:
    """Files as given; folders replaced by the image files in them, sorted."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


class Predictor:
    """A trained run ready to classify 28x28 inputs, with PyTorch eager or onnxruntime."""

    def __init__(self, run_dir, backend: str = "torch"):
        from cnnlab.engine.train import load_trained
        self.model, self.payload = load_trained(run_dir)
        info = self.payload["dataset"]
        if (info["in_channels"], list(info["input_size"])) != (1, [28, 28]):
            raise CnnlabError(f"{run_dir}: predict needs a model of 1x28x28 input, this one takes "
                              f"{info['in_channels']}x{info['input_size'][0]}x{info['input_size'][1]}")
        self.classes, self.mean, self.std = info["classes"], info["mean"], info["std"]
        self.backend = backend
        if backend == "onnxruntime":
            from cnnlab.export import onnx_session
            self.session = onnx_session(Path(run_dir))
        elif backend != "torch":
            raise CnnlabError(f"unknown backend {backend!r}; choose torch or onnxruntime")

    def probabilities(self, digits: np.ndarray) -> torch.Tensor:
        """(N, 28, 28) uint8 -> (N, classes) probabilities."""
        x = normalise(torch.from_numpy(np.ascontiguousarray(digits)).unsqueeze(1), self.mean, self.std)
        if self.backend == "onnxruntime":
            output = torch.from_numpy(self.session.run(None, {"input": x.numpy()})[0])
        else:
            with torch.inference_mode():
                output = self.model(x)
        return output.float().softmax(1)  # softmax of log-probabilities is the same softmax

    def top_k(self, digit: np.ndarray, k: int) -> list[dict]:
        probabilities = self.probabilities(digit[None])[0]
        values, indices = probabilities.topk(min(k, len(self.classes)))
        return [{"class": self.classes[i], "index": i, "probability": round(p, 6)}
                for p, i in zip(values.tolist(), indices.tolist())]


def predict_files(run_dir, paths, top_k=3, backend="torch", as_json=False, show_input=None, log=print) -> int:
    """Classify every file; print one line (or JSON object) per file; return the exit code."""
    predictor = Predictor(run_dir, backend)
    files = expand_paths(paths)
    if not files:
        raise CnnlabError("no image files given (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    failures, shown = 0, []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as e:
            result = {"file": str(path), "error": f"{path}: cannot read ({e.strerror})"}
        else:
            try:
                digit = preprocess(load_image(data, str(path)), str(path))
                result = {"file": str(path), "top": predictor.top_k(digit, top_k)}
                shown.append(digit)
            except ImageError as e:
                result = {"file": str(path), "error": str(e)}
        failures += "error" in result
        if as_json:
            log(json.dumps(result))
        elif "error" in result:
            log(f"{path}: error: {result['error'].removeprefix(str(path) + ': ')}")
        else:
            log(f"{path}: " + ", ".join(f"{t['class']} ({t['probability']:.1%})" for t in result["top"]))
    if show_input and shown:
        strip = np.concatenate(shown, axis=1)
        Image.fromarray(strip).resize((strip.shape[1] * 8, strip.shape[0] * 8), Image.NEAREST).save(show_input)
    return 1 if failures else 0
