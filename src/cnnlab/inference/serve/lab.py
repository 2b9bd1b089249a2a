"""The served runs: each run's model (one forward pass at a time: stage hooks are per model), its description,
curves, confusion matrix and the images of each of its cells, attributions and training snapshots; and the lab
they make together (`app.state.lab`)."""

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
from cnnlab.data.datasets import ImageDataset
from cnnlab.engine.checkpoint import CONFIG, METRICS
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.run import OpenOptions
from cnnlab.engine.snapshots import Snapshot, read_snapshots
from cnnlab.explain.attribution import convolutions, default_layer, explain_input
from cnnlab.explain.mistakes import confusion_cell, probabilities_of_test_set
from cnnlab.explain.stages import ReceptiveField, Stage, explain_cell, trace
from cnnlab.files import read_bounded
from cnnlab.inference.decode import load_image
from cnnlab.inference.numbers import read_number
from cnnlab.inference.predict import UNSURE_BELOW, Predictor, is_unsure
from cnnlab.inference.serve.bodies import Attribution, Cell
from cnnlab.inference.serve.limits import Admission
from cnnlab.models import count_parameters

SERVED_PIXELS = 6_000_000  # issue 13 asked for 4-8 MP (the CLI allows 40): one such decode is ~100 MB at most
DECODE_SIDE = 1024  # decode no finer than this: the digit ends up 20 pixels tall
MAX_METRICS_BYTES = 16 * 1024 * 1024
TOP_K = 3
MAX_SNAPSHOTS_SENT = 120  # a longer run's snapshots are thinned evenly (the first and the last kept)


