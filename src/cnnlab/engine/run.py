"""Open a saved run: the one way every command (evaluate, viz, export, predict, serve, compare, resume) learns
whether a path is a cnnlab run whose checkpoint fits (`check_run`), and gets a trained model, its dataset
description and, when asked, its dataset (`open_run`).

A run trained from a learner's script (`--model net.py:Net`) keeps a copy of the script (model.py) and its
SHA-256 (in the checkpoint and config.json), and is rebuilt from that copy, never from the original, which may
have been edited or deleted since. Building it runs the copy's code, so it is read only once it may run
(external/trust.py): code trained on this machine, or the user's --trust-code. An ONNX file (`model.onnx`) opens
the same way, as a run with no checkpoint: its dataset description is read from the graph and `OpenOptions`.
"""

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from cnnlab import CnnlabError, memory
from cnnlab.data.datasets import DIGITS, FOLDER, MNIST_STATS, DatasetInfo, ImageDataset, list_datasets, load_dataset
from cnnlab.engine.checkpoint import BEST, CHECKPOINT, load_checkpoint, read_config
from cnnlab.engine.rundir import is_run
from cnnlab.external.script import load_script, read_script
from cnnlab.external.spec import ONNX, REGISTRY, SCRIPT, build_model_from_spec, describe_model, parse_spec
from cnnlab.external.trust import sha256, trusted_source
from cnnlab.files import MODEL_SOURCE
from cnnlab.models import count_parameters


def build_model(
    name: str,
    info: DatasetInfo,
    width: int | None = None,
    *,
    model_args: dict | None = None,
    source: bytes | None = None,
) -> torch.nn.Module:
    """The model `name` names (a registered name or a script, external/spec.py) shaped for the data `info`
    describes; `source`: a script's bytes to build it from (a run's copy). Refused when training it (weights,
    gradients and two optimizer moments: 16 bytes a parameter) would not fit in free memory: a registered
    model before any allocation, a script's (whose constructor may compute with real tensors) once built."""
    options: dict[str, Any] = dict(
        in_channels=info.in_channels,
        num_classes=info.num_classes,
        input_size=info.input_size,
        width=width,
        model_args=model_args,
    )
    spec = parse_spec(name)
    if spec.kind == REGISTRY:
        with torch.device("meta"):  # count first, allocate nothing
            _check_memory(name, width, count_parameters(build_model_from_spec(spec, **options)))
    model = build_model_from_spec(spec, **options, source=source)
    if spec.kind != REGISTRY:
        _check_memory(name, width, count_parameters(model))
    return model


def _check_memory(name: str, width: int | None, parameters: int) -> None:
    free = memory.available_memory()
    if 16 * parameters > free:
        raise CnnlabError(
            f"model {name}{f' at width {width}' if width else ''} has {parameters:,} parameters: "
            f"training it needs about {16 * parameters / 2**30:,.1f} GiB, more than the "
            f"{free / 2**30:,.1f} GiB free"
        )


@dataclass(frozen=True)
class ModelCode:
    """The script a run's model is built from: its bytes, and what the run records of it."""

    source: bytes
    sha256: str
    model: str  # what it defines, for a person deciding whether to let it run: "class Net of net.py"
    described: str = ""  # what was taken from the script, in one line (when it was loaded from the script named)

    def record(self) -> dict:
        """What the checkpoint and config.json keep of it ("code")."""
        return {"sha256": self.sha256, "model": self.model}


def script_code(spec_text: str) -> ModelCode | None:
    """The script `--model` names, as it is now (None for a registered model): what a new run copies."""
    spec = parse_spec(spec_text)
    if spec.kind != SCRIPT or spec.path is None:
        return None
    source = read_script(spec.path)
    script = load_script(spec.path, spec.member, source=source)
    return ModelCode(source, sha256(source), f"{script.kind} {script.name} of {spec.path.name}", script.describe())


