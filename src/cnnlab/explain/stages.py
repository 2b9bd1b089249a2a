"""A model's stages for one input: what its forward pass computes, step by step (any model: registered, a
learner's script, or an ONNX graph converted to modules).

The steps are read from a torch.fx trace of the model's own `forward`, run on the input. The model's
top-level modules are leaves (the children of a plain `nn.Sequential` or `nn.ModuleList` count as
top-level), so a stage is one of them, or one thing `forward` does with plain functions: `F.relu`,
`F.max_pool2d`, `x.view(in_size, -1)`, `torch.flatten`, a residual `+`, `torch.cat`; a module called twice
gives two stages. An activation applied to a stage is shown with it ("mp + ReLU"); a flatten is "flatten",
a spatial mean "global average pool"; dropout and the final (log-)softmax are no stage of their own (the
last stage is the softmax of the model's output). For `cnn` this gives the lecture's stages:
conv1 10x24x24, mp + ReLU 10x12x12, conv2 20x8x8, mp + ReLU 20x4x4, flatten 320, fc 10 logits, softmax.

Where fx cannot trace `forward` (Python control flow on a tensor's values or sizes, such as the tutorial's
`num_flat_features` loop), the same steps are recorded while the model runs: forward hooks for the
modules and a TorchFunctionMode for the functions between them. `Trace.notes` says so, and says which
steps are not drawn as they are, and why: a module that returns a tuple (nn.MultiheadAttention) is drawn from
its first tensor; one that returns no tensor is not drawn.

A block whose output is the channel concatenation of some of its own convolutions (lecture 11's
InceptionA) lists those as its branches. Every convolution a stage or branch shows is kept as a
`ConvCall` (its input, weights and geometry), so that `explain_cell` can write out any output cell's
multiply-add, for a convolution called twice as for one in a converted ONNX graph.

Deep nets have dozens of stages; past MAX_MAP_STAGES only the first stage, the last stage at each
resolution and the classifier are kept, and `Trace.shown` says so.
"""

import dataclasses
import functools
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from cnnlab.models.local import LocallyConnected2d

MAX_MAP_STAGES = 8
POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Identity)  # modules that keep every value in place
WINDOWED = (nn.Conv2d, LocallyConnected2d, nn.MaxPool2d, nn.AvgPool2d)
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)  # their children are stages in their place

# What a call is, by its name without underscores or case (F.leaky_relu and nn.LeakyReLU are both "leakyrelu").
ACTIVATIONS = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "leakyrelu": "LeakyReLU",
    "elu": "ELU",
    "selu": "SELU",
    "celu": "CELU",
    "gelu": "GELU",
    "silu": "SiLU",
    "mish": "Mish",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "hardtanh": "Hardtanh",
    "hardswish": "Hardswish",
    "hardsigmoid": "Hardsigmoid",
    "softplus": "Softplus",
    "prelu": "PReLU",
}
PASSING = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alphadropout", "featurealphadropout", "identity"}
PASSING |= {"contiguous", "clone", "detach", "to", "float", "double", "half", "type", "cpu", "cuda"}
FINAL = {"logsoftmax", "softmax"}  # the "softmax" stage shows the model's output as probabilities
RESHAPES = {"flatten", "view", "reshape"}
ELEMENTWISE = {"add", "sub", "mul", "div", "batchnorm", "batchnorm2d", "instancenorm2d", "abs", "neg", "clamp"}
OPERATORS = {"iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub", "imul": "mul", "rmul": "mul"}
OPERATORS |= {"truediv": "div", "itruediv": "div", "rtruediv": "div", "cat": "concat", "concatenate": "concat"}
# Positional parameters after the input, for the functions whose geometry a stage needs (most are builtins,
# which inspect.signature cannot read).
PARAMETERS = {
    "maxpool2d": ("kernel_size", "stride", "padding", "dilation"),
    "avgpool2d": ("kernel_size", "stride", "padding"),
    "conv2d": ("weight", "bias", "stride", "padding", "dilation", "groups"),
}


