"""DDP on CPU: real processes under torchrun (gloo on 127.0.0.1), a short run on mnist-sample."""

import json
import subprocess
import sys

import pytest

from cnnlab.engine.checkpoint import read_metrics
from cnnlab.engine.snapshots import read_snapshots


@pytest.mark.slow
def test_three_processes_train_in_lockstep(tmp_path):
    out = tmp_path / "run"
    # 3 ranks: the 1,000 test images do not divide evenly (334 + 333 + 333)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "--nproc",
            "3",
            "--dataset",
            "mnist-sample",
            "--epochs",
            "2",
            "--batch-size",
            "96",
            "--no-progress",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    check = json.loads((out / "ddp.json").read_text())
    assert check["world_size"] == 3
    assert len(set(check["weight_sha256_per_rank"])) == 1  # identical weights on every rank
    assert sorted(check["test_images_per_rank"]) == [333, 333, 334]  # each test image counted once
    rows = read_metrics(out)
    assert len(rows) == 2 and rows[1]["train_loss"] < rows[0]["train_loss"]
    assert result.stdout.count("Test set:") == 2  # only rank 0 prints
    # only rank 0 writes: the same files as a single-process run, one metrics file, one last checkpoint
    names = sorted(p.name for p in out.iterdir())
    assert [name for name in names if not name.startswith("snapshot-")] == [
        ".cnnlab-run",
        ".lock",
        "checkpoint.pt",
        "config.json",
        "ddp.json",
        "metrics.jsonl",
    ]
    assert [s.step for s in read_snapshots(out)][:3] == [0, 1, 2]  # the lab's snapshots, rank 0's alone


@pytest.mark.slow
def test_an_error_on_the_ranks_ends_the_job_with_its_message(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "--nproc",
            "2",
            "--dataset",
            "mnist-sample",
            "--epochs",
            "2",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--schedule",
            "constant",
            "--no-progress",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "loss became" in result.stderr
