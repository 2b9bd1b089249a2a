"""The lecture's networks with one idea taken out or swapped, for side-by-side experiments.

- `inception-naive`: lecture 11's net without its 1x1 reductions: each branch applies its 5x5 / 3x3
  kernels to the block's input directly (the "naive" Inception module of Szegedy et al. 2014, Figure 2a),
  with the same output channels, so the concatenation is still 88 channels and fc still takes 1408.
- `cnn-avgpool`: lecture 10's CNN with average pooling in place of max pooling.
- `cnn-strided`: lecture 10's CNN with each pooling layer replaced by a learned 2x2 convolution of stride 2
  (the downsampling layers of ConvNeXt, Liu et al. 2022; "all convolutional", Springenberg et al. 2014).

Layers keep the lecture's names where they still do the same job, so state_dicts can be compared key by key.
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models.lecture import InceptionNet, Net
from cnnlab.models.registry import register_model
from cnnlab.models.shapes import flat_features

__all__ = ["NaiveInceptionA", "NaiveInceptionNet", "AvgPoolNet", "StridedNet"]


class NaiveInceptionA(nn.Module):
    """InceptionA without branch5x5_1 and branch3x3dbl_1: 16 + 24 + 24 + 24 = 88 channels, as the lecture's."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)  # a branch of its own, not a reduction

        self.branch5x5_2 = nn.Conv2d(in_channels, 24, kernel_size=5, padding=2)

        self.branch3x3dbl_2 = nn.Conv2d(in_channels, 24, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)

        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)  # kept: it sets the pool branch's width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)

        branch5x5 = self.branch5x5_2(x)

        branch3x3dbl = self.branch3x3dbl_2(x)
        branch3x3dbl = self.branch3x3dbl_3(branch3x3dbl)

        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)

        outputs = [branch1x1, branch5x5, branch3x3dbl, branch_pool]
        return torch.cat(outputs, 1)  # (N, 88, H, W)


class NaiveInceptionNet(InceptionNet):
    """Lecture 11's Net with NaiveInceptionA blocks; everything else, forward included, is the lecture's."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (28, 28)):
        super().__init__(in_channels, num_classes, input_size)  # fc sized by the lecture's blocks: also 88 channels
        self.incept1 = NaiveInceptionA(in_channels=10)  # type: ignore[assignment]  # same interface, other block
        self.incept2 = NaiveInceptionA(in_channels=20)  # type: ignore[assignment]


class AvgPoolNet(Net):
    """Lecture 10's Net averaging each 2x2 window instead of taking its maximum. The layer keeps the
    lecture's name `mp`, so forward is the lecture's line for line."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (28, 28)):
        super().__init__(in_channels, num_classes, input_size)
        self.mp = nn.AvgPool2d(2)  # type: ignore[assignment]  # the lecture's name, another pooling


class StridedNet(nn.Module):
    """Lecture 10's Net with each max pool replaced by a learned 2x2, stride-2 convolution over all channels:
    the same output shapes (10x12x12, then 20x4x4 on 28x28), so fc still takes 320."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (28, 28)):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 10, kernel_size=5)
        self.down1 = nn.Conv2d(10, 10, kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.down2 = nn.Conv2d(20, 20, kernel_size=2, stride=2)
        self.fc = nn.Linear(flat_features(self.forward_features, in_channels, input_size), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.down1(self.conv1(x)))  # (N, 10, 12, 12) for 28x28
        x = F.relu(self.down2(self.conv2(x)))  # (N, 20, 4, 4)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).flatten(1)  # (N, 320)
        x = self.fc(x)
        return F.log_softmax(x, dim=1)


@register_model("inception-naive")
def inception_naive(**kwargs: Any) -> NaiveInceptionNet:
    """The lecture 11 net without 1x1 reductions: 94,642 parameters on 1x28x28."""
    return NaiveInceptionNet(**kwargs)


@register_model("cnn-avgpool")
def cnn_avgpool(**kwargs: Any) -> AvgPoolNet:
    """The lecture 10 CNN with average pooling: 8,490 parameters, as cnn."""
    return AvgPoolNet(**kwargs)


@register_model("cnn-strided")
def cnn_strided(**kwargs: Any) -> StridedNet:
    """The lecture 10 CNN with 2x2 stride-2 convolutions in place of pooling: 10,520 parameters on 1x28x28."""
    return StridedNet(**kwargs)
