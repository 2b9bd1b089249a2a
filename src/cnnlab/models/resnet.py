"""Deep CNNs with and without shortcuts, laid out as the CIFAR ResNets of He et al. 2015 (arXiv:1512.03385, sec. 4.2).

A 3x3 stem, then 3 stages of n BasicBlocks (2n 3x3 convs each) at widths w, 2w, 4w, stride 2 between
stages, global average pool, linear: N = 6n + 2 layers. `resnet-N` adds an identity shortcut around each
block; `plain-N` is the same network without it. Downsampling shortcuts use the paper's option A
(subsample by 2, zero-pad the new channels): parameter-free, so plain-N and resnet-N have exactly the
same layers and parameters and differ only in the additions.
"""

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models.registry import register_model

__all__ = ["BasicBlock", "CifarResNet"]
DEPTHS = (8, 14, 20, 32, 44, 56, 110)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the input (when `shortcut`), then ReLU."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        shortcut: bool,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.shortcut, self.stride, self.extra_channels = shortcut, stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut:
            identity = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
            if self.extra_channels:  # option A: zero-pad the new channels
                identity = F.pad(identity, (0, 0, 0, 0, 0, self.extra_channels))
            out = out + identity
        return F.relu(out)


class CifarResNet(nn.Module):
    def __init__(
        self,
        depth: int = 20,
        shortcut: bool = True,
        width: int = 16,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: tuple[int, int] = (28, 28),
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        n = (depth - 2) // 6
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = norm_layer(width)
        self.layer1 = self._make_stage(width, width, n, 1, shortcut, norm_layer)  # (N, w, 28, 28)
        self.layer2 = self._make_stage(width, 2 * width, n, 2, shortcut, norm_layer)  # (N, 2w, 14, 14)
        self.layer3 = self._make_stage(2 * width, 4 * width, n, 2, shortcut, norm_layer)  # (N, 4w, 7, 7)
        self.fc = nn.Linear(4 * width, num_classes)
        self._init_weights()

    @staticmethod
    def _make_stage(
        in_planes: int, planes: int, blocks: int, stride: int, shortcut: bool, norm_layer: Callable[[int], nn.Module]
    ) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride, shortcut, norm_layer)]
        layers += [BasicBlock(planes, planes, 1, shortcut, norm_layer) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():  # He et al. 2015 (arXiv:1502.01852) for convs, BN as identity
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x).mean((2, 3)))


def _register(depth: int) -> None:
    register_model(f"resnet-{depth}")(lambda **kw: CifarResNet(depth, shortcut=True, **kw))
    register_model(f"plain-{depth}")(lambda **kw: CifarResNet(depth, shortcut=False, **kw))


for _depth in DEPTHS:
    _register(_depth)
