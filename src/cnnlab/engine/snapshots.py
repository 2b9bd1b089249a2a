"""Snapshots of a run as it trains, for the lab's "watch it learn" replay: the first convolution's kernels and
its feature maps of one fixed probe image (the first test image), taken every few hundred steps.

A snapshot is one small file, `snapshot-SSSSSSS.npz` (S: the step counted from the start of training), written
atomically into the run folder by a step callback (`snapshot_callback`), so a lab reading the folder while the
run trains never sees half a file, and the replay works after training. Taken: before the first step, at steps
1, 2, 4, ... up to EVERY (the kernels change fastest at the start), then every EVERY steps, and at the end of
each epoch. The probe goes through the model in eval mode with no gradient: BatchNorm's running statistics,
the random generators and so the training itself are left exactly as they were (tests/test_snapshots.py).
"""

import io
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.data.datasets import ImageDataset, PerChannel
from cnnlab.engine.loop import Step
from cnnlab.files import atomic_write, read_bounded

PATTERN = "snapshot-*.npz"
EVERY = 200  # steps between snapshots once past the first ones: ~2 per epoch of MNIST at batch 128
MAX_MAPS = 32  # feature maps kept of a wider first convolution (the lab draws at most 32)
MAX_FILE_BYTES = 8 << 20
MAX_SNAPSHOTS = 2000  # read back at most this many (the newest): a run of 400,000 steps


@dataclass
class Snapshot:
    step: int  # optimizer steps taken when it was taken (0: the initial weights)
    epoch: int  # the epoch it was taken in (1-based)
    layer: str  # the first convolution's qualified name
    kernels: np.ndarray  # (out, in, kh, kw) float32: the first convolution's weights
    maps: np.ndarray  # (min(out, MAX_MAPS), h, w) float32: its output for the probe
    probe: np.ndarray  # (C, H, W) uint8: the probe image
    label: int  # the probe's class


class _Captured(Exception):
    """Raised by the probe's hook once the first convolution's output is in hand."""


def first_convolution(model: torch.nn.Module) -> tuple[str, torch.nn.Conv2d] | None:
    """The model's first nn.Conv2d (the one the lab's Kernels view shows), or None."""
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)), None)


def is_due(step: int) -> bool:
    """Step 0, the powers of two below EVERY, then every EVERY steps."""
    return step == 0 or (step < EVERY and step & (step - 1) == 0) or step % EVERY == 0


class SnapshotWriter:
    """Takes snapshots of `model` with `probe` into `folder`."""

    def __init__(
        self, model: torch.nn.Module, folder: Path, probe: torch.Tensor, label: int, mean: PerChannel, std: PerChannel
    ):
        found = first_convolution(model)
        if found is None:
            raise CnnlabError(f"model {type(model).__name__} has no convolution to take snapshots of")
        self.model, self.folder, (self.layer, self.conv) = model, Path(folder), found
        self.probe, self.label = probe, label
        self.x = normalise(probe[None], mean, std)

    @torch.no_grad()
    def take(self, step: int, epoch: int) -> Path:
        seen: list[torch.Tensor] = []

        def capture(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> NoReturn:
            seen.append(output[0, :MAX_MAPS].float().cpu())
            raise _Captured  # the rest of the network is not needed: stop the forward pass here

        handle = self.conv.register_forward_hook(capture)
        training = self.model.training
        try:
            self.model.eval()  # no BatchNorm statistics updated, no dropout drawn
            self.model(self.x)
        except _Captured:
            pass
        finally:
            self.model.train(training)
            handle.remove()
        kernels = self.conv.weight.detach().float().cpu().numpy()
        half = np.finfo(np.float16).max  # pictures: half the bytes, a diverging run's huge values clipped
        maps = np.clip(seen[0].numpy(), -half, half).astype(np.float16)
        return atomic_write(
            self.folder / f"snapshot-{step:07d}.npz",
            lambda f: np.savez_compressed(
                f,
                step=np.array(step),
                epoch=np.array(epoch),
                layer=np.array(self.layer),
                kernels=kernels,
                maps=maps,
                probe=self.probe.cpu().numpy(),
                label=np.array(self.label),
            ),
        )


def snapshot_callbacks(
    model: torch.nn.Module, folder: Path, data: ImageDataset, *, epoch: int, steps: int, skip: int
) -> list[Callable[[Step], None]]:
    """The step callback for epoch `epoch` (`steps` steps, `skip` of them done before a resume), in a list: empty
    for a model with no convolution. A fresh run's first epoch also takes the snapshot of the initial weights."""
    if first_convolution(model) is None or not len(data.test_labels):
        return []
    writer = SnapshotWriter(model, folder, data.test_images[0], int(data.test_labels[0]), data.mean, data.std)
    before = (epoch - 1) * steps
    if before + skip == 0:
        writer.take(0, epoch)

    def take(step: Step) -> None:
        if is_due(before + step.number) or step.number == steps:
            writer.take(before + step.number, epoch)

    return [take]


def read_snapshots(folder: str | Path) -> list[Snapshot]:
    """The run's snapshots in step order; a file that is not one (cut short, edited) is left out."""
    paths = sorted(Path(folder).glob(PATTERN))[-MAX_SNAPSHOTS:]
    snapshots = [s for s in map(_read, paths) if s is not None]
    return sorted(snapshots, key=lambda s: s.step)


def _read(path: Path) -> Snapshot | None:
    try:
        with np.load(io.BytesIO(read_bounded(path, MAX_FILE_BYTES)), allow_pickle=False) as f:
            snapshot = Snapshot(
                int(f["step"]),
                int(f["epoch"]),
                str(f["layer"]),
                f["kernels"].astype(np.float32),
                f["maps"].astype(np.float32),
                f["probe"].astype(np.uint8),
                int(f["label"]),
            )
    except (CnnlabError, OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    if snapshot.kernels.ndim != 4 or snapshot.maps.ndim != 3 or snapshot.probe.ndim != 3:
        return None
    return snapshot
