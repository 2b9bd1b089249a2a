"""Snapshots while a run trains (engine/snapshots.py): what they hold, that they leave training exactly as it
was, that --overwrite still knows the run, and that a damaged file is left out of the replay."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.data.batches import normalise
from cnnlab.engine import fit as fit_module
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.run import open_run
from cnnlab.engine.snapshots import EVERY, is_due, read_snapshots

# BatchNorm and dropout-free but BN-carrying: a probe run in training mode would move its running statistics.
TRAIN = ["train", "--dataset", "mnist-sample", "--model", "cnn-bn-8-24", "--train-subset", "640", "--epochs", "2"]


def train(out, *extra) -> int:
    return main([*TRAIN, "--seed", "0", "--no-progress", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("snapshots") / "run"
    assert train(out) == 0
    return out


def test_the_schedule():
    assert [s for s in range(EVERY * 3 + 1) if is_due(s)] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 200, 400, 600]


def test_snapshots_hold_the_first_kernels_and_the_probes_maps(run):
    snapshots = read_snapshots(run)
    # 640 images at batch 128: 5 steps an epoch; the schedule's steps, then each epoch's end
    assert [(s.step, s.epoch) for s in snapshots] == [(0, 1), (1, 1), (2, 1), (4, 1), (5, 1), (8, 2), (10, 2)]
    saved = open_run(run)
    conv = saved.model.get_submodule("features.0.0")
    last = snapshots[-1]
    assert last.layer == "features.0.0" and last.kernels.shape == (8, 1, 5, 5)
    assert np.array_equal(last.kernels, conv.weight.detach().numpy())  # the last step's weights, saved exactly
    dataset = saved.load_dataset()
    assert np.array_equal(last.probe, dataset.test_images[0].numpy()) and last.label == int(dataset.test_labels[0])
    with torch.no_grad():
        maps = conv(normalise(dataset.test_images[:1], saved.info.mean, saved.info.std))[0].numpy()
    assert last.maps.shape == maps.shape == (8, 24, 24)
    np.testing.assert_allclose(last.maps, maps, atol=2e-3 * np.abs(maps).max())  # kept in float16
    assert not np.array_equal(snapshots[0].kernels, last.kernels)  # the kernels moved from their initial noise


def test_training_is_the_same_with_or_without_snapshots(run, tmp_path, monkeypatch):
    monkeypatch.setattr(fit_module, "snapshot_callbacks", lambda *args, **kwargs: [])
    assert train(tmp_path / "plain") == 0
    assert not list((tmp_path / "plain").glob("snapshot-*"))
    with_snapshots, plain = load_checkpoint(run)["state_dict"], load_checkpoint(tmp_path / "plain")["state_dict"]
    assert with_snapshots.keys() == plain.keys()
    assert all(torch.equal(with_snapshots[k], plain[k]) for k in plain)  # BatchNorm's running statistics included


def test_overwrite_replaces_a_run_with_snapshots(run, tmp_path, capsys):
    out = tmp_path / "copy"
    assert train(out) == 0 and list(out.glob("snapshot-*"))
    assert train(out, "--overwrite") == 0, capsys.readouterr().err


def test_a_damaged_snapshot_is_left_out(run, tmp_path):
    damaged = tmp_path / "run"
    damaged.mkdir()
    for path in run.glob("snapshot-*.npz"):
        (damaged / path.name).write_bytes(path.read_bytes())
    cut = sorted(damaged.glob("snapshot-*.npz"))[2]
    cut.write_bytes(cut.read_bytes()[:100])
    (damaged / "snapshot-0000003.npz").write_bytes(b"not a snapshot")
    steps = [s.step for s in read_snapshots(damaged)]
    assert steps == [0, 1, 4, 5, 8, 10]


def test_a_model_without_convolution_takes_none(tmp_path):
    assert main(["train", "--dataset", "mnist-sample", "--model", "mlp", "--train-subset", "256", "--epochs", "1",
                 "--no-progress", "--out", str(tmp_path / "mlp")]) == 0  # fmt: skip
    assert read_snapshots(tmp_path / "mlp") == []


@pytest.mark.slow
def test_the_cost_benchmark_runs(tmp_path):
    """benchmarks/snapshot_cost.py end to end on a small draw (its figure is for `make bench`, not asserted)."""
    result = subprocess.run(
        [sys.executable, "benchmarks/snapshot_cost.py", "--dataset", "mnist-sample", "--repeats", "1",
         "--json", str(tmp_path / "cost.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "snapshots cost" in result.stdout and (tmp_path / "cost.json").is_file()
