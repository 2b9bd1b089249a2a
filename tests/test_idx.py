import gzip

import numpy as np
import pytest

from cnnlab.data.idx import DataError, read_idx, read_idx_pair
from conftest import idx_bytes


def write(tmp_path, data: bytes, name="f-idx3-ubyte"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_reads_what_was_written(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(array)
    path = write(tmp_path, gzip.compress(data) if compress else data)
    np.testing.assert_array_equal(read_idx(path, 3), array)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "truncated IDX file"),
        (b"\x00\x00", "truncated IDX file"),
        (b"\x01\x02\x08\x03" + bytes(12), "not an IDX file"),
        (b"\x00\x00\x07\x03" + bytes(12), "not an IDX file"),
        (b"\x00\x00\x08\x01" + bytes(4), "expected 3 dimensions, the header says 1"),
        (b"\x00\x00\x08\x03" + bytes(6), "truncated IDX header"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8))[:-1], r"truncated: header \(2, 3, 4\) needs 24 data bytes, found 23"),
        (idx_bytes(np.zeros((2, 3, 4), np.uint8)) + b"x", "longer than its header says"),
        (b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3, "too large to be real"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path, 3)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.ones((5, 28, 28), np.uint8))))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(DataError, match="f-idx3-ubyte"):
        read_idx(write(tmp_path, bytes(data)), 3)


def test_truncated_gzip_is_a_data_error(tmp_path):
    data = gzip.compress(idx_bytes(np.ones((5, 28, 28), np.uint8)))
    with pytest.raises(DataError):
        read_idx(write(tmp_path, data[: len(data) // 2]), 3)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope", 3)


def test_images_and_labels_must_agree(tmp_path):
    images = write(tmp_path, idx_bytes(np.zeros((3, 28, 28), np.uint8)), "i")
    labels = write(tmp_path, idx_bytes(np.zeros(4, np.uint8)), "l")
    with pytest.raises(DataError, match="4 labels for 3 images"):
        read_idx_pair(images, labels, 10)
    labels = write(tmp_path, idx_bytes(np.array([0, 1, 10], np.uint8)), "l2")
    with pytest.raises(DataError, match="label 10 out of range"):
        read_idx_pair(images, labels, 10)


def test_real_mnist(mnist_dir):
    images, labels = read_idx_pair(
        mnist_dir / "train-images-idx3-ubyte.gz", mnist_dir / "train-labels-idx1-ubyte.gz", 10
    )
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    # the class counts published beside the files
    assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
