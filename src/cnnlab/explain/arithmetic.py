"""The lecture's arithmetic as commands: layer-by-layer summaries, conv output sizes, FC vs LC vs conv.

`summary` is written here rather than taken from torchinfo: torchinfo counts mult-adds its own way and
does not show the fully connected layer's input (the lecture's "320"), while this is 40 lines over
forward hooks and torch.utils.flop_counter, so its totals match `cnnlab models` by construction.
"""

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import CnnlabError
from cnnlab.external.spec import ONNX, REGISTRY, ModelSpec, build_model_from_spec, describe_model, parse_spec
from cnnlab.models import count_flops, count_parameters
from cnnlab.models.local import conv_output_size
from cnnlab.tables import format_table


def _shape(t: object) -> str:
    if isinstance(t, (tuple, list)) and t:  # nn.LSTM's (output, (h, c)), nn.MultiheadAttention's (output, weights)
        t = t[0]
    return "x".join(map(str, t.shape[1:])) if isinstance(t, torch.Tensor) else "-"


def summary_rows(model: torch.nn.Module, input_shape: Sequence[int]) -> list[list]:
    """One row per call of a leaf module, of a direct child, or of a module with weights of its own (whose children
    it may not call: nn.MultiheadAttention's out_proj): name, type, in/out shape, params, FLOPs."""
    rows: list[list] = []
    counting = [False]
    names = {module: name for name, module in model.named_modules() if name}
    children = set(model.children())

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], kwargs: dict, output: object) -> None:
        if counting[0]:
            return
        counting[0] = True
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*inputs, **kwargs)
        counting[0] = False
        first_call = all(row[0] != names[module] for row in rows)
        params = sum(p.numel() for p in module.parameters()) if first_call else 0
        rows.append(
            [names[module], type(module).__name__, _shape(inputs[0]), _shape(output), params, counter.get_total_flops()]
        )

    shown = [m for m in names if m in children or not list(m.children()) or list(m.parameters(recurse=False))]
    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in shown]
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return rows


def summary(name: str, input_shape: tuple[int, int, int] | None = None, model_args: dict | None = None) -> str:
    """`cnnlab summary`: model `name` (a registered name or a spec: net.py:Net, model.onnx) layer by layer (input
    and output shape, parameters, FLOPs), then totals; first, for a model from outside the package, where it
    comes from. `input_shape` (C, H, W): by default 1x28x28, an ONNX graph's own."""
    model, input_shape = _summary_model(parse_spec(name), input_shape, model_args)
    if not any(True for _ in model.parameters()):  # an ONNX graph run by onnxruntime: read from the graph
        from cnnlab.external.onnx_graph import graph_parameters, graph_summary

        rows, parameters = graph_summary(model), graph_parameters(model)
        flops = sum(row[5] for row in rows)
    else:
        try:
            rows = summary_rows(model, input_shape)
        except RuntimeError as e:
            raise CnnlabError(
                f"model {name!r} cannot take input {'x'.join(map(str, input_shape))}: "
                f"{str(e).strip().splitlines()[0][:160]}"
            ) from None
        parameters, flops = count_parameters(model), count_flops(model, input_shape)
    table = [[n, t, i, o, f"{p:,}" if p else "-", f"{f:,}" if f else "-"] for n, t, i, o, p, f in rows]
    table.append(["total", "", "x".join(map(str, input_shape)), rows[-1][3], f"{parameters:,}", f"{flops:,}"])
    described = describe_model(name, model)
    return (f"{described}\n\n" if described else "") + format_table(
        ["layer", "type", "input", "output", "parameters", "FLOPs"], table
    )


def _summary_model(
    spec: ModelSpec, input_shape: Sequence[int] | None, model_args: dict | None
) -> tuple[torch.nn.Module, tuple]:
    """The model to summarise, and its input shape."""
    if spec.kind == ONNX:
        given: dict[str, Any] = dict(in_channels=input_shape[0], input_size=input_shape[1:]) if input_shape else {}
        model = build_model_from_spec(spec, **{"in_channels": None, "input_size": None, **given}, num_classes=None)
        return model, tuple(cast(tuple, model.input_shape))
    input_shape = tuple(input_shape or (1, 28, 28))
    shape: dict[str, Any] = dict(
        in_channels=input_shape[0], num_classes=None, input_size=input_shape[1:], model_args=model_args
    )
    # Shapes, parameters and FLOPs need no real tensors (a huge --input costs nothing), but a learner's
    # constructor may compute with real ones (a dummy forward to size its fc).
    with torch.device("meta") if spec.kind == REGISTRY else contextlib.nullcontext():
        return build_model_from_spec(spec, **shape), input_shape


