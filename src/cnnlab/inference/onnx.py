"""ONNX: writing a model (dynamo exporter, dynamic batch, checked), the one onnxruntime session builder,
int8 quantisation, and running a large batch as cache-sized chunks on a few threads.

Measured on 2 cores (docs/speed.md): onnxruntime runs the lecture CNN about twice as fast per image in
chunks of 64 as in one batch of 1,024 (the activations of 64 images fit in a core's L2 cache, those of
1,024 do not), and int8 is slower than float32 for nets this small (quantising and dequantising the
activations costs more than the integer convolutions save).
"""

import contextlib
import io
import logging
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cnnlab import CnnlabError


def to_onnx(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    """`model` as a checked ONNX file in memory, with a dynamic batch dimension (input "input", output "output")."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # it warns about torchvision ops we do not use
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # and narrates every pass
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns the program
    onnx.checker.check_model(program.model_proto, full_check=True)
    return program.model_proto.SerializeToString()


def onnx_session(model: Path | bytes, threads: int | None = None, spin: bool = True) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session for an ONNX file (a path, or its bytes), all graph optimisations on, the
    layers run one after the other (these nets are chains: no branch to run beside another).

    `threads`: onnxruntime's threads within an operator (default: one per core). `spin`: idle threads spin
    for the next operator (lower latency on a machine of one's own; on a shared machine they take cores
    from other processes)."""
    if isinstance(model, Path) and not model.is_file():
        raise CnnlabError(f"{model} not found")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(
            model if isinstance(model, bytes) else str(model), options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own exception types for a bad file
        raise CnnlabError(
            f"{'model' if isinstance(model, bytes) else model}: onnxruntime cannot load it "
            f"({str(e).splitlines()[0][:160]})"
        ) from None


class _Calibration(CalibrationDataReader):
    """Batches of normalised images for static quantisation to measure the activations' ranges on."""

    def __init__(self, images: np.ndarray, batch_size: int = 256):
        self.batches = iter(images[i : i + batch_size] for i in range(0, len(images), batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"input": batch}


def quantize_int8(model: bytes, calibration: np.ndarray | None = None) -> bytes:
    """`model` (ONNX bytes) with int8 weights: with `calibration` images (normalised float32, N x C x H x W),
    static quantisation (activations int8 too, their ranges measured on those images, weights per channel);
    without, dynamic quantisation (activation ranges measured on each batch as it runs).

    Static quantisation writes quantise/dequantise pairs around float operators (QDQ), which onnxruntime
    fuses into integer kernels. Its other format (integer operators throughout) also quantised the final
    LogSoftmax: the classes' scores then tie, and the lecture CNN lost 5 points of accuracy on mnist-sample."""
    with tempfile.TemporaryDirectory() as folder:
        source, prepared, target = (Path(folder) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(model)
        quant_pre_process(str(source), str(prepared))  # shapes inferred and graph simplified, as the quantiser expects
        if calibration is None:
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
        else:
            quantize_static(
                str(prepared),
                str(target),
                _Calibration(calibration),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
        return target.read_bytes()


class ChunkedSession:
    """Runs a batch through an onnxruntime session as chunks of `chunk` images on `workers` threads, each
    chunk on one core (the session's own threads should then be 1): the outputs are those of the whole batch."""

    def __init__(self, session: onnxruntime.InferenceSession, chunk: int = 64, workers: int = 2):
        self.session, self.chunk = session, chunk
        self.pool = ThreadPoolExecutor(workers)  # onnxruntime releases the GIL while it runs

    def run(self, images: np.ndarray) -> np.ndarray:
        chunks = [images[i : i + self.chunk] for i in range(0, len(images), self.chunk)]
        outputs = self.pool.map(lambda chunk: self.session.run(None, {"input": chunk})[0], chunks)
        return np.concatenate(list(outputs))

    def close(self) -> None:
        self.pool.shutdown()
