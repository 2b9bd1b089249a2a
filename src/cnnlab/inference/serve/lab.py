"""The served runs: each run's model (one forward pass at a time: stage hooks are per model), its description,
curves and confusion matrix; and the lab they make together (`app.state.lab`)."""

import base64
import io
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import HTTPException, UploadFile
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.engine.checkpoint import CONFIG, METRICS
from cnnlab.engine.evaluate import evaluate
from cnnlab.explain.stages import Stage, explain_cell, trace
from cnnlab.files import read_bounded
from cnnlab.inference.decode import load_image
from cnnlab.inference.numbers import read_number
from cnnlab.inference.predict import UNSURE_BELOW, Predictor, is_unsure
from cnnlab.inference.serve.bodies import Cell
from cnnlab.inference.serve.limits import Admission
from cnnlab.models import count_parameters

SERVED_PIXELS = 6_000_000  # issue 13 asked for 4-8 MP (the CLI allows 40): one such decode is ~100 MB at most
DECODE_SIDE = 1024  # decode no finer than this: the digit ends up 20 pixels tall
MAX_METRICS_BYTES = 16 * 1024 * 1024
TOP_K = 3


class LabRun:
    """One served run: its model, description, curves and confusion matrix."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.predictor = Predictor(run_dir)
        self.run = self.predictor.run
        self.digits = self.predictor.digits
        self.lock = threading.Lock()
        self.confusion_matrix: dict | None = None
        self.about = self.describe()

    def describe(self) -> dict[str, Any]:
        """What `/runs` says of the run, the first convolution's kernels included."""
        run, info = self.run, self.run.info
        metrics = run.metrics or [{}]
        first_conv = next((m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        return {
            "name": run.model_name,
            "run": self.dir.name,
            "parameters": count_parameters(run.model),
            "dataset": info.name,
            "classes": list(info.classes),
            "test_accuracy": metrics[-1].get("test_accuracy"),
            "epochs": run.epoch,
            "mean": info.mean,
            "std": info.std,
            "kernels": first_conv.weight.detach()[:, 0].tolist() if first_conv is not None else None,
            "input": "draw" if self.digits else "upload",  # what the page offers: the canvas or an upload box
            "channels": info.in_channels,
            "input_size": list(info.input_size),
        }

    def prepare(self, data: bytes, name: str) -> np.ndarray:
        """An uploaded image, decoded within the server's pixel limit -> this run's input: the 28x28 digit of a
        digit run, else (C, H, W) fitted as the training images were."""
        prepared = self.predictor.prepare(load_image(data, name, max_pixels=SERVED_PIXELS, max_side=DECODE_SIDE), name)
        return prepared[0] if self.digits else prepared

    def require_digits(self, what: str) -> None:
        """A 422 for what only a digit run takes (28x28 pixels, the stages and multiply-add views)."""
        if not self.digits:
            info = self.run.info
            raise HTTPException(
                422,
                f"run {self.dir.name} takes {info.in_channels}x{info.input_size[0]}x{info.input_size[1]} images of "
                f'{info.name}, not {what}: POST /predict an image file (multipart/form-data, field "file")',
            )

    def normalised(self, digit: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(digit))[None, None]
        return normalise(x, self.run.info.mean, self.run.info.std)

    def predict(self, prepared: np.ndarray) -> dict:
        """The top classes; with the digit as 28x28 ints, or an image run's input as the PNG the model sees. A
        digit's answer has a number's fields too: "number" (its class), and "digits" (the one digit, boxed by
        its 28x28 field)."""
        with self.lock:
            top = self.predictor.top_k(prepared, TOP_K)
        if not self.digits:
            return {"predictions": top, "unsure": is_unsure(top), "seen": png_data_url(prepared)}
        pixels, unsure = prepared.tolist(), is_unsure(top)
        digit = {"box": [0, 0, 28, 28], "top": top, "unsure": unsure, "split_unsure": False, "input": pixels}
        return {"predictions": top, "unsure": unsure, "input": pixels, "number": top[0]["class"], "digits": [digit]}

    def read(self, data: bytes, name: str) -> dict:
        """An uploaded image of a digit or of a line of digits (a digit run) -> POST /predict's answer: the
        reading (`Reading.as_json`, boxes in the upload's pixels) with each digit's 28x28 input; for one digit
        also its "predictions" and "input", as a digit was always answered. NotANumberError (a 422) for ink
        that is not one line of digits."""
        image = load_image(data, name, max_pixels=SERVED_PIXELS, max_side=DECODE_SIDE)
        reading = read_number(image, classifier=_Locked(self), unsure_below=UNSURE_BELOW, name=name, top_k=TOP_K)
        answer = reading.as_json(scale=_decoded_scale(data, image))
        for fields, digit in zip(answer["digits"], reading.digits):
            fields["input"] = digit.input.tolist()
        if len(reading.digits) == 1:
            answer |= {"predictions": reading.digits[0].top, "input": reading.digits[0].input.tolist()}
        return answer

    def activations(self, digit: np.ndarray) -> dict:
        with self.lock:
            traced = trace(self.run.model, self.normalised(digit))
            top = self.predictor.top_k(digit, TOP_K)
        return {
            "predictions": top,
            "unsure": is_unsure(top),
            "input": digit.tolist(),
            "shown": traced.shown,
            "notes": traced.notes,
            "stages": [stage_json(s) for s in traced.stages],
        }

    def explain(self, cell: Cell) -> dict:
        digit = np.array(cell.pixels, dtype=np.uint8)
        with self.lock:
            conv = trace(self.run.model, self.normalised(digit)).convs.get(cell.module)
        if conv is None:
            raise HTTPException(422, f"{cell.module!r} is not a convolution call shown by the stages")
        try:
            return explain_cell(conv, cell.channel, cell.row, cell.col)
        except ValueError as e:  # outside the convolution's output
            raise HTTPException(422, str(e)) from None

    def metrics(self) -> dict:
        """metrics.jsonl as the engine writes it (whole, atomically, each epoch), and the planned epochs."""
        rows = [row for row in map(_json_or_none, _read_text(self.dir / METRICS).splitlines()) if isinstance(row, dict)]
        config = _json_or_none(_read_text(self.dir / CONFIG))
        planned = config.get("epochs") if isinstance(config, dict) else None
        training = isinstance(planned, int) and len(rows) < planned
        return {"rows": rows, "epochs": planned if isinstance(planned, int) else None, "training": training}

    def confusion(self) -> dict:
        """The confusion matrix on the run's test set, as `cnnlab evaluate` counts it (computed once)."""
        if self.confusion_matrix is None:
            dataset, info = self.run.load_dataset(allow_download=False), self.run.info
            with self.lock:
                result = evaluate(
                    self.run.model,
                    dataset.test_images,
                    dataset.test_labels,
                    mean=info.mean,
                    std=info.std,
                    num_classes=info.num_classes,
                )
            self.confusion_matrix = {
                "classes": list(info.classes),
                "matrix": result.confusion.tolist(),
                "accuracy": result.accuracy,
            }
        return self.confusion_matrix


class Lab:
    """The served runs, in the order given, and the admission queue their CPU work goes through."""

    def __init__(self, run_dirs: Iterable[str | Path], *, admission: Admission):
        self.runs = [LabRun(run_dir) for run_dir in run_dirs]
        self.admission = admission
        if len({run.digits for run in self.runs}) > 1:
            listed = lambda digits: ", ".join(str(run.dir) for run in self.runs if run.digits == digits)
            raise CnnlabError(
                f"digit runs ({listed(True)}) and image runs ({listed(False)}) are not served together: the page has "
                "one input for all its runs, a canvas or an upload box; serve them separately (another `cnnlab serve "
                "--port`)"
            )

    @property
    def description(self) -> str:
        return "The lab: " + ", ".join(f"{r.about['name']} ({r.about['run']})" for r in self.runs)

    def run_at(self, index: int) -> LabRun:
        if not 0 <= index < len(self.runs):  # a path's {index} may be negative: not the last run counted from the end
            raise HTTPException(404, f"no run {index}: this server has runs 0 to {len(self.runs) - 1}")
        return self.runs[index]

    async def input_of(self, file: UploadFile, run: LabRun) -> np.ndarray:
        """An upload decoded and prepared for `run`, through the admission queue."""
        return await self.admission.run(run.prepare, await file.read(), file.filename or "upload")


class _Locked:
    """A run's predictor for the number reader, one forward pass at a time (the stage hooks are per model); the
    reader's own work on the image runs outside the lock."""

    def __init__(self, run: LabRun):
        self.run = run
        self.classes = run.predictor.classes

    def probabilities(self, inputs: np.ndarray):
        with self.run.lock:
            return self.run.predictor.probabilities(inputs)


def _decoded_scale(data: bytes, image: Image.Image) -> float:
    """The upload's pixels per pixel of `image`, its decode (reduced by the decoder for a large photo)."""
    with Image.open(io.BytesIO(data)) as original:  # decoded once already: only its header is read again
        return original.width / image.width


def _read_text(path: Path) -> str:
    """A run's own small text file, or "" before it exists (or when it is not one cnnlab could have written)."""
    try:
        return read_bounded(path, MAX_METRICS_BYTES).decode() if path.exists() else ""
    except (CnnlabError, UnicodeDecodeError):
        return ""


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:  # a line cut short or edited by hand: skipped, the curves show the rest
        return None


def stage_json(stage: Stage) -> dict:
    """A stage quantised to one byte a value over its own range: a shared colour scale for its maps, and a
    response of a few kB (a value is `lo + byte / 255 * (hi - lo)`)."""
    values = stage.values.float()
    lo, hi = values.min().item(), values.max().item()
    scale = (values - lo) / (hi - lo) * 255 if hi > lo else torch.zeros_like(values)
    field = stage.receptive_field
    return {
        "name": stage.name,
        "module": stage.module,
        "shape": list(values.shape),
        "conv": stage.conv,
        "lo": lo,
        "hi": hi,
        "data": base64.b64encode(scale.round().to(torch.uint8).numpy().tobytes()).decode(),
        "values": values.tolist() if values.numel() <= 16 else None,  # logits and probabilities, exactly
        "field": field and {"size": field.size, "stride": field.stride, "offset": field.offset},
        "branches": [{"name": b.name, "module": b.module, "channels": b.channels} for b in stage.branches],
    }


def png_data_url(prepared: np.ndarray) -> str:
    """A (C, H, W) uint8 input as a data: URL the page can show as it is."""
    picture = Image.fromarray(prepared[0] if prepared.shape[0] == 1 else prepared.transpose(1, 2, 0))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
