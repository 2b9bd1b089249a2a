"""DenseNet-BC of Huang et al. 2017 (arXiv:1608.06993), the CIFAR layout.

A 3x3 stem of 2k channels, then 3 dense blocks of (L - 4) / 6 bottleneck layers (BN-ReLU-1x1 conv to 4k,
BN-ReLU-3x3 conv to k, concatenated to the input), with transitions between them (BN-ReLU-1x1 conv
compressing by 0.5, 2x2 average pool), then BN-ReLU, global average pool, linear.
"""

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models.registry import register_model

__all__ = ["DenseNetBC"]


class _DenseLayer(nn.Module):
    def __init__(self, in_features: int, growth_rate: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.conv1 = nn.Conv2d(in_features, 4 * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return torch.cat([x, out], 1)  # (N, in + k, H, W)


class _Transition(nn.Sequential):
    def __init__(self, in_features: int, out_features: int):
        super().__init__(
            OrderedDict(
                norm=nn.BatchNorm2d(in_features),
                relu=nn.ReLU(),
                conv=nn.Conv2d(in_features, out_features, 1, bias=False),
                pool=nn.AvgPool2d(2),
            )
        )


class DenseNetBC(nn.Module):
    """`depth` is L and `growth_rate` is k in the paper; compression is 0.5."""

    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: tuple[int, int] = (28, 28),
        compression: float = 0.5,
    ):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4 with n >= 1 (10, 16, 22, 40, 100, ...), got {depth}")
        layers_per_block = (depth - 4) // 6
        self.num_classes = num_classes
        num_features = 2 * growth_rate
        features: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(in_channels, num_features, 3, padding=1, bias=False)
        )
        for block in range(1, 4):
            for i in range(layers_per_block):
                features[f"denseblock{block}_layer{i + 1}"] = _DenseLayer(num_features + i * growth_rate, growth_rate)
            num_features += layers_per_block * growth_rate
            if block < 3:
                out_features = int(num_features * compression)
                features[f"transition{block}"] = _Transition(num_features, out_features)
                num_features = out_features
        features["norm5"] = nn.BatchNorm2d(num_features)
        self.features = nn.Sequential(features)
        self.fc = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean((2, 3)))


@register_model("densenet-bc-40-12")
def densenet_bc_40_12(**kwargs: Any) -> DenseNetBC:
    """DenseNet-BC, L = 40, k = 12."""
    return DenseNetBC(40, 12, **kwargs)


@register_model("densenet-bc-22-8")
def densenet_bc_22_8(**kwargs: Any) -> DenseNetBC:
    """A small DenseNet-BC (L = 22, k = 8) that trains in minutes on a CPU."""
    return DenseNetBC(22, 8, **kwargs)


def _register(depth: int, growth_rate: int) -> None:
    register_model(f"densenet-bc-{depth}-{growth_rate}")(lambda **kw: DenseNetBC(depth, growth_rate, **kw))


# The counterparts of plain-8, plain-14 and plain-56 (and of resnet-N; plain-20's is densenet-bc-22-8 above)
# for `cnnlab depth`: n layers of two convolutions per block, as resnet-N has n blocks of two, plus the two
# transition convolutions, so L = N + 2. k = 8 gives half to two thirds of their parameters at width 8
# (DenseNet-BC-100 has 0.8 M to ResNet-110's 1.7 M in the paper).
for _depth in (10, 16, 58):
    _register(_depth, 8)
