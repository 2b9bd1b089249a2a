"""Crash-safe checkpoints and exact resume, safe loading, guarded numerics, fuzzed IDX input."""

import gzip
import os
import pickle
import signal
import subprocess
import sys
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
from conftest import idx_bytes

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
    payload["model"]["name"] = "inception"
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
