"""Hostile and careless input to every CLI command: one clear line on stderr, a non-zero exit, no traceback,
nothing of the user's lost. Extend the tables when a command or an input kind is added."""

import os
import shutil
import subprocess
import sys
import threading

import pytest
import torch

from cnnlab.cli import main
from conftest import assert_one_line_error, draw_digit, idx_bytes, run_cli, write_idx_dataset


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of the session's trained run that a test may damage."""
    return shutil.copytree(trained_run, tmp_path / "run")


@pytest.fixture
def toml(tmp_path):
    def write(text: bytes | str):
        path = tmp_path / "c.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return write


@pytest.mark.parametrize(
    "argv, message",
    [
        (["models", "zzz*"], "no model matches 'zzz*'"),
        (["models", "--input", "1x0x28"], "expected CxHxW"),
        (["summary", "cnn", "--input", "1x1x1"], "cannot be built for input 1x1x1"),
        (["summary", "densenet-bc-22-8", "--input", "1x1x1"], "cannot take input 1x1x1"),
        (["summary", "zzz"], "unknown model 'zzz'"),
        (["train", "--lr", "1e308"], "--lr must be in (0, 1e+30], got 1e+308"),
        (["train", "--lr", "nan"], "--lr must be in"),
        (["train", "--seed", str(10**29)], "--seed must be between 0 and 4,294,967,295"),
        (["train", "--seed", "-1"], "--seed must be between"),
        (["train", "--width", "100000", "--model", "resnet-20"], "--width must be between 1 and 4096"),
        (["train", "--batch-size", "0"], "--batch-size must be between"),
        (["train", "--momentum", "0.5"], "--momentum has no effect with the one-cycle schedule"),
        (["train", "--patience", "2"], "give --val-split N too"),
        (["train", "--nproc", "0"], "--nproc must be at least 1"),
        (["train", "--compile", "fast"], "unknown --compile mode 'fast'"),
        (["train", "--augment", "flip"], "unknown augmentation 'flip'"),
        (["bench", "--inference", "/nonexistent", "--batches", "0,64"], "expected sizes between 1 and"),
        (["bench", "--inference", "/nonexistent"], "no checkpoint at"),
        (["bench", "--gpu", "--device", "cuda"], "--device cuda: no CUDA GPU"),
        (["train", "--resume", "/nonexistent"], "no checkpoint at"),
        (["evaluate", "/nonexistent"], "no checkpoint at"),
        (["evaluate", "/dev/null"], "no checkpoint at"),
        (["serve", "/nonexistent", "--port", "-1"], "--port: must be between 1 and 65,535"),
        (["serve", "/nonexistent", "--port", "70000"], "--port: must be between 1 and 65,535"),
        (["shape", "--input", "5", "--kernel", "7"], "output would be empty"),
        (["params", "--input", "1x4x4", "--out-channels", "2", "--kernel", "9"], "does not fit"),
        (["viz", "/nonexistent", "--what", "curves"], "does not exist"),
        (["export", "/nonexistent"], "no checkpoint at"),
        (["predict", "/nonexistent", "x.png"], "no checkpoint at"),
        (["train", "--dataset", "folder"], "--dataset folder needs --data-dir DIR"),
        (["train", "--dataset", "folder", "--data-dir", "/nonexistent"], "data folder /nonexistent does not exist"),
        (["train", "--dataset", "folder", "--data-dir", "/tmp", "--image-size", "0x5"], "--image-size must be HxW"),
        (["train", "--dataset", "folder", "--data-dir", "/tmp", "--image-size", "32x32x3"], "--image-size must be HxW"),
        (["train", "--dataset", "folder", "--data-dir", "/tmp", "--image-size", "99999"], "--image-size must be HxW"),
        (
            ["train", "--dataset", "folder", "--data-dir", "/tmp", "--test-split", "1.5"],
            "--test-split must be a fraction",
        ),
        (
            ["train", "--dataset", "folder", "--data-dir", "/tmp", "--test-split", "nan"],
            "--test-split must be a fraction",
        ),
        (["train", "--channels", "2"], "--channels: expected 1, 3 or auto, got '2'"),
        (["train", "--image-size", "32x32"], "are for --dataset folder"),
        (["train", "--dataset", "cifar10"], "cifar10 is not in"),
        (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent"], "data directory /nonexistent does not exist"),
        (["train", "--dataset", "cifar10", "--data-dir", "/tmp"], "lacks the cifar10 binary files"),
        (["train", "--augment", "flip"], "unknown augmentation 'flip'"),
        (["train", "--schedule", "steps"], "unknown schedule 'steps'"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    assert_one_line_error(*run_cli(argv, capsys), message)


@pytest.mark.parametrize(
    "text, message",
    [
        ('width = "8"', "width must be int, got '8'"),
        ("epochs = [1, 2]", "epochs must be int, got [1, 2]"),
        ("data_dir = true", "data_dir must be str, got True"),
        ("lr = true", "lr must be float, got True"),
        (b"epochs = 3\n\xff\xfe", "not UTF-8 text"),
        ("epochs = ", "config file"),
        ("model = 'cnn'\nunknown = 1", "unknown setting 'unknown'"),
    ],
)
def test_bad_config_files(text, message, toml, capsys):
    assert_one_line_error(*run_cli(["train", "--config", toml(text), "--print-config"], capsys), message)


def test_memory_is_estimated_before_a_model_is_built(capsys, monkeypatch):
    import cnnlab.memory

    monkeypatch.setattr(cnnlab.memory, "available_memory", lambda: 2**30)  # a 1 GiB machine
    code, err = run_cli(
        ["train", "--dataset", "mnist-sample", "--model", "resnet-20", "--width", "512", "--epochs", "1"], capsys
    )
    assert_one_line_error(code, err, "training it needs about")


@pytest.mark.parametrize(
    "sets, message",
    [
        (dict(n_train=0), "0 training and 20 test images"),
        (dict(n_test=0), "60 training and 0 test images"),
    ],
)
def test_idx_sets_that_cannot_train_are_refused_before_training(sets, message, tmp_path, capsys):
    folder = write_idx_dataset(tmp_path / "d", **sets)
    code, err = run_cli(["train", "--dataset", "kmnist", "--data-dir", folder, "--out", tmp_path / "r"], capsys)
    assert_one_line_error(code, err, message)


def write_idx_images(folder, train_shape, test_shape):
    import numpy as np

    folder.mkdir()
    for prefix, shape in (("train", train_shape), ("t10k", test_shape)):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros(shape, dtype=np.uint8)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(shape[0]) % 10))
    return folder


def test_idx_test_images_of_another_size_or_too_small_images(tmp_path, capsys):
    other = write_idx_images(tmp_path / "other", (20, 28, 28), (10, 32, 32))
    code, err = run_cli(["train", "--dataset", "kmnist", "--data-dir", other, "--out", tmp_path / "r1"], capsys)
    assert_one_line_error(code, err, "test images are 1x32x32 but training images are 1x28x28")
    tiny = write_idx_images(tmp_path / "tiny", (20, 1, 1), (10, 1, 1))
    code, err = run_cli(["train", "--dataset", "kmnist", "--data-dir", tiny, "--out", tmp_path / "r2"], capsys)
    assert_one_line_error(code, err, "cannot be built for input 1x1x1")


def test_crafted_checkpoints_through_resume(run, capsys):
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    cases = {
        "another model's weights": {
            **good,
            "state_dict": {"w": torch.zeros(3)},
            "train_state_dict": None,
            "epoch_state": {"step": 1, "loss_sum": 0.0, "correct": 0, "seen": 1, "seconds": 0},
        },
        "no config": {k: v for k, v in good.items() if k != "config"},
        "optimizer of another shape": {
            **good,
            "optimizer": {"state": {}, "param_groups": []},
            "epoch_state": {"step": 1, "loss_sum": 0.0, "correct": 0, "seen": 1, "seconds": 0},
        },
    }
    for name, payload in cases.items():
        torch.save(payload, run / "checkpoint.pt")
        code, err = run_cli(["train", "--resume", run, "--no-progress"], capsys)
        assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)


def test_corrupt_and_unsafe_checkpoints_get_different_messages(run, capsys):
    (run / "checkpoint.pt").write_text("just some text")
    code, err = run_cli(["evaluate", run], capsys)
    assert_one_line_error(code, err, "not a readable checkpoint")
    assert "code" not in err

    class Exploit:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"format": "cnnlab-checkpoint/1", "x": Exploit()}, run / "checkpoint.pt")
    code, err = run_cli(["evaluate", run], capsys)
    assert_one_line_error(code, err, "refused: it asks to load Python code")


