"""The CLI as a user runs it: train, evaluate, models, and one-line errors."""

import json
import platform
import subprocess
import sys

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.engine.checkpoint import load_checkpoint, read_metrics
from conftest import assert_one_line_error, run_cli


def train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    code = main(["train", "--dataset", "mnist-sample", "--epochs", "1", "--no-progress", "--out", str(out), *extra])
    return code, out


def test_train_writes_a_complete_run(tmp_path, capsys):
    code, out = train(tmp_path)
    assert code == 0
    printed = capsys.readouterr().out
    assert "Test set: Average loss: " in printed and "/1000 (" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "mnist-sample" and config["model"] == "cnn"
    (row,) = read_metrics(out)
    assert set(row) >= {"epoch", "train_loss", "test_loss", "test_accuracy", "seconds", "images_per_s"}
    assert row["test_accuracy"] > 80  # one epoch on 4,000 digits
    payload = torch.load(out / "checkpoint.pt", weights_only=True)  # plain data, no pickled code
    assert payload["model"]["name"] == "cnn" and payload["dataset"]["name"] == "mnist-sample"


def test_same_seed_same_metrics_and_weights(tmp_path):
    _, a = train(tmp_path, "--seed", "7", name="a")
    _, b = train(tmp_path, "--seed", "7", name="b")
    _, c = train(tmp_path, "--seed", "8", name="c")
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k} for r in rows]
    assert strip(read_metrics(a)) == strip(read_metrics(b)) != strip(read_metrics(c))
    wa, wb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lecture_recipe_is_the_lectures_settings(tmp_path, capsys):
    assert main(["train", "--recipe", "lecture", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["optimizer"], config["lr"], config["momentum"], config["batch_size"], config["epochs"]) == (
        "sgd",
        0.01,
        0.5,
        64,
        9,
    )
    assert main(["train", "--recipe", "lecture", "--epochs", "2", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2  # flags beat the recipe


def test_config_file_is_overridden_by_flags(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("epochs = 5\nlr = 0.5\n")
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--lr", "0.1", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["epochs"] == 5 and config["lr"] == 0.1
    (tmp_path / "bad.toml").write_text("epoch = 5\n")
    assert main(["train", "--config", str(tmp_path / "bad.toml"), "--print-config"]) == 1


def test_evaluate_prints_per_class_accuracy_and_confusion(tmp_path, capsys):
    _, out = train(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Test set: Average loss" in printed and "Confusion matrix" in printed
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 * 11  # header + 10 classes, in both tables
    # the confusion matrix sums to the test set
    matrix = [list(map(int, r.strip("|").split("|")[1:])) for r in rows[12:]]
    assert sum(map(sum, matrix)) == 1000


def test_existing_run_is_not_overwritten_silently(tmp_path):
    code, out = train(tmp_path)
    before = (out / "checkpoint.pt").read_bytes()
    code, _ = train(tmp_path)
    assert code == 1 and (out / "checkpoint.pt").read_bytes() == before
    code, _ = train(tmp_path, "--overwrite")
    assert code == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "resnet-9000"], "unknown model 'resnet-9000'"),
        (["train", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["train", "--epochs", "0"], "--epochs must be between 1 and 100,000, got 0"),
        (["train", "--epochs", "three"], "invalid int value"),
        (["train", "--optimizer", "lion"], "unknown optimizer"),
        (["train", "--ema", "1.5"], "--ema must be a decay in [0, 1), got 1.5"),
        (["train", "--precision", "fp16"], "unknown precision 'fp16'; choose auto, fp32 or bf16"),
        (["bench", "--repeats", "0"], "--repeats must be at least 1, got 0"),
        (["train", "--dataset", "mnist"], "--data-dir"),
        (["evaluate", "/nonexistent/run"], "no checkpoint at"),
        (["models", "--input", "28"], "expected CxHxW"),
        (["bench", "--seeds", "0,x"], "--seeds: expected whole numbers separated by commas, got '0,x'"),
        (["compare", "--models", ",,"], "--models: expected names separated by commas, got ',,'"),
        (["bench", "--models", "cnn,"], "--models: expected names separated by commas, got 'cnn,'"),
        *[
            (["bench", "--target", target], f"--target: expected a percentage above 0 and at most 100, got '{target}'")
            for target in ("nan", "inf", "-5", "0", "150")
        ],
    ],
)
def test_user_mistakes_are_one_line_errors(argv, message, capsys):
    """In this process: test_hostile's test_no_traceback_from_a_real_process covers the interpreter's own path."""
    assert_one_line_error(*run_cli(argv, capsys), message)


def test_debug_shows_the_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "--debug", "evaluate", "/nonexistent"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_models_lists_counts(capsys):
    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    assert "| cnn " in printed and "8,490" in printed and "934,400" in printed and "97,298" in printed


def test_cnn_reaches_98_5_percent_on_real_mnist_in_3_epochs(tmp_path, mnist_dir, capsys, monkeypatch):
    assert (
        main(["train", "--data-dir", str(mnist_dir), "--epochs", "3", "--no-progress", "--out", str(tmp_path / "r")])
        == 0
    )
    accuracy = read_metrics(tmp_path / "r")[-1]["test_accuracy"]
    assert accuracy >= 98.5
    # The run remembers where its data came from: evaluate needs no --data-dir (and no cache) to find it.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r")]) == 0
    assert f"({accuracy:.2f}%)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, prefix",
    [(["train", "--v", "500"], "--v 500"), (["train", "--npro", "2"], "--npro 2"), (["--deb", "models"], "--deb")],
)
def test_a_prefix_of_an_option_is_refused(argv, prefix, capsys):
    """argparse would read `--v 500` as --val-split 500, and --nproc passes the literal spelling on to torchrun."""
    assert_one_line_error(*run_cli(argv, capsys), f"error: unrecognized arguments: {prefix}")


def test_version_names_what_cnnlab_runs_on():
    result = subprocess.run([sys.executable, "-m", "cnnlab", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    import onnxruntime

    lines = result.stdout.splitlines()
    assert lines[0] == f"cnnlab {cnnlab.__version__}"
    assert (
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}"
        in lines[1]
    )
    assert lines[2].startswith("device: cpu")  # this machine has no GPU


def test_arithmetic_commands_do_not_import_the_heavy_modules():
    """Commands import what they run inside `run`: `cnnlab shape` answers without onnxruntime, FastAPI, matplotlib."""
    code = (
        "import sys; from cnnlab.cli import main; assert main(['shape', '--input', '28', '--kernel', '5']) == 0; "
        "print(sorted(m for m in ('onnxruntime', 'fastapi', 'uvicorn', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