class LabRun:
    """One served run: its model, description, curves and confusion matrix."""

    def __init__(self, run_dir: str | Path, options: OpenOptions = OpenOptions()):
        self.dir = Path(run_dir)
        self.predictor = Predictor(run_dir, options=options)
        self.run = self.predictor.run
        self.digits = self.predictor.digits
        self.lock = threading.Lock()
        self.confusion_matrix: dict | None = None
        self.test_data: ImageDataset | None = None
        self.test_probabilities: torch.Tensor | None = None
        self.about = self.describe()

    def describe(self) -> dict[str, Any]:
        """What `/runs` says of the run, the first convolution's kernels included."""
        run, info = self.run, self.run.info
        metrics = run.metrics or [{}]
        first_conv = next((m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        blank = torch.zeros(1, info.in_channels, *info.input_size)
        # torch.fx traces by patching nn.Module.__call__ for the whole process: the stages' trace is taken (and
        # kept) now, before the server's threads run models side by side, or another run's forward pass would
        # go through the tracer (an evaluation beside a first drawing failed with "not installed as a submodule").
        trace(run.model, blank)
        convs = convolutions(run.model, blank)
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
            "convolutions": convs,  # Grad-CAM's choices, in the order the forward pass calls them
            "grad_cam_layer": default_layer(run.model, blank) if convs else None,
            "origin": run.origin,  # a model file: what it is, how its inputs are scaled (shown with the stages)
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
            "map_stages": traced.map_stages,  # listed, of how many: `shown` in numbers, for the page's own words
            "notes": ([self.run.origin] if self.run.origin else []) + traced.notes,
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
            dataset, info = self.tests(), self.run.info
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

    def tests(self) -> ImageDataset:
        """The run's test set, loaded once (CnnlabError when its data is not on this machine)."""
        if self.test_data is None:
            self.test_data = self.run.load_dataset(allow_download=False)
        return self.test_data

    def probabilities(self) -> torch.Tensor:
        """Every test image's class probabilities, computed once."""
        if self.test_probabilities is None:
            dataset = self.tests()
            with self.lock:
                self.test_probabilities = probabilities_of_test_set(self.run.model, dataset, self.run.info)
        return self.test_probabilities

    def confusion_cell(self, true: int, predicted: int, limit: int) -> dict:
        """The test images of class `true` predicted as `predicted`, the `limit` most confident, each with its top 3."""
        classes = self.run.info.classes
        try:
            cell = confusion_cell(
                self.probabilities(), self.tests().test_labels, true=true, predicted=predicted, classes=classes
            )
        except CnnlabError as e:  # a class out of range
            raise HTTPException(422, str(e)) from None
        images = [
            {**self.test_image(e.index), "top": [{"class": classes[c], "index": c, "probability": p} for c, p in e.top]}
            for e in cell.examples[:limit]
        ]
        return {"true": true, "predicted": predicted, "count": len(cell.examples), "images": images}

    def test_image(self, index: int | None) -> dict:
        """Test image `index` (a random one when None): its label, and its pixels (a digit run) or a PNG."""
        dataset = self.tests()
        count = len(dataset.test_labels)
        if index is None:
            index = int(np.random.default_rng().integers(count))
        if not 0 <= index < count:
            raise HTTPException(422, f"test image {index} is out of range: the test set has images 0 to {count - 1}")
        image, label = dataset.test_images[index].numpy(), int(dataset.test_labels[index])
        picture = {"pixels": image[0].tolist()} if self.digits else {"image": png_data_url(image)}
        return {"index": index, "count": count, "label": label, "class": self.run.info.classes[label], **picture}

    def attribution(self, body: Attribution) -> dict:
        """Occlusion or Grad-CAM of a digit for one class, every value exact; a bad class or layer is a 422."""
        digit = torch.from_numpy(np.array(body.pixels, dtype=np.uint8))[None]
        try:
            with self.lock:
                result = explain_input(self.run, digit, body.method, target=body.target, layer=body.layer)
        except CnnlabError as e:
            raise HTTPException(422, str(e)) from None
        return {
            "method": result.method,
            "target": result.target,
            "class": self.run.info.classes[result.target],
            "probability": result.probability,
            "layer": result.layer,
            "channels": self.run.model.get_submodule(result.layer).out_channels if result.layer else None,
            "patch": result.patch,
            "stride": result.stride,
            "heat": result.heat.tolist(),
            "coarse": result.coarse.tolist(),
        }

    def snapshots(self) -> dict:
        """The run's training snapshots (engine/snapshots.py), at most MAX_SNAPSHOTS_SENT of them."""
        found = read_snapshots(self.dir)
        if len(found) > MAX_SNAPSHOTS_SENT:
            last = len(found) - 1
            found = [found[round(i * last / (MAX_SNAPSHOTS_SENT - 1))] for i in range(MAX_SNAPSHOTS_SENT)]
        if not found:
            return {"snapshots": []}
        probe = found[-1].probe
        return {
            "layer": found[-1].layer,
            "label": self.run.info.classes[found[-1].label] if found[-1].label < len(self.run.info.classes) else None,
            "probe": probe[0].tolist() if probe.shape[0] == 1 else png_data_url(probe),
            "snapshots": [snapshot_json(s) for s in found],
        }


class Lab:
    """The served runs, in the order given, and the admission queue their CPU work goes through."""

    def __init__(self, run_dirs: Iterable[str | Path], *, admission: Admission, options: OpenOptions = OpenOptions()):
        self.runs = [LabRun(run_dir, options) for run_dir in run_dirs]
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

    def probabilities(self, inputs: np.ndarray) -> torch.Tensor:
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


def quantised(values: torch.Tensor) -> dict:
    """Values as pictures: one byte a value over their own range, `lo + byte / 255 * (hi - lo)`, a shared colour
    scale for a stage's maps in a few kB. Never a number to print: `exact` is for that."""
    values = values.float()
    lo, hi = values.min().item(), values.max().item()
    scale = (values - lo) / (hi - lo) * 255 if hi > lo else torch.zeros_like(values)
    data = base64.b64encode(scale.round().to(torch.uint8).numpy().tobytes()).decode()
    return {"shape": list(values.shape), "lo": lo, "hi": hi, "data": data}


def exact(values: torch.Tensor) -> str:
    """Every value as the model computed it: float32, little-endian, base64."""
    return base64.b64encode(values.float().numpy().astype("<f4").tobytes()).decode()


def stage_json(stage: Stage) -> dict:
    """A stage: its values quantised for the pictures, and exact for every number the page prints."""
    values = stage.values.float()
    return {
        "name": stage.name,
        "module": stage.module,
        **quantised(values),
        "exact": exact(values),
        "conv": stage.conv,
        "values": values.tolist() if values.numel() <= 16 else None,  # logits and probabilities, as numbers
        "field": field_json(stage.receptive_field),
        "branches": [
            {"name": b.name, "module": b.module, "channels": b.channels, "field": field_json(b.receptive_field)}
            for b in stage.branches
        ],
    }


def field_json(field: ReceptiveField | None) -> dict | None:
    return None if field is None else {"size": field.size, "stride": field.stride, "offset": field.offset}


def snapshot_json(snapshot: Snapshot) -> dict:
    """One snapshot for the replay: the first convolution's kernels on their first input channel (exact) and the
    probe's maps as pictures."""
    return {
        "step": snapshot.step,
        "epoch": snapshot.epoch,
        "kernels": snapshot.kernels[:, 0].tolist(),
        "maps": quantised(torch.from_numpy(snapshot.maps)),
    }


def png_data_url(prepared: np.ndarray) -> str:
    """A (C, H, W) uint8 input as a data: URL the page can show as it is."""
    picture = Image.fromarray(prepared[0] if prepared.shape[0] == 1 else prepared.transpose(1, 2, 0))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
