"""Random crops and flips for natural images: batched, exact, seeded, never flipping digits' recipes, and
resumed bit for bit."""

import signal

import pytest
import torch
import torch.nn.functional as F

from cnnlab.cli import main
from cnnlab.data.augment import AUGMENTATIONS, random_crop, random_erasing
from cnnlab.engine.config import RECIPES, build_config
from cnnlab.engine.state import build_optimizer, build_scheduler
from test_reliability import TRAIN, assert_same_run, start_and_wait_for_a_checkpoint


def windows(image: torch.Tensor, pad: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop of `image` padded with black by `pad`, as is and mirrored: (dy, dx, mirrored, crop)."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (pad, pad, pad, pad))
    return [
        (dy, dx, mirrored, crop.flip(-1) if mirrored else crop)
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        for mirrored in (False, True)
        for crop in [padded[:, dy : dy + height, dx : dx + width]]
    ]


@pytest.mark.parametrize("flip", [False, True])
def test_each_image_is_one_padded_crop_of_itself(flip):
    images = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = random_crop(images, torch.Generator().manual_seed(1), flip=flip)
    assert out.shape == images.shape
    found = []
    for image, result in zip(images, out):
        matches = [(dy, dx, m) for dy, dx, m, crop in windows(image, pad=2) if torch.equal(crop, result)]
        assert matches, "an output is not a crop of its own padded image"
        found.append(matches[0])
    mirrored = sum(m for _, _, m in found)
    assert (8 < mirrored < 56) if flip else mirrored == 0
    assert len({(dy, dx) for dy, dx, _ in found}) > 10  # the offsets vary image by image
    again = random_crop(images, torch.Generator().manual_seed(1), flip=flip)
    assert torch.equal(out, again)  # a pure function of the batch and the generator


def test_digit_recipes_never_flip():
    assert {r.get("augment", "none") for name, r in RECIPES.items() if name not in ("cifar", "he-cifar")} <= {
        "none",
        "affine",
        "robust",
    }  # robust: shape, stroke width, contrast and blur; no flips either
    assert RECIPES["cifar"]["augment"] == RECIPES["he-cifar"]["augment"] == "crop-flip"
    assert AUGMENTATIONS["crop"] is random_crop


def test_cifar_datasets_default_to_the_cifar_recipe_and_he_cifar_steps_the_rate():
    assert build_config({"dataset": "cifar10"}).recipe == "cifar" and build_config({}).recipe == "default"
    assert build_config({"dataset": "cifar100", "recipe": "lecture"}).model == "cnn"  # a named recipe wins
    config = build_config({"recipe": "he-cifar", "epochs": 4})
    optimizer = build_optimizer(torch.nn.Linear(2, 2), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == rates[19] == 0.1  # divided by 10 at half and at three quarters of the 40 steps
    assert rates[20] == rates[29] == pytest.approx(0.01) and rates[30] == rates[39] == pytest.approx(0.001)


@pytest.mark.slow
def test_resume_with_crop_flip_is_bit_identical(tmp_path):
    augmented = [
        "--augment",
        "crop-flip",
        "--train-subset",
        "640",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--threads",
        "1",
    ]
    reference = tmp_path / "reference"
    assert main([*TRAIN[3:], *augmented, "--out", str(reference)]) == 0
    out = tmp_path / "run"
    process = start_and_wait_for_a_checkpoint(out, every=5, extra=augmented)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(reference, out)


def test_random_erasing_replaces_one_rectangle_of_about_half_the_images():
    images = torch.full((400, 1, 28, 28), 2.0)  # no noise pixel in [0, 1) can equal 2
    out = random_erasing(images, torch.Generator().manual_seed(0))
    erased = out != images
    counts = erased.flatten(1).sum(1)
    assert 150 < int((counts > 0).sum()) < 250  # p = 0.5
    for mask, count in zip(erased[:, 0], counts):
        if count:
            rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box == count and 0.02 * 784 * 0.5 <= count <= 0.4 * 784 * 1.5  # one whole rectangle
    assert out[erased].min() >= 0 and out[erased].max() < 1  # filled with uniform noise
    assert torch.equal(out, random_erasing(images, torch.Generator().manual_seed(0)))


def test_the_clothes_augmentation_shifts_by_two_pixels_at_most_and_flips():
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) + 2  # erased pixels are < 1
    out = AUGMENTATIONS["clothes"](images, torch.Generator().manual_seed(1))
    for image, result in zip(images, out):
        kept = result >= 1  # what was not erased
        assert any(torch.equal(crop[kept], result[kept]) for *_, crop in windows(image, pad=2))
