"""The two networks of "PyTorch Zero To All", lecture 10 (CNN) and 11 (Advanced CNN), kept verbatim.

Layer names and order are the lecture's, so `print(model)` and the state_dict read like the slides.
The one change: flatten sizes (the lecture's hard-coded 320 and 1408) are derived from the input shape,
so the same classes run on 1x28x28 and 3x32x32.
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.models.registry import register_model
from cnnlab.models.shapes import flat_features

__all__ = ["Net", "InceptionA", "InceptionNet"]


class Net(nn.Module):
    """Lecture 10: two 5x5 convolutions, each max-pooled and ReLU'd, then one fully connected layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (28, 28)):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(flat_features(self.forward_features, in_channels, input_size), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.mp(self.conv1(x)))  # (N, 10, 12, 12) for 28x28
        x = F.relu(self.mp(self.conv2(x)))  # (N, 20, 4, 4)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).flatten(1)  # (N, 320)
        x = self.fc(x)
        return F.log_softmax(x, dim=1)


class InceptionA(nn.Module):
    """Lecture 11's Inception module: four branches concatenated to 16 + 24 + 24 + 24 = 88 channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)

        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)

        self.branch3x3dbl_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3dbl_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)

        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(x)

        branch5x5 = self.branch5x5_1(x)
        branch5x5 = self.branch5x5_2(branch5x5)

        branch3x3dbl = self.branch3x3dbl_1(x)
        branch3x3dbl = self.branch3x3dbl_2(branch3x3dbl)
        branch3x3dbl = self.branch3x3dbl_3(branch3x3dbl)

        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)

        outputs = [branch1x1, branch5x5, branch3x3dbl, branch_pool]
        return torch.cat(outputs, 1)  # (N, 88, H, W)


class InceptionNet(nn.Module):
    """Lecture 11's Net: conv, Inception, conv, Inception, then one fully connected layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (28, 28)):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(88, 20, kernel_size=5)

        self.incept1 = InceptionA(in_channels=10)
        self.incept2 = InceptionA(in_channels=20)

        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(flat_features(self.forward_features, in_channels, input_size), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.mp(self.conv1(x)))  # (N, 10, 12, 12) for 28x28
        x = self.incept1(x)  # (N, 88, 12, 12)
        x = F.relu(self.mp(self.conv2(x)))  # (N, 20, 4, 4)
        x = self.incept2(x)  # (N, 88, 4, 4)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).flatten(1)  # (N, 1408)
        x = self.fc(x)
        return F.log_softmax(x, dim=1)


@register_model("cnn")
def cnn(**kwargs: Any) -> Net:
    """The lecture 10 CNN: 8,490 parameters on 1x28x28."""
    return Net(**kwargs)


@register_model("inception")
def inception(**kwargs: Any) -> InceptionNet:
    """The lecture 11 toy Inception net: 97,298 parameters on 1x28x28."""
    return InceptionNet(**kwargs)
