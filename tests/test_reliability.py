"""Crash-safe checkpoints and exact resume, safe loading, guarded numerics, fuzzed IDX input."""

import gzip
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.data.idx import DataError, read_idx
from cnnlab.engine.checkpoint import load_checkpoint, read_metrics
from conftest import assert_one_line_error, draw_digit, idx_bytes, run_cli

TRAIN = [
    sys.executable,
    "-m",
    "cnnlab",
    "train",
    "--dataset",
    "mnist-sample",
    "--epochs",
    "3",
    "--seed",
    "3",
    "--no-progress",
]


def weights(run):
    """The saved weights, and with --ema the training weights beside the average."""
    payload = load_checkpoint(run)
    return {**payload["state_dict"], **{f"train.{k}": v for k, v in (payload["train_state_dict"] or {}).items()}}


def comparable(rows):
    return [{k: v for k, v in r.items() if "second" not in k and "per_s" not in k} for r in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    subprocess.run([*TRAIN, "--out", str(out)], check=True, capture_output=True)
    return out


def assert_same_run(a, b):
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ from the uninterrupted run"
    assert comparable(read_metrics(a)) == comparable(read_metrics(b))


def start_and_wait_for_a_checkpoint(out, every=5, extra=()):
    """Start training with step checkpoints; return once the first one is on disk."""
    process = subprocess.Popen(
        [*TRAIN, *extra, "--out", str(out), "--checkpoint-every", str(every)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (out / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.01)
    return process


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_resume_is_bit_identical(uninterrupted, tmp_path, sig, code):
    out = tmp_path / "run"
    process = start_and_wait_for_a_checkpoint(out, every=50)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "resume with: cnnlab train --resume" in stderr and len(stderr.strip().splitlines()) == 1
    assert load_checkpoint(out)["epoch_state"] is not None  # stopped part-way through an epoch
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(uninterrupted, out)


@pytest.mark.slow
def test_resume_with_augmentation_and_ema_is_bit_identical(tmp_path):
    augmented = ["--augment", "affine", "--model", "cnn-bn-8-24", "--ema", "0.99"]
    reference = tmp_path / "reference"
    subprocess.run([*TRAIN, *augmented, "--out", str(reference)], check=True, capture_output=True)
    out = tmp_path / "run"
    process = start_and_wait_for_a_checkpoint(out, every=40, extra=augmented)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(reference, out)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3, 0.6])
def test_kill_9_at_any_moment_loses_only_the_work_since_the_last_checkpoint(uninterrupted, tmp_path, delay):
    """A checkpoint every step, so that some kills land in the middle of a checkpoint write."""
    out = tmp_path / "run"
    process = start_and_wait_for_a_checkpoint(out, every=1)
    time.sleep(delay)
    process.kill()
    process.wait()
    payload = load_checkpoint(out)  # whatever the moment, the checkpoint on disk is whole
    assert payload["epoch"] < 3 and payload["epoch_state"] is not None  # killed mid-run (it takes seconds)
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(uninterrupted, out)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": "cnnlab-checkpoint/1", "payload": Exploit()}, run / "checkpoint.pt")
    with pytest.raises(CnnlabError, match="refused"):
        load_checkpoint(run)
    assert main(["evaluate", str(run)]) == 1
    assert not marker.exists()
    (run / "checkpoint.pt").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CnnlabError):
        load_checkpoint(run)
    assert not marker.exists()