@dataclass(frozen=True)
class ConvShape:
    """A convolution's (then pooling's) output size: what `cnnlab shape` prints, and `GET /shape` returns."""

    size: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    output: int  # the convolution's output is output x output
    pool: int | None = None
    pooled: int | None = None  # the output after pooling, when there is one

    @property
    def final(self) -> int:
        """The last output size: after pooling when there is one."""
        return self.output if self.pooled is None else self.pooled

    def formula(self) -> str:
        """The formula with this convolution's numbers in it."""
        return f"floor(({self.size} + 2*{self.padding} - {self.dilation}*({self.kernel}-1) - 1) / {self.stride}) + 1"

    def lines(self) -> list[str]:
        """The formula, its numbers written out and the output size, a line each."""
        numerator = self.size + 2 * self.padding - self.dilation * (self.kernel - 1) - 1
        lines = [
            "conv: floor((n + 2p - d(k-1) - 1) / s) + 1",
            f"    = {self.formula()}",
            f"    = floor({numerator} / {self.stride}) + 1 = {self.output}",
            f"output: {self.output}x{self.output} (from {self.size}x{self.size})",
        ]
        if self.pool is not None:
            lines += [
                f"pool {self.pool}x{self.pool}, stride {self.pool}: "
                f"floor(({self.output} - {self.pool}) / {self.pool}) + 1 = {self.pooled}",
                f"output: {self.pooled}x{self.pooled}",
            ]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


def shape(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, pool: int | None = None
) -> ConvShape:
    """The output size of a convolution (then optional pooling); `str()` of it writes the formula out."""
    for label, value, low in (
        ("--input", size, 1),
        ("--kernel", kernel, 1),
        ("--stride", stride, 1),
        ("--padding", padding, 0),
        ("--dilation", dilation, 1),
    ):
        if value < low:
            raise CnnlabError(f"{label} must be at least {low}, got {value}")
    conv = ConvShape(size, kernel, stride, padding, dilation, conv_output_size(size, kernel, stride, padding, dilation))
    if conv.output < 1:
        raise CnnlabError(
            f"output would be empty: {conv.formula()} = {conv.output}; the kernel's reach "
            f"{dilation * (kernel - 1) + 1} exceeds the padded input {size + 2 * padding}"
        )
    if pool is None:
        return conv
    if pool < 1 or pool > conv.output:
        raise CnnlabError(f"--pool {pool} does not fit the {conv.output}x{conv.output} convolution output")
    return dataclasses.replace(conv, pool=pool, pooled=(conv.output - pool) // pool + 1)


def params(input_shape: tuple[int, int, int], out_channels: int, kernel: int, stride: int = 1, padding: int = 0) -> str:
    """Parameters and FLOPs of FC, locally connected and conv layers mapping the same input to the same output."""
    c, h, w = input_shape
    if out_channels < 1 or kernel < 1 or stride < 1 or padding < 0:
        raise CnnlabError("--out-channels, --kernel and --stride must be at least 1 and --padding at least 0")
    oh, ow = conv_output_size(h, kernel, stride, padding), conv_output_size(w, kernel, stride, padding)
    if min(oh, ow) < 1:
        raise CnnlabError(f"a {kernel}x{kernel} kernel does not fit {h}x{w} with padding {padding}")
    n_in, n_out, patch, positions = c * h * w, out_channels * oh * ow, c * kernel * kernel, oh * ow
    rows = [
        ["fully connected", f"{n_in:,} x {n_out:,} + {n_out:,}", f"{n_in * n_out + n_out:,}", f"{2 * n_in * n_out:,}"],
        [
            "locally connected",
            f"{n_out:,} x {patch:,} + {n_out:,}",
            f"{n_out * patch + n_out:,}",
            f"{2 * n_out * patch:,}",
        ],
        [
            "convolution",
            f"{out_channels:,} x {patch:,} + {out_channels:,}",
            f"{out_channels * patch + out_channels:,}",
            f"{2 * n_out * patch:,}",
        ],
    ]
    header = (
        f"input {c}x{h}x{w} ({n_in:,} values) -> output {out_channels}x{oh}x{ow} ({n_out:,} values), "
        f"kernel {kernel}x{kernel} over {c} channel{'s' if c > 1 else ''} = {patch} weights per output value"
    )
    note = (
        f"FC connects every output to every input; LC connects each output to its {patch}-value patch, with its "
        f"own weights at each of the {positions:,} positions; conv shares one set per output channel."
    )
    return "\n".join(
        [header, "", format_table(["layer", "parameters (formula)", "parameters", "FLOPs"], rows), "", note]
    )
