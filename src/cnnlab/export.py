"""`cnnlab export`: a trained run as ONNX (dynamic batch) or TorchScript, verified against PyTorch."""
import contextlib
import io
import logging
import os
import warnings
import tempfile
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.data.datasets import load_dataset
from cnnlab.engine.train import load_trained, run_data_dir

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
TOLERANCE = 1e-4


def _verification_batch(payload, data_dir=None, n=256) -> torch.Tensor:
    info = payload["dataset"]
    try:
        images = load_dataset(info["name"], run_data_dir(payload, data_dir), allow_download=False).test_images[:n]
    except CnnlabError:  # the data is not at hand: random pixels still exercise every operation
        images = torch.randint(0, 256, (n, info["in_channels"], *info["input_size"]), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(0))
    return normalise(images, info["mean"], info["std"])


def onnx_session(run_dir: Path):
    import onnxruntime
    path = run_dir / FORMATS["onnx"]
    if not path.exists():
        raise CnnlabError(f"{path} not found: run `cnnlab export {run_dir} --format onnx` first")
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _write_onnx(model, example, path: Path) -> None:
    import onnx
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # it warns about torchvision ops we do not use
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # and narrates every pass
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=["input"], output_names=["output"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
    program.save(str(path))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def _run_onnx(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def export(run_dir, fmt: str = "onnx", out=None, data_dir=None) -> tuple[Path, float]:
    """Export and verify on 256 test images; returns (path, largest absolute difference from PyTorch)."""
    if fmt not in FORMATS:
        raise CnnlabError(f"unknown format {fmt!r}; choose onnx or torchscript")
    run_dir = Path(run_dir)
    model, payload = load_trained(run_dir)
    model = model.to(memory_format=torch.contiguous_format)
    path = Path(out) if out else run_dir / FORMATS[fmt]
    x = _verification_batch(payload, data_dir)
    with torch.inference_mode():
        expected = model(x)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        if fmt == "onnx":
            _write_onnx(model, x[:2], tmp)
            actual = _run_onnx(tmp, x)
        else:
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, x[:2]), str(tmp))
            with torch.inference_mode():
                actual = torch.jit.load(str(tmp))(x)
        difference = (actual - expected).abs().max().item()
        if difference > TOLERANCE:
            raise CnnlabError(f"exported {fmt} model differs from PyTorch by {difference:.2e} (> {TOLERANCE})")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path, difference
