"""Reader for the IDX files MNIST and its relatives ship in (gzipped or not).

The format (http://yann.lecun.com/exdb/mnist/, bottom of the page): two zero bytes, a type code,
the number of dimensions, each dimension as a big-endian uint32, then the values in C order.
Every claim the header makes is checked against the bytes that are really there, so a truncated or
lying file is an error naming the file, never a silently short dataset or a huge allocation.
"""

import gzip
import io
import zlib
from pathlib import Path

import numpy as np

from cnnlab import CnnlabError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_PAYLOAD = 1 << 31  # 2 GiB: ten times the largest real IDX file; a header claiming more is lying


class DataError(CnnlabError):
    """A data file that is missing, truncated or not what it claims to be."""


def _open(path: Path) -> gzip.GzipFile | io.BufferedReader:
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read one IDX file with `ndim` dimensions into a numpy array, checking every header claim."""
    path = Path(path)
    try:
        with _open(path) as f:
            header = f.read(4)
            if len(header) < 4:
                raise DataError(f"{path}: truncated IDX file ({len(header)} header bytes, expected 4)")
            if header[:2] != b"\0\0" or header[2] not in _DTYPES:
                raise DataError(f"{path}: not an IDX file (magic number {header.hex()})")
            if header[3] != ndim:
                raise DataError(f"{path}: expected {ndim} dimensions, the header says {header[3]}")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            shape = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
            dtype: np.dtype = np.dtype(_DTYPES[header[2]])  # type: ignore[call-overload]
            expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if expected > MAX_PAYLOAD:
                raise DataError(f"{path}: header claims {shape}, {expected:,} bytes: too large to be real")
            payload = f.read(expected + 1)  # one byte more than claimed reveals trailing garbage
    except OSError as e:  # missing file, unreadable, or a broken gzip stream (BadGzipFile is an OSError)
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    except (EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt gzip stream ({e})") from None
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "longer than its header says"
        raise DataError(
            f"{path}: {what}: header {shape} needs {expected:,} data bytes, found "
            f"{len(payload):,}{'+' if len(payload) > expected else ''}"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_pair(images_path: str | Path, labels_path: str | Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file (N, H, W) and its labels file (N,) and check that they agree."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{images_path}: expected unsigned byte images and labels")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels):,} labels for {len(images):,} images in {images_path}")
    if len(labels) and labels.max() >= num_classes:
        raise DataError(f"{labels_path}: label {labels.max()} out of range for {num_classes} classes")
    return images, labels
