"""A model's stages for one input, read from its own modules through forward hooks (any registered model).

The stages are the outputs of the model's top-level modules in the order it calls them (the children of a
plain `nn.Sequential` count as top-level). What the forward pass does between two of them with plain
functions is recognised by comparing the next module's input with the previous output:
`F.relu` makes the stage "mp + ReLU", `flatten(1)` adds the stage "flatten" (the lecture's 320 values),
a mean over height and width adds "global average pool". A block whose output is the channel
concatenation of some of its own convolutions (lecture 11's InceptionA) lists those as its branches.
For `cnn` this gives the lecture's stages: conv1 10x24x24, mp + ReLU 10x12x12, conv2 20x8x8,
mp + ReLU 20x4x4, flatten 320, fc 10 logits, softmax.

Deep nets have dozens of stages; past MAX_MAP_STAGES only the first stage, the last stage at each
resolution and the classifier are kept, and `Trace.shown` says so.
"""

import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from cnnlab.models.local import LocallyConnected2d

MAX_MAP_STAGES = 8
POINTWISE = (nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Identity)  # modules that keep every value in place
WINDOWED = (nn.Conv2d, LocallyConnected2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Where a stage's cell (i, j) looks on the input: rows offset[0] + i*stride[0] ... + size[0] - 1."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]

    def through(self, module: nn.Module) -> "ReceptiveField":
        """The field after one more windowed module (kernel k, stride s, padding p, dilation d)."""
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


@dataclass
class Branch:
    name: str  # the lecture's variable name: branch1x1, branch5x5, branch3x3dbl, branch_pool
    module: str  # the convolution that ends the branch, e.g. "incept1.branch5x5_2"
    channels: tuple[int, int]  # its slice of the block's output channels [start, stop)


@dataclass
class Stage:
    name: str  # "conv1", "mp + ReLU", "flatten", "fc", "softmax", ...
    values: torch.Tensor  # (C, H, W) maps or (N,) values, for the one input
    module: str | None = None  # the module whose output this is (or whose output went through ReLU)
    conv: bool = False  # values are exactly an nn.Conv2d's output: a cell is one multiply-add
    receptive_field: ReceptiveField | None = None  # on the input, where the path to the stage is known
    branches: list[Branch] = field(default_factory=list)


@dataclass
class Trace:
    stages: list[Stage]
    output: torch.Tensor  # the model's output for the input, (classes,)
    shown: str  # which stages are listed, in words


@dataclass
class _Call:
    name: str
    module: nn.Module
    input: torch.Tensor
    output: torch.Tensor
    parts: list[tuple[str, torch.Tensor]]  # outputs of the module's own convolutions, in call order


def watched_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Top-level modules by qualified name: the model's children, a plain Sequential's children in its place."""
    watched = {}
    for name, child in model.named_children():
        items = child.named_children() if type(child) is nn.Sequential else [(None, child)]
        for sub, module in items:
            if not isinstance(module, (nn.ReLU, nn.Dropout, nn.Identity)):
                watched[f"{name}.{sub}" if sub else name] = module
    return watched


def trace(model: nn.Module, x: torch.Tensor) -> Trace:
    """Run `model` (eval mode) on one normalised input (1, C, H, W) and read every stage."""
    calls, output = _record(model, x)
    stages = []
    rf: ReceptiveField | None = INPUT_FIELD
    if calls and calls[0].input.shape != x.shape and calls[0].input.numel() == x.numel():
        stages.append(Stage("flatten", calls[0].input[0]))  # an MLP flattens its input first
    for i, call in enumerate(calls):
        following = calls[i + 1].input if i + 1 < len(calls) else None
        rf = _field_after(rf, call.module)
        stages.append(_stage_of(call, following, rf))
        if following is not None:
            stages += _between(stages[-1].values, following[0])
    stages.append(Stage("softmax", torch.softmax(output.float(), 0)))  # softmax of log_softmax is the same softmax
    stages, shown = _thin(stages)
    return Trace(stages, output, shown)


def _record(model: nn.Module, x: torch.Tensor) -> tuple[list[_Call], torch.Tensor]:
    calls: list[_Call] = []
    parts: dict[nn.Module, list] = {}

    def on_call(module, inputs, output, name):
        calls.append(_Call(name, module, inputs[0].detach().clone(), output.detach().clone(), parts.pop(module, [])))

    def on_part(module, inputs, output, owner, name):
        parts.setdefault(owner, []).append((name, output.detach().clone()))

    handles = []
    for name, module in watched_modules(model).items():
        handles.append(module.register_forward_hook(lambda m, i, o, name=name: on_call(m, i, o, name)))
        for part_name, part in module.named_children():
            if isinstance(part, nn.Conv2d):
                handles.append(
                    part.register_forward_hook(
                        lambda m, i, o, owner=module, name=f"{name}.{part_name}": on_part(m, i, o, owner, name)
                    )
                )
    try:
        with torch.inference_mode():
            output = model(x)[0]
    finally:
        for handle in handles:
            handle.remove()
    return calls, output


def _stage_of(call: _Call, following: torch.Tensor | None, rf: ReceptiveField | None) -> Stage:
    """The call's output, or its output after ReLU when that is what the next module receives."""
    values = call.output[0]
    is_conv = isinstance(call.module, nn.Conv2d)
    if following is not None and following.numel() == call.output.numel():
        received = following.reshape(call.output.shape)[0]
        if not torch.equal(received, values) and torch.equal(received, values.relu()):
            return Stage(f"{call.name} + ReLU", received, call.name, False, rf if values.dim() == 3 else None)
    return Stage(call.name, values, call.name, is_conv, rf if values.dim() == 3 else None, _branches(call))


def _between(values: torch.Tensor, received: torch.Tensor) -> list[Stage]:
    """What happened between a stage and the next module's input: flatten, global pooling, or unknown."""
    if received.shape == values.shape:
        return []
    if received.numel() == values.numel() and torch.equal(received.flatten(), values.flatten()):
        return [Stage("flatten", received)]
    if values.dim() == 3 and received.shape == values.shape[:1] and torch.allclose(values.mean((1, 2)), received):
        return [Stage("global average pool", received)]
    return [Stage("next input", received)]


def _branches(call: _Call) -> list[Branch]:
    """The module's own convolutions whose outputs, in order, make up its output's channels (InceptionA)."""
    output, start, found = call.output, 0, []
    if len(call.parts) < 2 or output.dim() != 4:
        return []
    for name, part in call.parts:
        stop = start + part.shape[1]
        if part.shape[2:] == output.shape[2:] and stop <= output.shape[1] and torch.equal(part, output[:, start:stop]):
            found.append(Branch(re.sub(r"_\d+$", "", name.rsplit(".", 1)[1]), name, (start, stop)))
            start = stop
    return found if start == output.shape[1] else []


def _field_after(rf: ReceptiveField | None, module: nn.Module) -> ReceptiveField | None:
    """The receptive field once `module` has run: known through windowed and pointwise modules, lost
    after any block whose paths are not one chain (the field of InceptionA or a ResNet block)."""
    layers = list(module.children()) if isinstance(module, nn.Sequential) else [module]
    for layer in layers:
        if rf is None or isinstance(layer, POINTWISE):
            continue
        known = isinstance(layer, WINDOWED) and not isinstance(getattr(layer, "padding", 0), str)  # not "same"
        rf = rf.through(layer) if known else None
    return rf


def _thin(stages: list[Stage]) -> tuple[list[Stage], str]:
    maps = [i for i, s in enumerate(stages) if s.values.dim() == 3]
    if len(maps) <= MAX_MAP_STAGES:
        return stages, f"all {len(stages)} stages"
    size = lambda i: stages[i].values.shape[1:]
    keep = {maps[0], maps[-1]} | {i for i, j in zip(maps, maps[1:]) if size(i) != size(j)}
    kept = [s for i, s in enumerate(stages) if i in keep or s.values.dim() != 3]
    return kept, (
        f"{len(keep)} of {len(maps)} feature-map stages (the first, the last at each resolution), then the classifier"
    )


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple) else (value, value)