@dataclass(frozen=True)
class ReceptiveField:
    """Where a stage's cell (i, j) looks on the input: rows offset[0] + i*stride[0] ... + size[0] - 1."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]

    def through(self, module: "nn.Module | Window") -> "ReceptiveField":
        """The field after one more window (a module or `Window`: kernel k, stride s, padding p, dilation d)."""
        k, s, p, d = (
            _pair(getattr(module, a, 1 if a == "dilation" else 0))
            for a in ("kernel_size", "stride", "padding", "dilation")
        )
        (n0, n1), (s0, s1), (o0, o1) = self.size, self.stride, self.offset
        return ReceptiveField(
            (n0 + d[0] * (k[0] - 1) * s0, n1 + d[1] * (k[1] - 1) * s1),
            (s0 * s[0], s1 * s[1]),
            (o0 - p[0] * s0, o1 - p[1] * s1),
        )


INPUT_FIELD = ReceptiveField((1, 1), (1, 1), (0, 0))


@dataclass(frozen=True)
class Window:
    """The geometry of a functional pooling call (F.max_pool2d(x, 2)), read as a module's would be."""

    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int]
    padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1


@dataclass(frozen=True)
class ConvCall:
    """One call of a 2-D convolution: what it read, the weights it used and its geometry, for one image."""

    name: str  # "conv1"; "conv1 (call 2)" when a module is called again; "conv2d" for F.conv2d
    input: torch.Tensor  # (C, H, W), already padded when the padding is not zeros
    output: torch.Tensor  # (O, H', W')
    weight: torch.Tensor  # (O, C / groups, kh, kw)
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]  # zeros above and left of the input (below and right: as many as the window needs)
    dilation: tuple[int, int]
    groups: int = 1
    after: str | None = None  # an activation the stage shows applied to this output ("ReLU")
    shown: torch.Tensor | None = None  # the stage's values after it


@dataclass
class Branch:
    name: str  # the lecture's variable name: branch1x1, branch5x5, branch3x3dbl, branch_pool
    module: str  # the convolution call that ends the branch, e.g. "incept1.branch5x5_2" (a key of Trace.convs)
    channels: tuple[int, int]  # its slice of the block's output channels [start, stop)
    receptive_field: "ReceptiveField | None" = None  # of its cells, where the path through the branch is known


@dataclass
class Stage:
    name: str  # "conv1", "mp + ReLU", "flatten", "fc", "softmax", ...
    values: torch.Tensor  # (C, H, W) maps or (N,) values, for the one input
    module: str | None = None  # the module whose output this is, or its convolution call (a key of Trace.convs)
    conv: bool = False  # a cell is one multiply-add of Trace.convs[module] (then `after`, if any)
    receptive_field: ReceptiveField | None = None  # on the input, where the path to the stage is known
    branches: list[Branch] = field(default_factory=list)


@dataclass
class Trace:
    stages: list[Stage]
    output: torch.Tensor  # the model's output for the input, (classes,)
    shown: str  # which stages are listed, in words
    convs: dict[str, ConvCall] = field(default_factory=dict)  # every convolution call a stage or branch shows
    notes: list[str] = field(default_factory=list)  # what could not be traced or drawn, and why
    map_stages: tuple[int, int] = (0, 0)  # feature-map stages listed, of how many (`shown` in numbers)


@dataclass
class _Op:
    """One step of the forward pass: a top-level module's call or a function `forward` applies."""

    name: str  # the module's qualified name, or the function's ("relu", "max_pool2d", "view", "add")
    kind: str  # the name without underscores or case, for the rules above ("maxpool2d", "conv2d")
    inputs: list[int]  # the earlier steps whose outputs it reads; -1 is the model's input
    output: torch.Tensor  # (1, ...): the one image's
    module: nn.Module | None = None
    window: Window | None = None
    conv: ConvCall | None = None
    parts: list[ConvCall] = field(default_factory=list)  # the module's own convolutions, in call order