def run_code(folder: Path, checkpoint: dict, *, trust_code: bool) -> ModelCode | None:
    """A run's copy of the script its model is built from, once it may run (external/trust.py); None for a
    registered model. Read before anything of it runs: the hash checked is that of the bytes read."""
    code = checkpoint["model"].get("code")
    if code is None:
        return None
    path = folder / MODEL_SOURCE
    if not path.is_file():
        raise CnnlabError(
            f"{path} is missing: this run's model ({code['model']}) is rebuilt from the copy of its script "
            "that training left there"
        )
    source = trusted_source(path, recorded=code["sha256"], what=code["model"], trust_code=trust_code)
    return ModelCode(source, code["sha256"], code["model"])


@dataclass(frozen=True)
class OpenOptions:
    """What a command was told about the runs it opens: consent to run a run's copy of its script
    (--trust-code); for a model file (model.onnx), which carries neither, how its inputs are scaled and what its
    classes are called (--normalize, --classes)."""

    trust_code: bool = False
    normalize: tuple[float, ...] | None = None  # MEAN,STD or a mean then a std per channel; None: MNIST's
    classes: tuple[str, ...] | None = None  # None: 0 to N-1


@dataclass
class SavedRun:
    path: Path  # the run directory, or the checkpoint file or model file that was given
    model: torch.nn.Module  # in eval mode, with the weights the run evaluates (the EMA when it kept one)
    checkpoint: dict  # {} for a model file
    info: DatasetInfo
    origin: str | None = None  # a model file: what it is and how its inputs are scaled, a line for every answer
    adopts_classes: bool = False  # a model file whose classes were not named: a dataset's own names apply

    @property
    def model_name(self) -> str:
        return self.checkpoint["model"]["name"] if self.checkpoint else self.path.name

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
        if self.info.name == FOLDER and self.checkpoint:  # a folder of images has no cache to fall back on
            raise CnnlabError(f"{saved}, the folder of images this run was trained on, is gone: pass --data-dir DIR")
        return None

    def load_dataset(
        self, name: str | None = None, data_dir: str | Path | None = None, allow_download: bool = True
    ) -> ImageDataset:
        """The run's own dataset (from where it was trained, when that still exists), or another of the
        same shape and classes."""
        if name is None and self.info.name not in list_datasets():  # a model file that fits no dataset's shape
            shape = "x".join(map(str, (self.info.in_channels, *self.info.input_size)))
            raise CnnlabError(f"{self.path} takes {shape} images and names no dataset: pass --dataset NAME")
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
            trained = f"trained on {self.info.name}" if self.checkpoint else f"of {self.path}"
            size = lambda info: f"{info.in_channels}x{info.input_size[0]}x{info.input_size[1]}"
            raise CnnlabError(
                f"dataset {dataset.name} ({size(dataset)}, {dataset.num_classes} classes) does not fit the model "
                f"{trained} ({size(self.info)}, {self.info.num_classes} classes)"
            )
        if dataset.classes != self.info.classes and not self.adopts_classes:
            # the same count in another order, or of other things
            named = lambda classes: ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
            theirs = "the model was trained on" if self.checkpoint else "--classes names"  # a model file's
            fix = "" if self.checkpoint else ": leave --classes out to score the file's outputs as the dataset's"
            raise CnnlabError(
                f"dataset {dataset.name}: its classes ({named(dataset.classes)}) are not those {theirs} "
                f"({named(self.info.classes)}), in that order{fix}"
            )
        return dataset


@dataclass(frozen=True)
class CheckedRun:
    """A run folder or checkpoint file whose checkpoint was read, every field checked, and found to fit."""

    path: Path  # as given
    checkpoint: dict
    info: DatasetInfo
    code: ModelCode | None = None  # the run's copy of its script, for a model built from one

    def is_finished(self, epochs: int | None = None) -> bool:
        """No epoch stopped part-way, and every epoch planned (or `epochs`, to extend the run) done or stopped early."""
        done, planned = self.checkpoint["epoch"], epochs or self.checkpoint["config"]["epochs"]
        return not self.checkpoint.get("epoch_state") and (
            bool(self.checkpoint.get("stopped_early")) or done >= planned
        )


