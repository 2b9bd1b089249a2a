"""An ONNX graph rebuilt node by node as a `torch.fx.GraphModule` of real PyTorch layers.

Conv becomes an `nn.Conv2d` holding the initializer's weights, Gemm (and MatMul by a constant, with the Add of a
bias that follows it) an `nn.Linear`, BatchNormalization an `nn.BatchNorm2d`, the pools `nn.MaxPool2d`/
`nn.AvgPool2d`, Dropout an `nn.Dropout`; the rest become the functional calls a learner writes in `forward`
(torch.relu, torch.flatten, torch.reshape, torch.cat, torch.add, F.pad, F.log_softmax...). So every view of a
PyTorch model (fx stages, the inspector's multiply-add, parameter and FLOP counts, export, training) works on
the result unchanged. A module is named after the PyTorch module it was exported from when the initializer
names say so (`conv1.weight` -> `conv1`, `incept1.branch1x1.weight` -> `incept1.branch1x1`), else after the node.

Every value of the graph is one of three things while it is rebuilt:
- `Const`: the same for every input (initializers, Constant nodes, and anything computed from them alone,
  which is folded with onnx's reference evaluator, the semantics of each opset included);
- `Probed`: computed from the input's shape alone, as `x.view(x.size(0), -1)` exports (Shape, Gather,
  Unsqueeze, Concat -> Reshape); it is evaluated for two batch sizes (PROBES), so a reshape learns which of its
  dimensions follows the batch and becomes `torch.flatten(x, 1)` or `torch.reshape(x, (-1, ...))`;
- `Dyn`: computed from the image: a node of the fx graph, run on the two probe batches as it is added, so
  every later node knows its input's shape and which dimension is the batch.
A graph exported with a fixed batch (say 1) comes out taking any batch: a constant reshape target whose first
entry is that batch size, applied to a batch-led tensor, follows the batch.
"""

import math
import operator
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from torch.fx.node import map_aggregate

PROBES = (2, 3)  # two batch sizes: a dimension whose size differs between them is the batch's
FOLD_LIMIT = 1 << 26  # values a folded constant may hold (a graph could otherwise ask for any allocation)
DEFAULT_DOMAINS = ("", "ai.onnx")


class Unconvertible(Exception):
    """A node this module cannot rebuild; str() says which op and why, in words."""

    def __init__(self, op: str, reason: str):
        super().__init__(f"{op} ({reason})" if reason else op)
        self.op = op


class NotConverted(Exception):
    """The graph has nodes this module cannot rebuild: `ops` their op types, str() the first reason of each."""

    def __init__(self, failures: dict[str, str]):
        super().__init__(", ".join(failures.values()))
        self.ops = list(failures)


@dataclass(frozen=True)
class Signature:
    """What the checks read from the graph: where the image goes in and the scores come out."""

    input_name: str
    layout: str  # what the graph takes: "NCHW", "NHWC", "NHW" (one channel) or "flat" (N, C*H*W)
    input_shape: tuple[int, int, int]  # (C, H, W): what the rebuilt module takes, after the batch
    batch: int | None  # the graph's fixed batch size, None when it is dynamic
    output_name: str
    opset: int


@dataclass(frozen=True, eq=False)
class Const:
    array: np.ndarray
    name: str = ""  # the ONNX value it holds: names its buffer


@dataclass(frozen=True, eq=False)
class Probed:
    arrays: tuple[np.ndarray, np.ndarray]  # its value for each of the PROBES batch sizes
    source: "_Call | None" = None  # the Expand, Tile or ConstantOfShape that made float data follow the batch


@dataclass(frozen=True, eq=False)
class Dyn:
    node: fx.Node
    probes: tuple[Any, Any]  # the tensor it is for each of the PROBES batches
    permuted: tuple["Dyn", tuple[int, ...]] | None = None  # (source, perm) when it is a permute of source

    @property
    def rank(self) -> int:
        return self.probes[0].dim()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.probes[0].shape)

    @property
    def batch_dims(self) -> set[int]:
        return {i for i, (a, b) in enumerate(zip(self.probes[0].shape, self.probes[1].shape)) if a != b}


Value = Const | Probed | Dyn


@dataclass
class _Call:
    """One node being converted: its inputs as values, its attributes as Python values."""

    proto: onnx.NodeProto
    inputs: list[Value | None]
    attrs: dict[str, Any]
    opset: int

    def input(self, i: int) -> Value | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def dyn(self, i: int) -> Dyn:
        value = self.input(i)
        if not isinstance(value, Dyn):
            raise Unconvertible(self.proto.op_type, f"input {i} is expected to be computed from the image")
        return value

    def const(self, i: int) -> np.ndarray | None:
        """Input i as an array (None when absent); one computed from the image or the batch is refused."""
        value = self.input(i)
        if value is None or isinstance(value, Const):
            return None if value is None else value.array
        what = "depends on the batch size" if isinstance(value, Probed) else "is computed from the image"
        raise Unconvertible(self.proto.op_type, f"input {i} {what}")

    def ints(self, i: int, attr: str, moved_at: int) -> list[int] | None:
        """A list of ints given as attribute `attr` before opset `moved_at`, as input i from it on."""
        if self.opset < moved_at:
            return self.attrs.get(attr)
        array = self.const(i)
        return None if array is None else [int(v) for v in array.reshape(-1)]


def _attributes(proto: onnx.NodeProto) -> dict[str, Any]:
    attrs = {}
    for attribute in proto.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        attrs[attribute.name] = value
    return attrs


def _component(part: str) -> str:
    part = re.sub(r"\W+", "_", part).strip("_")
    clash = hasattr(nn.Module, part) or part == "self"  # "eval", "forward": nn.Module's own; "self": forward's
    return part + "_" if clash else part


def _scopes(name: str) -> list[str]:
    """A node name as a module path: the older exporter's "/features/features.0/Conv" is features, 0, Conv;
    the dynamo exporter's "node_conv2d" is conv2d."""
    parts: list[str] = []
    for scope in re.sub(r"^node_", "", name.strip("/")).split("/"):
        pieces = [_component(p) for p in scope.split(".")]
        parts += pieces[1:] if len(pieces) > 1 and parts[-1:] == pieces[:1] else pieces
    return [p for p in parts if p]


def _identifier(text: str) -> str:
    """A lower-case Python name from a node or value name ("/features/features.2/Relu" -> "features_2_relu")."""
    name = "_".join(_scopes(text)).lower()
    return name + "_" if name == "self" else name  # a variable `self` in forward would hide the module


_LEARNED = re.compile(r"weight|bias|kernel|gamma|beta|embed|token", re.IGNORECASE)  # names of trained tensors
_WEIGHT_NAME = re.compile(r"([A-Za-z_][\w]*(?:\.\w+)*)\.weight")


def _weight_path(proto: onnx.NodeProto) -> str | None:
    """`conv1` for a node whose weight initializer is `conv1.weight` (the PyTorch module it came from)."""
    match = _WEIGHT_NAME.fullmatch(proto.input[1]) if len(proto.input) > 1 else None
    return ".".join(_component(p) for p in match.group(1).split(".")) if match else None


