"""`cnnlab predict`: classify image files with a trained run, each read bounded and prepared as the run's
training images were (`Predictor.prepare`): MNIST-style (`preprocess.py`) for a digit run, fitted to the
input size (`data/folder.py`) for a run on colour or own images; a bad file is a per-file error, never a crash."""

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.data.decode import ImageError, read_image
from cnnlab.data.folder import fit_image, luma
from cnnlab.engine.run import open_run
from cnnlab.files import write_bytes
from cnnlab.inference.export import FORMATS
from cnnlab.inference.onnx import onnx_session
from cnnlab.inference.preprocess import preprocess

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A top probability under this is reported as "unsure". Chosen on data other than the test set (docs/real-digits.md):
# on 1,100 generated real-world digits (benchmarks/real_digits.py --seed 1), 0.6 leaves robust's stated answers
# 98.7% right (95.6% with no threshold: wrong answers stated as fact fall from 4.4% to 1.2% of images) while it
# calls 1.5% of MNIST's validation digits unsure (cnn: 0.7%); 0.7 would flag twice as many clean digits.
UNSURE_BELOW = 0.6


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
    """A trained run ready to classify images, with PyTorch eager or onnxruntime; `prepare` makes its inputs."""

    def __init__(self, run_dir, backend: str = "torch"):
        if backend not in ("torch", "onnxruntime"):
            raise CnnlabError(f"unknown backend {backend!r}; choose torch or onnxruntime")
        self.run = open_run(run_dir)
        info = self.run.info
        # A digit run's inputs are made the way MNIST was; any other run's the way its training images were.
        self.digits = info.mnist_style and (info.in_channels, info.input_size) == (1, (28, 28))
        self.model, self.classes = self.run.model, info.classes
        self.session = None
        if backend == "onnxruntime":
            path = Path(run_dir) / FORMATS["onnx"]
            if not path.is_file():
                raise CnnlabError(f"{path} not found: run `cnnlab export {run_dir} --format onnx` first")
            self.session = onnx_session(path)

    def prepare(self, image: Image.Image, name: str = "image") -> np.ndarray:
        """A decoded image -> the model's input, (C, H, W) uint8: for a digit run, MNIST-style preprocessing
        (an ImageError when no ink is found); else scaled, aspect ratio kept, to cover the input size and
        centre-cropped, exactly as the training images were (data/folder.py fit_image), grey when the run is."""
        if self.digits:
            return preprocess(image, name)[None]
        fitted = fit_image(image, self.run.info.input_size)
        return luma(fitted) if self.run.info.in_channels == 1 else fitted

    def probabilities(self, inputs: np.ndarray) -> torch.Tensor:
        """(N, C, H, W) uint8, or (N, H, W) for one channel -> (N, classes) probabilities."""
        x = torch.from_numpy(np.ascontiguousarray(inputs))
        x = x.unsqueeze(1) if x.dim() == 3 else x
        info = self.run.info
        if x.shape[1:] != (info.in_channels, *info.input_size):
            shape = lambda dims: "x".join(map(str, dims))
            raise ImageError(
                f"the model takes {shape((info.in_channels, *info.input_size))} inputs, not "
                f"{shape(x.shape[1:])}: prepare images with Predictor.prepare"
            )
        x = normalise(x, info.mean, info.std)
        if self.session is not None:
            output = torch.from_numpy(self.session.run(None, {"input": x.numpy()})[0])
        else:
            with torch.inference_mode():
                output = self.model(x)
        return output.float().softmax(1)  # softmax of log-probabilities is the same softmax

    def top_k(self, prepared: np.ndarray, k: int) -> list[dict]:
        """The k most probable classes of one input, (C, H, W) from `prepare`, or (H, W) for one channel."""
        probabilities = self.probabilities(prepared[None])[0]
        values, indices = probabilities.topk(min(k, len(self.classes)))
        return [
            {"class": self.classes[i], "index": i, "probability": round(p, 6)}
            for p, i in zip(values.tolist(), indices.tolist())
        ]


def is_unsure(top: list[dict]) -> bool:
    """True when the best class is not probable enough to be stated as the answer."""
    return top[0]["probability"] < UNSURE_BELOW


def predict_files(run_dir, paths, top_k=3, backend="torch", as_json=False, show_input=None, log=print) -> int:
    """Classify every file; print one line (or JSON object) per file; return the exit code."""
    if top_k < 1:
        raise CnnlabError(f"--top-k must be at least 1, got {top_k}")
    predictor = Predictor(run_dir, backend)
    files = expand_paths(paths)
    if not files:
        raise CnnlabError("no image files given (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    failures, shown = 0, []
    for path in files:
        try:
            prepared = predictor.prepare(read_image(path), str(path))
            top = predictor.top_k(prepared, top_k)
            result: dict[str, Any] = {"file": str(path), "top": top, "unsure": is_unsure(top)}
            shown.append(prepared)
        except CnnlabError as e:  # ImageError, or a file that cannot be read
            result = {"file": str(path), "error": str(e)}
        failures += "error" in result
        if as_json:
            log(json.dumps(result))
        elif "error" in result:
            log(f"{path}: error: {result['error'].removeprefix(str(path) + ': ')}")
        else:
            log(
                f"{path}: "
                + ("unsure: " if result["unsure"] else "")
                + ", ".join(f"{t['class']} ({t['probability']:.1%})" for t in result["top"])
            )
    if show_input and shown:
        strip = np.concatenate(shown, axis=2).transpose(1, 2, 0)  # side by side, (H, W, C)
        zoom = max(1, 224 // strip.shape[0])  # 8x for 28-pixel digits
        picture = Image.fromarray(strip[..., 0] if strip.shape[2] == 1 else strip)
        write_bytes(
            show_input, _png(picture.resize((strip.shape[1] * zoom, strip.shape[0] * zoom), Image.Resampling.NEAREST))
        )
    return 1 if failures else 0


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
