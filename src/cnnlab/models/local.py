"""Fully connected and locally connected baselines for the lecture's parameter-count argument.

`LocallyConnected2d` is a convolution without weight sharing: every output position has its own
filter (PyTorch has no such layer). `lcn` is the lecture CNN with its two convolutions replaced by
locally connected layers; `mlp` is the fully connected net of lecture 9 (784-520-320-240-120-10).
"""

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from cnnlab.models.lecture import Net
from cnnlab.models.registry import register_model
from cnnlab.models.shapes import conv_output_size

__all__ = ["LocallyConnected2d", "LocallyConnectedNet", "MLP"]


class LocallyConnected2d(nn.Module):
    """Like Conv2d, but with separate weights (and bias) at every output position."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | tuple[int, int],
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.output_size = tuple(
            conv_output_size(n, k, s, p)
            for n, k, s, p in zip(_pair(input_size), self.kernel_size, self.stride, self.padding)
        )
        if min(self.output_size) < 1:
            raise ValueError(f"kernel {self.kernel_size} does not fit input {input_size} with padding {padding}")
        positions = self.output_size[0] * self.output_size[1]
        patch = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(positions, out_channels, patch))  # (L, O, C*kh*kw)
        self.bias = nn.Parameter(torch.empty(out_channels, *self.output_size)) if bias else None
        bound = 1 / math.sqrt(patch)  # Conv2d's default init, per position
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (N, C*kh*kw, L)
        out = torch.einsum("ncl,loc->nol", patches, self.weight)  # (N, O, L)
        out = out.reshape(x.shape[0], -1, *self.output_size)
        return out + self.bias if self.bias is not None else out


class LocallyConnectedNet(Net):
    """The lecture CNN, conv1 and conv2 made locally connected; pooling, ReLU and fc unchanged."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (28, 28)):
        super().__init__(in_channels, num_classes, input_size)
        h, w = _pair(input_size)
        conv1 = LocallyConnected2d(in_channels, 10, (h, w), 5)
        h, w = (conv1.output_size[0] // 2, conv1.output_size[1] // 2)
        self.conv1 = conv1  # type: ignore[assignment]  # the lecture's names, locally connected
        self.conv2 = LocallyConnected2d(10, 20, (h, w), 5)  # type: ignore[assignment]


class MLP(nn.Module):
    """Lecture 9's fully connected classifier: 784-520-320-240-120-10 with ReLU; `dropout` > 0 drops hidden
    activations with that probability during training (the overfitting experiment's cure)."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (28, 28), dropout: float = 0.0
    ):
        super().__init__()
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        h, w = _pair(input_size)
        widths = [in_channels * h * w, 520, 320, 240, 120]
        self.l1, self.l2, self.l3, self.l4 = (nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.l5 = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in (self.l1, self.l2, self.l3, self.l4):
            x = self.dropout(F.relu(layer(x)))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l5(self.forward_features(x))


@register_model("lcn")
def lcn(**kwargs: Any) -> LocallyConnectedNet:
    """The lecture CNN with locally connected layers in place of its convolutions."""
    return LocallyConnectedNet(**kwargs)


@register_model("mlp")
def mlp(**kwargs: Any) -> MLP:
    """Lecture 9's fully connected net."""
    return MLP(**kwargs)


@register_model("mlp-dropout")
def mlp_dropout(**kwargs: Any) -> MLP:
    """Lecture 9's fully connected net with dropout 0.5 after every hidden layer."""
    return MLP(dropout=0.5, **kwargs)