class _Builder:
    """The fx graph and its root module as they grow, with the values of the nodes converted so far."""

    def __init__(self, model: onnx.ModelProto, signature: Signature):
        self.root, self.graph = nn.Module(), fx.Graph()
        self.signature, self.opset = signature, signature.opset
        self.consumers = Counter(name for node in model.graph.node for name in node.input)
        self.consumers.update(output.name for output in model.graph.output)
        self.leaves: set[str] = set()  # module and buffer paths taken
        self.containers = {  # folders of the PyTorch names, reserved so no leaf takes "incept1"
            ".".join(path.split(".")[:i])
            for node in model.graph.node
            if (path := _weight_path(node))
            for i in range(1, path.count(".") + 1)
        }
        self.shared: dict[tuple, str] = {}  # one module for nodes sharing a weight (a module called twice)
        self.weight_uses = Counter(tuple(node.input[1:]) for node in model.graph.node if len(node.input) > 1)
        self.bias_free: dict[fx.Node, nn.Module] = {}  # Linear/Conv made without a bias, by their output node
        self.buffers: dict[int, fx.Node] = {}
        self.image: Dyn | None = None  # the input as the graph takes it
        self.materialized: dict[int, Dyn] = {}
        self._batch: Dyn | None = None

    def batch(self) -> Dyn:
        """The batch size at run time (x.size(0)), as a node."""
        if self._batch is None:
            assert self.image is not None
            self._batch = self.function(torch.Tensor.size, self.image, 0, name="batch")
        return self._batch

    def sizes(self, arrays: tuple[np.ndarray, np.ndarray], op: str) -> tuple:
        """A shape known at each probe as ints, with the entries that follow the batch as nodes (k * batch)."""
        sizes: list[Any] = []
        for p, q in zip(arrays[0].reshape(-1).tolist(), arrays[1].reshape(-1).tolist()):
            if p == q:
                sizes.append(int(p))
            elif p * PROBES[1] == q * PROBES[0] and p % PROBES[0] == 0:
                k = p // PROBES[0]
                sizes.append(self.batch() if k == 1 else self.function(operator.mul, self.batch(), k))
            else:
                raise Unconvertible(op, "a shape that depends on the batch other than in proportion")
        return tuple(sizes)

    def tensor(self, value: "Value | None", op: str) -> "Dyn | Const":
        """A value as an operand: float data that follows the batch (an Expand of a constant by the batch, as
        a class token is) is built in the graph."""
        if isinstance(value, Dyn | Const):
            return value
        if isinstance(value, Probed) and value.source is not None:
            if id(value) not in self.materialized:
                self.materialized[id(value)] = _CONVERTERS[value.source.proto.op_type](self, value.source)[0]  # type: ignore[assignment]
            return self.materialized[id(value)]
        raise Unconvertible(op, "an operand that depends on the batch size")

    def _free(self, path: str) -> bool:
        parts = path.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts))}
        return path not in self.leaves and path not in self.containers and not prefixes & self.leaves

    def _attach(self, module: nn.Module, hint: str) -> str:
        path, k = hint, 0
        while not self._free(path):
            k += 1
            path = f"{hint}_{k}"
        *folders, leaf = path.split(".")
        parent = self.root
        for folder in folders:
            if folder not in parent._modules:
                parent.add_module(folder, nn.Module())
            parent = parent._modules[folder]  # type: ignore[assignment]  # just added, never None
        parent.add_module(leaf, module)
        self.leaves.add(path)
        self.containers.update(".".join(folders[:i]) for i in range(1, len(folders) + 1))
        return path

    def _hint(self, proto: onnx.NodeProto) -> str:
        """The node's PyTorch path: from its weight's name, else from its own ("/features/features.0/Conv", the
        older exporter's scopes, is features.0; "/mp_1/MaxPool" is mp_1)."""
        if path := _weight_path(proto):
            return path
        parts = _scopes(proto.name)
        if len(parts) > 1 and parts[-1].lower().startswith(proto.op_type.lower()):
            if ".".join(parts[:-1]) not in self.containers:  # "/mp_1/MaxPool" -> "mp_1"
                parts = parts[:-1]
        return ".".join(parts) or proto.op_type.lower()

    def module(self, call: _Call, module: nn.Module, x: Dyn, *, bias_free: bool = False) -> Dyn:
        """`module(x)` as a submodule named after the node; nodes sharing their weights share the module."""
        key: tuple = (call.proto.op_type, tuple(call.proto.input[1:]), repr(sorted(call.attrs.items())))
        hint = self._hint(call.proto)
        if len(call.proto.input) == 1:  # no weights: "mp_1", an exporter's name for mp's second call, is mp
            key = (call.proto.op_type, re.sub(r"_\d+$", "", hint), repr(module))
        if key not in self.shared:
            self.shared[key] = self._attach(module.eval(), hint)
        path = self.shared[key]
        target = self.root.get_submodule(path)
        node = self.graph.create_node("call_module", path, (x.node,))
        with torch.no_grad():
            out = Dyn(node, (target(x.probes[0]), target(x.probes[1])))
        if bias_free and self.weight_uses[tuple(call.proto.input[1:])] == 1:  # a bias set once serves one call
            self.bias_free[node] = target
        return out

    def buffer(self, const: Const) -> fx.Node:
        """A constant operand as an attribute of the module: a parameter when its name says it was one (the
        `cls_token`, a `pos_embed`, a locally connected layer's `weight`), else a buffer."""
        if id(const) not in self.buffers:
            tensor = torch.from_numpy(np.array(const.array))
            hint = _identifier(const.name) or "const"
            path, k = hint, 0
            while not self._free(path) or hasattr(self.root, path):
                k += 1
                path = f"{hint}_{k}"
            if tensor.is_floating_point() and _LEARNED.search(const.name):
                self.root.register_parameter(path, nn.Parameter(tensor))
            else:
                self.root.register_buffer(path, tensor)
            self.leaves.add(path)
            self.buffers[id(const)] = self.graph.get_attr(path)
        return self.buffers[id(const)]

    def function(self, fn: Callable, *args: Any, name: str = "", **kwargs: Any) -> Dyn:
        """`fn(*args, **kwargs)` as a node; a `Dyn` argument is its node, a `Const` one a buffer."""

        def graph_arg(a: Any) -> Any:
            return a.node if isinstance(a, Dyn) else self.buffer(a) if isinstance(a, Const) else a

        def probe_arg(i: int) -> Callable[[Any], Any]:
            def arg(a: Any) -> Any:
                if isinstance(a, Const):
                    return torch.from_numpy(np.array(a.array))
                return a.probes[i] if isinstance(a, Dyn) else a

            return arg

        node = self.graph.create_node(
            "call_function",
            fn,
            map_aggregate(args, graph_arg),
            map_aggregate(kwargs, graph_arg),
            name=_identifier(name) or None,
        )
        with torch.no_grad():
            probes = tuple(
                fn(*map_aggregate(args, probe_arg(i)), **map_aggregate(kwargs, probe_arg(i))) for i in (0, 1)
            )
        permuted = (args[0], tuple(args[1])) if fn is torch.permute else None
        return Dyn(node, probes, permuted)