def test_corrupt_files_inside_runs(run, tmp_path, capsys):
    (run / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
    code, err = run_cli(["viz", run, "--what", "curves", "--out", tmp_path / "c.png"], capsys)
    assert_one_line_error(code, err, "line 2 is not a JSON object")
    sweep = tmp_path / "sweep"
    shutil.copytree(run, sweep / "cnn")
    (sweep / "cnn" / "config.json").write_text("{broken")
    code, err = run_cli(["compare", "--models", "cnn", "--dataset", "mnist-sample", "--out", sweep], capsys)
    assert_one_line_error(code, err, "config.json: corrupt")


@pytest.mark.parametrize("batch", ["0", "-1"])
def test_evaluate_batch_size(run, batch, capsys):
    assert_one_line_error(*run_cli(["evaluate", run, "--batch-size", batch], capsys), "--batch-size")


def test_outputs_to_impossible_places(run, tmp_path, capsys):
    draw_digit("3").save(tmp_path / "three.png")
    cases = [
        (["export", run, "--out", tmp_path / "missing" / "m.onnx"], "does not exist"),
        (["export", run, "--out", tmp_path], "it is a folder"),
        (["export", run, "--format", "torchscript", "--out", "/dev/null"], "not a regular file"),
        (["predict", run, tmp_path / "three.png", "--show-input", tmp_path / "missing" / "s.png"], "cannot write"),
        (["viz", run, "--what", "filters", "--out", tmp_path / "missing" / "f.png"], "cannot write"),
        (["viz", run, "--what", "filters", "--out", tmp_path], "it is a folder"),
    ]
    for argv, message in cases:
        assert_one_line_error(*run_cli(argv, capsys), message)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_predict_refuses_devices_and_pipes_without_reading_them(run, tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    codes = []
    worker = threading.Thread(
        target=lambda: codes.append(main(["predict", str(run), "/dev/zero", "/dev/urandom", str(fifo), "--json"])),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    assert codes == [1], "predict blocked on a device or a pipe"
    out = capsys.readouterr().out
    assert out.count("not a regular file") == 3


@pytest.fixture
def tiny_disk(small_disk):
    return small_disk("16k")


def test_export_onto_a_full_disk_is_one_line_and_leaves_no_temp_file(run, tiny_disk):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "export",
            str(run),
            "--format",
            "torchscript",
            "--out",
            str(tiny_disk / "m.pt"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "No space left on device" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and list(tiny_disk.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "mnist-sample", "--lr", "1e308"],
        ["models", "zzz*"],
        ["train", "--config", "/dev/zero", "--print-config"],
    ],
)
def test_no_traceback_from_a_real_process(argv):
    result = subprocess.run([sys.executable, "-m", "cnnlab", *argv], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
