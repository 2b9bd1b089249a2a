"""`cnnlab predict`: classify image files with a trained run, each read bounded and prepared as the run's
training images were (`Predictor.prepare`): MNIST-style (`preprocess.py`) for a digit run, fitted to the
input size (`data/folder.py`) for a run on colour or own images; a bad file is a per-file error, never a crash.
A digit run reads a line of digits as a number (`numbers.py`); one digit is answered as it always was."""

import io
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.data.decode import ImageError, read_image
from cnnlab.data.folder import fit_image, luma
from cnnlab.engine.run import OpenOptions, open_run
from cnnlab.files import check_output, write_output
from cnnlab.inference.export import FORMATS
from cnnlab.inference.numbers import NotANumberError, Reading, read_number
from cnnlab.inference.onnx import onnx_session
from cnnlab.inference.preprocess import preprocess

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A top probability under this is reported as "unsure". Chosen on data other than the test set (docs/real-digits.md):
# on 1,100 generated real-world digits (benchmarks/real_digits.py --seed 1), 0.6 leaves robust's stated answers
# 98.7% right (95.6% with no threshold: wrong answers stated as fact fall from 4.4% to 1.2% of images) while it
# calls 1.5% of MNIST's validation digits unsure (cnn: 0.7%); 0.7 would flag twice as many clean digits.
UNSURE_BELOW = 0.6
# --show-input tiles the inputs 16 a row and draws at most 256 of 28x28 or 32x32 (fewer of larger inputs, at
# least one): 2,000 inputs side by side made a PNG 448,000 pixels wide.
SHEET_COLUMNS = 16
SHEET_IMAGES = 256
SHEET_PIXELS = SHEET_IMAGES * 32 * 32
# When a file reads as a number, --show-input draws a row per file instead: the image NUMBER_ROW px high (at most
# NUMBER_IMAGE_WIDTH wide) with its digits' boxes, then each digit's 28x28 input at that height; at most
# NUMBER_ROWS rows (a sheet of at most about 14 megapixels, as the tiled one).
NUMBER_ROW, NUMBER_IMAGE_WIDTH, NUMBER_ROWS = 112, 448, 64
SURE, UNSURE = (22, 163, 74), (234, 88, 12)  # the colours of a digit's box and frame: green, or orange when unsure


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders replaced by the image files in them, sorted."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            files.append(path)
    return files


class Predictor:
    """A trained run (or a model file, model.onnx) ready to classify images, with PyTorch eager or onnxruntime;
    `prepare` makes its inputs."""

    def __init__(self, run_dir: str | Path, backend: str = "torch", *, options: OpenOptions = OpenOptions()):
        if backend not in ("torch", "onnxruntime"):
            raise CnnlabError(f"unknown backend {backend!r}; choose torch or onnxruntime")
        self.run = open_run(run_dir, options)
        info = self.run.info
        # A digit run's inputs are made the way MNIST was; any other run's the way its training images were.
        self.digits = info.mnist_style and (info.in_channels, info.input_size) == (1, (28, 28))
        self.model, self.classes = self.run.model, info.classes
        self.session = None
        if backend == "onnxruntime" and not self.run.checkpoint:  # a model file: the graph as it is in the file
            from cnnlab.external.onnx_graph import runtime_model

            self.model = runtime_model(self.model)
        elif backend == "onnxruntime":
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