# --- folding: a node whose inputs are all known without the image ------------------------------------------------

_MATERIALIZED = {"Expand", "Tile", "ConstantOfShape"}
_NOT_FOLDED = {"Resize", "Upsample", "OneHot", "RandomNormal", "RandomUniform", "RandomNormalLike",
               "RandomUniformLike", "Multinomial", "Bernoulli", "Loop", "Scan", "If"}  # fmt: skip


def _fold_size(op: str, arrays: list[np.ndarray | None]) -> int:
    """An upper bound of the values folding `op` on `arrays` builds (before building them)."""
    given = [a for a in arrays if a is not None]
    sizes = [a.size for a in given]
    if op == "ConstantOfShape":
        return math.prod(int(v) for v in given[0].reshape(-1))
    if op == "Expand":
        return math.prod(np.broadcast_shapes(given[0].shape, tuple(int(v) for v in given[1].reshape(-1))))
    if op == "Tile":
        return given[0].size * math.prod(int(v) for v in given[1].reshape(-1))
    if op == "Range":
        start, limit, delta = (float(a) for a in given[:3])
        return max(0, math.ceil((limit - start) / delta)) if delta else FOLD_LIMIT + 1
    if op == "Pad":
        return math.prod(s + int(given[1].reshape(-1)[i]) + int(given[1].reshape(-1)[i + given[0].ndim])
                         for i, s in enumerate(given[0].shape))  # fmt: skip
    try:
        return max(sum(sizes), math.prod(np.broadcast_shapes(*(a.shape for a in given))) if given else 0)
    except ValueError:  # shapes that do not broadcast: the op's own output is no larger than its inputs
        return sum(sizes)