def explain_cell(model: nn.Module, x: torch.Tensor, module_name: str, channel: int, row: int, col: int) -> dict:
    """One output value of an nn.Conv2d as the multiply-add that makes it: the kernel, the input patch under
    it (zeros where padding), the products, their sum plus the bias, and the value the model computed."""
    conv = model.get_submodule(module_name)
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ValueError(f"{module_name} is not a plain convolution")
    seen: dict[str, torch.Tensor] = {}
    handle = conv.register_forward_hook(lambda m, i, o: seen.update(input=i[0].detach(), output=o.detach()))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
    out = seen["output"][0]
    if not (0 <= channel < out.shape[0] and 0 <= row < out.shape[1] and 0 <= col < out.shape[2]):
        raise ValueError(f"cell ({channel}, {row}, {col}) is outside {module_name}'s {tuple(out.shape)} output")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (conv.kernel_size, conv.stride, conv.padding, conv.dilation))
    padded = torch.nn.functional.pad(seen["input"][0], (pw, pw, ph, ph))
    patch = padded[:, row * sh : row * sh + dh * (kh - 1) + 1 : dh, col * sw : col * sw + dw * (kw - 1) + 1 : dw]
    weight = conv.weight.detach()[channel]
    bias = float(conv.bias.detach()[channel]) if conv.bias is not None else 0.0
    products = weight.double() * patch.double()
    return {
        "module": module_name,
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
