"""`cnnlab export`: a trained run as ONNX (dynamic batch) or TorchScript, verified against PyTorch.

A model file (model.onnx) exports too: rebuilt as PyTorch layers, to TorchScript, or to ONNX again (the graph as
cnnlab rebuilt it, one self-contained file); run through onnxruntime, only to ONNX, as its graph in one file.

The model is exported and verified in memory, then written in one atomic write: a full disk or a bad
destination leaves nothing behind.
"""

import io
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.engine.run import OpenOptions, SavedRun, default_output, open_run
from cnnlab.external.onnx_graph import OnnxRuntimeModel
from cnnlab.files import check_output, write_output
from cnnlab.inference.onnx import onnx_session, to_onnx

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
TOLERANCE = 1e-4


def _verification_batch(run: SavedRun, data_dir: str | Path | None = None, n: int = 256) -> tuple[torch.Tensor, str]:
    """Up to `n` normalised test images, and what they are in words."""
    info = run.info
    try:
        images = run.load_dataset(data_dir=data_dir, allow_download=False).test_images[:n]
        what = f"{len(images):,} test images"
    except CnnlabError:  # the data is not at hand: random pixels still exercise every operation
        images = torch.randint(
            0,
            256,
            (n, info.in_channels, *info.input_size),
            dtype=torch.uint8,
            generator=torch.Generator().manual_seed(0),
        )
        what = f"{n} random images (the run's test images are not at hand)"
    return normalise(images, info.mean, info.std), what


def _torchscript(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example), buffer)
    return buffer.getvalue()


def export(
    run_dir: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    options: OpenOptions = OpenOptions(),
) -> tuple[Path, float, str]:
    """Export and verify on up to 256 test images; returns (path, largest absolute difference from PyTorch,
    what it was checked on). The default RUN_DIR/model.onnx (or .torchscript.pt) is replaced; `out` replaces an
    existing file only with `overwrite`, and never one of the run's own files."""
    if fmt not in FORMATS:
        raise CnnlabError(f"unknown format {fmt!r}; choose onnx or torchscript")
    run = open_run(run_dir, options)
    default, replaces = default_output(run_dir, FORMATS[fmt])
    path = Path(out) if out else default
    if not path.parent.is_dir():
        raise CnnlabError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise CnnlabError(f"cannot write {path}: it is a folder")
    overwrite = overwrite or (replaces and not out)
    check_output(path, overwrite=overwrite)  # before the export and its check, which take seconds
    if isinstance(run.model, OnnxRuntimeModel) and fmt != "onnx":
        raise CnnlabError(
            f"{run_dir} {run.model.note}: it has no PyTorch layers to trace; --format onnx writes its graph as one file"
        )
    model = run.model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # torch's stubs lack it
    x, checked_on = _verification_batch(run, data_dir)
    with torch.inference_mode():
        expected = model(x)
    if isinstance(model, OnnxRuntimeModel):  # its own graph, external weights taken in, run the same way
        data = model.onnx_bytes
        actual = OnnxRuntimeModel(data, model.signature)(x)
    elif fmt == "onnx":
        data = to_onnx(model, x[:2])
        actual = torch.from_numpy(onnx_session(data).run(None, {"input": x.numpy()})[0])
    else:
        data = _torchscript(model, x[:2])
        with torch.inference_mode():
            actual = torch.jit.load(io.BytesIO(data))(x)
    difference = (actual - expected).abs().max().item()
    if not difference <= TOLERANCE:  # NaN compares false either way: it must fail the check, not pass it
        raise CnnlabError(f"exported {fmt} model differs from PyTorch by {difference:.2e} (> {TOLERANCE})")
    return write_output(path, data, overwrite=overwrite), difference, checked_on