def check_run(path: str | Path, *, resumable: bool = False, trust_code: bool = False) -> CheckedRun:
    """Whether `path` is a cnnlab run whose checkpoint fits: the run, or one line saying what is wrong.

    The checkpoint is loaded safely and every field checked (checkpoint.check_checkpoint), then its weights are
    loaded into the model it names: a registered one on the meta device (shapes only, nothing allocated), one
    built by a script from the run's copy, once it may run (`trust_code`: the user's consent). A run folder is
    read at the epoch it selected on validation (best.pt), else its last; with `resumable`, at its last, and it
    must be a run folder whose config.json agrees with the checkpoint and which holds the state to continue
    training."""
    return _read_run(path, resumable=resumable, trust_code=trust_code, allocate=False)[0]


def _read_run(
    path: str | Path, *, resumable: bool, trust_code: bool, allocate: bool
) -> tuple[CheckedRun, torch.nn.Module]:
    """check_run, and the model it loaded the weights into (a registered one on the meta device unless `allocate`)."""
    path = Path(path)
    if path.suffix.lower() == ".py" and path.is_file():
        raise CnnlabError(f"{path} is a script, not a trained run: train it first, cnnlab train --model {path}")
    file = path / BEST if not resumable and (path / BEST).is_file() else path
    checkpoint = load_checkpoint(file)
    info = DatasetInfo.from_dict(checkpoint["dataset"])
    name, width = checkpoint["model"]["name"], checkpoint["model"].get("width")
    folder = path if path.is_dir() else path.parent
    code = run_code(folder, checkpoint, trust_code=trust_code)
    if code is not None:  # built from the copy, its messages naming the copy's lines
        member = parse_spec(name).member
        name = f"{folder / MODEL_SOURCE}{f':{member}' if member else ''}"
    loaded = functools.partial(_loaded, name, info, width, checkpoint, source=code.source if code else None, path=path)
    if code is None:  # a registered model: its weights fitted to shapes alone first, nothing allocated
        with torch.device("meta"), warnings.catch_warnings(action="ignore"):  # copying into meta: a no-op it warns of
            model = loaded()
    if allocate or code is not None:  # a script's constructor may compute with real tensors
        model = loaded()
    if resumable:
        _check_resumable(path, checkpoint)
    return CheckedRun(path, checkpoint, info, code), model


def _loaded(
    name: str, info: DatasetInfo, width: int | None, checkpoint: dict, *, source: bytes | None, path: Path
) -> torch.nn.Module:
    """The model a checkpoint names, built and its weights loaded; one line naming the run when they do not fit."""
    try:
        model = build_model(name, info, width, model_args=checkpoint["config"].get("model_args"), source=source)
        model.load_state_dict(checkpoint["state_dict"])
    except CnnlabError as e:  # the model cannot be built for this data: say which of the runs given it is
        raise CnnlabError(f"{path}: {e}") from None
    except RuntimeError as e:
        lines = str(e).splitlines()
        detail = lines[1].strip() if len(lines) > 1 else str(e)
        raise CnnlabError(f"{path}: weights do not fit model {name}: {detail[:200]}") from None
    return model


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
    if saved.get("code") != checkpoint["model"].get("code"):
        raise CnnlabError(f"{path}: its checkpoint and its config.json record different copies of the model's code")
    if checkpoint.get("rng") is None or checkpoint.get("optimizer") is None:
        raise CnnlabError(f"{path / CHECKPOINT}: holds no training state to resume (only the weights)")


