"""An ONNX file from anywhere (a learner's `torch.onnx.export`, another framework, a download) as a PyTorch model.

`load_onnx` reads the file bounded, checks it, and rebuilds the graph as a `torch.fx.GraphModule` of real layers
(`onnx_ops`), compared with onnxruntime on random images. When a node cannot be rebuilt, or the rebuilt graph
disagrees with onnxruntime, the model runs through onnxruntime instead (`OnnxRuntimeModel`): it predicts,
evaluates and gives every node's output for the lab's maps, but has no weights to train or inspect.

What a graph must be: one input, an image batch as N x C x H x W with 1 or 3 channels (N x H x W x C, as Keras
exports, N x H x W and N x C*H*W are adapted: the model always takes NCHW), float32; one output of one score
per class, (N, classes). The batch may be dynamic or fixed; a fixed one is run in chunks of that size.

The onnxruntime session is built here, not by `cnnlab.inference.onnx`: `external` sits below `inference`.
"""

import hashlib
import math
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn as nn
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from onnx import inliner, version_converter

from cnnlab import CnnlabError
from cnnlab.external.onnx_ops import DEFAULT_DOMAINS, NotConverted, Signature, convert
from cnnlab.files import read_bounded

__all__ = ["load_onnx", "OnnxRuntimeModel", "runtime_model", "graph_summary", "graph_parameters", "MAX_BYTES"]

MAX_BYTES = 512 * 2**20  # the .onnx file and its external weights together
MAX_VALUES = 3 * 1024 * 1024  # C x H x W of one input image
TOLERANCE = 1e-4  # rebuilt vs onnxruntime, relative to the scale of the scores
OLDEST_OPSET = 7  # older graphs are upgraded with onnx's version converter first


def _session(data: bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a library call on a shared machine
    return onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _every_output(data: bytes) -> tuple[onnxruntime.InferenceSession, list[tuple[str, str, str]]]:
    """A session of the model in `data` with every node's outputs made graph outputs (onnxruntime types them,
    custom ops included), and the first float output of each node as (node name, op type, value name)."""
    model = onnx.load_from_string(data)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(
        onnx.helper.make_empty_tensor_value_info(name) for node in model.graph.node for name in node.output
        if name and name not in known
    )  # fmt: skip
    session = _session(model.SerializeToString())
    floats = {o.name for o in session.get_outputs() if o.type == "tensor(float)"}
    entries = []
    for node in model.graph.node:
        name = next((name for name in node.output if name in floats), None)
        if name:
            entries.append((node.name or name, node.op_type, name))
    return session, entries


class OnnxRuntimeModel(nn.Module):
    """An ONNX graph run by onnxruntime on CPU, taking (N, C, H, W) float images like any cnnlab model.

    It has no parameters and no gradient: it predicts and evaluates, and `intermediate(x)` gives every node's
    output for the lab's maps; it cannot be trained and has no inspector."""

    input_shape: tuple[int, int, int]
    num_classes: int
    opset: int
    unsupported: list[str]
    parity: float | None
    source_sha256: str
    onnx_bytes: bytes
    note: str
    input_layout: str

    def __init__(self, onnx_bytes: bytes, signature: Signature):
        super().__init__()
        self.onnx_bytes, self.signature = onnx_bytes, signature
        self._sessions: dict[str, tuple[onnxruntime.InferenceSession, list]] = {}

    def __getstate__(self):  # sessions do not pickle (deepcopy, torch.save): they are rebuilt on use
        return {**self.__dict__, "_sessions": {}}

    def _get(self, kind: str) -> tuple[onnxruntime.InferenceSession, list]:
        if kind not in self._sessions:
            if kind == "forward":
                self._sessions[kind] = (_session(self.onnx_bytes), [self.signature.output_name])
            else:
                self._sessions[kind] = _every_output(self.onnx_bytes)
        return self._sessions[kind]

    def _graph_input(self, x: torch.Tensor) -> np.ndarray:
        images = x.detach().to("cpu", torch.float32).numpy()
        layout = self.signature.layout
        if layout == "NHWC":
            images = images.transpose(0, 2, 3, 1)
        elif layout in ("NHW", "flat"):
            images = images.reshape(len(images), *((-1,) if layout == "flat" else images.shape[2:]))
        return np.ascontiguousarray(images)

    def _run(self, session: onnxruntime.InferenceSession, names: list[str], x: torch.Tensor) -> list[np.ndarray]:
        images, batch = self._graph_input(x), self.signature.batch or len(x)
        feed = self.signature.input_name
        results = []
        for start in range(0, len(images), batch):  # a graph with a fixed batch runs in chunks of it
            chunk = images[start : start + batch]
            padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), np.float32)])
            results.append([out[: len(chunk)] for out in session.run(names, {feed: padded})])
        return [np.concatenate(parts) for parts in zip(*results)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        session, names = self._get("forward")
        return torch.from_numpy(self._run(session, names, x)[0]).to(x.device)

    def intermediate(self, x: torch.Tensor) -> list[tuple[str, str, torch.Tensor]]:
        """Every node's (first float) output for `x`, as (node name, op type, tensor), in graph order."""
        session, entries = self._get("intermediate")
        values = self._run(session, [name for _, _, name in entries], x)
        return [(node, op, torch.from_numpy(v)) for (node, op, _), v in zip(entries, values)]


# --- reading and checking the file -------------------------------------------------------------------------------


def _external_data(path: Path, model: onnx.ModelProto, budget: int) -> None:
    """Weights kept in files beside the model (torch.onnx.export writes `model.onnx.data` by default) read into
    it, bounded, and only from the model's own folder."""
    files: dict[str, bytes] = {}
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            raise CnnlabError(f"{path}: weights stored outside the model's folder ({location!r}) are not read")
        if location not in files:
            if not (path.parent / location).is_file():
                raise CnnlabError(
                    f"{path}: its weights are in {path.parent / location}, which is missing (copy it beside the model)"
                )
            files[location] = read_bounded(path.parent / location, budget)
            budget -= len(files[location])
        blob, offset = files[location], int(info.get("offset", 0))
        end = offset + int(info.get("length", len(blob) - offset))
        if end > len(blob):
            raise CnnlabError(f"{path}: {location} is truncated ({len(blob):,} bytes, weights up to {end:,})")
        tensor.raw_data = blob[offset:end]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def _opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None)


