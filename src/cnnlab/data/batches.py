"""In-memory batching: a batch is an index slice of the dataset tensor, normalised on the fly.

No DataLoader and no per-sample Python: one `randperm` per epoch, seeded by (seed, epoch) so that
every epoch's order can be recomputed exactly (for resume, and for every DDP rank alike).

A dataset's `mean` and `std` are of its training pixels scaled to [0, 1]: one number per channel (a
tuple), or a single number for all channels (what checkpoints from before colour datasets hold).
"""

from collections.abc import Callable, Iterator

import torch

from cnnlab.data.datasets import PerChannel


def channel_affine(
    mean: PerChannel, std: PerChannel, scale: float, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale * mean, 1 / (scale * std)) as float32 tensors of shape (C, 1, 1) that broadcast over (N, C, H, W).

    Computed in float64 and rounded once, so a single number gives bit for bit what Python floats gave."""
    means = torch.tensor(mean, dtype=torch.float64).reshape(-1, 1, 1)
    stds = torch.tensor(std, dtype=torch.float64).reshape(-1, 1, 1)
    return (scale * means).float().to(device), (1 / (scale * stds)).float().to(device)


def normalise(images: torch.Tensor, mean: PerChannel, std: PerChannel) -> torch.Tensor:
    """uint8 pixels -> float32 with the dataset's mean 0 and std 1 (per channel)."""
    shift, factor = channel_affine(mean, std, 255.0, images.device)
    return (images.float() - shift) * factor


def normalised_black(mean: PerChannel, std: PerChannel) -> torch.Tensor:
    """What a black pixel becomes once normalised, per channel, shaped (1, C, 1, 1): what padding brings in."""
    means, stds = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    return (-means / stds).float().reshape(1, -1, 1, 1)


def mixed_seed(seed: int, epoch: int, step: int | None = None) -> int:
    """One generator seed for (seed, epoch) or (seed, epoch, step), kept within the 64 bits a generator takes."""
    base = seed * 100_003 + epoch
    return (base if step is None else base * 1_000_003 + step) % 2**64


def epoch_order(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The training order of `epoch`: the same on every call, every rank and every resume."""
    generator = torch.Generator().manual_seed(mixed_seed(seed, epoch))
    return torch.randperm(n, generator=generator).to(device)


def iterate_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    mean: PerChannel,
    std: PerChannel,
    order: torch.Tensor | None = None,
    rank: int = 0,
    world: int = 1,
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (normalised images, labels) batches, in `order` when given; the last batch may be short.

    With `world` > 1 (DDP), each global batch of `batch_size` is split across the ranks, rank r taking
    every world-th sample; a last global batch smaller than `world` is dropped, so that every rank takes
    the same number of steps. `augment(pixels, step)` transforms each batch of [0, 1] floats before
    normalisation. Batches come in `memory_format` (channels_last is faster on CPU)."""
    n = len(order) if order is not None else len(labels)
    # The constants go to the device once, not once a batch.
    shift, factor = channel_affine(mean, std, 255.0 if augment is None else 1.0, images.device)
    for step, start in enumerate(range(0, n, batch_size)):
        index: torch.Tensor | slice = (
            order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
        )
        if world > 1:
            if min(batch_size, n - start) < world:
                break
            index = index[rank::world]  # type: ignore[index]  # a tensor or a slice: both take a step
        if augment is None:
            batch = (images[index].float() - shift) * factor
        else:
            batch = (augment(images[index].float() * (1 / 255), step) - shift) * factor
        yield batch.contiguous(memory_format=memory_format), labels[index]


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    steps = -(-n // batch_size)
    return steps - 1 if world > 1 and n % batch_size and n % batch_size < world else steps
