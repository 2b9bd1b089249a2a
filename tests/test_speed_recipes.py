"""The fast and best recipes train (their speed is measured by `cnnlab bench`, not here), augmentation, and the
benchmark suites' code paths: inference backends (int8 accuracy), the GPU suite run tiny on the CPU."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.bench import inference_bench
from cnnlab.cli import main
from cnnlab.data.augment import one_pixel_shifts, random_affine
from cnnlab.engine.checkpoint import load_checkpoint, read_metrics
from cnnlab.engine.config import build_config, dataset_notice
from cnnlab.engine.run import open_run
from cnnlab.inference.onnx import ChunkedSession, onnx_session, to_onnx
from test_own_images import write_shapes


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


@pytest.mark.parametrize("recipe, model", [("fast", "cnn-bn-s16-32-64"), ("best", "cnn-bn-32-64-64-fc256")])
def test_recipe_smoke_run(tmp_path, recipe, model):
    out = tmp_path / recipe
    assert (
        main(
            [
                "train",
                "--recipe",
                recipe,
                "--dataset",
                "mnist-sample",
                "--epochs",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == model and config["recipe"] == recipe
    assert read_metrics(out)[0]["test_accuracy"] > 50


def test_time_to_accuracy_benchmark(mnist_dir, tmp_path, capsys):
    assert main(["bench", "--target", "97", "--seeds", "0", "--data-dir", str(mnist_dir), "--out", str(tmp_path)]) == 0
    (result_file,) = tmp_path.glob("*time-to-97.0.json")
    result = json.loads(result_file.read_text())
    assert result["recipe"] == "fast" and result["all_reached"]
    (run,) = result["runs"]  # the time is the run's own: reached within the epochs it trained, evaluations included
    assert result["median_seconds"] == run["seconds"] and 0 < run["seconds"] <= sum(run["epoch_seconds"])
    # one epoch of the lecture's own pipeline, timed before the seed in the same process: the ratio's unit
    assert run["lecture_epoch_seconds"] > 0 and run["ratio"] == pytest.approx(
        run["lecture_epoch_seconds"] / run["seconds"]
    )
    assert result["median_ratio"] == run["ratio"]


def test_ema_is_what_gets_evaluated_and_saved(tmp_path, capsys):
    out = tmp_path / "ema"
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist-sample",
                "--model",
                "cnn-bn-8-24",
                "--epochs",
                "2",
                "--ema",
                "0.98",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    payload = load_checkpoint(out)
    average, trained = payload["state_dict"], payload["train_state_dict"]
    assert set(average) == set(trained)
    assert not torch.equal(average["fc.weight"], trained["fc.weight"])
    assert int(payload["ema"]["n_averaged"]) == 2 * 32  # one update per step: 2 epochs of 4,000 / 128
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0  # evaluate, predict and export load the averaged weights
    assert f"{read_metrics(out)[-1]['test_accuracy']:.2f}%" in capsys.readouterr().out


def test_bench_times_both_pipelines_repeatedly(mnist_dir, tmp_path, capsys):
    assert (
        main(
            [
                "bench",
                "--quick",
                "--models",
                "cnn",
                "--repeats",
                "2",
                "--data-dir",
                str(mnist_dir),
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    (result_file,) = tmp_path.glob("*.json")
    cnn = json.loads(result_file.read_text())["models"]["cnn"]
    for pipeline in ("cnnlab", "reference"):
        # 1 epoch on 6,000 images: ~80%
        assert len(cnn[pipeline]["epoch_seconds"]) == 2 and cnn[pipeline]["test_accuracy"] > 60
    assert cnn["speedup"] == pytest.approx(cnn["reference"]["seconds_per_epoch"] / cnn["cnnlab"]["seconds_per_epoch"])
    assert all(len(rates) == 3 for rates in cnn["inference_images_per_s"].values())
    assert "| cnn" in capsys.readouterr().out


def test_one_pixel_shifts_move_the_image_and_fill_with_background():
    images = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    same, down, up, right, left = one_pixel_shifts(images, background=-1.0)
    assert torch.equal(same, images)
    assert torch.equal(down[..., 1:, :], images[..., :-1, :]) and (down[..., 0, :] == -1).all()
    assert torch.equal(up[..., :-1, :], images[..., 1:, :]) and (up[..., -1, :] == -1).all()
    assert torch.equal(right[..., :, 1:], images[..., :, :-1]) and (right[..., :, 0] == -1).all()
    assert torch.equal(left[..., :, :-1], images[..., :, 1:]) and (left[..., :, -1] == -1).all()


def test_evaluate_with_test_time_augmentation(trained_run, capsys):
    assert main(["evaluate", str(trained_run)]) == 0
    plain = capsys.readouterr().out
    assert main(["evaluate", str(trained_run), "--tta"]) == 0
    augmented = capsys.readouterr().out
    assert "with test-time augmentation (5 views)" in augmented and "with test-time" not in plain
    accuracy = lambda text: float(text.split("Accuracy: ")[1].split("(")[1].split("%")[0])
    assert abs(accuracy(augmented) - accuracy(plain)) < 3  # the same model seen 5 ways, not another model
    assert augmented.split("Test set:")[1] != plain.split("Test set:")[1]


def test_bf16_autocast_trains_with_float32_weights(tmp_path, capsys):
    out = tmp_path / "bf16"
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist-sample",
                "--model",
                "cnn-bn-8-24",
                "--epochs",
                "1",
                "--precision",
                "bf16",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "bf16 autocast" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["precision"] == "bf16"
    assert all(w.dtype == torch.float32 for w in load_checkpoint(out)["state_dict"].values() if w.is_floating_point())
    assert read_metrics(out)[0]["test_accuracy"] > 50


def test_inference_backends_agree_and_int8_stays_within_a_point(trained_run, tmp_path):
    """Every backend classifies the test set as PyTorch does (bf16 within 0.3 points); int8, statically
    quantised, within 1 point of float32 (its change on MNIST is in docs/speed.md)."""
    result = inference_bench(
        trained_run, batches=(1, 8), threads=1, out_dir=tmp_path, budget_s=0.05, log=lambda line: None
    )
    accuracy = {name: entry["accuracy"] for name, entry in result["backends"].items()}
    assert accuracy["onnxruntime"] == accuracy["onnxruntime, chunks of 64"] == accuracy["torch"] > 90
    assert abs(accuracy["torch bf16"] - accuracy["torch"]) <= 0.3
    assert abs(result["int8_accuracy_change"]) <= 1.0
    assert accuracy["onnxruntime int8"] == accuracy["onnxruntime int8, chunks of 64"]
    assert all(min(rates) > 0 for entry in result["backends"].values() for rates in entry["images_per_s"].values())
    assert (tmp_path / f"{result['machine']}-{result['date']}-inference-cnn.json").is_file()


def test_chunked_session_returns_what_the_whole_batch_does(trained_run):
    model = open_run(trained_run).model
    session = onnx_session(to_onnx(model, torch.zeros(2, 1, 28, 28)), threads=1)
    images = torch.randn(150, 1, 28, 28).numpy()
    chunked = ChunkedSession(session, chunk=64, workers=2)
    try:
        assert np.allclose(chunked.run(images), session.run(None, {"input": images})[0], atol=1e-5)
    finally:
        chunked.close()


def test_gpu_suite_runs_every_section_on_a_cpu(tmp_path, capsys):
    """benchmarks/gpu.sh's code paths, tiny, on the CPU: every section present, none failed."""
    assert main(["bench", "--gpu", "--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    (result_file,) = tmp_path.glob("*gpu-suite.json")
    sections = json.loads(result_file.read_text())["sections"]
    assert not [name for name, section in sections.items() if "error" in section]
    assert len(sections["fast_eager_bf16"]["runs"]) == 2 and sections["lecture_fp32"]["epoch_seconds"][0] > 0
    assert sections["best_bf16"]["test_accuracy"][0] > 30 and min(sections["inference"].values()) > 0
    assert "skipped" in sections["host_syncs"] and "fast_compiled" not in sections  # GPU-only sections


FASHION_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist-dev"


def test_recipes_take_per_dataset_settings_and_a_generic_choice_elsewhere():
    assert build_config({"recipe": "best"}).augment == "affine"  # MNIST, or its sample, when none is named
    assert build_config({"recipe": "best", "dataset": "mnist"}).augment == "affine"
    clothes = build_config({"recipe": "best", "dataset": "fashion-mnist"})
    assert (clothes.augment, clothes.epochs, clothes.model) == ("clothes", 18, "cnn-bn-p32-64-128-fc256")
    assert dataset_notice(clothes) == (
        "Recipe best on fashion-mnist: model cnn-bn-p32-64-128-fc256, augment clothes, epochs 18 "
        "(its settings for this dataset)"
    )
    assert build_config({"dataset": "fashion-mnist"}).batch_size == 64 and build_config({}).batch_size == 128
    assert build_config({"recipe": "best", "dataset": "cifar10"}).augment == "crop-flip"
    for dataset in ("kmnist", "folder"):  # no settings measured: shifts only, no flips or rotations
        assert build_config({"recipe": "best", "dataset": dataset, "data_dir": "x"}).augment == "crop"
    given = build_config({"recipe": "best", "dataset": "fashion-mnist", "augment": "none", "model": "cnn"})
    assert given.augment == "none"  # a flag wins, and only what the dataset still changes is announced
    assert dataset_notice(given) == "Recipe best on fashion-mnist: epochs 18 (its settings for this dataset)"
    assert build_config({"recipe": "fast", "dataset": "fashion-mnist"}).augment == "none"
    assert dataset_notice(build_config({"recipe": "best", "dataset": "mnist"})) is None


def test_per_dataset_settings_are_announced_when_training(tmp_path, capsys):
    shapes = write_shapes(tmp_path / "shapes", per_class=20, bad=False)  # a dataset with no settings of its own
    common = ["--recipe", "best", "--epochs", "1", "--train-subset", "40", "--no-progress"]
    assert main(["train", *common, "--dataset", "folder", "--data-dir", str(shapes), "--out", str(tmp_path / "f")]) == 0
    out = capsys.readouterr().out
    assert "Recipe best has no settings measured on folder: generic augment crop" in out
    assert json.loads((tmp_path / "f" / "config.json").read_text())["augment"] == "crop"
    if not (FASHION_DEV / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST's development split not found at {FASHION_DEV}")
    assert (
        main(
            [
                "train",
                *common,
                "--dataset",
                "fashion-mnist",
                "--data-dir",
                str(FASHION_DEV),
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert (
        "Recipe best on fashion-mnist: model cnn-bn-p32-64-128-fc256, augment clothes (its settings for this dataset)"
        in capsys.readouterr().out
    )
    assert json.loads((tmp_path / "c" / "config.json").read_text())["augment"] == "clothes"
