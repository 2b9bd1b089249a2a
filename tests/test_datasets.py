import pytest
import torch

from cnnlab.data import datasets
from cnnlab.data.batches import epoch_order, iterate_batches, normalise
from cnnlab.data.idx import DataError
from conftest import write_idx_dataset


def test_mnist_sample_is_a_stratified_4000_1000_split():
    ds = datasets.load_dataset("mnist-sample")
    assert ds.train_images.shape == (4000, 1, 28, 28) and ds.test_images.shape == (1000, 1, 28, 28)
    assert ds.train_images.dtype == torch.uint8
    assert torch.bincount(ds.train_labels).tolist() == [400] * 10
    assert torch.bincount(ds.test_labels).tolist() == [100] * 10
    again = datasets.load_dataset("mnist-sample")
    assert torch.equal(ds.test_images, again.test_images)  # fixed seed
    assert ds.classes == tuple("0123456789")
    assert (ds.mean, ds.std) == datasets.MNIST_STATS  # a sample of MNIST's training set, normalised as MNIST


def test_real_mnist_by_data_dir(mnist_dir):
    ds = datasets.load_dataset("mnist", mnist_dir)
    assert ds.train_images.shape == (60000, 1, 28, 28) and len(ds.test_labels) == 10000
    assert torch.bincount(ds.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # the normalisation constants are computed from the training set: the familiar ones, so results stay as they were
    assert (ds.mean, ds.std) == datasets.MNIST_STATS == (0.1307, 0.3081)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(write_idx_dataset(tmp_path / "d", compress=False)))
    assert len(datasets.load_dataset("fashion-mnist").train_labels) == 60


def test_data_dir_lacking_files_names_them(tmp_path):
    folder = write_idx_dataset(tmp_path / "d")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        datasets.load_dataset("kmnist", folder)
    with pytest.raises(DataError, match="does not exist"):
        datasets.load_dataset("mnist", tmp_path / "nowhere")


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        datasets.load_dataset("cifar")


def test_offline_default_falls_back_to_the_sample_with_a_notice():
    ds, notice = datasets.load_training_dataset(None)
    assert ds.name == "mnist-sample" and "offline" in notice and "\n" not in notice


def test_explicit_mnist_never_falls_back():
    with pytest.raises(datasets.DownloadError, match="--data-dir"):
        datasets.load_training_dataset("mnist")


def test_default_uses_mnist_when_found(mnist_dir, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(mnist_dir))
    ds, notice = datasets.load_training_dataset(None)
    assert ds.name == "mnist" and notice is None


def test_batches_cover_every_sample_once_in_a_seeded_order():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    labels = torch.arange(10)
    order = epoch_order(10, seed=3, epoch=1)
    assert torch.equal(order, epoch_order(10, seed=3, epoch=1))
    assert not torch.equal(order, epoch_order(10, seed=3, epoch=2))
    batches = list(iterate_batches(images, labels, batch_size=4, mean=0.0, std=1 / 255, order=order))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(10)) and torch.equal(seen, order)
    # normalised on the fly: with mean 0 and std 1/255 the float value is the pixel value
    assert torch.equal(torch.cat([x.flatten() for x, _ in batches]), seen.float())


def test_normalise_matches_the_textbook_formula():
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    expected = (x.float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(normalise(x, 0.1307, 0.3081), expected, atol=1e-5)


def test_dataset_info_reads_old_checkpoints_and_round_trips_colour():
    old = {
        "name": "mnist",
        "classes": list("0123456789"),
        "mean": 0.1307,
        "std": 0.3081,
        "in_channels": 1,
        "input_size": [28, 28],
    }  # as checkpoints before colour datasets hold it
    info = datasets.DatasetInfo.from_dict(old)
    assert (info.mean, info.std, info.mnist_style) == (0.1307, 0.3081, True)
    assert datasets.DatasetInfo.from_dict(info.to_dict()) == info
    colour = datasets.DatasetInfo("folder", ("a", "b"), (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 3, (32, 32), False)
    assert colour.to_dict()["mean"] == [0.1, 0.2, 0.3] and datasets.DatasetInfo.from_dict(colour.to_dict()) == colour
    with pytest.raises(DataError, match=r"dataset.mean is \[0.1, 0.2\]: expected 3 finite numbers"):
        datasets.DatasetInfo.from_dict({**colour.to_dict(), "mean": [0.1, 0.2]})


def test_normalise_per_channel_and_bit_for_bit_as_before_with_one_number():
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    expected = torch.stack([(x[:, c].float() / 255 - mean[c]) / std[c] for c in range(3)], 1)
    assert torch.allclose(normalise(x, mean, std), expected, atol=1e-5)
    grey = x[:, :1]
    assert torch.equal(normalise(grey, 0.1307, 0.3081), (grey.float() - 255.0 * 0.1307) * (1.0 / (255.0 * 0.3081)))


def test_pixel_stats_are_exact_per_channel():
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    mean, std = datasets.pixel_stats(x)
    pixels = x.double() / 255
    assert mean == tuple(round(pixels[:, c].mean().item(), 4) for c in range(3))
    assert std == tuple(round(pixels[:, c].std(unbiased=False).item(), 4) for c in range(3))
    assert datasets.pixel_stats(torch.zeros(2, 1, 3, 3, dtype=torch.uint8)) == (0.0, round(1 / 255, 4))  # blank
