"""The lecture CNN's shape with BatchNorm (the `cnn-bn-*` family), made quick to train.

`cnn-bn-8-24` is the lecture CNN (5x5 conv, max-pool, 5x5 conv, max-pool, linear) at widths 8 and 24,
with BatchNorm after each pooling so that Adam with a one-cycle schedule can take large steps: it
reaches 99% on MNIST in two epochs. `cnn-bn-32-64` is the same layout wider. `cnn-bn-s16-32-64` starts
with a 4x4 stride-2 convolution, so its wider layers run on 13x13 maps: it reaches 99% in one epoch
(`--recipe fast`).
`cnn-bn-32-64-64-fc256` splits the second 5x5 convolution into two 3x3 ones (a deeper, cheaper
receptive field) and classifies through a hidden layer of 256 with dropout, for `--recipe best` with
augmentation and weight averaging. `cnn-bn-p32-64-128-fc256` pads its 3x3 convolutions, so the maps keep their
size until each pooling (28, 14, 7, 3): the image's border (a garment's outline) reaches the classifier;
`cnn-bn-p32-64-192-fc256`, the same with 192 channels in its last convolution, is `--recipe best`'s model on
Fashion-MNIST.
"""

from typing import Any

import torch
import torch.nn as nn

from cnnlab.models.registry import register_model
from cnnlab.models.shapes import flat_features

__all__ = ["ConvBlock", "BatchNormCNN"]


class ConvBlock(nn.Sequential):
    """Convolution (zero-padded by `padding` pixels), then an optional 2x2 max-pool, BatchNorm and ReLU.

    Pool before BatchNorm and ReLU: the same layers on a quarter of the values (BatchNorm dominated the
    step time on CPU when it ran on the full-size maps)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, pool: bool, stride: int = 1, padding: int = 0
    ):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),  # BatchNorm: the bias
            *([nn.MaxPool2d(2)] if pool else []),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class BatchNormCNN(nn.Module):
    """ConvBlocks of the given widths, kernel sizes and pooling, then one linear layer, or with `hidden`
    a hidden layer of that width with dropout 0.3 first."""

    def __init__(
        self,
        widths: tuple[int, ...] = (8, 24),
        kernel_sizes: tuple[int, ...] = (5, 5),
        pools: tuple[bool, ...] = (True, True),
        hidden: int = 0,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: tuple[int, int] = (28, 28),
        strides: tuple[int, ...] | None = None,
        paddings: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        channels = (in_channels, *widths)
        strides = strides or (1,) * len(widths)
        paddings = paddings or (0,) * len(widths)
        self.features = nn.Sequential(
            *(
                ConvBlock(channels[i], channels[i + 1], kernel_sizes[i], pools[i], strides[i], paddings[i])
                for i in range(len(widths))
            )
        )
        flat = flat_features(self.features, in_channels, input_size)
        self.fc = (
            nn.Sequential(
                nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(hidden, num_classes)
            )
            if hidden
            else nn.Linear(flat, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


@register_model("cnn-bn-8-24")
def cnn_bn_8_24(**kwargs: Any) -> BatchNormCNN:
    """Lecture-shaped CNN with BatchNorm, widths 8 and 24 (the fast recipe's model)."""
    return BatchNormCNN((8, 24), **kwargs)


@register_model("cnn-bn-32-64")
def cnn_bn_32_64(**kwargs: Any) -> BatchNormCNN:
    """Lecture-shaped CNN with BatchNorm, widths 32 and 64."""
    return BatchNormCNN((32, 64), **kwargs)


@register_model("cnn-bn-32-64-64-fc256")
def cnn_bn_32_64_64_fc256(**kwargs: Any) -> BatchNormCNN:
    """5x5 conv 32, pool, 3x3 conv 64, 3x3 conv 64, pool (BatchNorm), hidden layer 256 (the best recipe's model)."""
    return BatchNormCNN((32, 64, 64), (5, 3, 3), (True, False, True), hidden=256, **kwargs)


@register_model("cnn-bn-p32-64-128-fc256")
def cnn_bn_p32_64_128_fc256(**kwargs: Any) -> BatchNormCNN:
    """Padded 3x3 convs 32, 64, 128, each pooled (BatchNorm), hidden layer 256."""
    return BatchNormCNN((32, 64, 128), (3, 3, 3), (True, True, True), hidden=256, paddings=(1, 1, 1), **kwargs)


@register_model("cnn-bn-p32-64-192-fc256")
def cnn_bn_p32_64_192_fc256(**kwargs: Any) -> BatchNormCNN:
    """Padded 3x3 convs 32, 64, 192, each pooled (BatchNorm), hidden layer 256 (best on Fashion-MNIST)."""
    return BatchNormCNN((32, 64, 192), (3, 3, 3), (True, True, True), hidden=256, paddings=(1, 1, 1), **kwargs)


@register_model("cnn-bn-s16-32-64")
def cnn_bn_s16_32_64(**kwargs: Any) -> BatchNormCNN:
    """4x4 stride-2 conv 16, 3x3 conv 32, pool, 3x3 conv 64 (BatchNorm), linear (the fast recipe's model)."""
    return BatchNormCNN((16, 32, 64), (4, 3, 3), (False, True, False), strides=(2, 1, 1), **kwargs)


@register_model("cnn-bn-s8-24")
def cnn_bn_s8_24(**kwargs: Any) -> BatchNormCNN:
    """cnn-bn-8-24 with a stride-2 first convolution in place of convolution + pooling (a quarter of its work)."""
    return BatchNormCNN((8, 24), pools=(False, True), strides=(2, 1), **kwargs)