def leaf_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Top-level modules by qualified name: the model's children, a container's children in its place; of an
    fx graph (an ONNX file rebuilt as layers), the modules it calls (its other modules are folders)."""
    if isinstance(model, torch.fx.GraphModule):
        called = [str(n.target) for n in model.graph.nodes if n.op == "call_module"]
        return {name: model.get_submodule(name) for name in called}
    leaves = {}
    for name, child in model.named_children():
        items = child.named_children() if type(child) in CONTAINERS else [(None, child)]
        for sub, module in items:
            leaves[f"{name}.{sub}" if sub else name] = module
    return leaves


def trace(model: nn.Module, x: torch.Tensor) -> Trace:
    """Run `model` (eval mode) on one normalised input (1, C, H, W) and read every stage."""
    intermediate = getattr(model, "intermediate", None)
    if callable(intermediate):  # an ONNX graph run by onnxruntime: its nodes' outputs
        return _graph_outputs(model, intermediate, x)
    recorder = _Recorder(model)
    with recorder.watching_parts(), torch.inference_mode():
        ops, output, notes = recorder.run(x)
    stages, convs = _stages(ops)
    stages.append(Stage("softmax", torch.softmax(output[0].float(), 0)))  # softmax of log_softmax is the same
    stages, shown, map_stages = _thin(stages)
    return Trace(stages, output[0], shown, convs, notes, map_stages)


def _graph_outputs(model: nn.Module, intermediate: Callable, x: torch.Tensor) -> Trace:
    """The stages of a model that runs elsewhere (external/onnx_graph.OnnxRuntimeModel) and gives every node's
    output, in graph order, as (node name, op type, tensor): each one that has the input's batch of one is a
    stage. No weights are at hand, so no cell is a multiply-add."""
    with torch.inference_mode():
        outputs = intermediate(x)
        output = model(x)
    stages = [
        Stage(f"{node} ({op})" if node != op else op, _values(values))
        for node, op, values in outputs
        if values.dim() >= 2 and values.shape[0] == 1 and _kind(op) not in PASSING | FINAL
    ]
    stages.append(Stage("softmax", torch.softmax(output[0].float(), 0)))
    stages, shown, map_stages = _thin(stages)
    note = f"{getattr(model, 'note', '') or 'this graph runs in onnxruntime'}: every node's maps are shown, "
    note += "but not a multiply-add (its weights stay inside onnxruntime)"
    return Trace(stages, output[0], shown, {}, [note], map_stages)


class _Recorder:
    """Runs a model once and records its steps: through its fx graph, else (fx cannot trace it) eagerly."""

    # model -> (its mode when traced, its graph or why there is none): `if self.training:` is fixed by a trace
    _graphs: "weakref.WeakKeyDictionary[nn.Module, tuple[bool, torch.fx.GraphModule | str]]"
    _graphs = weakref.WeakKeyDictionary()

    def __init__(self, model: nn.Module):
        self.model = model
        self.leaves = leaf_modules(model)
        self.calls: dict[str, int] = {}  # how often each module or function has been called so far
        self.parts: dict[nn.Module, list[ConvCall]] = {}  # convolutions run inside a leaf, until it returns
        self.notes: list[str] = []

    def run(self, x: torch.Tensor) -> tuple[list[_Op], torch.Tensor, list[str]]:
        graph = self._graph()
        if isinstance(graph, torch.fx.GraphModule):
            return *_GraphRun(graph, self).ops_of(x), self.notes
        ops, output = _EagerRun(self).ops_of(x)
        note = (
            f"torch.fx could not trace {type(self.model).__name__}.forward ({graph}): its steps were recorded "
            "as it ran instead (forward hooks for the modules, the torch functions between them)"
        )
        return ops, output, [note, *self.notes]

    def _graph(self) -> "torch.fx.GraphModule | str":
        """The model's fx graph with its top-level modules as leaves (cached), or why fx cannot trace it."""
        if isinstance(self.model, torch.fx.GraphModule):  # an ONNX file rebuilt as layers: its own graph already
            return self.model
        cached = self._graphs.get(self.model)
        if cached is None or cached[0] != self.model.training:
            tracer = _LeafTracer(set(self.leaves.values()))
            graph: torch.fx.GraphModule | str
            try:
                graph = torch.fx.GraphModule(self.model, tracer.trace(self.model))
            except Exception as e:  # anything a learner's forward does with a Proxy: said in a note
                graph = (str(e).strip().split(". ")[0].splitlines() or [type(e).__name__])[0][:120]
            cached = self._graphs[self.model] = (self.model.training, graph)
        return cached[1]

    def key(self, name: str) -> str:
        """A name for this call: the module's (or function's) own the first time, "name (call k)" after."""
        self.calls[name] = self.calls.get(name, 0) + 1
        return name if self.calls[name] == 1 else f"{name} (call {self.calls[name]})"

    def module_op(self, module: nn.Module, name: str, args: tuple, output: object, inputs: list[int]) -> _Op | None:
        """The step of one leaf module's call; None (and a note) when it cannot be drawn."""
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            # nn.MultiheadAttention's (output, weights), nn.LSTM's (output, (h, c)): the rest of forward reads on
            self.notes.append(f"{name} gives a {type(output).__name__}: its first tensor is drawn")
            output = output[0]
        if not isinstance(output, torch.Tensor):
            self.notes.append(f"{name} gives a {type(output).__name__}, not one tensor: not drawn")
            return None
        key = self.key(name)
        conv = None
        if isinstance(module, nn.Conv2d) and isinstance(args[0], torch.Tensor):
            conv = _module_conv(key, module, args[0], output)
        parts = self.parts.pop(module, [])
        return _Op(name, _kind(type(module).__name__), inputs, output.detach().clone(), module, conv=conv, parts=parts)

    def function_op(
        self, function: Callable[..., object] | str, args: tuple, kwargs: dict, output: object, inputs: list[int]
    ) -> _Op | None:
        """The step of one function `forward` applies, or None when it makes no tensor (x.size(0))."""
        if not isinstance(output, torch.Tensor):
            return None
        name = _function_name(function)
        kind = _kind(name)
        if kind == "getitem" and args and isinstance(args[0], (tuple, list)):
            kind = "identity"  # an element of a module's tuple: shown with the module (its first tensor)
        elif kind == "getitem" and len(args) == 2:
            name = _index_text(args[1])  # x[:, 0], a vision transformer's class token: "[:, 0]"
        named = dict(zip(PARAMETERS.get(kind, ()), args[1:])) | dict(kwargs)
        op = _Op(name, kind, inputs, output.detach().clone())
        kernel = named.get("kernel_size")
        if kind in ("maxpool2d", "avgpool2d") and kernel is not None:
            op.window = Window(kernel, named.get("stride") or kernel, named.get("padding", 0), named.get("dilation", 1))
        elif kind == "conv2d" and args and isinstance(args[0], torch.Tensor):
            geometry = {k: named[k] for k in named if k in PARAMETERS["conv2d"]}
            op.conv = _conv_call(self.key(name), args[0], output, **geometry)
        return op

    def watching_parts(self) -> "_Hooks":
        """Hooks on each leaf's own convolutions (InceptionA's branches), removed on leaving the block."""
        handles = []
        for name, leaf in self.leaves.items():
            for part_name, part in leaf.named_children():
                if isinstance(part, nn.Conv2d):
                    hook = functools.partial(self._part_called, leaf, f"{name}.{part_name}")
                    handles.append(part.register_forward_hook(hook))
        return _Hooks(handles)

    def _part_called(self, owner: nn.Module, name: str, part: nn.Conv2d, inputs: tuple, output) -> None:
        self.parts.setdefault(owner, []).append(_module_conv(self.key(name), part, inputs[0], output))