def _parse(path: Path, data: bytes, budget: int) -> onnx.ModelProto:
    """The model in `data`, complete (external weights read, local functions inlined), checked, opset >= 7."""
    try:
        model = onnx.ModelProto.FromString(data)
    except DecodeError:
        raise CnnlabError(f"{path}: not an ONNX model, or a truncated one (its bytes do not parse)") from None
    if not model.graph.node or not model.opset_import:
        raise CnnlabError(f"{path}: not an ONNX model, or a truncated one (no graph)")
    _external_data(path, model, budget)
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise CnnlabError(f"{path}: not a valid ONNX model ({str(e).strip().splitlines()[0][:200]})") from None
    opset = _opset(model)
    if opset is None:
        raise CnnlabError(f"{path}: the graph imports no standard ONNX opset")
    if opset < OLDEST_OPSET:
        try:
            model = version_converter.convert_version(model, OLDEST_OPSET + 2)
        except Exception as e:  # the converter raises RuntimeError or its own C++ errors
            raise CnnlabError(f"{path}: opset {opset} cannot be upgraded ({str(e).splitlines()[0][:120]})") from None
    if model.functions:
        model = inliner.inline_local_functions(model)
    return model


def _dims(value: onnx.ValueInfoProto) -> list[int | None] | None:
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]


