"""The GPU-minded training path, checked on the CPU: the loop that tests the loss for NaN only every N steps,
exact resume with it, the weight average without a host sync, and torch.compile against eager."""

import dataclasses
import os
import shutil
import signal

import pytest
import torch

from cnnlab.data.batches import iterate_batches
from cnnlab.data.datasets import load_dataset
from cnnlab.engine.checkpoint import load_checkpoint, read_metrics
from cnnlab.engine.config import build_config
from cnnlab.engine.fit import TrainingInterrupted, fit, resume_run
from cnnlab.engine.loop import NonFiniteLoss, train_one_epoch
from cnnlab.engine.state import WeightAverage
from cnnlab.models import create_model


def sample_batches(count: int, size: int = 64):
    data = load_dataset("mnist-sample")
    images, labels = data.train_images[: count * size], data.train_labels[: count * size]
    return [(x.clone(), y) for x, y in iterate_batches(images, labels, batch_size=size, mean=data.mean, std=data.std)]


@pytest.mark.parametrize("check_every, caught_at, callbacks", [(1, 7, 6), (4, 8, 7)])
def test_a_nan_stops_the_loop_within_check_every_steps(check_every, caught_at, callbacks):
    """A NaN image in batch 7: tested every step, it is caught before its update; tested every 4 steps, at step 8,
    after two bad updates that the run never saves (it resumes from the last checkpoint)."""
    torch.manual_seed(0)
    model = create_model("cnn-bn-8-24")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = sample_batches(12)
    batches[6][0][0, 0, 5, 5] = float("nan")
    seen = []
    with pytest.raises(NonFiniteLoss, match=f"loss became nan by step {caught_at} of the epoch"):
        train_one_epoch(
            model,
            batches,
            optimizer=optimizer,
            check_every=check_every,
            callbacks=[lambda step: seen.append(step.number)],
        )
    assert seen == list(range(1, callbacks + 1))
    assert all(torch.isfinite(p).all() for p in model.parameters()) == (check_every == 1)


def comparable_weights(run):
    payload = load_checkpoint(run)
    return {**payload["state_dict"], **{f"train.{k}": v for k, v in payload["train_state_dict"].items()}}


def test_a_run_checked_every_n_steps_resumes_bit_identically(tmp_path):
    """Stopped by SIGTERM at step 1 of epoch 2 (no multiple of 3: the sums on the device are read back for the
    checkpoint), then resumed: the same weights, weight average and metrics as a run never stopped."""
    config = build_config(
        {
            "dataset": "mnist-sample",
            "model": "cnn-bn-8-24",
            "epochs": 2,
            "batch_size": 60,
            "train_subset": 420,
            "augment": "affine",
            "ema": 0.9,
            "check_every": 3,
            "progress": False,
            "out": str(tmp_path / "whole"),
        }
    )
    fit(config, log=lambda line: None)

    def stop_after_epoch_1(line: str) -> None:
        if line.startswith("Epoch 1:"):
            os.kill(os.getpid(), signal.SIGTERM)  # fit's handler turns it into a checkpoint after the next step

    stopped = dataclasses.replace(config, out=str(tmp_path / "stopped"))
    with pytest.raises(TrainingInterrupted):
        fit(stopped, log=stop_after_epoch_1)
    assert load_checkpoint(stopped.out)["epoch_state"]["step"] == 1
    resume_run(stopped.out, log=lambda line: None)
    whole, again = comparable_weights(config.out), comparable_weights(stopped.out)
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    timing = lambda rows: [{k: v for k, v in r.items() if "second" not in k and "per_s" not in k} for r in rows]
    assert timing(read_metrics(stopped.out)) == timing(read_metrics(config.out))


def test_weight_average_follows_its_warmup_formula_with_the_count_on_the_cpu():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.5)
    expected = model[0].weight.detach().double().clone()
    for n in range(4):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        model[1].num_batches_tracked += 5
        average.update_parameters(model)
        weight = 1.0 if n == 0 else 1.0 - min((1 + n) / (10 + n), 0.5)
        expected += weight * (model[0].weight.detach().double() - expected)
    assert torch.allclose(average.module[0].weight.double(), expected, atol=1e-6)
    assert int(average.module[1].num_batches_tracked) == 20  # counters are copied, not averaged
    assert average.n_averaged.device.type == "cpu" and int(average.n_averaged) == 4


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, monkeypatch):
    """One epoch of 4 full batches and a short one (two compiled shapes), compiled against eager: the same losses
    and weights up to float rounding (inductor fuses and reorders arithmetic). The lecture's SGD, whose steps are
    proportional to the gradients (Adam's are not: it blows a rounding difference in a near-zero gradient up to
    a step of the full learning rate). A cold compile takes about 40 s here, a warm one (inductor's disk cache) 6 s."""
    if not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("torch.compile's CPU backend (inductor) needs a C compiler, and none is on PATH")
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)  # no worker pool to start for two graphs
    runs = {}
    for mode in ("off", "default"):
        config = build_config(
            {
                "dataset": "mnist-sample",
                "model": "cnn-bn-8-24",
                "epochs": 1,
                "batch_size": 128,
                "train_subset": 600,
                "recipe": "lecture",
                "compile": mode,
                "progress": False,
                "out": str(tmp_path / mode),
            }
        )
        runs[mode] = fit(config, log=lambda line: None)
    eager, compiled = runs["off"], runs["default"]
    assert compiled.compile_seconds > 0 and "compile_seconds" in compiled.history[0]
    for key in ("train_loss", "test_loss"):
        assert compiled.history[0][key] == pytest.approx(eager.history[0][key], rel=1e-4)
    a, b = load_checkpoint(eager.run_dir)["state_dict"], load_checkpoint(compiled.run_dir)["state_dict"]
    assert set(a) == set(b)  # the compiled wrapper leaves no trace in the checkpoint
    largest = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert largest < 1e-4, f"weights differ by up to {largest:.2g}"
