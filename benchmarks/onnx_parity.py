"""How closely ONNX files rebuilt as PyTorch layers (cnnlab.external.onnx_graph) match onnxruntime and the
PyTorch model they were exported from (a benchmark, not a test).

    python benchmarks/onnx_parity.py [--models cnn,inception] [--dynamo] [--opset 13]

Each registered model (random weights, seed 0) on 1x28x28 and 3x32x32, exported with plain torch.onnx.export
(the TorchScript exporter at --opset, or the dynamo exporter), then loaded back with load_onnx. Printed: what
it became, the parity load_onnx measured against onnxruntime, the largest difference from the PyTorch model on
64 random images and the largest score (random weights make deep ResNets' scores huge: the differences are
relative to it), the parameter counts of both, and the seconds load_onnx took.
"""

import argparse
import contextlib
import io
import logging
import tempfile
import time
import warnings
from pathlib import Path

import torch

from cnnlab.external.onnx_graph import OnnxRuntimeModel, load_onnx
from cnnlab.models.registry import create_model, list_models
from cnnlab.models.stats import count_parameters
from cnnlab.tables import format_table


def export(model, path: Path, shape, dynamo: bool, opset: int) -> None:
    example = (torch.randn(2, *shape),)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, example, path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            axes = {"input": {0: "n"}, "output": {0: "n"}}
            torch.onnx.export(model, example, path, dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_axes=axes)  # fmt: skip


def measure(name: str, shape, folder: Path, dynamo: bool, opset: int) -> list[str]:
    torch.manual_seed(0)
    model = create_model(name, in_channels=shape[0], input_size=shape[1:]).eval()
    path = folder / f"{name}-{shape[0]}.onnx"
    export(model, path, shape, dynamo, opset)
    start = time.perf_counter()
    loaded = load_onnx(path)
    seconds = time.perf_counter() - start
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        difference = (loaded(x) - expected).abs().max().item()
    runtime = isinstance(loaded, OnnxRuntimeModel)
    kind = f"onnxruntime ({', '.join(loaded.unsupported)})" if runtime else "layers"
    parity = "-" if loaded.parity is None else f"{loaded.parity:.1e}"
    parameters = f"{count_parameters(loaded):,} / {count_parameters(model):,}"
    scale = f"{expected.abs().max().item():.1e}"
    return [name, "x".join(map(str, shape)), kind, parity, f"{difference:.1e}", scale, parameters, f"{seconds:.1f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="*", help="comma-separated names or one pattern (default: all)")
    parser.add_argument("--dynamo", action="store_true", help="export with the dynamo exporter")
    parser.add_argument("--opset", type=int, default=13, help="the TorchScript exporter's opset (default: 13)")
    args = parser.parse_args()
    names = args.models.split(",") if "," in args.models else list_models(args.models)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            for shape in ((1, 28, 28), (3, 32, 32)):
                rows.append(measure(name, shape, Path(folder), args.dynamo, args.opset))
                print(" | ".join(rows[-1]), flush=True)
    header = ["model", "input", "became", "vs onnxruntime", "vs PyTorch", "largest score"]
    header += ["parameters (ONNX / PyTorch)", "load s"]
    print(format_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
