"""Run folders keep users' files: the overwrite rule, the run lock, resume checks, sweeps that reuse or refuse."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from cnnlab.cli import main
from cnnlab.engine.checkpoint import load_checkpoint, read_metrics
from conftest import assert_one_line_error, draw_digit, run_cli

TRAIN = ["train", "--dataset", "mnist-sample", "--epochs", "1", "--no-progress"]


def train(out, *extra) -> int:
    return main([*TRAIN, "--out", str(out), *extra])


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    assert train(out) == 0
    return out


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_refuses_a_folder_that_is_not_a_run_and_lists_what_would_be_lost(tmp_path, capsys):
    project = tmp_path / "thesis"
    (project / "src").mkdir(parents=True)
    (project / "config.json").write_text('{"chapters": 5}')
    (project / "thesis.tex").write_text("\\chapter{CNNs}")
    (project / "src" / "main.py").write_text("print('mine')")
    before = snapshot(project)
    assert train(project, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "not a cnnlab run" in err and "thesis.tex" in err and "src" in err and len(err.splitlines()) == 1
    assert snapshot(project) == before


def test_overwrite_refuses_a_run_holding_the_users_own_files(finished_run, capsys):
    (finished_run / "notes.txt").write_text("learning rate 0.004 worked")
    before = snapshot(finished_run)
    assert train(finished_run, "--overwrite") == 1
    assert "notes.txt" in capsys.readouterr().err
    assert snapshot(finished_run) == before


def test_bad_settings_leave_the_old_run_untouched(finished_run, capsys):
    (finished_run / "model.onnx").write_bytes(b"exported earlier")
    before = snapshot(finished_run)
    assert train(finished_run, "--overwrite", "--width", "16") == 1  # the lecture cnn has no width
    assert "does not take 'width'" in capsys.readouterr().err
    assert snapshot(finished_run) == before


def test_a_new_run_that_fails_before_its_first_checkpoint_puts_the_old_run_back(finished_run, capsys):
    before = snapshot(finished_run)
    code = train(finished_run, "--overwrite", "--optimizer", "sgd", "--lr", "1e30", "--schedule", "constant")
    assert code == 1 and "no checkpoint had been written yet" in capsys.readouterr().err
    assert snapshot(finished_run) == before
    assert [p.name for p in finished_run.parent.iterdir()] == ["run"]  # nothing left beside it


def test_overwrite_replaces_a_run_with_a_new_one(finished_run):
    old = load_checkpoint(finished_run)["config"]["seed"]
    assert train(finished_run, "--overwrite", "--seed", "5") == 0
    assert (old, load_checkpoint(finished_run)["config"]["seed"]) == (0, 5)
    assert [p.name for p in finished_run.parent.iterdir()] == ["run"]


def test_out_that_is_a_file_or_a_device_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("keep me")
    assert train(tmp_path / "file") == 1 and (tmp_path / "file").read_text() == "keep me"
    assert train("/dev/null", "--overwrite") == 1
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert capsys.readouterr().err.count("is a file, not a folder") == 2


def test_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        assert train(tmp_path / "run") == 0
    finally:
        os.umask(previous)
    assert all((p.stat().st_mode & 0o777) == 0o644 for p in (tmp_path / "run").iterdir())


def start_training(out, *extra):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnlab",
            *TRAIN,
            "--epochs",
            "50",
            "--out",
            str(out),
            "--checkpoint-every",
            "5",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while not (out / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    return process


@pytest.mark.slow
def test_a_run_being_written_is_locked_against_a_second_writer(tmp_path, capsys):
    out = tmp_path / "run"
    process = start_training(out)
    try:
        for argv in ([*TRAIN, "--out", str(out), "--overwrite"], ["train", "--resume", str(out), "--no-progress"]):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert f"in use by another cnnlab process (PID {process.pid})" in err and len(err.splitlines()) == 1
        assert (out / "checkpoint.pt").exists()
    finally:
        process.kill()  # kill -9 leaves the lock file, but the kernel has dropped the lock
        process.wait()
    assert main(["train", "--resume", str(out), "--no-progress", "--epochs", "2"]) == 1  # one-cycle: cannot extend
    assert "cannot be extended" in capsys.readouterr().err
    resumed = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", "--resume", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert resumed.stdout.readline().startswith("Resuming")  # it holds the lock: the stale one did not block it
    time.sleep(0.5)
    resumed.send_signal(signal.SIGTERM)
    assert resumed.wait(60) == 143, resumed.stderr.read()


def test_a_checkpoint_from_another_run_is_refused(tmp_path, capsys):
    assert train(tmp_path / "cnn", "--checkpoint-every", "10") == 0
    assert train(tmp_path / "mlp", "--model", "mlp", "--epochs", "2") == 0
    payload = torch.load(tmp_path / "mlp" / "checkpoint.pt", weights_only=True)
    payload["epoch"], payload["metrics"] = 0, []
    payload["epoch_state"] = {"step": 3, "loss_sum": 1.0, "correct": 1, "seen": 3, "seconds": 0.1}
    torch.save(payload, tmp_path / "cnn" / "checkpoint.pt")  # an mlp checkpoint in a cnn run
    assert main(["train", "--resume", str(tmp_path / "cnn")]) == 1
    assert "does not belong to its config.json" in capsys.readouterr().err


def test_resume_refuses_settings_it_cannot_change_and_extends_a_constant_rate_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--schedule", "constant") == 0
    assert main(["train", "--resume", str(out), "--lr", "1", "--model", "mlp"]) == 1
    err = capsys.readouterr().err
    assert "cannot change --lr, --model" in err
    assert main(["train", "--resume", str(out)]) == 1
    assert "already finished its 1 epochs; pass --epochs N to extend it" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]


def test_validation_split_selects_the_epoch_and_stops_early(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        train(out, "--epochs", "4", "--val-split", "1000", "--patience", "1", "--schedule", "constant", "--lr", "0.02")
        == 0
    )
    rows = read_metrics(out)
    best = max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]
    assert load_checkpoint(out / "best.pt")["epoch"] == best  # chosen by validation, never by test
    assert len(rows) == 4 or rows[-1]["epoch"] - best == 1  # stopped one epoch after the best
    printed = capsys.readouterr().out
    assert f"(epoch {best}, chosen on the validation split)" in printed
    assert "3,000 train / 1,000 validation / 1,000 test images" in printed
    from cnnlab.engine.run import open_run

    assert open_run(out).epoch == best  # predict, serve and export use the selected epoch


def test_validation_split_is_stratified_disjoint_and_the_same_for_every_seed():
    from cnnlab.data.datasets import load_dataset

    data = load_dataset("mnist-sample")
    split = data.with_validation(500)
    assert torch.bincount(split.val_labels).tolist() == [50] * 10
    assert len(split.train_labels) + len(split.val_labels) == len(data.train_labels)
    every = torch.cat([split.train_images, split.val_images]).flatten(1)
    assert len(torch.unique(every, dim=0)) == len(torch.unique(data.train_images.flatten(1), dim=0))
    test = {bytes(image.numpy()) for image in data.test_images}
    assert not test & {bytes(image.numpy()) for image in split.val_images}
    assert torch.equal(data.with_validation(500).val_images, split.val_images)


def test_sweeps_reuse_or_refuse_and_replace_only_with_overwrite(tmp_path, capsys):
    sweep = [
        "compare",
        "--models",
        "cnn",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    assert main(sweep) == 0
    (tmp_path / "cnn" / "notes.txt").write_text("mine")
    assert main([*sweep, "--seed", "3"]) == 1  # other settings, the user's notes inside: refused
    assert (tmp_path / "cnn" / "notes.txt").read_text() == "mine"
    (tmp_path / "cnn" / "notes.txt").unlink()
    capsys.readouterr()
    assert main([*sweep, "--seed", "3"]) == 1 and "--overwrite" in capsys.readouterr().err
    assert main([*sweep, "--seed", "3", "--overwrite"]) == 0
    assert load_checkpoint(tmp_path / "cnn")["config"]["seed"] == 3
    assert main(["compare", "--models", "cnn,zzz", "--out", str(tmp_path / "other")]) == 1  # before any training
    assert not (tmp_path / "other" / "cnn").exists()


REOPEN = "is one of the files cnnlab needs to reopen the run"


def test_outputs_never_replace_a_users_file_nor_the_runs_own(trained_run, tmp_path, capsys):
    """`export --out RUN/checkpoint.pt` (and predict's, viz's and pool's outputs) replaced the run's checkpoint,
    after which no command could open the run, and replaced any user's file silently. A run's own files are
    refused always, an existing file without --overwrite; the pictures and exports cnnlab names inside a run
    folder are still replaced."""
    run = shutil.copytree(trained_run, tmp_path / "run")
    own = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    three = tmp_path / "three.png"
    draw_digit("3").save(three)
    cases = [
        (
            ["export", run, "--out", run / "checkpoint.pt"],
            f"refusing to write {run / 'checkpoint.pt'}: checkpoint.pt {REOPEN}",
        ),
        (["export", run, "--format", "torchscript", "--out", run / "best.pt"], REOPEN),  # would become the run's epoch
        (["predict", run, three, "--show-input", run / "checkpoint.pt"], REOPEN),
        (["viz", run, "--what", "filters", "--out", run / "config.json"], REOPEN),
        (["pool", "--run", run, "--out", run / "metrics.jsonl"], REOPEN),
        (
            ["export", run, "--out", mine],
            f"{mine} already exists; pass --overwrite to replace it, or choose another name",
        ),
        (["predict", run, three, "--show-input", mine], f"{mine} already exists"),
        (["viz", run, "--what", "filters", "--out", mine], f"{mine} already exists"),
        (["pool", "--run", run, "--out", mine], f"{mine} already exists"),
    ]
    for argv, message in cases:
        assert_one_line_error(*run_cli(argv, capsys), message)
        if REOPEN in message:  # --overwrite is for the user's own files, never the run's
            assert_one_line_error(*run_cli([*argv, "--overwrite"], capsys), REOPEN)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == own and mine.read_text() == "mine"
    for argv, _ in cases[5:]:
        mine.write_text("mine")
        assert run_cli([*argv, "--overwrite"], capsys)[0] == 0 and mine.read_bytes() != b"mine"
    for _ in range(2):  # cnnlab's own outputs inside the run: replaced, as always
        assert main(["viz", str(run), "--what", "filters"]) == 0
        assert main(["export", str(run)]) == 0
    assert main(["evaluate", str(run)]) == 0
