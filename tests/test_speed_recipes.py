"""The fast and best recipes train (their speed is measured by `cnnlab bench`, not here), and augmentation."""
import json

import pytest
import torch

from cnnlab.cli import main
from cnnlab.data.augment import random_affine
from cnnlab.engine.checkpoint import read_metrics


def test_affine_augmentation_is_batched_seeded_and_keeps_the_background():
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 10:18, 12:16] = 1.0
    a = random_affine(images, torch.Generator().manual_seed(1))
    b = random_affine(images, torch.Generator().manual_seed(1))
    c = random_affine(images, torch.Generator().manual_seed(2))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a[:, :, :3].abs().max() == 0  # the border stays black background
    assert not torch.equal(a[0], a[1])  # each image gets its own transform
    assert abs(a.sum() / images.sum() - 1) < 0.15  # ink moves, it is not lost
    identity = random_affine(images, torch.Generator().manual_seed(1), degrees=0, scale=(1, 1), translate=0)
    assert torch.allclose(identity, images, atol=1e-5)


@pytest.mark.parametrize("recipe, model", [("fast", "cnn-bn-8-24"), ("best", "cnn-bn-32-64")])
def test_recipe_smoke_run(tmp_path, recipe, model):
    out = tmp_path / recipe
    assert main(["train", "--recipe", recipe, "--dataset", "mnist-sample", "--epochs", "1", "--no-progress",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == model and config["recipe"] == recipe
    assert read_metrics(out)[0]["test_accuracy"] > 50


def test_time_to_accuracy_benchmark(mnist_dir, tmp_path, capsys):
    assert main(["bench", "--target", "97", "--seeds", "0", "--data-dir", str(mnist_dir), "--out", str(tmp_path)]) == 0
    (result_file,) = tmp_path.glob("*time-to-97.0.json")
    result = json.loads(result_file.read_text())
    assert result["recipe"] == "fast" and result["all_reached"] and 0 < result["median_seconds"] < 120
