"""Every picture, produced from a real run on mnist-sample, is a valid PNG of a sensible size."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.engine.run import open_run
from cnnlab.explain.stages import trace


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("viz") / "run"
    assert (
        main(["train", "--dataset", "mnist-sample", "--epochs", "2", "--no-progress", "--out", str(out), "--plot"]) == 0
    )
    return out


def check_png(path, min_width=300, min_height=200):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_width and image.height >= min_height, image.size
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # not blank
    return path


def test_train_plot_writes_curves_and_confusion(run):
    check_png(run / "curves.png", 800, 250)
    check_png(run / "confusion.png", 500, 450)


@pytest.mark.parametrize(
    "what, size",
    [
        ("curves", (800, 250)),
        ("confusion", (500, 450)),
        ("errors", (600, 300)),
        ("filters", (600, 150)),
        ("features", (600, 400)),
    ],
)
def test_viz(run, tmp_path, what, size):
    out = tmp_path / f"{what}.png"
    assert main(["viz", str(run), "--what", what, "--out", str(out), "--image", "3"]) == 0
    check_png(out, *size)


def test_viz_curves_overlays_runs(run, tmp_path):
    assert main(["viz", str(run), str(run), "--what", "curves", "--out", str(tmp_path / "c.png")]) == 0
    check_png(tmp_path / "c.png")


def test_viz_bad_input(run):
    assert main(["viz", str(run), "--what", "histogram"]) == 1
    assert main(["viz", str(run), "--what", "features", "--image", "5000"]) == 1
    assert main(["viz", "/nonexistent", "--what", "curves"]) == 1


def test_compare_reuses_finished_runs(tmp_path, capsys):
    """Offline (as the tests are), with no --dataset: the fallback to mnist-sample is said once for the sweep."""
    argv = ["compare", "--models", "cnn,mlp", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("training on mnist-sample") == 1
    lines = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert lines[0].startswith("model,parameters,flops,test_accuracy") and len(lines) == 3
    assert all(",mnist-sample," in line for line in lines[1:])
    check_png(tmp_path / "accuracy_vs_parameters.png", 400, 250)
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == 2


@pytest.mark.parametrize("model", ["cnn-bn-8-24", "resnet-8", "densenet-bc-22-8", "inception", "lcn"])
def test_features_show_every_family_stage_by_stage(model, tmp_path):
    """The stages come from the model's own modules (explain/stages.py), not from class names: every family."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist-sample",
                "--model",
                model,
                "--epochs",
                "1",
                "--train-subset",
                "256",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["viz", str(out), "--what", "features", "--out", str(tmp_path / "f.png")]) == 0
    check_png(tmp_path / "f.png", 600, 400)
    run = open_run(out)
    maps = [s for s in trace(run.model, torch.zeros(1, 1, 28, 28)).stages if s.values.dim() == 3]
    assert len(maps) >= 2 and maps[-1].values.shape[-1] < 28  # beyond the stem: down to the last resolution