def test_broken_and_foreign_checkpoints_are_one_line_errors(tmp_path, uninterrupted):
    good = (uninterrupted / "checkpoint.pt").read_bytes()
    cases = {"truncated": good[: len(good) // 2], "not a checkpoint": b"hello", "empty": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CnnlabError) as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value)
    payload = torch.load(uninterrupted / "checkpoint.pt", weights_only=True)
    payload["model"]["name"] = payload["config"]["model"] = "inception"  # a cnn's weights, named another model
    torch.save(payload, tmp_path / "other.pt")
    from cnnlab.engine.run import open_run

    with pytest.raises(CnnlabError, match="do not fit model inception"):
        open_run(tmp_path / "other.pt")
    torch.save({"format": "something else"}, tmp_path / "foreign.pt")
    with pytest.raises(CnnlabError, match="not a cnnlab checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    payload = torch.load(uninterrupted / "checkpoint.pt", weights_only=True)
    next(iter(payload["state_dict"].values()))[0] = float("nan")  # would make every prediction NaN (a 500 in serve)
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(CnnlabError, match="weights are not finite"):
        open_run(tmp_path / "nan.pt")
    assert main(["evaluate", str(tmp_path / "nan.pt")]) == 1  # one line, as every command that opens a run


def test_nan_loss_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--dataset",
            "mnist-sample",
            "--epochs",
            "3",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--schedule",
            "constant",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "loss became" in err and "learning rate" in err and "lower --lr" in err
    assert len(err.strip().splitlines()) == 1


def test_unwritable_output_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["train", "--dataset", "mnist-sample", "--epochs", "1", "--out", str(locked / "run")]) == 1


@pytest.fixture
def tiny_disk(small_disk):
    """A 96 KiB tmpfs: room for the config and metrics, not for a checkpoint beside a temp file."""
    return small_disk("96k")


def test_disk_full_is_a_clear_error_and_leaves_no_partial_file(tiny_disk, capsys):
    out = tiny_disk / "run"
    code = main(
        [
            "train",
            "--dataset",
            "mnist-sample",
            "--model",
            "inception",
            "--epochs",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert not list(out.glob("*.tmp")) and not (out / "checkpoint.pt").exists()


def test_deterministic_runs_repeat_exactly_and_settings_are_restored(tmp_path):
    threads = torch.get_num_threads()
    for name in ("a", "b"):
        assert (
            main(
                [
                    "train",
                    "--dataset",
                    "mnist-sample",
                    "--epochs",
                    "1",
                    "--deterministic",
                    "--threads",
                    "1",
                    "--no-progress",
                    "--out",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
        assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == threads
    assert_same_run(tmp_path / "a", tmp_path / "b")


VALID = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=64),
        st.builds(
            lambda i, b: VALID[:i] + bytes([b]) + VALID[i + 1 :], st.integers(0, len(VALID) - 1), st.integers(0, 255)
        ),
        st.builds(lambda n: VALID[:n], st.integers(0, len(VALID))),
    ),
    compress=st.booleans(),
)
def test_idx_reader_on_random_and_mutated_bytes(tmp_path, data, compress):
    path = tmp_path / "fuzz"
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        array = read_idx(path, 3)
    except DataError:
        return
    assert array.ndim == 3 and array.size * array.itemsize == len(data) - 4 - 12


PART_WAY = {"step": 3, "loss_sum": 1.0, "correct": 1, "seen": 3, "seconds": 0.1}  # an epoch stopped part-way
TAMPERED = {  # what an edited checkpoint may carry -> the field the one-line error names
    "config is a list": (lambda p: p.update(config=[1]), "config is list: expected a table of settings"),
    "step is text": (lambda p: p.update(epoch_state={**PART_WAY, "step": "x"}), "epoch_state is {'step': 'x'"),
    "epoch is negative": (lambda p: p.update(epoch=-5, epoch_state=PART_WAY), "epoch is -5: expected a whole number"),
    "mean is NaN": (lambda p: p["dataset"].update(mean=float("nan")), "dataset.mean is nan: expected 1 finite"),
    "mean is infinite": (lambda p: p["dataset"].update(mean=float("inf")), "dataset.mean is inf"),
    "std is zero": (lambda p: p["dataset"].update(std=0.0), "dataset.std is 0.0: expected 1 finite number above 0"),
    "std is negative": (lambda p: p["dataset"].update(std=-0.3), "dataset.std is -0.3"),
    "std is NaN": (lambda p: p["dataset"].update(std=float("nan")), "dataset.std is nan"),
    "classes is text": (lambda p: p["dataset"].update(classes="0123456789"), "dataset.classes is '0123456789'"),
    "dataset name is a number": (lambda p: p["dataset"].update(name=5), "dataset.name is 5"),
    "channels is a float": (lambda p: p["dataset"].update(in_channels=1.0), "dataset.in_channels is 1.0"),
    "model name is a number": (lambda p: p["model"].update(name=7), "model.name is 7"),
    "width is text": (lambda p: p["model"].update(width="8"), "model.width is '8'"),
    "metrics rows are numbers": (lambda p: p.update(metrics=[1, 2, 3]), "metrics row 1"),
    "best epoch past the end": (lambda p: p.update(best_epoch=9), "best_epoch is 9"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_checkpoint_is_one_line_naming_the_field_in_every_command(case, trained_run, tmp_path, capsys):
    """evaluate, predict, export, the lab (Predictor), resume and a sweep that would reuse the run all open it
    through the one check: each says which file and which field, where today some crash, answer NaN or pass."""
    from cnnlab.inference.predict import Predictor

    sweep = tmp_path / "sweep"
    run = shutil.copytree(trained_run, sweep / "cnn")
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    change, message = TAMPERED[case]
    change(payload)
    torch.save(payload, run / "checkpoint.pt")
    draw_digit("3").save(tmp_path / "three.png")
    commands = [
        ["evaluate", run],
        ["predict", run, tmp_path / "three.png"],
        ["export", run, "--out", tmp_path / "m.onnx"],
        ["train", "--resume", run, "--no-progress"],
        ["compare", "--models", "cnn", "--dataset", "mnist-sample", "--epochs", "3", "--no-progress", "--out", sweep],
    ]
    for argv in commands:
        code, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, f"{run / 'checkpoint.pt'}: {message}")
    with pytest.raises(CnnlabError, match="the checkpoint is damaged or was edited"):
        Predictor(run)
    assert not (tmp_path / "m.onnx").exists()


def test_export_fails_its_check_when_the_outputs_are_nan(trained_run, tmp_path, capsys):
    """Finite weights so large that every output overflows to NaN: NaN > tolerance is false, so a check written
    that way passed with "difference nan"; the check asks for a difference within the tolerance instead."""
    run = shutil.copytree(trained_run, tmp_path / "run")
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    payload["state_dict"] = {k: v * 1e30 if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    torch.save(payload, run / "checkpoint.pt")
    code, err = run_cli(["export", run, "--out", tmp_path / "m.onnx"], capsys)
    assert_one_line_error(code, err, "differs from PyTorch by nan")
    assert not (tmp_path / "m.onnx").exists()


def test_a_config_json_that_is_a_pipe_is_not_read(tmp_path, capsys):
    """Every reader of config.json reads it bounded: deciding whether a folder is a run once read a FIFO
    named config.json to its end, which never comes."""
    folder = tmp_path / "out"
    folder.mkdir()
    os.mkfifo(folder / "config.json")
    results = []
    worker = threading.Thread(target=lambda: results.append(run_cli(["train", "--out", folder], capsys)), daemon=True)
    worker.start()
    worker.join(60)
    assert results, "train blocked reading a pipe named config.json"
    code, err = results[0]
    assert code == 1 and "is not empty and is not a cnnlab run (config.json)" in err, err