class _LeafTracer(torch.fx.Tracer):
    def __init__(self, leaves: set[nn.Module]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m in self.leaves or super().is_leaf_module(m, module_qualified_name)


class _GraphRun(torch.fx.Interpreter):
    """Runs the fx graph node by node and keeps each tensor-valued node as a step."""

    def __init__(self, graph: torch.fx.GraphModule, recorder: _Recorder):
        super().__init__(graph)
        self.recorder = recorder
        self.ops: list[_Op] = []
        self.step: dict[torch.fx.Node, int] = {}

    def ops_of(self, x: torch.Tensor) -> tuple[list[_Op], torch.Tensor]:
        output = self.run(x)
        return self.ops, output

    def run_node(self, n: torch.fx.Node) -> Any:
        output = super().run_node(n)
        if n.op == "placeholder":
            self.step[n] = -1
            return output
        inputs = [self.step[a] for a in n.all_input_nodes if a in self.step]
        if n.op == "call_module":
            module = self.module.get_submodule(str(n.target))
            args, _ = self.fetch_args_kwargs_from_env(n)
            op = self.recorder.module_op(module, str(n.target), args, output, inputs)
        elif n.op in ("call_function", "call_method"):
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            function = n.target if n.op == "call_function" else getattr(torch.Tensor, str(n.target), str(n.target))
            op = self.recorder.function_op(function, args, kwargs, output, inputs)
        else:
            return output
        if op is not None:
            self.step[n] = len(self.ops)
            self.ops.append(op)
        elif _tensors(output) and inputs:  # torch.chunk's tuple: what reads its parts reads its input
            self.step[n] = inputs[0]
        return output


class _EagerRun(TorchFunctionMode):
    """Runs the model as it is, recording its leaf modules' calls (hooks) and the torch functions called
    between them (this mode), linked by the identity of the tensors they pass."""

    def __init__(self, recorder: _Recorder):
        super().__init__()
        self.recorder = recorder
        self.ops: list[_Op] = []
        self.step: dict[int, int] = {}  # id(tensor) -> the step that made it
        self.alive: list[torch.Tensor] = []  # every tensor seen, so that no id is reused during the run
        self.depth = 0  # > 0 inside a leaf module: its own functions are not steps

    def ops_of(self, x: torch.Tensor) -> tuple[list[_Op], torch.Tensor]:
        self.step[id(x)] = -1
        hooks = []
        for name, leaf in self.recorder.leaves.items():
            hooks.append(leaf.register_forward_pre_hook(lambda m, i: self._enter()))
            hooks.append(leaf.register_forward_hook(lambda m, i, o, name=name: self._leave(m, name, i, o)))
        with _Hooks(hooks), self:
            output = self.recorder.model(x)
        return self.ops, output

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        if self.depth == 0:
            inputs = self._inputs(args, kwargs)
            op = self.recorder.function_op(func, args, kwargs or {}, output, inputs)
            if op is None and _tensors(output) and inputs:  # torch.chunk's tuple, as in the fx graph
                self._known(output, inputs[0])
            self._add(op, output)
        return output

    def _enter(self) -> None:
        self.depth += 1

    def _leave(self, module: nn.Module, name: str, args: tuple, output) -> None:
        if self.depth == 1:  # still counted inside: the copies made here are no steps
            op = self.recorder.module_op(module, name, args, output, self._inputs(args, {}))
            self._add(op, output)
        self.depth -= 1

    def _inputs(self, args, kwargs) -> list[int]:
        flat = [*args, *(kwargs or {}).values()]
        flat += [t for a in flat if isinstance(a, (list, tuple)) for t in a]  # torch.cat([a, b])
        return [self.step[id(a)] for a in flat if isinstance(a, torch.Tensor) and id(a) in self.step]

    def _add(self, op: _Op | None, output) -> None:
        if op is not None:
            self._known(output, len(self.ops))
            self.ops.append(op)

    def _known(self, output, step: int) -> None:
        """`output` (or each tensor of its tuple: indexed in Python, unseen here) as made by `step`."""
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                self.alive.append(tensor)
                self.step[id(tensor)] = step


class _Hooks:
    def __init__(self, handles):
        self.handles = handles

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def _index_text(index) -> str:
    """ "[:, 0]" for x[:, 0], "[..., 1:]" for x[..., 1:]: a tensor's indexing as forward writes it."""

    def part(p: object) -> str:
        if isinstance(p, slice):
            text = ("" if p.start is None else str(p.start)) + ":" + ("" if p.stop is None else str(p.stop))
            return text + ("" if p.step is None else f":{p.step}")
        return "..." if p is Ellipsis else "tensor" if isinstance(p, torch.Tensor) else str(p)

    return "[" + ", ".join(map(part, index if isinstance(index, tuple) else (index,)))[:40] + "]"


def _tensors(output) -> bool:
    """Whether `output` is a tuple or list of tensors (torch.chunk's, torch.split's), not torch.Size."""
    return isinstance(output, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in output)


def _function_name(function) -> str:
    """ "relu" for F.relu, torch.relu and Tensor.relu_; "add" for `+`, "view" for Tensor.view."""
    name = getattr(function, "__name__", None) or str(function)
    name = name.strip("_")
    return OPERATORS.get(name, name)


def _kind(name: str) -> str:
    return re.sub(r"[_\s]", "", name).lower()


def _module_conv(key: str, conv: nn.Conv2d, x: torch.Tensor, output: torch.Tensor) -> ConvCall:
    padding: str | int | tuple[int, ...] = conv.padding
    if conv.padding_mode != "zeros":  # reflect, replicate, circular: padded as the module does, then no more
        (top, bottom), (left, right) = _padding(padding, conv.weight.shape[2:], _pair(conv.dilation))
        x, padding = F.pad(x, (left, right, top, bottom), mode=conv.padding_mode), 0
    return _conv_call(key, x, output, conv.weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)


def _conv_call(key, input, output, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> ConvCall:
    """A convolution's call from its arguments (F.conv2d's, or a module's)."""
    (top, _), (left, _) = _padding(padding, weight.shape[2:], _pair(dilation))
    return ConvCall(
        key,
        input[0].detach().clone(),
        output[0].detach().clone(),
        weight.detach(),
        None if bias is None else bias.detach(),
        _pair(stride),
        (top, left),
        _pair(dilation),
        groups,
    )


def _padding(padding, kernel, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    """(above, below), (left, right) of a convolution's padding: numbers, "valid", or "same" (PyTorch puts
    the smaller half above and left)."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return (totals[0] // 2, totals[0] - totals[0] // 2), (totals[1] // 2, totals[1] - totals[1] // 2)
    (h, w) = _pair(padding)
    return (h, h), (w, w)


def _stages(ops: list[_Op]) -> tuple[list[Stage], dict[str, ConvCall]]:
    """The steps as the lab shows them: activations with the stage they act on, dropout and the final
    softmax passed over, and steps that do not depend on the input (arithmetic on weights) left out."""
    stages: list[Stage] = []
    convs: dict[str, ConvCall] = {}
    shown: dict[int, int] = {}  # step -> the stage that shows its output
    fields: dict[int, ReceptiveField | None] = {-1: INPUT_FIELD}
    live = {-1}  # the steps that depend on the input
    for i, op in enumerate(ops):
        if not live.intersection(op.inputs):
            continue
        live.add(i)
        fields[i] = _field(op, [fields[j] for j in op.inputs if j in live])
        source = shown.get(op.inputs[0])
        if op.kind in PASSING or op.kind in FINAL:
            if source is not None:
                shown[i] = source
        elif op.kind in ACTIVATIONS and source is not None and source == len(stages) - 1:
            stages[-1] = _activated(stages[-1], ACTIVATIONS[op.kind], _values(op.output), convs)
            shown[i] = source
        else:
            source_step = op.inputs[0] if op.inputs else -1
            before = (fields.get(source_step), ops[source_step].output[0]) if source_step >= 0 else None
            stages.append(_stage(op, fields[i], convs, before))
            shown[i] = len(stages) - 1
    return stages, convs


def _stage(op: _Op, rf: ReceptiveField | None, convs: dict[str, ConvCall], before=None) -> Stage:
    """The step as a stage; `before`: the field and the values of what it read, for its branches' fields."""
    values = _values(op.output)
    if op.module is not None:
        # A convolution called again is named as its call is ("conv (call 2)"), as the inspector names it; a
        # Sequential's modules have numbers for names, so they say what they are ("layer1.3: MaxPool2d").
        base = op.conv.name if op.conv is not None else op.name
        name = f"{base}: {type(op.module).__name__}" if op.name.rsplit(".", 1)[-1].isdigit() else base
    elif op.kind in RESHAPES and op.output.dim() == 2:
        name = "flatten"
    elif op.kind in ("mean", "adaptiveavgpool2d") and values.numel() == op.output.shape[1]:
        name = "global average pool"
    else:
        name = ACTIVATIONS.get(op.kind, op.name)
    branches = _branches(values, op.parts, before)
    shown_convs = [op.conv] if op.conv is not None else []
    for conv in shown_convs + [p for p in op.parts if p.name in {b.module for b in branches}]:
        convs[conv.name] = conv
    module = op.conv.name if op.conv else op.name if op.module is not None else None
    return Stage(name, values, module, op.conv is not None, rf if values.dim() == 3 else None, branches)


def _activated(stage: Stage, label: str, values: torch.Tensor, convs: dict[str, ConvCall]) -> Stage:
    """`stage` with an activation applied: "mp + ReLU". A convolution's stays explainable: the multiply-add,
    then the activation."""
    if stage.conv and stage.module is not None:
        conv = convs[stage.module]
        after = f"{conv.after} + {label}" if conv.after else label
        convs[stage.module] = dataclasses.replace(conv, after=after, shown=values)
    return dataclasses.replace(stage, name=f"{stage.name} + {label}", values=values)


def _values(output: torch.Tensor) -> torch.Tensor:
    """The one image's values: (C, H, W) maps, else flat."""
    values = output[0] if output.dim() >= 2 and output.shape[0] == 1 else output
    return values if values.dim() in (1, 3) else values.flatten()


def _field(op: _Op, inputs: list[ReceptiveField | None]) -> ReceptiveField | None:
    """Where the step's output looks on the input: known through windows and pointwise steps on one chain."""
    if not inputs or inputs[0] is None or any(f != inputs[0] for f in inputs):
        return None  # no input, or several paths (a residual add, a concatenation of branches)
    rf = inputs[0]
    if op.conv is not None and (op.module is None or isinstance(op.module.padding, str)):  # F.conv2d, "same"
        k = tuple(op.conv.weight.shape[2:])
        return rf.through(Window((k[0], k[1]), op.conv.stride, op.conv.padding, op.conv.dilation))
    if op.module is not None:
        return _field_after(rf, op.module)
    if op.window is not None:
        return rf.through(op.window)
    return rf if op.kind in ACTIVATIONS or op.kind in PASSING or op.kind in ELEMENTWISE else None


def _branches(values: torch.Tensor, parts: list[ConvCall], before=None) -> list[Branch]:
    """The block's own convolutions whose outputs, in order, make up its output's channels (InceptionA)."""
    start, found = 0, []
    if len(parts) < 2 or values.dim() != 3:
        return []
    for part in parts:
        stop = start + part.output.shape[0]
        if part.output.shape[1:] == values.shape[1:] and stop <= values.shape[0]:
            if torch.equal(part.output, values[start:stop]):
                name = re.sub(r"_\d+$", "", _attribute(part))
                chain = [p for p in parts if re.sub(r"_\d+$", "", _attribute(p)) == name]
                found.append(Branch(name, part.name, (start, stop), _branch_field(chain, before)))
                start = stop
    return found if start == values.shape[0] else []


def _attribute(part: ConvCall) -> str:
    """ "branch5x5_2" of the call "incept1.branch5x5_2 (call 2)"."""
    return part.name.split(" (call ")[0].rsplit(".", 1)[-1]


# What a branch may do to the block's input before its first convolution, as lecture 11's branch_pool does
# (F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)): recognised by its values, like the ReLU between stages.
SAME_SIZE_POOLS = [(Window(k, 1, k // 2), pool) for k in (3, 5) for pool in (F.avg_pool2d, F.max_pool2d)]


def _branch_field(chain: list[ConvCall], before) -> ReceptiveField | None:
    """Where a branch's cell looks on the input: the block's input field through the branch's convolutions,
    each reading the one before it, the first reading the block's input (or a same-size pooling of it)."""
    if before is None or before[0] is None:
        return None
    rf, x = before
    if not torch.equal(chain[0].input, x):
        pooled = [
            window
            for window, pool in SAME_SIZE_POOLS
            if torch.allclose(pool(x[None], window.kernel_size, 1, window.padding)[0], chain[0].input)
        ]
        if not pooled:
            return None
        rf = rf.through(pooled[0])
    for previous, conv in zip([None, *chain], chain):
        if previous is not None and not torch.equal(conv.input, previous.output):
            return None
        kernel = tuple(conv.weight.shape[2:])
        rf = rf.through(Window((kernel[0], kernel[1]), conv.stride, conv.padding, conv.dilation))
    return rf


def _field_after(rf: ReceptiveField | None, module: nn.Module) -> ReceptiveField | None:
    """The receptive field once `module` has run: known through windowed and pointwise modules, lost
    after any block whose paths are not one chain (the field of InceptionA or a ResNet block)."""
    layers = list(module.children()) if isinstance(module, nn.Sequential) else [module]
    for layer in layers:
        if rf is None or isinstance(layer, POINTWISE) or _kind(type(layer).__name__) in ACTIVATIONS:
            continue
        known = isinstance(layer, WINDOWED) and not isinstance(getattr(layer, "padding", 0), str)  # not "same"
        rf = rf.through(layer) if known else None
    return rf


def _thin(stages: list[Stage]) -> tuple[list[Stage], str, tuple[int, int]]:
    maps = [i for i, s in enumerate(stages) if s.values.dim() == 3]
    if len(maps) <= MAX_MAP_STAGES:
        return stages, f"all {len(stages)} stages", (len(maps), len(maps))
    size = lambda i: stages[i].values.shape[1:]
    keep = {maps[0], maps[-1]} | {i for i, j in zip(maps, maps[1:]) if size(i) != size(j)}
    kept = [s for i, s in enumerate(stages) if i in keep or s.values.dim() != 3]
    shown = (
        f"{len(keep)} of {len(maps)} feature-map stages (the first, the last at each resolution), then the classifier"
    )
    return kept, shown, (len(keep), len(maps))


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[-1])) if isinstance(value, (tuple, list, torch.Size)) else (value, value)


def explain_cell(conv: ConvCall, channel: int, row: int, col: int) -> dict:
    """One output value of a convolution call as the multiply-add that makes it: the kernel, the input patch
    under it (zeros where padding), the products, their sum plus the bias, and the value the model computed
    (then the activation the stage shows, if any)."""
    out = conv.output
    if not (0 <= channel < out.shape[0] and 0 <= row < out.shape[1] and 0 <= col < out.shape[2]):
        raise ValueError(f"cell ({channel}, {row}, {col}) is outside {conv.name}'s {tuple(out.shape)} output")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.weight.shape[2:], conv.stride, conv.padding, conv.dilation
    # below and right, as many zeros as any window can reach ("same" pads one more there for an even kernel)
    padded = F.pad(conv.input, (pw, max(pw, dw * (kw - 1)), ph, max(ph, dh * (kh - 1))))
    per_group = conv.weight.shape[1]
    first = channel // (out.shape[0] // conv.groups) * per_group  # the input channels of its group
    patch = padded[
        first : first + per_group,
        row * sh : row * sh + dh * (kh - 1) + 1 : dh,
        col * sw : col * sw + dw * (kw - 1) + 1 : dw,
    ]
    weight = conv.weight[channel]
    bias = float(conv.bias[channel]) if conv.bias is not None else 0.0
    products = weight.double() * patch.double()
    explained = {
        "module": conv.name,
        "channel": channel,
        "row": row,
        "col": col,
        "origin": [row * sh - ph, col * sw - pw],
        "step": [dh, dw],
        "weights": weight.tolist(),
        "patch": patch.tolist(),
        "products": products.tolist(),
        "bias": bias,
        "sum": float(products.sum()) + bias,
        "activation": float(out[channel, row, col]),
    }
    if conv.after and conv.shown is not None:
        explained["after"] = {"name": conv.after, "value": float(conv.shown[channel, row, col])}
    return explained
