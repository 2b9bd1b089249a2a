"""Open a saved run: the one way every command (evaluate, viz, export, predict, serve, compare) gets a
trained model, its dataset description and, when asked, its dataset."""

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab import CnnlabError
from cnnlab.data.datasets import FOLDER, DatasetInfo, ImageDataset, load_dataset
from cnnlab.engine.checkpoint import BEST, load_checkpoint
from cnnlab.models import count_parameters, create_model


def _available_memory() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def build_model(name: str, info: DatasetInfo, width: int | None = None) -> torch.nn.Module:
    """A registered model shaped for the data `info` describes; refused before any allocation when training
    it (weights, gradients and two optimizer moments: 16 bytes a parameter) would not fit in free memory."""
    options = dict(in_channels=info.in_channels, num_classes=info.num_classes, input_size=info.input_size, width=width)
    with torch.device("meta"):  # count first, allocate nothing
        parameters = count_parameters(create_model(name, **options))
    if 16 * parameters > _available_memory():
        raise CnnlabError(
            f"model {name}{f' at width {width}' if width else ''} has {parameters:,} parameters: "
            f"training it needs about {16 * parameters / 2**30:,.1f} GiB, more than the "
            f"{_available_memory() / 2**30:,.1f} GiB free"
        )
    return create_model(name, **options)


@dataclass
class SavedRun:
    path: Path  # the run directory, or the checkpoint file that was given
    model: torch.nn.Module  # in eval mode, with the weights the run evaluates (the EMA when it kept one)
    checkpoint: dict
    info: DatasetInfo

    @property
    def model_name(self) -> str:
        return self.checkpoint["model"]["name"]

    @property
    def epoch(self) -> int | None:
        return self.checkpoint.get("epoch")

    @property
    def metrics(self) -> list[dict]:
        return list(self.checkpoint.get("metrics") or [])

    @property
    def config(self) -> dict:
        return dict(self.checkpoint.get("config") or {})

    def data_dir(self, data_dir=None):
        """`data_dir`, else the folder the run was trained from while it still exists, else None (cache)."""
        saved = self.config.get("data_dir")
        if data_dir or (isinstance(saved, str) and Path(saved).is_dir()):
            return data_dir or saved
        if self.info.name == FOLDER:  # a folder of images has no cache to fall back on
            raise CnnlabError(f"{saved}, the folder of images this run was trained on, is gone: pass --data-dir DIR")
        return None

    def load_dataset(self, name: str | None = None, data_dir=None, allow_download: bool = True) -> ImageDataset:
        """The run's own dataset (from where it was trained, when that still exists), or another of the
        same shape and classes."""
        own = name in (None, self.info.name)
        # A folder of images is fitted to the model's input, as it was for training.
        folder: dict[str, Any] = dict(
            image_size="x".join(map(str, self.info.input_size)),
            channels=self.info.in_channels,
            test_split=self.config.get("test_split") if own else None,
        )
        dataset = load_dataset(
            self.info.name if own or name is None else name,
            self.data_dir(data_dir) if own else data_dir,
            allow_download=allow_download,
            **folder,
        )
        if (dataset.in_channels, dataset.input_size, dataset.num_classes) != (
            self.info.in_channels,
            self.info.input_size,
            self.info.num_classes,
        ):
            raise CnnlabError(
                f"dataset {dataset.name} ({dataset.in_channels}x{dataset.input_size[0]}x"
                f"{dataset.input_size[1]}, {dataset.num_classes} classes) does not fit the model "
                f"trained on {self.info.name}"
            )
        return dataset


def open_run(path) -> SavedRun:
    """Rebuild the model of a run folder (or checkpoint file) from its checkpoint, weights loaded. A run that
    selected an epoch on its validation split is opened at that epoch (best.pt), else at its last."""
    best = Path(path) / BEST
    checkpoint = load_checkpoint(best if best.is_file() else path)
    try:
        info = DatasetInfo.from_dict(checkpoint["dataset"])
        name, width = checkpoint["model"]["name"], checkpoint["model"].get("width")
        # Shapes first, with nothing allocated: an edited classes list may ask for a million outputs, or none.
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # copying into meta tensors is a no-op PyTorch warns of
            build_model(name, info, width).load_state_dict(checkpoint["state_dict"])
        model = build_model(name, info, width)
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError) as e:
        raise CnnlabError(f"{path}: checkpoint lacks {e}") from None
    except CnnlabError as e:  # a hand-edited dataset description or model: say which of the runs given it is
        raise CnnlabError(f"{path}: {e}") from None
    except RuntimeError as e:
        lines = str(e).splitlines()
        raise CnnlabError(
            f"{path}: weights do not fit model {checkpoint['model']['name']}: "
            f"{lines[1].strip() if len(lines) > 1 else e}"
        ) from None
    broken = [
        name
        for name, value in model.state_dict().items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if broken:  # training stops at a non-finite loss, so only an edited or damaged file gets here
        raise CnnlabError(
            f"{path}: weights are not finite (NaN or infinity in {broken[0]}"
            f"{f' and {len(broken) - 1} more' if len(broken) > 1 else ''}); the checkpoint is damaged"
        )
    return SavedRun(Path(path), model.eval(), checkpoint, info)
