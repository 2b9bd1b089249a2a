"""Open a saved run: the one way every command (evaluate, viz, export, predict, serve, compare, resume) learns
whether a path is a cnnlab run whose checkpoint fits (`check_run`), and gets a trained model, its dataset
description and, when asked, its dataset (`open_run`)."""

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab import CnnlabError, memory
from cnnlab.data.datasets import FOLDER, DatasetInfo, ImageDataset, load_dataset
from cnnlab.engine.checkpoint import BEST, CHECKPOINT, load_checkpoint, read_config
from cnnlab.engine.rundir import is_run
from cnnlab.models import count_parameters, create_model


def build_model(name: str, info: DatasetInfo, width: int | None = None) -> torch.nn.Module:
    """A registered model shaped for the data `info` describes; refused before any allocation when training
    it (weights, gradients and two optimizer moments: 16 bytes a parameter) would not fit in free memory."""
    options = dict(in_channels=info.in_channels, num_classes=info.num_classes, input_size=info.input_size, width=width)
    with torch.device("meta"):  # count first, allocate nothing
        parameters = count_parameters(create_model(name, **options))
    free = memory.available_memory()
    if 16 * parameters > free:
        raise CnnlabError(
            f"model {name}{f' at width {width}' if width else ''} has {parameters:,} parameters: "
            f"training it needs about {16 * parameters / 2**30:,.1f} GiB, more than the "
            f"{free / 2**30:,.1f} GiB free"
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

    def data_dir(self, data_dir: str | Path | None = None) -> str | Path | None:
        """`data_dir`, else the folder the run was trained from while it still exists, else None (cache)."""
        saved = self.config.get("data_dir")
        if data_dir or (isinstance(saved, str) and Path(saved).is_dir()):
            return data_dir or saved
        if self.info.name == FOLDER:  # a folder of images has no cache to fall back on
            raise CnnlabError(f"{saved}, the folder of images this run was trained on, is gone: pass --data-dir DIR")
        return None

    def load_dataset(
        self, name: str | None = None, data_dir: str | Path | None = None, allow_download: bool = True
    ) -> ImageDataset:
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
        if dataset.classes != self.info.classes:  # the same count in another order, or of other things
            named = lambda classes: ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            raise CnnlabError(
                f"dataset {dataset.name}: its classes ({named(dataset.classes)}) are not those the model was "
                f"trained on ({named(self.info.classes)}), in that order"
            )
        return dataset


@dataclass(frozen=True)
class CheckedRun:
    """A run folder or checkpoint file whose checkpoint was read, every field checked, and found to fit."""

    path: Path  # as given
    checkpoint: dict
    info: DatasetInfo

    def is_finished(self, epochs: int | None = None) -> bool:
        """No epoch stopped part-way, and every epoch planned (or `epochs`, to extend the run) done or stopped early."""
        done, planned = self.checkpoint["epoch"], epochs or self.checkpoint["config"]["epochs"]
        return not self.checkpoint.get("epoch_state") and (
            bool(self.checkpoint.get("stopped_early")) or done >= planned
        )


def check_run(path: str | Path, *, resumable: bool = False) -> CheckedRun:
    """Whether `path` is a cnnlab run whose checkpoint fits: the run, or one line saying what is wrong.

    The checkpoint is loaded safely and every field checked (checkpoint.check_checkpoint), then its weights are
    loaded into the model it names on the meta device (shapes only, nothing allocated). A run folder is read at
    the epoch it selected on validation (best.pt), else its last; with `resumable`, at its last, and it must be a
    run folder whose config.json agrees with the checkpoint and which holds the state to continue training."""
    path = Path(path)
    file = path / BEST if not resumable and (path / BEST).is_file() else path
    checkpoint = load_checkpoint(file)
    info = DatasetInfo.from_dict(checkpoint["dataset"])
    name, width = checkpoint["model"]["name"], checkpoint["model"].get("width")
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # copying into meta tensors is a no-op PyTorch warns of
            build_model(name, info, width).load_state_dict(checkpoint["state_dict"])
    except CnnlabError as e:  # the model cannot be built for this data: say which of the runs given it is
        raise CnnlabError(f"{path}: {e}") from None
    except RuntimeError as e:
        lines = str(e).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else str(e)
        raise CnnlabError(f"{path}: weights do not fit model {name}: {detail[:200]}") from None
    if resumable:
        _check_resumable(path, checkpoint)
    return CheckedRun(path, checkpoint, info)


def _check_resumable(path: Path, checkpoint: dict) -> None:
    saved = read_config(path)
    if not is_run(path):
        raise CnnlabError(f"{path} is not a cnnlab run folder")
    model, dataset = checkpoint["model"]["name"], checkpoint["config"]["dataset"]
    if (saved.get("model"), saved.get("dataset")) != (model, dataset):
        raise CnnlabError(
            f"{path}: its checkpoint ({model} on {dataset}) does not belong to its config.json "
            f"({saved.get('model')} on {saved.get('dataset')})"
        )
    if checkpoint.get("rng") is None or checkpoint.get("optimizer") is None:
        raise CnnlabError(f"{path / CHECKPOINT}: holds no training state to resume (only the weights)")


def open_run(path: str | Path) -> SavedRun:
    """Rebuild the model of a run folder (or checkpoint file) from its checkpoint, weights loaded. A run that
    selected an epoch on its validation split is opened at that epoch (best.pt), else at its last."""
    checked = check_run(path)
    model = build_model(checked.checkpoint["model"]["name"], checked.info, checked.checkpoint["model"].get("width"))
    model.load_state_dict(checked.checkpoint["state_dict"])
    return SavedRun(Path(path), model.eval(), checked.checkpoint, checked.info)
