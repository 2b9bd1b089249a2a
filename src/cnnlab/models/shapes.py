"""Shape arithmetic shared by the model families: conv output sizes and flatten sizes derived from the input."""

from collections.abc import Callable

import torch
import torch.nn as nn


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """floor((n + 2p - d(k-1) - 1) / s) + 1, as in the Conv2d documentation."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def flat_features(
    features: Callable[[torch.Tensor], torch.Tensor], in_channels: int, input_size: tuple[int, int]
) -> int:
    """How many values `features` (a function, or a module: run in eval mode, so that BatchNorm's
    running statistics stay untouched) gives for one image."""
    if isinstance(features, nn.Module):
        mode = features.training
        features.eval()
    with torch.no_grad():
        size = features(torch.zeros(1, in_channels, *input_size)).numel()
    if isinstance(features, nn.Module):
        features.train(mode)
    return size