def _evaluate(proto: onnx.NodeProto, arrays: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    names = [name for name, a in zip(proto.input, arrays) if name and a is not None]
    feeds = {name: a for name, a in zip(proto.input, arrays) if name and a is not None}
    graph = onnx.helper.make_graph(
        [proto],
        "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in names],
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in proto.output if n],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return [np.asarray(a) for a in ReferenceEvaluator(model).run(None, feeds)]


def _fold(call: _Call) -> list[Value]:
    op = call.proto.op_type
    if call.proto.domain not in DEFAULT_DOMAINS or op in _NOT_FOLDED:
        raise Unconvertible(op, "" if call.proto.domain in DEFAULT_DOMAINS else f"domain {call.proto.domain}")
    probed = any(isinstance(v, Probed) for v in call.inputs)
    runs = []
    for i in (0, 1) if probed else (0,):
        arrays = [None if v is None else v.arrays[i] if isinstance(v, Probed) else v.array for v in call.inputs]  # type: ignore[union-attr]
        if _fold_size(op, arrays) > FOLD_LIMIT:
            raise Unconvertible(op, f"it would build a constant of more than {FOLD_LIMIT:,} values")
        try:
            runs.append(_evaluate(call.proto, arrays, call.opset))
        except Exception as e:  # the reference evaluator raises whatever its op raises
            raise Unconvertible(op, f"cannot be evaluated on constants ({str(e).splitlines()[0][:80]})") from None
    names = [n for n in call.proto.output if n]
    if len(runs) == 1:
        return [Const(a, n) for a, n in zip(runs[0], names)]
    data = op in _MATERIALIZED and runs[0][0].dtype.kind == "f"  # float data that follows the batch, not a shape
    return [
        Const(a, n) if a.shape == b.shape and np.array_equal(a, b) else Probed((a, b), call if data else None)
        for a, b, n in zip(runs[0], runs[1], names)
    ]


# --- converters: one per op, each returning the node's output values --------------------------------------------

_CONVERTERS: dict[str, Callable[[_Builder, _Call], list[Value]]] = {}


def _converts(*ops: str):
    def register(fn: Callable[[_Builder, _Call], list[Value]]) -> Callable[[_Builder, _Call], list[Value]]:
        for op in ops:
            _CONVERTERS[op] = fn
        return fn

    return register


def _bounded(op: str, shape) -> None:
    """Refuse, before it is built, a tensor that a graph sized to exhaust memory (for one probe batch)."""
    if math.prod(int(s) for s in shape) > FOLD_LIMIT:
        raise Unconvertible(op, f"it would build more than {FOLD_LIMIT:,} values")


def _load(module: nn.Module, **tensors: np.ndarray | None) -> nn.Module:
    with torch.no_grad():
        for name, array in tensors.items():
            if array is not None:
                getattr(module, name).copy_(torch.from_numpy(np.array(array, dtype=np.float32)))
    return module


def _pads(call: _Call, x: Dyn, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """(begins, ends) of the spatial padding, auto_pad (SAME_UPPER, SAME_LOWER, VALID) resolved on x's shape."""
    n, auto = len(kernel), call.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2  # SAME_UPPER puts the odd one at the end
            begins.append(small if auto == "SAME_UPPER" else large)
            ends.append(large if auto == "SAME_UPPER" else small)
        return begins, ends
    if auto == "VALID":
        return [0] * n, [0] * n
    pads = list(call.attrs.get("pads", [0] * 2 * n))
    return pads[:n], pads[n:]


def _padded(b: _Builder, call: _Call, x: Dyn, kernel, strides, dilations, value: float, limit=None):
    """(x, padding) for a windowed layer: the padding given to the layer when it is the same on both sides (and
    within `limit` per dimension), else x padded explicitly (F.pad with `value`) and padding 0."""
    begins, ends = _pads(call, x, kernel, strides, dilations)
    if begins == ends and (limit is None or all(p <= m for p, m in zip(begins, limit))):
        return x, tuple(begins)
    pad = tuple(p for begin, end in zip(reversed(begins), reversed(ends)) for p in (begin, end))
    return b.function(F.pad, x, pad, value=value, name=call.proto.name + "_pad"), (0,) * len(kernel)


_CONV: dict[int, Any] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@_converts("Conv")
def _conv(b: _Builder, call: _Call) -> list[Value]:
    x, weight, bias = call.dyn(0), call.const(1), call.const(2)
    if weight is None or weight.ndim - 2 not in _CONV or x.rank != weight.ndim:
        raise Unconvertible("Conv", "weights computed in the graph, or not a 1-, 2- or 3-D convolution")
    n, group = weight.ndim - 2, call.attrs.get("group", 1)
    kernel = tuple(weight.shape[2:])
    strides, dilations = tuple(call.attrs.get("strides", [1] * n)), tuple(call.attrs.get("dilations", [1] * n))
    x, padding = _padded(b, call, x, kernel, strides, dilations, value=0.0)
    conv = _CONV[n](
        weight.shape[1] * group, weight.shape[0], kernel, strides, padding, dilations, group, bias=bias is not None
    )
    return [b.module(call, _load(conv, weight=weight, bias=bias), x, bias_free=bias is None)]


_MAX_POOL: dict[int, Any] = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL: dict[int, Any] = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


@_converts("MaxPool", "AveragePool")
def _pool(b: _Builder, call: _Call) -> list[Value]:
    x, kernel = call.dyn(0), tuple(call.attrs["kernel_shape"])
    n, op = len(kernel), call.proto.op_type
    if n not in _MAX_POOL or x.rank != n + 2:
        raise Unconvertible(op, f"a {n}-D pool on a rank-{x.rank} tensor")
    strides, dilations = tuple(call.attrs.get("strides", [1] * n)), tuple(call.attrs.get("dilations", [1] * n))
    ceil = bool(call.attrs.get("ceil_mode", 0))
    half = [(d * (k - 1) + 1) // 2 for k, d in zip(kernel, dilations)]  # PyTorch pads at most half a window
    if op == "MaxPool":
        x, padding = _padded(b, call, x, kernel, strides, dilations, value=-math.inf, limit=half)
        return [b.module(call, _MAX_POOL[n](kernel, strides, padding, dilations, ceil_mode=ceil), x)]
    if any(d != 1 for d in dilations):
        raise Unconvertible(op, "a dilated average pool")
    include = bool(call.attrs.get("count_include_pad", 0))
    begins, ends = _pads(call, x, kernel, strides, dilations)
    if not include and (begins != ends or any(p > h for p, h in zip(begins, half))):
        raise Unconvertible(op, "an average pool padded unevenly that does not count the padding")
    x, padding = _padded(b, call, x, kernel, strides, dilations, value=0.0, limit=half)
    return [b.module(call, _AVG_POOL[n](kernel, strides, padding, ceil, count_include_pad=include), x)]


@_converts("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b: _Builder, call: _Call) -> list[Value]:
    x = call.dyn(0)
    kinds = {1: (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d), 2: (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)}
    if x.rank - 2 not in kinds:
        raise Unconvertible(call.proto.op_type, f"a rank-{x.rank} input")
    average, maximum = kinds[x.rank - 2]
    return [b.module(call, (average if call.proto.op_type == "GlobalAveragePool" else maximum)(1), x)]


@_converts("Gemm")
def _gemm(b: _Builder, call: _Call) -> list[Value]:
    """Y = alpha * A' B' + beta * C with B (and C) constant: an nn.Linear with weight alpha * B' and bias beta * C."""
    x, weight, bias = call.dyn(0), call.const(1), call.const(2)
    alpha, beta = call.attrs.get("alpha", 1.0), call.attrs.get("beta", 1.0)
    if weight is None or x.rank != 2:
        raise Unconvertible("Gemm", "weights computed in the graph")
    if call.attrs.get("transA", 0):
        x = b.function(torch.permute, x, (1, 0), name=call.proto.name + "_transpose")
    weight = alpha * (weight if call.attrs.get("transB", 0) else weight.T)
    if bias is not None:
        if bias.size not in (1, weight.shape[0]) or (bias.ndim == 2 and bias.shape[0] != 1):
            raise Unconvertible("Gemm", f"a bias of shape {bias.shape}")
        bias = beta * np.broadcast_to(bias.reshape(-1), (weight.shape[0],))
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    return [b.module(call, _load(linear, weight=weight, bias=bias), x, bias_free=bias is None)]


@_converts("MatMul")
def _matmul(b: _Builder, call: _Call) -> list[Value]:
    a, w = call.input(0), call.input(1)
    if isinstance(a, Dyn) and isinstance(w, Const) and w.array.ndim == 2:
        linear = nn.Linear(w.array.shape[0], w.array.shape[1], bias=False)
        return [b.module(call, _load(linear, weight=w.array.T), a, bias_free=True)]
    return [b.function(torch.matmul, a, w, name=call.proto.name)]


_BATCH_NORM: dict[int, Any] = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}


@_converts("BatchNormalization")
def _batch_norm(b: _Builder, call: _Call) -> list[Value]:
    x, scale, bias, mean, var = call.dyn(0), *(call.const(i) for i in range(1, 5))
    if call.attrs.get("training_mode", 0) or not call.attrs.get("spatial", 1) or x.rank not in _BATCH_NORM:
        raise Unconvertible("BatchNormalization", "training mode, or statistics per position")
    if scale is None or bias is None or mean is None or var is None:
        raise Unconvertible("BatchNormalization", "missing statistics")
    momentum = 1.0 - call.attrs.get("momentum", 0.9)  # ONNX weighs the running value, PyTorch the new one
    norm = _BATCH_NORM[x.rank](scale.size, eps=call.attrs.get("epsilon", 1e-5), momentum=momentum)
    return [b.module(call, _load(norm, weight=scale, bias=bias, running_mean=mean, running_var=var), x)]


_INSTANCE_NORM: dict[int, Any] = {3: nn.InstanceNorm1d, 4: nn.InstanceNorm2d, 5: nn.InstanceNorm3d}


@_converts("InstanceNormalization")
def _instance_norm(b: _Builder, call: _Call) -> list[Value]:
    x, scale, bias = call.dyn(0), call.const(1), call.const(2)
    if x.rank not in _INSTANCE_NORM or scale is None:
        raise Unconvertible("InstanceNormalization", f"a rank-{x.rank} input")
    norm = _INSTANCE_NORM[x.rank](scale.size, eps=call.attrs.get("epsilon", 1e-5), affine=True)
    return [b.module(call, _load(norm, weight=scale, bias=bias), x)]


@_converts("LRN")
def _lrn(b: _Builder, call: _Call) -> list[Value]:
    a = call.attrs
    lrn = nn.LocalResponseNorm(a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
    return [b.module(call, lrn, call.dyn(0))]


@_converts("Dropout")
def _dropout(b: _Builder, call: _Call) -> list[Value]:
    ratio = call.attrs.get("ratio", 0.5) if call.opset < 12 else call.const(1)
    return [b.module(call, nn.Dropout(0.5 if ratio is None else float(ratio)), call.dyn(0))]


@_converts("Identity")
def _identity(b: _Builder, call: _Call) -> list[Value]:
    return [call.dyn(0)]


@_converts("Cast", "CastLike")
def _cast(b: _Builder, call: _Call) -> list[Value]:
    x = call.dyn(0)
    to = (
        call.attrs["to"]
        if call.proto.op_type == "Cast"
        else onnx.helper.np_dtype_to_tensor_dtype(
            call.const(1).dtype  # type: ignore[union-attr]  # CastLike's second input is required
        )
    )
    dtype = getattr(torch, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(to)).name)
    return [x if x.probes[0].dtype == dtype else b.function(torch.Tensor.to, x, dtype, name=call.proto.name)]


@_converts("Shape", "Size")
def _shape(b: _Builder, call: _Call) -> list[Value]:
    x = call.dyn(0)
    if call.proto.op_type == "Size":
        arrays = tuple(np.array(p.numel(), dtype=np.int64) for p in x.probes)
    else:
        start, end = call.attrs.get("start", 0), call.attrs.get("end", None)
        arrays = tuple(np.array(p.shape[start:end], dtype=np.int64) for p in x.probes)
    if np.array_equal(arrays[0], arrays[1]):
        return [Const(arrays[0], call.proto.output[0])]
    return [Probed((arrays[0], arrays[1]))]


# --- activations ---------------------------------------------------------------------------------------------


def hard_sigmoid(x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """ONNX HardSigmoid: max(0, min(1, alpha * x + beta)) (PyTorch's own has alpha 1/6 fixed)."""
    return torch.clamp(x * alpha + beta, 0.0, 1.0)


def coerced_softmax(x: torch.Tensor, axis: int, log: bool) -> torch.Tensor:
    """Softmax before opset 13: over all the dimensions from `axis` on, flattened together."""
    flat = x.flatten(axis)
    return (F.log_softmax(flat, dim=axis) if log else F.softmax(flat, dim=axis)).reshape(x.shape)


_UNARY: dict[str, Callable] = {
    "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
    "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Reciprocal": torch.reciprocal, "Erf": torch.erf,
    "Floor": torch.floor, "Ceil": torch.ceil, "Sign": torch.sign, "Sin": torch.sin, "Cos": torch.cos,
    "Softsign": F.softsign, "Softplus": F.softplus, "HardSwish": F.hardswish, "Mish": F.mish,
}  # fmt: skip

_SELU = (1.67326319217681884765625, 1.05070102214813232421875)  # ONNX's defaults, PyTorch's constants


@_converts(*_UNARY, "LeakyRelu", "Elu", "Celu", "Selu", "Gelu", "HardSigmoid", "ThresholdedRelu")
def _activation(b: _Builder, call: _Call) -> list[Value]:
    x, op, a, name = call.dyn(0), call.proto.op_type, call.attrs, call.proto.name
    if op in _UNARY:
        return [b.function(_UNARY[op], x, name=name)]
    if op == "LeakyRelu":
        return [b.function(F.leaky_relu, x, a.get("alpha", 0.01), name=name)]
    if op in ("Elu", "Celu"):
        return [b.function(F.elu if op == "Elu" else F.celu, x, a.get("alpha", 1.0), name=name)]
    if op == "Gelu":
        return [b.function(F.gelu, x, approximate=a.get("approximate", "none"), name=name)]
    if op == "HardSigmoid":
        return [b.function(hard_sigmoid, x, a.get("alpha", 0.2), a.get("beta", 0.5), name=name)]
    if op == "ThresholdedRelu":
        return [b.function(F.threshold, x, a.get("alpha", 1.0), 0.0, name=name)]
    if not np.allclose((a.get("alpha", _SELU[0]), a.get("gamma", _SELU[1])), _SELU):
        raise Unconvertible("Selu", "alpha and gamma other than the usual ones")
    return [b.function(F.selu, x, name=name)]


@_converts("PRelu")
def _prelu(b: _Builder, call: _Call) -> list[Value]:
    x, slope = call.dyn(0), call.const(1)
    if slope is None:
        raise Unconvertible("PRelu", "a slope computed in the graph")
    aligned = (1,) * (x.rank - slope.ndim) + slope.shape  # ONNX broadcasts the slope from the right
    if slope.size > 1 and (x.rank < 2 or aligned[1] != slope.size):
        raise Unconvertible("PRelu", f"a slope of shape {slope.shape} that is not one per channel")
    prelu = nn.PReLU(slope.size)
    return [b.module(call, _load(prelu, weight=slope.reshape(-1)), x)]


@_converts("Clip")
def _clip(b: _Builder, call: _Call) -> list[Value]:
    x = call.dyn(0)
    if call.opset < 11:
        low, high = call.attrs.get("min"), call.attrs.get("max")
    else:
        low, high = (None if (v := call.const(i)) is None else float(v) for i in (1, 2))
    return [b.function(torch.clamp, x, low, high, name=call.proto.name)]


@_converts("Softmax", "LogSoftmax")
def _softmax(b: _Builder, call: _Call) -> list[Value]:
    x, log = call.dyn(0), call.proto.op_type == "LogSoftmax"
    axis = call.attrs.get("axis", 1 if call.opset < 13 else -1) % x.rank
    if call.opset >= 13 or axis == x.rank - 1:
        return [b.function(F.log_softmax if log else F.softmax, x, dim=axis, name=call.proto.name)]
    return [b.function(coerced_softmax, x, axis, log, name=call.proto.name)]


# --- arithmetic ----------------------------------------------------------------------------------------------

_BINARY: dict[str, Callable] = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Pow": torch.pow,
    "Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add,
}  # fmt: skip


def _operand(value: Value | None, rank: int, scalar_ok: bool):
    """A Dyn as it is; a one-value constant as a Python number (when it adds no dimension); else a buffer."""
    if value is None or isinstance(value, Probed):
        raise Unconvertible("arithmetic", "an operand that depends on the batch size")
    if isinstance(value, Const) and scalar_ok and value.array.size == 1 and value.array.ndim <= rank:
        number = value.array.reshape(())
        return float(number) if value.array.dtype.kind == "f" else int(number)
    return value


def _fold_bias(b: _Builder, call: _Call) -> Dyn | None:
    """The Add of a constant right after a Linear or Conv made without a bias: that bias, set on the layer."""
    for k in (0, 1):
        y, c = call.input(k), call.input(1 - k)
        if not (isinstance(y, Dyn) and isinstance(c, Const) and y.node in b.bias_free):
            continue
        if b.consumers[call.proto.input[k]] != 1:  # the layer's output is also used without the bias
            continue
        layer = b.bias_free[y.node]
        linear = isinstance(layer, nn.Linear)
        channels, axis = getattr(layer, "out_features" if linear else "out_channels"), y.rank - 1 if linear else 1
        aligned = (1,) * (y.rank - c.array.ndim) + c.array.shape
        if c.array.ndim > y.rank or c.array.size != channels or aligned[axis] != channels:
            continue
        bias = torch.from_numpy(np.array(c.array.reshape(-1), dtype=np.float32))
        layer.bias = nn.Parameter(bias)
        del b.bias_free[y.node]
        shape = [1] * y.rank
        shape[axis] = channels
        return Dyn(y.node, (y.probes[0] + bias.reshape(shape), y.probes[1] + bias.reshape(shape)))
    return None


@_converts(*_BINARY, "Mean")
def _arithmetic(b: _Builder, call: _Call) -> list[Value]:
    op = call.proto.op_type
    if op == "Add" and (folded := _fold_bias(b, call)):
        return [folded]
    rank = max(v.rank for v in call.inputs if isinstance(v, Dyn))
    fn = _BINARY["Add" if op == "Mean" else op]
    operands = [_operand(v, rank, scalar_ok=fn not in (torch.maximum, torch.minimum)) for v in call.inputs]
    out = operands[0]
    if not isinstance(out, Dyn):  # a constant first: torch.sub(2.0, x) needs a tensor first
        out = Const(np.array(out, dtype=np.float32)) if isinstance(out, float | int) else out
    for k, operand in enumerate(operands[1:], 1):
        out = b.function(fn, out, operand, name=call.proto.name if k == len(operands) - 1 else "")
    if op == "Mean":
        out = b.function(torch.div, out, float(len(operands)), name=call.proto.name)
    return [out]


# --- shapes --------------------------------------------------------------------------------------------------


def _reshape(b: _Builder, call: _Call, x: Dyn, shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> Dyn:
    """x reshaped to shapes[i] at batch PROBES[i]: the dimension that follows the batch becomes -1."""
    if shapes[0] == x.shape and tuple(shapes[1]) == tuple(x.probes[1].shape):
        return x
    varying = [i for i, (p, q) in enumerate(zip(*shapes)) if p != q]
    if len(shapes[0]) != len(shapes[1]) or len(varying) > 1:
        raise Unconvertible(call.proto.op_type, "a reshape that spreads the batch over several dimensions")
    if x.rank > 2 and x.batch_dims == {0} and varying == [0] and len(shapes[0]) == 2:
        if all(s[0] == p.shape[0] for s, p in zip(shapes, x.probes)):  # (N, ...) -> (N, rest): x.view(n, -1)
            return b.function(torch.flatten, x, 1, name=call.proto.name)
    target = tuple(-1 if i in varying else int(s) for i, s in enumerate(shapes[0]))
    out = b.function(torch.reshape, x, target, name=call.proto.name)
    if tuple(out.probes[1].shape) != tuple(shapes[1]):
        raise Unconvertible(call.proto.op_type, "a reshape that does not follow the batch")
    return out


def _onnx_reshape(shape: tuple[int, ...], target: list[int], allowzero: bool) -> tuple[int, ...]:
    out = [shape[i] if t == 0 and not allowzero else t for i, t in enumerate(target)]
    if -1 in out:
        known = math.prod(o for o in out if o != -1)
        out[out.index(-1)] = math.prod(shape) // known if known else 0
    if math.prod(out) != math.prod(shape):
        raise Unconvertible("Reshape", f"{shape} cannot become {target}")
    return tuple(out)


@_converts("Reshape")
def _reshape_op(b: _Builder, call: _Call) -> list[Value]:
    x, target = call.dyn(0), call.input(1)
    if isinstance(target, Dyn) or target is None:
        raise Unconvertible("Reshape", "a target shape computed from the image")
    shapes = []
    for i, probe in enumerate(x.probes):
        t = [int(v) for v in (target.arrays[i] if isinstance(target, Probed) else target.array).reshape(-1)]
        if isinstance(target, Const) and b.signature.batch and t and t[0] == b.signature.batch and 0 in x.batch_dims:
            t[0] = PROBES[i]  # exported with a fixed batch: the leading entry was the batch
        shapes.append(_onnx_reshape(tuple(probe.shape), t, bool(call.attrs.get("allowzero", 0))))
    return [_reshape(b, call, x, (shapes[0], shapes[1]))]


@_converts("Flatten")
def _flatten(b: _Builder, call: _Call) -> list[Value]:
    x = call.dyn(0)
    axis = call.attrs.get("axis", 1)
    axis = axis + x.rank if axis < 0 else axis
    shapes = tuple((math.prod(p.shape[:axis]), math.prod(p.shape[axis:])) for p in x.probes)
    return [_reshape(b, call, x, shapes)]  # type: ignore[arg-type]  # two probes


@_converts("Squeeze", "Unsqueeze")
def _squeeze(b: _Builder, call: _Call) -> list[Value]:
    x, op = call.dyn(0), call.proto.op_type
    axes = call.ints(1, "axes", moved_at=13)
    shapes = []
    for probe in x.probes:
        shape = list(probe.shape)
        if op == "Squeeze":
            drop = {a % x.rank for a in axes} if axes else {i for i, s in enumerate(shape) if s == 1}
            shape = [s for i, s in enumerate(shape) if i not in drop]
        else:
            rank = x.rank + len(axes or [])
            for a in sorted(a % rank for a in axes or []):
                shape.insert(a, 1)
        shapes.append(tuple(shape))
    return [_reshape(b, call, x, (shapes[0], shapes[1]))]


@_converts("Transpose")
def _transpose(b: _Builder, call: _Call) -> list[Value]:
    x = call.dyn(0)
    perm = tuple(call.attrs.get("perm", range(x.rank - 1, -1, -1)))
    if x.permuted and all(x.permuted[1][p] == i for i, p in enumerate(perm)):
        return [x.permuted[0]]  # undoes the permute before it (an NHWC graph's first Transpose)
    return [b.function(torch.permute, x, perm, name=call.proto.name)]


@_converts("Concat")
def _concat(b: _Builder, call: _Call) -> list[Value]:
    parts = [v for v in call.inputs if not (isinstance(v, Const) and v.array.size == 0)]
    if any(not isinstance(v, Dyn | Const) for v in parts):
        raise Unconvertible("Concat", "a part that depends on the batch size")
    return [b.function(torch.cat, parts, dim=call.attrs["axis"], name=call.proto.name)]


@_converts("Split")
def _split(b: _Builder, call: _Call) -> list[Value]:
    x, outputs = call.dyn(0), len(call.proto.output)
    axis = call.attrs.get("axis", 0) % x.rank
    if axis in x.batch_dims:
        raise Unconvertible("Split", "a split of the batch")
    sizes = call.ints(1, "split", moved_at=13)
    if not sizes:
        size = x.shape[axis]
        parts = call.attrs.get("num_outputs", outputs)
        sizes = [math.ceil(size / parts)] * (parts - 1) + [size - math.ceil(size / parts) * (parts - 1)]
    split = b.function(torch.split, x, sizes, axis, name=call.proto.name)
    return [b.function(operator.getitem, split, k, name=f"{call.proto.name}_{k}") for k in range(outputs)]


@_converts("Slice")
def _slice(b: _Builder, call: _Call) -> list[Value]:
    x = call.dyn(0)
    starts, ends = call.ints(1, "starts", moved_at=10), call.ints(2, "ends", moved_at=10)
    axes, steps = call.ints(3, "axes", moved_at=10), None if call.opset < 10 else call.ints(4, "", moved_at=10)
    if starts is None or ends is None:
        raise Unconvertible("Slice", "no starts or ends")
    index = [slice(None)] * x.rank
    for start, end, axis, step in zip(starts, ends, axes or range(len(starts)), steps or [1] * len(starts)):
        if step <= 0:
            raise Unconvertible("Slice", "a reversed slice")
        index[axis % x.rank] = slice(start, None if end >= 2**31 - 1 else end, None if step == 1 else step)
    return [b.function(operator.getitem, x, tuple(index), name=call.proto.name)]


@_converts("Gather")
def _gather(b: _Builder, call: _Call) -> list[Value]:
    x, indices = call.dyn(0), call.const(1)
    axis = call.attrs.get("axis", 0) % x.rank
    if indices is None or axis in x.batch_dims:
        raise Unconvertible("Gather", "indices computed in the graph, or over the batch")
    indices = np.where(indices < 0, indices + x.shape[axis], indices).astype(np.int64)
    if indices.ndim == 0:
        return [b.function(torch.select, x, axis, int(indices), name=call.proto.name)]
    flat = Const(indices.reshape(-1), call.proto.input[1])
    gathered = b.function(torch.index_select, x, axis, flat, name=call.proto.name)
    if indices.ndim == 1:
        return [gathered]
    shapes = tuple(p.shape[:axis] + indices.shape + p.shape[axis + 1 :] for p in x.probes)
    return [_reshape(b, call, gathered, shapes)]


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@_converts("Pad")
def _pad(b: _Builder, call: _Call) -> list[Value]:
    x, mode = call.dyn(0), call.attrs.get("mode", "constant")
    pads = call.ints(1, "pads", moved_at=11) or []
    value = call.attrs.get("value", 0.0) if call.opset < 11 else call.const(2)
    axes = list(range(x.rank)) if call.opset < 18 or call.input(3) is None else call.ints(3, "", moved_at=18)
    full = [0] * 2 * x.rank
    for k, axis in enumerate(axes or []):
        full[axis % x.rank], full[axis % x.rank + x.rank] = pads[k], pads[k + len(axes or [])]
    if any(full[d] or full[d + x.rank] for d in x.batch_dims) or mode not in _PAD_MODES:
        raise Unconvertible("Pad", f"padding the batch, or mode {mode!r}")
    first = min([d for d in range(x.rank) if full[d] or full[d + x.rank]], default=x.rank)
    pad = tuple(p for d in reversed(range(first, x.rank)) for p in (full[d], full[d + x.rank]))
    if not pad:
        return [x]
    _bounded("Pad", [s + full[d] + full[d + x.rank] for d, s in enumerate(x.probes[1].shape)])
    extra = {"value": float(0.0 if value is None else value)} if mode == "constant" else {}
    return [b.function(F.pad, x, pad, mode=_PAD_MODES[mode], name=call.proto.name, **extra)]


def reduce_l2(x: torch.Tensor, dim: tuple[int, ...], keepdim: bool) -> torch.Tensor:
    return torch.linalg.vector_norm(x, 2, dim=dim, keepdim=keepdim)


_REDUCE: dict[str, Callable] = {
    "ReduceMean": torch.mean, "ReduceSum": torch.sum, "ReduceMax": torch.amax, "ReduceMin": torch.amin,
    "ReduceL2": reduce_l2, "ReduceLogSumExp": torch.logsumexp,
}  # fmt: skip


@_converts(*_REDUCE)
def _reduce(b: _Builder, call: _Call) -> list[Value]:
    x, op = call.dyn(0), call.proto.op_type
    axes = call.ints(1, "axes", moved_at=13 if op == "ReduceSum" else 18)
    if not axes:
        if call.attrs.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(x.rank))
    dims = tuple(sorted(a % x.rank for a in axes))
    return [b.function(_REDUCE[op], x, dim=dims, keepdim=bool(call.attrs.get("keepdims", 1)), name=call.proto.name)]


@_converts("LayerNormalization")
def _layer_norm(b: _Builder, call: _Call) -> list[Value]:
    x, scale, bias = call.dyn(0), call.const(1), call.const(2)
    axis = call.attrs.get("axis", -1) % x.rank
    if scale is None or any(d >= axis for d in x.batch_dims):
        raise Unconvertible("LayerNormalization", "a scale computed in the graph, or statistics over the batch")
    shape = x.shape[axis:]
    norm = nn.LayerNorm(shape, eps=call.attrs.get("epsilon", 1e-5), bias=bias is not None)
    broadcast = {k: None if a is None else np.broadcast_to(a, shape) for k, a in (("weight", scale), ("bias", bias))}
    return [b.module(call, _load(norm, **broadcast), x)]


@_converts("Einsum")
def _einsum(b: _Builder, call: _Call) -> list[Value]:
    operands = [b.tensor(v, "Einsum") for v in call.inputs]
    return [b.function(torch.einsum, call.attrs["equation"], *operands, name=call.proto.name)]


def _per_probe(value: Value | None, op: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(value, Const):
        return value.array, value.array
    if isinstance(value, Probed):
        return value.arrays
    raise Unconvertible(op, "a shape computed from the image")


def _shape_at(value: "Dyn | Const", i: int) -> tuple[int, ...]:
    return tuple(value.probes[i].shape) if isinstance(value, Dyn) else value.array.shape


@_converts("Expand")
def _expand(b: _Builder, call: _Call) -> list[Value]:
    x, targets = b.tensor(call.input(0), "Expand"), _per_probe(call.input(1), "Expand")
    shapes = [np.broadcast_shapes(_shape_at(x, i), tuple(int(v) for v in targets[i])) for i in (0, 1)]
    _bounded("Expand", shapes[1])
    sizes = b.sizes((np.array(shapes[0]), np.array(shapes[1])), "Expand")
    return [b.function(torch.Tensor.expand, x, sizes, name=call.proto.name)]


@_converts("Tile")
def _tile(b: _Builder, call: _Call) -> list[Value]:
    x, repeats = b.tensor(call.input(0), "Tile"), _per_probe(call.input(1), "Tile")
    _bounded("Tile", np.array(_shape_at(x, 1)) * repeats[1])
    return [b.function(torch.Tensor.repeat, x, b.sizes(repeats, "Tile"), name=call.proto.name)]


@_converts("ConstantOfShape")
def _constant_of_shape(b: _Builder, call: _Call) -> list[Value]:
    fill = call.attrs.get("value", np.zeros(1, np.float32))
    dtype = getattr(torch, fill.dtype.name)
    shapes = _per_probe(call.input(0), "ConstantOfShape")
    _bounded("ConstantOfShape", shapes[1])
    sizes = b.sizes(shapes, "ConstantOfShape")
    assert b.image is not None
    device = b.function(getattr, b.image, "device", name="device")  # made where the model runs, as the image
    value = fill.reshape(-1)[0].item()
    return [b.function(torch.full, sizes, value, dtype=dtype, device=device, name=call.proto.name)]


_CONV_TRANSPOSE: dict[int, Any] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@_converts("ConvTranspose")
def _conv_transpose(b: _Builder, call: _Call) -> list[Value]:
    x, weight, bias = call.dyn(0), call.const(1), call.const(2)
    a = call.attrs
    if weight is None or weight.ndim - 2 not in _CONV_TRANSPOSE or "output_shape" in a:
        raise Unconvertible("ConvTranspose", "weights computed in the graph, or an output_shape")
    n, group = weight.ndim - 2, a.get("group", 1)
    pads = list(a.get("pads", [0] * 2 * n))
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or pads[:n] != pads[n:]:
        raise Unconvertible("ConvTranspose", "padding that is not the same on both sides")
    conv = _CONV_TRANSPOSE[n](
        weight.shape[0], weight.shape[1] * group, tuple(weight.shape[2:]), tuple(a.get("strides", [1] * n)),
        tuple(pads[:n]), tuple(a.get("output_padding", [0] * n)), group, bias is not None,
        tuple(a.get("dilations", [1] * n)),
    )  # fmt: skip
    return [b.module(call, _load(conv, weight=weight, bias=bias), x)]


_INTERPOLATION = {  # (ONNX mode, coordinate_transformation_mode) -> (F.interpolate's mode, align_corners)
    ("nearest", "asymmetric"): ("nearest", None),
    ("linear", "half_pixel"): ("linear", False),
    ("linear", "pytorch_half_pixel"): ("linear", False),
    ("linear", "align_corners"): ("linear", True),
    ("cubic", "half_pixel"): ("cubic", False),
    ("cubic", "pytorch_half_pixel"): ("cubic", False),
    ("cubic", "align_corners"): ("cubic", True),
}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


@_converts("Resize", "Upsample")
def _resize(b: _Builder, call: _Call) -> list[Value]:
    """Resize (and Upsample before opset 10) of the spatial dimensions to a size known at load."""
    x, a, op = call.dyn(0), call.attrs, call.proto.op_type
    default = "half_pixel" if op == "Resize" and call.opset >= 11 else "asymmetric"
    key = (a.get("mode", "nearest"), a.get("coordinate_transformation_mode", default))
    if key not in _INTERPOLATION or a.get("nearest_mode", "floor") != "floor" and key[0] == "nearest":
        raise Unconvertible(op, f"mode {key[0]} with {key[1]} coordinates")
    if a.get("antialias", 0) or (key[0] == "cubic" and a.get("cubic_coeff_a", -0.75) != -0.75):
        raise Unconvertible(op, "antialiasing, or a cubic coefficient other than PyTorch's")
    scales_at, sizes_at = (2, 3) if call.opset >= 11 else (1, None)
    scales = a.get("scales") if op == "Upsample" and call.opset < 9 else call.const(scales_at)
    sizes = None if sizes_at is None or call.input(sizes_at) is None else _per_probe(call.input(sizes_at), op)
    if sizes is not None and sizes[0].size:  # (N, C, H, W) with N the batch: only the spatial sizes are used
        out = tuple(int(v) for v in sizes[0][2:])
        if sizes[0].size != x.rank or out != tuple(int(v) for v in sizes[1][2:]):
            raise Unconvertible(op, "sizes that are not those of the image's height and width")
    elif scales is not None and len(scales) == x.rank and list(scales[:2]) == [1, 1]:
        out = tuple(int(math.floor(s * f)) for s, f in zip(x.shape[2:], scales[2:]))
    else:
        raise Unconvertible(op, "scaling the batch or the channels")
    _bounded(op, (PROBES[1], x.shape[1], *out))
    mode, align = _INTERPOLATION[key]
    mode = _LINEAR.get(x.rank - 2, mode) if mode == "linear" else "bicubic" if mode == "cubic" else mode
    extra = {} if align is None else {"align_corners": align}
    return [b.function(F.interpolate, x, size=out, mode=mode, name=call.proto.name, **extra)]


@_converts("LpNormalization")
def _lp_normalization(b: _Builder, call: _Call) -> list[Value]:
    p, axis = float(call.attrs.get("p", 2)), call.attrs.get("axis", -1)
    return [b.function(F.normalize, call.dyn(0), p, axis, 0.0, name=call.proto.name)]  # ONNX divides with no epsilon


# --- the graph -----------------------------------------------------------------------------------------------


def _prelude(b: _Builder, image: Dyn) -> Dyn:
    """The NCHW image as the graph takes it."""
    layout, (_, h, w) = b.signature.layout, b.signature.input_shape
    if layout == "NHWC":
        return b.function(torch.permute, image, (0, 2, 3, 1), name="to_nhwc")
    if layout == "NHW":
        return b.function(torch.reshape, image, (-1, h, w), name="to_nhw")
    if layout == "flat":
        return b.function(torch.flatten, image, 1, name="to_flat")
    return image


def _initializers(graph: onnx.GraphProto) -> dict[str, Value]:
    return {t.name: Const(numpy_helper.to_array(t), t.name) for t in graph.initializer}


def _op_name(proto: onnx.NodeProto) -> str:
    return proto.op_type if proto.domain in DEFAULT_DOMAINS else f"{proto.domain}.{proto.op_type}"


def _convert_node(b: _Builder, call: _Call) -> list[Value]:
    if not any(isinstance(v, Dyn) or isinstance(v, Probed) and v.source for v in call.inputs):
        return _fold(call)
    if call.proto.op_type not in _MATERIALIZED:  # float data that follows the batch, used as data: built
        op = call.proto.op_type
        call.inputs = [b.tensor(v, op) if isinstance(v, Probed) and v.source else v for v in call.inputs]
    converter = _CONVERTERS.get(call.proto.op_type) if call.proto.domain in DEFAULT_DOMAINS else None
    if converter is None:
        raise Unconvertible(_op_name(call.proto), "")
    try:
        outputs = converter(b, call)
    except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as e:  # the node does not fit its inputs
        raise Unconvertible(call.proto.op_type, str(e).strip().splitlines()[0][:120]) from None
    for name in call.proto.output[len(outputs) :]:
        if name and b.consumers[name]:
            raise Unconvertible(call.proto.op_type, f"its output {name!r} is used")
    return outputs


def convert(model: onnx.ModelProto, signature: Signature) -> fx.GraphModule:
    """`model` as a GraphModule taking (N, C, H, W) images; raises NotConverted naming every op it cannot rebuild."""
    b = _Builder(model, signature)
    c, h, w = signature.input_shape
    placeholder = b.graph.placeholder("x")
    image = Dyn(placeholder, tuple(torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(n)) for n in PROBES))  # type: ignore[arg-type]
    b.image = _prelude(b, image)
    values: dict[str, Value] = {**_initializers(model.graph), signature.input_name: b.image}
    failures: dict[str, str] = {}
    for proto in model.graph.node:
        inputs = [values.get(name) if name else None for name in proto.input]
        if any(name and name not in values for name in proto.input):  # after a node that could not be converted
            if proto.domain not in DEFAULT_DOMAINS:  # never rebuilt, whatever its inputs (a standard op may be)
                failures.setdefault(_op_name(proto), _op_name(proto))
            continue
        call = _Call(proto, inputs, _attributes(proto), signature.opset)
        try:
            outputs = _convert_node(b, call)
        except Unconvertible as e:
            failures.setdefault(e.op, str(e))
            continue
        values.update((name, value) for name, value in zip(proto.output, outputs) if name)
    out = values.get(signature.output_name)
    if not failures and not isinstance(out, Dyn):
        failures["output"] = "the output is not computed from the image"
    if failures:
        raise NotConverted(failures)
    assert isinstance(out, Dyn)
    b.graph.output(out.node)
    draft = fx.GraphModule(b.root, b.graph)  # fx judges which nodes are dead from their owning module
    draft.graph.eliminate_dead_code()
    return fx.GraphModule(b.root, draft.graph, class_name="OnnxGraph").eval()  # only what is still used