def is_model_file(path: str | Path) -> bool:
    """Whether a path a command was given as a run is a model file (model.onnx) instead."""
    return parse_spec(str(path)).kind == ONNX and not Path(path).is_dir()


def default_output(path: str | Path, name: str) -> tuple[Path, bool]:
    """Where a picture or file a command makes of a run goes when the user names none, and whether a file there
    may be replaced without --overwrite: into the run folder as `name`, replacing cnnlab's own; beside a bare
    checkpoint file; for a model file, `<stem>-<name>` in the current folder (never beside the user's file)."""
    path = Path(path)
    if is_model_file(path):
        return Path(f"{path.stem}-{name}"), False
    return (path if path.is_dir() else path.parent) / name, path.is_dir()


def open_run(path: str | Path, options: OpenOptions = OpenOptions()) -> SavedRun:
    """Rebuild the model of a run folder (or checkpoint file) from its checkpoint, weights loaded; or open a
    model file (model.onnx) as a run. A run that selected an epoch on its validation split is opened at that
    epoch (best.pt), else at its last."""
    if is_model_file(path):
        if not Path(path).is_file():
            raise CnnlabError(f"no such file: {path}")
        return _open_model_file(Path(path), options)
    if options.normalize is not None or options.classes is not None:
        raise CnnlabError(
            f"{path}: --normalize and --classes are for a model file (model.onnx); a run knows its own scaling "
            "and classes"
        )
    checked, model = _read_run(path, resumable=False, trust_code=options.trust_code, allocate=True)
    return SavedRun(Path(path), model.eval(), checked.checkpoint, checked.info)


def _open_model_file(path: Path, options: OpenOptions) -> SavedRun:
    """An ONNX file as a run: its input's shape and its number of classes read from the graph, its scaling
    and class names from `options` (MNIST's and 0 to N-1 by default). One that takes 1x28x28 images and gives
    10 scores is evaluated on MNIST unless told otherwise."""
    model = build_model_from_spec(str(path), in_channels=None, num_classes=None, input_size=None)
    (channels, height, width), count = cast(tuple, model.input_shape), cast(int, model.num_classes)
    classes = options.classes or (DIGITS if count == 10 else tuple(map(str, range(count))))
    if len(classes) != count:
        raise CnnlabError(f"--classes names {len(classes)} classes; {path} gives {count} scores an image")
    mean, std, scaling = _scaling(options.normalize, channels)
    digits = (channels, height, width) == (1, 28, 28)
    dataset = "mnist" if digits and count == 10 and not options.classes else path.name
    info = DatasetInfo(dataset, tuple(classes), mean, std, channels, (height, width), mnist_style=digits)
    named = "named by --classes" if options.classes else f"{classes[0]} to {classes[-1]} (name them: --classes)"
    origin = f"{describe_model(str(path), model)}; inputs scaled {scaling}; classes {named}"
    return SavedRun(path, model.eval(), {}, info, origin=origin, adopts_classes=options.classes is None)


def _scaling(normalize: tuple[float, ...] | None, channels: int) -> tuple[Any, Any, str]:
    """(mean, std, in words) for a model file's inputs: --normalize MEAN,STD, one pair for every channel or
    a mean then a std per channel; MNIST's by default."""
    values = normalize or MNIST_STATS
    if len(values) not in (2, 2 * channels):
        per_channel = f", or {channels} means then {channels} standard deviations," if channels > 1 else ""
        raise CnnlabError(
            f"--normalize takes MEAN,STD{per_channel} for a model of {channels} channel{'s' * (channels > 1)}, "
            f"got {len(values)} numbers"
        )
    half = len(values) // 2
    mean, std = (values[0], values[1]) if half == 1 else (tuple(values[:half]), tuple(values[half:]))
    said = f"as (x - {', '.join(map(str, values[:half]))}) / {', '.join(map(str, values[half:]))}"
    return mean, std, said + (" (--normalize)" if normalize else " (MNIST's: the default --normalize)")
