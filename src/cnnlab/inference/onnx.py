"""ONNX: writing a model (dynamo exporter, dynamic batch, checked) and the one onnxruntime session builder."""
import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnx
import onnxruntime
import torch

from cnnlab import CnnlabError


def to_onnx(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """`model` as a checked ONNX file in memory, with a dynamic batch dimension (input "input", output "output")."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # it warns about torchvision ops we do not use
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # and narrates every pass
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), input_names=["input"], output_names=["output"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
    onnx.checker.check_model(program.model_proto, full_check=True)
    return program.model_proto.SerializeToString()


def onnx_session(model: Path | bytes, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session for an ONNX file (a path, or its bytes), all graph optimisations on."""
    if isinstance(model, Path) and not model.is_file():
        raise CnnlabError(f"{model} not found")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                            providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for a bad file
        raise CnnlabError(f"{'model' if isinstance(model, bytes) else model}: onnxruntime cannot load it "
                          f"({str(e).splitlines()[0][:160]})") from None