def predict_files(
    run_dir: str | Path,
    paths: Iterable[str | Path],
    top_k: int = 3,
    backend: str = "torch",
    as_json: bool = False,
    show_input: str | Path | None = None,
    log: Callable[[str], object] = print,
    *,
    overwrite: bool = False,
    note: Callable[[str], object] = lambda line: print(line, file=sys.stderr),
    options: OpenOptions = OpenOptions(),
) -> int:
    """Classify every file; print one line (or JSON object) per file with `log`; return the exit code. With
    `show_input`, also draw the inputs the model saw into that PNG (an existing file replaced only with
    `overwrite`) and say how many with `note` (stderr: stdout holds the results), as it says what a model file
    is and how its inputs were scaled."""
    if top_k < 1:
        raise CnnlabError(f"--top-k must be at least 1, got {top_k}")
    if show_input:
        check_output(show_input, overwrite=overwrite)  # before classifying what may be thousands of files
    predictor = Predictor(run_dir, backend, options=options)
    if predictor.run.origin:
        note(predictor.run.origin)
    files = expand_paths(paths)
    if not files:
        raise CnnlabError("no image files given (folders are searched for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
    height, width = predictor.run.info.input_size
    drawn = min(SHEET_IMAGES, max(1, SHEET_PIXELS // (height * width)))
    failures, shown, rows, numbers = 0, list[np.ndarray](), list[Image.Image](), False
    for path in files:
        result, inputs, row = _answer(predictor, path, top_k, draw=bool(show_input) and len(rows) < NUMBER_ROWS)
        shown += inputs[: drawn - len(shown)]
        rows += [row] if row else []
        numbers |= len(result.get("digits", [])) > 1
        failures += "error" in result
        log(json.dumps(result) if as_json else _result_line(path, result))
    if show_input and (rows if numbers else shown):
        sheet = number_sheet(rows) if numbers else input_sheet(shown)
        write_output(show_input, _png(sheet), overwrite=overwrite)
        classified, count = len(files) - failures, len(rows) if numbers else len(shown)
        of = f", the first {count:,} of the {classified:,} {'read' if numbers else 'classified'}" * (classified > count)
        what = "the digits found and the model's inputs" if numbers else "the model's inputs"
        note(f"wrote {show_input}: {what} for {count:,} image{'s' * (count != 1)}{of}")
    return 1 if failures else 0


def _answer(
    predictor: Predictor, path: Path, top_k: int, *, draw: bool
) -> tuple[dict, list[np.ndarray], Image.Image | None]:
    """One file's answer (a number for a digit run), the inputs the model saw, and, when asked to `draw`, the
    file's row of the number sheet (digit runs)."""
    try:
        image = read_image(path)
        if not predictor.digits:
            prepared = predictor.prepare(image, str(path))
            top = predictor.top_k(prepared, top_k)
            return {"file": str(path), "top": top, "unsure": is_unsure(top)}, [prepared], None
        name = str(path)
        reading = read_number(image, classifier=predictor, unsure_below=UNSURE_BELOW, name=name, top_k=top_k)
        inputs = [d.input[None] for d in reading.digits]
        return {"file": name, **_digit_fields(reading)}, inputs, number_row(image, reading) if draw else None
    except NotANumberError as e:  # ink, but not one line of digits: said so, not forced into a number
        return {"file": str(path), "error": str(e), "not_a_number": True}, [], None
    except CnnlabError as e:  # ImageError, or a file that cannot be read
        return {"file": str(path), "error": str(e)}, [], None


def _digit_fields(reading: Reading) -> dict:
    """A digit run's answer for one file: the reading's fields, and for one digit today's "top" as well."""
    fields = reading.as_json()
    return {"top": reading.digits[0].top, **fields} if len(reading.digits) == 1 else fields


def _result_line(path: Path, result: dict) -> str:
    if result.get("not_a_number"):
        return f"{path}: not a number: {result['error'].removeprefix(str(path) + ': ')}"
    if "error" in result:
        return f"{path}: error: {result['error'].removeprefix(str(path) + ': ')}"
    split = any(d["split_unsure"] for d in result.get("digits", [])) and len(result["digits"]) == 1
    unsure = "unsure (one digit, or more?): " if split else "unsure: " if result["unsure"] else ""
    if len(result.get("digits", [])) > 1:  # a number, and each digit's confidence, "?" where it is unsure
        digits = ", ".join(
            f"{d['top'][0]['class']} {d['top'][0]['probability']:.1%}{'?' * d['unsure']}" for d in result["digits"]
        )
        return f"{path}: {unsure}{result['number']} ({digits})"
    classes = ", ".join(f"{t['class']} ({t['probability']:.1%})" for t in result["top"])
    return f"{path}: {unsure}{classes}"


def input_sheet(inputs: list[np.ndarray]) -> Image.Image:
    """Inputs (C, H, W) uint8 tiled SHEET_COLUMNS a row, each enlarged by a whole factor to about 224 pixels."""
    channels, height, width = inputs[0].shape
    columns = min(len(inputs), SHEET_COLUMNS)
    rows = -(-len(inputs) // columns)
    sheet = np.zeros((rows * height, columns * width, channels), dtype=np.uint8)  # black where a row ends early
    for i, prepared in enumerate(inputs):
        row, column = divmod(i, columns)
        sheet[row * height : (row + 1) * height, column * width : (column + 1) * width] = prepared.transpose(1, 2, 0)
    zoom = max(1, 224 // height)  # 8x for 28-pixel digits
    picture = Image.fromarray(sheet[..., 0] if channels == 1 else sheet)
    return picture.resize((picture.width * zoom, picture.height * zoom), Image.Resampling.NEAREST)


def number_row(image: Image.Image, reading: Reading) -> Image.Image:
    """One row of the number sheet: the image around the digits (a line's height of it on every side) with
    each digit's box, then each digit's 28x28 input, framed in its box's colour (SURE, or UNSURE when the
    digit is)."""
    boxes = np.array([d.box for d in reading.digits])
    left, top = boxes[:, :2].min(axis=0)
    right, bottom = boxes[:, 2:].max(axis=0)
    margin = bottom - top
    region = (
        max(0, left - margin),
        max(0, top - margin),
        min(image.width, right + margin),
        min(image.height, bottom + margin),
    )
    around = image.crop(region)
    scale = min(NUMBER_ROW / around.height, NUMBER_IMAGE_WIDTH / around.width)
    size = (max(1, round(around.width * scale)), max(1, round(around.height * scale)))
    picture = _on_white(around).resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    gap = 8
    row = Image.new("RGB", (size[0] + gap + len(reading.digits) * (NUMBER_ROW + 4), NUMBER_ROW), (32, 32, 32))
    row.paste(picture, (0, (NUMBER_ROW - size[1]) // 2))
    draw = ImageDraw.Draw(row)
    for k, digit in enumerate(reading.digits):
        colour = UNSURE if digit.unsure or digit.split_unsure else SURE
        left, right = ((v - region[0]) * scale for v in digit.box[::2])
        top, bottom = ((v - region[1]) * scale + (NUMBER_ROW - size[1]) // 2 for v in digit.box[1::2])
        draw.rectangle((left, top, max(left, right - 1), max(top, bottom - 1)), outline=colour, width=2)
        x = size[0] + gap + k * (NUMBER_ROW + 4)
        row.paste(Image.fromarray(digit.input).resize((NUMBER_ROW, NUMBER_ROW), Image.Resampling.NEAREST), (x, 0))
        draw.rectangle((x, 0, x + NUMBER_ROW - 1, NUMBER_ROW - 1), outline=colour, width=2)
    return row


def number_sheet(rows: list[Image.Image]) -> Image.Image:
    """The rows of `number_row`, one a file, one under the other."""
    sheet = Image.new("RGB", (max(r.width for r in rows), len(rows) * (NUMBER_ROW + 8) - 8), (32, 32, 32))
    for k, row in enumerate(rows):
        sheet.paste(row, (0, k * (NUMBER_ROW + 8)))
    return sheet


def _on_white(image: Image.Image) -> Image.Image:
    """The image in RGB, transparent parts on white (a drawing exported with a transparent background)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
