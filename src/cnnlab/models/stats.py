"""Parameter and FLOP counts (torch.utils.flop_counter: a multiply-add counts as 2 FLOPs)."""

from collections.abc import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import CnnlabError
from cnnlab.models.registry import create_model, list_models
from cnnlab.tables import format_table


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters of `model`, trainable or not (BatchNorm's running statistics are buffers: not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one input of `input_shape` (C, H, W)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device  # "meta" counts without allocating or computing anything
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=device))
    model.train(was_training)
    return counter.get_total_flops()


def models_table(pattern: str = "*", input_shape: Sequence[int] = (1, 28, 28)) -> str:
    """Name, parameters and forward FLOPs per image of every registered model matching `pattern`."""
    names = list_models(pattern)
    if not names:
        raise CnnlabError(f"no model matches {pattern!r}")
    rows = []
    for name in names:
        try:
            with torch.device("meta"):  # shapes only: a huge --input allocates nothing
                model = create_model(name, in_channels=input_shape[0], input_size=tuple(input_shape[1:]))
            rows.append([name, f"{count_parameters(model):,}", f"{count_flops(model, input_shape):,}"])
        except (CnnlabError, RuntimeError):  # e.g. 1x1 images: the pooling stages leave nothing
            rows.append([name, "-", "does not fit this input"])
    return format_table(["model", "parameters", "forward FLOPs/image"], rows)
