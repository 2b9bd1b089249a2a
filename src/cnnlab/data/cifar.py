"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) from their official binary releases.

The binary version is plain bytes: each record is the label byte(s) then 3,072 pixel bytes, the 1,024
red values of the 32x32 image row by row, then the green, then the blue
(https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"). The Python version is never used: it
is pickled, and unpickling a downloaded file runs whatever code it names.

The archive is downloaded into the cache, checked against the md5 published on that page, and its
expected members only (regular files, each within its size) are extracted into a temporary folder that
is renamed into place when complete: the cache never holds half a dataset. The archive is then deleted.
Every file is checked against the format: a whole number of records, no more than the release has, and
every label within the classes.
"""

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab import CnnlabError
from cnnlab.data.download import cache_dir, download
from cnnlab.data.idx import DataError
from cnnlab.files import read_bounded, write_bytes

PIXELS = 3 * 32 * 32
MAX_NAMES_BYTES = 64 * 1024


@dataclass(frozen=True)
class CifarSpec:
    name: str
    archive: str  # the file name on the mirrors
    md5: str  # published beside it
    archive_bytes: int  # its size
    folder: str  # the folder the archive holds
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    names_file: str  # class names, one a line
    records_per_file: int  # in the release
    label_bytes: int  # before the pixels of each record
    label_index: int  # which of them is the label used
    num_classes: int
    mirrors: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)

    @property
    def record_bytes(self) -> int:
        return self.label_bytes + PIXELS


CIFAR_SPECS = {
    "cifar10": CifarSpec(
        "cifar10",
        "cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
        170_052_171,
        "cifar-10-batches-bin",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        ("test_batch.bin",),
        "batches.meta.txt",
        10_000,
        1,
        0,
        10,
    ),
    # Two label bytes a record, coarse (20 superclasses) then fine (100 classes): the fine label is used.
    "cifar100": CifarSpec(
        "cifar100",
        "cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
        168_513_733,
        "cifar-100-binary",
        ("train.bin",),
        ("test.bin",),
        "fine_label_names.txt",
        50_000,
        2,
        1,
        100,
    ),
}


def read_records(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    """One binary file -> (images (N, 3, 32, 32) uint8, labels (N,) uint8), every claim of the format checked."""
    limit = spec.records_per_file * spec.record_bytes
    try:
        data = read_bounded(path, limit)
    except CnnlabError as e:
        raise DataError(f"{e} (a {spec.name} file holds at most {spec.records_per_file:,} records)") from None
    if not data or len(data) % spec.record_bytes:
        raise DataError(
            f"{path}: {len(data):,} bytes is not a whole number of {spec.name} records of "
            f"{spec.record_bytes:,} bytes (truncated, or not a {spec.name} binary file?)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, spec.record_bytes)
    labels = records[:, spec.label_index]
    if labels.max() >= spec.num_classes:
        raise DataError(f"{path}: label {labels.max()} out of range for {spec.num_classes} classes")
    return records[:, spec.label_bytes :].reshape(-1, 3, 32, 32), labels


def read_names(path: Path, spec: CifarSpec) -> tuple[str, ...]:
    names = tuple(
        line.strip()
        for line in read_bounded(path, MAX_NAMES_BYTES).decode("utf-8", "replace").splitlines()
        if line.strip()
    )
    if len(names) != spec.num_classes:
        raise DataError(f"{path}: {len(names)} class names, {spec.name} has {spec.num_classes}")
    return names


def _expected_sizes(spec: CifarSpec) -> dict[str, int]:
    """Member name in the archive -> the most bytes it may have."""
    sizes = {
        f"{spec.folder}/{name}": spec.records_per_file * spec.record_bytes
        for name in spec.train_files + spec.test_files
    }
    sizes[f"{spec.folder}/{spec.names_file}"] = MAX_NAMES_BYTES
    return sizes


def extract(archive: Path, spec: CifarSpec, dest: Path) -> Path:
    """Extract the expected members of `archive` into `dest/spec.folder`, all or nothing."""
    expected = _expected_sizes(spec)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{spec.folder}.", suffix=".part"))
    try:
        found = set()
        with tarfile.open(archive, "r|gz") as tar:  # a stream: members are read in order, never seeked
            for member in tar:
                if member.name in expected and member.isfile() and member.size <= expected[member.name]:
                    write_bytes(staging / Path(member.name).name, tar.extractfile(member).read(member.size))  # type: ignore[union-attr]  # isfile())
                    found.add(member.name)
        missing = sorted(set(expected) - found)
        if missing:
            raise DataError(f"{archive}: lacks {', '.join(missing)} (or they are too large)")
        os.replace(staging, dest / spec.folder)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot extract ({e})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # ours; gone already when it was renamed into place
    return dest / spec.folder


def _files_folder(data_dir: Path, spec: CifarSpec) -> Path | None:
    """`data_dir` itself or its `spec.folder` when it holds the release's files, else None."""
    for folder in (data_dir, data_dir / spec.folder):
        if all((folder / name).is_file() for name in spec.train_files + spec.test_files + (spec.names_file,)):
            return folder
    return None


def cifar_folder(spec: CifarSpec, data_dir: Path | None, allow_download: bool) -> Path:
    """The folder holding the release's files: in `data_dir`, else in the cache, else downloaded there."""
    if data_dir is not None:
        if not data_dir.is_dir():
            raise DataError(f"data directory {data_dir} does not exist")
        folder = _files_folder(data_dir, spec)
        if folder is None:
            raise DataError(
                f"{data_dir} (or {data_dir / spec.folder}) lacks the {spec.name} binary files "
                f"{', '.join(spec.train_files + spec.test_files)} and {spec.names_file}"
            )
        return folder
    cache = cache_dir(spec.name)
    folder = _files_folder(cache, spec)
    if folder is not None:
        return folder
    if not allow_download:
        raise DataError(
            f"{spec.name} is not in {cache} and downloading is off (CNNLAB_OFFLINE is set, or the "
            f"caller asked); pass --data-dir DIR holding {spec.folder}/"
        )
    try:
        archive = download(spec.archive, list(spec.mirrors), (spec.md5,), cache, max_bytes=spec.archive_bytes)
    except DataError as e:
        raise DataError(
            f"dataset {spec.name} is not available offline ({e}); download {spec.mirrors[0]}"
            f"{spec.archive} and extract it into {cache}, or pass --data-dir DIR"
        ) from None
    folder = extract(archive, spec, cache)
    archive.unlink()
    return folder


def load_cifar(
    name: str, data_dir: str | Path | None = None, allow_download: bool = True
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(classes, train images, train labels, test images, test labels) of CIFAR-10 or CIFAR-100."""
    spec = CIFAR_SPECS[name]
    folder = cifar_folder(spec, Path(data_dir) if data_dir else None, allow_download)
    train = [read_records(folder / f, spec) for f in spec.train_files]
    test = [read_records(folder / f, spec) for f in spec.test_files]
    join = lambda parts, i: np.concatenate([p[i] for p in parts])
    return read_names(folder / spec.names_file, spec), join(train, 0), join(train, 1), join(test, 0), join(test, 1)