def _shape_text(value: onnx.ValueInfoProto) -> str:
    dims = value.type.tensor_type.shape.dim
    return " x ".join(str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?" for d in dims)


def _image_size(path: Path, h: int | None, w: int | None, input_size) -> tuple[int, int]:
    if h is None or w is None:
        if input_size is None:
            raise CnnlabError(f"{path}: the graph does not fix its images' height and width; give the image size")
        h, w = h or input_size[0], w or input_size[1]
    if input_size is not None and (h, w) != tuple(input_size):
        raise CnnlabError(f"{path}: the graph takes {h}x{w} images; the data's are {input_size[0]}x{input_size[1]}")
    return h, w


def _layout(path: Path, image: onnx.ValueInfoProto, input_size) -> tuple[str, tuple[int, int, int]]:
    """How the graph takes an image, and its (C, H, W)."""
    dims = _dims(image) or []
    wrong = f"{path}: the graph's input is {_shape_text(image)}; cnnlab feeds images of 1 or 3 channels, N x C x H x W"
    if len(dims) == 4:
        if dims[1] in (1, 3):
            return "NCHW", (dims[1], *_image_size(path, dims[2], dims[3], input_size))
        if dims[3] in (1, 3):
            return "NHWC", (dims[3], *_image_size(path, dims[1], dims[2], input_size))
    if len(dims) == 3:
        return "NHW", (1, *_image_size(path, dims[1], dims[2], input_size))
    if len(dims) == 2 and dims[1]:
        values = dims[1]
        for c in (1, 3):
            side = math.isqrt(values // c)
            h, w = input_size or (side, side)
            if c * h * w == values:
                return "flat", (c, h, w)
    raise CnnlabError(wrong)


def _signature(path: Path, model: onnx.ModelProto, input_size) -> Signature:
    graph = model.graph
    initialized = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialized]  # old exporters list the weights as inputs
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise CnnlabError(f"{path}: the graph takes {len(inputs)} inputs ({names}); cnnlab feeds it one image batch")
    if len(graph.output) != 1:
        names = ", ".join(o.name for o in graph.output)
        raise CnnlabError(f"{path}: the graph gives {len(graph.output)} outputs ({names}); cnnlab reads one, of scores")
    image, scores = inputs[0], graph.output[0]
    dims = _dims(image)
    if dims is None:
        raise CnnlabError(f"{path}: the graph's input {image.name!r} has no declared shape")
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(image.type.tensor_type.elem_type).lower()
        raise CnnlabError(f"{path}: the graph's input holds {kind}; cnnlab feeds float32 images")
    layout, shape = _layout(path, image, input_size)
    if math.prod(shape) > MAX_VALUES:
        raise CnnlabError(f"{path}: images of {shape[0]}x{shape[1]}x{shape[2]} are more than cnnlab handles")
    out = _dims(scores)
    if out is not None and len(out) != 2:
        raise CnnlabError(f"{path}: the graph's output is {_shape_text(scores)}; cnnlab needs N x classes scores")
    return Signature(image.name, layout, shape, dims[0], scores.name, _opset(model))  # type: ignore[arg-type]


# --- loading -----------------------------------------------------------------------------------------------------


def _rebuilt(model: onnx.ModelProto, signature: Signature, runtime: OnnxRuntimeModel):
    """(the GraphModule or None, the op types not rebuilt, its parity with onnxruntime or None, a note)."""
    try:
        module = convert(model, signature)
    except NotConverted as e:
        return None, e.ops, None, f"runs through onnxruntime: cnnlab does not rebuild {e}"
    images = torch.randn(signature.batch or 4, *signature.input_shape, generator=torch.Generator().manual_seed(0))
    try:
        theirs = runtime(images)
    except Exception as e:  # onnxruntime cannot load it (an opset newer than it knows): nothing to compare with
        return module, [], None, f"not compared with onnxruntime ({str(e).strip().splitlines()[0][:120]})"
    with torch.no_grad():
        ours = module(images)
    if ours.shape != theirs.shape:
        return None, [], None, f"runs through onnxruntime: the rebuilt graph gives {tuple(ours.shape)}"
    difference = (ours - theirs).abs().nan_to_num(nan=math.inf).max().item()
    if difference > TOLERANCE * max(1.0, theirs.abs().max().item()):
        return None, [], None, f"runs through onnxruntime: the rebuilt graph differs from it by {difference:.1e}"
    return module, [], difference, ""


def _classes(path: Path, model: nn.Module, signature: Signature, note: str) -> int:
    """The number of scores per image; `note`: why the model runs through onnxruntime, if it does."""
    n = signature.batch or 2
    try:
        with torch.no_grad():
            scores = model(torch.zeros(n, *signature.input_shape))
    except Exception as e:  # onnxruntime's own exception types (the rebuilt graph has run already)
        rebuilt = note.removeprefix("runs through onnxruntime: ")
        raise CnnlabError(
            f"{path}: {rebuilt}, and onnxruntime cannot run it ({str(e).strip().splitlines()[0][:160]})"
        ) from None
    if scores.dim() != 2 or len(scores) != n or scores.shape[1] < 2 or not scores.is_floating_point():
        shape = " x ".join(map(str, scores.shape))
        raise CnnlabError(f"{path}: the graph gives {shape} for {n} images; cnnlab needs N x classes scores")
    return scores.shape[1]


def load_onnx(path: str | Path, *, input_size: tuple[int, int] | None = None, max_bytes: int = MAX_BYTES) -> nn.Module:
    """The ONNX model at `path` as an `nn.Module` taking (N, C, H, W) float images, in eval mode: a GraphModule of
    real layers when every node converts and agrees with onnxruntime, else an `OnnxRuntimeModel`.

    `input_size` (H, W): what the data is, needed when the graph leaves it open. Both kinds carry `input_shape`
    (C, H, W), `num_classes`, `opset`, `unsupported` (op types not rebuilt), `parity` (largest difference from
    onnxruntime on random images, or None), `source_sha256` (of the file), `onnx_bytes` (the model as one
    self-contained file, external weights included), `note` (why it runs through onnxruntime, or "") and
    `input_layout`. Bad files raise CnnlabError (one line)."""
    path = Path(path)
    data = read_bounded(path, max_bytes)
    model = _parse(path, data, max_bytes - len(data))
    signature = _signature(path, model, input_size)
    onnx_bytes = model.SerializeToString()
    runtime = OnnxRuntimeModel(onnx_bytes, signature)
    module, unsupported, parity, note = _rebuilt(model, signature, runtime)
    chosen = runtime if module is None else module
    info = {
        "input_shape": signature.input_shape,
        "num_classes": _classes(path, chosen, signature, note),
        "opset": signature.opset,
        "unsupported": unsupported,
        "parity": parity,
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "onnx_bytes": onnx_bytes,
        "note": note,
        "input_layout": signature.layout,
        "signature": signature,
    }
    for name, value in info.items():
        setattr(chosen, name, value)
    if module is not None:  # GraphModule's deepcopy keeps only the plain attributes listed here
        module.meta["_user_preserved_attributes"] = info
    return chosen.eval()


# --- the graph's own arithmetic, for a model that has no PyTorch layers to count --------------------------------


def _weights(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The shapes of the trained tensors: float initializers of at least one dimension, without
    BatchNormalization's running statistics (buffers in PyTorch, not parameters)."""
    statistics = {name for node in model.graph.node if node.op_type == "BatchNormalization" for name in node.input[3:5]}
    return {
        t.name: tuple(t.dims)
        for t in model.graph.initializer
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
        and len(t.dims) > 0
        and t.name not in statistics
    }


def runtime_model(model: nn.Module) -> OnnxRuntimeModel:
    """A model load_onnx returned, as the onnxruntime model of its graph."""
    if isinstance(model, OnnxRuntimeModel):
        return model
    return OnnxRuntimeModel(cast(bytes, model.onnx_bytes), cast(Signature, model.signature))


def graph_parameters(model: nn.Module) -> int:
    """The elements of the graph's trained tensors, each counted once (a model load_onnx returned)."""
    shapes = _weights(onnx.load_from_string(runtime_model(model).onnx_bytes)).values()
    return sum(int(np.prod(shape)) for shape in shapes)


def _flops(op: str, weight: tuple[int, ...] | None, source: tuple[int, ...], out: tuple[int, ...]) -> int:
    """2 per multiply-add, for the ops torch.utils.flop_counter counts (convolutions and matrix products)."""
    if op in ("Conv", "FusedConv") and weight:
        return 2 * math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose" and weight:
        return 2 * math.prod(source) * math.prod(weight[1:])
    if op in ("Gemm", "FusedGemm", "MatMul") and source:
        return 2 * math.prod(out) * source[-1]
    return 0


def graph_summary(model: nn.Module) -> list[list]:
    """One row per node that computes on the image, in graph order, for one image of `model.input_shape`:
    [node name, op type, input shape, output shape (without the batch, "10x24x24"), parameters (the elements
    of the trained tensors it reads), FLOPs (2 per multiply-add of Conv, ConvTranspose, Gemm and MatMul, as
    count_flops counts PyTorch's)]. Read from the graph through onnxruntime: both kinds load_onnx returns."""
    runtime = runtime_model(model)
    graph = onnx.load_from_string(runtime.onnx_bytes)
    weights, producers = _weights(graph), {name: node for node in graph.graph.node for name in node.output}
    session, entries = runtime._get("intermediate")
    image = torch.zeros(runtime.signature.batch or 1, *runtime.signature.input_shape)
    values = runtime._run(session, [name for _, _, name in entries], image)
    shapes = {name: tuple(v.shape[1:]) for (_, _, name), v in zip(entries, values)}
    shapes[runtime.signature.input_name] = runtime._graph_input(image).shape[1:]
    on_image, rows = {runtime.signature.input_name}, []
    for node_name, op, output in entries:
        node = producers[output]
        source = next((name for name in node.input if name in on_image), None)
        if source is None:  # computes on constants alone (a weight reshaped in the graph)
            continue
        on_image.update(node.output)
        weight = next((weights[name] for name in node.input if name in weights), None)
        parameters = sum(math.prod(weights[name]) for name in node.input if name in weights)
        flops = _flops(op, weight, shapes[source], shapes[output])
        text = ["x".join(map(str, shapes[name])) or "1" for name in (source, output)]
        rows.append([node_name, op, *text, parameters, flops])
    return rows
