"""CIFAR-10 and CIFAR-100 from the binary release: a CIFAR-format archive the test writes, served over HTTP on
127.0.0.1, downloaded with its md5 checked, extracted all or nothing into the cache and read record by record."""

import dataclasses
import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch

from cnnlab.data import cifar, datasets
from cnnlab.data.idx import DataError
from test_download import server  # noqa: F401 (the fixture)

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def records(labels, label_bytes=1, seed=0) -> tuple[bytes, np.ndarray]:
    """CIFAR records: the label byte(s), then 1,024 red, 1,024 green and 1,024 blue bytes, row by row."""
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    rows = [
        bytes(label) + image.tobytes()
        for label, image in zip(np.asarray(labels, dtype=np.uint8).reshape(len(labels), label_bytes), images)
    ]
    return b"".join(rows), images


def cifar10_files(n_train=4, n_test=3) -> tuple[dict, np.ndarray, np.ndarray]:
    """The release's files with a few records each: {name: bytes}, the training images, the test images."""
    files, train = {}, []
    for i in range(1, 6):
        files[f"data_batch_{i}.bin"], images = records([(i + j) % 10 for j in range(n_train)], seed=i)
        train.append(images)
    files["test_batch.bin"], test = records(list(range(n_test)), seed=9)
    files["batches.meta.txt"] = ("\n".join(CIFAR10_NAMES) + "\n\n").encode()
    files["readme.html"] = b"<html>not extracted</html>"
    return files, np.concatenate(train), test


def tar_gz(files: dict, folder: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            member = tarfile.TarInfo(f"{folder}/{name}")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def serve_cifar10(server, monkeypatch):  # noqa: F811
    """Serve `archive` bytes as the CIFAR-10 release (md5 and size set to it), and allow downloads."""
    root, url = server

    def serve(archive: bytes, md5_of: bytes | None = None):
        (root / "good").mkdir(parents=True, exist_ok=True)
        (root / "good" / "cifar-10-binary.tar.gz").write_bytes(archive)
        spec = dataclasses.replace(
            cifar.CIFAR_SPECS["cifar10"],
            mirrors=(f"{url}/missing/", f"{url}/good/"),
            md5=hashlib.md5(md5_of or archive).hexdigest(),
            archive_bytes=len(archive),
        )
        monkeypatch.setitem(cifar.CIFAR_SPECS, "cifar10", spec)
        monkeypatch.delenv("CNNLAB_OFFLINE")

    return serve


def test_download_checks_the_md5_extracts_into_the_cache_and_reads(serve_cifar10, monkeypatch):
    files, train, test = cifar10_files()
    serve_cifar10(tar_gz(files, "cifar-10-batches-bin"))
    ds = datasets.load_dataset("cifar10")
    assert ds.classes == CIFAR10_NAMES and ds.train_images.shape == (20, 3, 32, 32) and ds.in_channels == 3
    assert torch.equal(ds.train_images, torch.from_numpy(train)) and torch.equal(ds.test_images, torch.from_numpy(test))
    assert ds.train_labels.tolist()[:4] == [1, 2, 3, 4] and ds.test_labels.tolist() == [0, 1, 2]
    assert not ds.info.mnist_style and len(ds.mean) == 3
    cache = datasets.cache_dir("cifar10")
    assert [p.name for p in cache.iterdir()] == ["cifar-10-batches-bin"]  # no archive, no half-extracted folder
    assert sorted(p.name for p in (cache / "cifar-10-batches-bin").iterdir()) == sorted(set(files) - {"readme.html"})
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")  # the second load needs no server
    assert torch.equal(datasets.load_dataset("cifar10").test_images, ds.test_images)


def test_a_corrupt_download_leaves_the_cache_empty(serve_cifar10):
    files, _, _ = cifar10_files()
    archive = tar_gz(files, "cifar-10-batches-bin")
    serve_cifar10(archive[:-10] + b"corrupted!", md5_of=archive)
    with pytest.raises(DataError, match="checksum mismatch"):
        datasets.load_dataset("cifar10")
    assert list(datasets.cache_dir("cifar10").iterdir()) == []


def test_an_archive_lacking_a_file_is_not_extracted(serve_cifar10):
    files, _, _ = cifar10_files()
    del files["data_batch_3.bin"]
    serve_cifar10(tar_gz(files, "cifar-10-batches-bin"))
    with pytest.raises(DataError, match="lacks cifar-10-batches-bin/data_batch_3.bin"):
        datasets.load_dataset("cifar10")
    assert [p.name for p in datasets.cache_dir("cifar10").iterdir()] == ["cifar-10-binary.tar.gz"]  # verified, kept


def write_release(folder, files):
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: {**f, "test_batch.bin": f["test_batch.bin"][:-1]}, "is not a whole number of cifar10 records"),
        (lambda f: {**f, "test_batch.bin": b""}, "0 bytes is not a whole number"),
        (lambda f: {**f, "data_batch_2.bin": records([10])[0]}, "label 10 out of range for 10 classes"),
        (lambda f: {**f, "batches.meta.txt": b"cat\ndog\n"}, "2 class names, cifar10 has 10"),
        (lambda f: {k: v for k, v in f.items() if k != "data_batch_5.bin"}, "lacks the cifar10 binary files"),
    ],
)
def test_files_that_break_the_format_are_refused(damage, message, tmp_path):
    files, _, _ = cifar10_files()
    write_release(tmp_path / "cifar-10-batches-bin", damage(files))
    with pytest.raises(DataError, match=message):
        datasets.load_dataset("cifar10", tmp_path)  # the release's folder inside --data-dir


def test_a_file_larger_than_the_release_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setitem(
        cifar.CIFAR_SPECS, "cifar10", dataclasses.replace(cifar.CIFAR_SPECS["cifar10"], records_per_file=3)
    )
    files, _, _ = cifar10_files()
    folder = write_release(tmp_path / "d", files)  # 4 records a training file
    with pytest.raises(DataError, match="holds at most 3 records"):
        datasets.load_dataset("cifar10", folder)


def test_cifar100_reads_the_fine_label(tmp_path):
    fine = [99, 0, 42]
    train, images = records([[c, f] for c, f in zip([19, 0, 7], fine)], label_bytes=2)
    names = "\n".join(f"class{i}" for i in range(100)).encode()
    folder = write_release(
        tmp_path / "cifar-100-binary", {"train.bin": train, "test.bin": train, "fine_label_names.txt": names}
    )
    ds = datasets.load_dataset("cifar100", folder)
    assert ds.train_labels.tolist() == fine and ds.num_classes == 100 and ds.classes[42] == "class42"
    assert torch.equal(ds.train_images, torch.from_numpy(images))
