"""A learner's own network through the commands, as a learner runs them (`cnnlab.cli.main`): a run trained from
a script reopens from the run's copy of it, and runs that code only when it was trained here or the user says
--trust-code; compare takes scripts beside registered names.

Every model here is written as learners write theirs, with no registered model behind it, and trained tiny
(mnist-sample, 1 epoch, a training subset) to keep the suite fast.
"""

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.data.datasets import load_dataset
from cnnlab.engine.checkpoint import load_checkpoint
from cnnlab.engine.run import OpenOptions, open_run
from cnnlab.inference.serve import create_app, serving_in_thread
from conftest import assert_one_line_error, draw_digit, run_cli, write_idx_dataset
from test_cifar import cifar10_files, write_release
from test_lab import CHROMIUM, CHROMIUM_ARGS, draw_a_seven, stages_of
from test_lab_api import free_port
from test_onnx_graph import export as onnx_export
from test_onnx_graph import simple_graph, value
from test_own_network import FACTORY, LECTURE_CNN, SEQUENTIAL
from test_serve import lab_client

TINY = ["--dataset", "mnist-sample", "--epochs", "1", "--train-subset", "600", "--no-progress", "--seed", "0"]


class Learner:
    """A learner's folder (the working directory, where a script's top level would write) with its scripts,
    and the config folder where cnnlab records the code trained on this machine."""

    def __init__(self, root: Path):
        self.folder, self.config = root / "learner", root / "config"
        self.folder.mkdir(parents=True)

    def script(self, text: str, name: str) -> Path:
        path = self.folder / name
        path.write_text(textwrap.dedent(text))
        return path


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    """The lecture's script (lecture.py, which writes SIDE_EFFECT and prints if its top level runs), trained tiny
    into learner/run-lecture with a constant rate (so that --resume can extend it)."""
    learner = Learner(tmp_path_factory.mktemp("own-runs"))
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse isolation is not in place yet
        patch.setenv("XDG_CONFIG_HOME", str(learner.config))
        patch.setenv("XDG_CACHE_HOME", str(learner.folder.parent / "cache"))
        patch.setenv("CNNLAB_OFFLINE", "1")
        patch.chdir(learner.folder)
        learner.script(LECTURE_CNN, "lecture.py")
        command = ["train", "--model", "lecture.py", *TINY, "--schedule", "constant", "--out", "run-lecture"]
        assert main(command) == 0
    return learner


@pytest.fixture
def here(learner, monkeypatch):
    """This machine: where the lecture run was trained (its code is trusted), in the learner's folder."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(learner.config))
    monkeypatch.chdir(learner.folder)
    return learner


def copy_run(learner: Learner, tmp_path: Path, name: str = "run") -> Path:
    return shutil.copytree(learner.folder / "run-lecture", tmp_path / name)


def test_the_lecture_script_trains_without_running_and_its_run_keeps_a_copy(here):
    run, script = here.folder / "run-lecture", (here.folder / "lecture.py").read_bytes()
    assert not (here.folder / "SIDE_EFFECT").exists()
    digest = hashlib.sha256(script).hexdigest()
    assert (run / "model.py").read_bytes() == script
    assert json.loads((run / "config.json").read_text())["code"] == {
        "sha256": digest,
        "model": "class Net of lecture.py",
    }
    checkpoint = load_checkpoint(run)  # weights_only, every field checked
    assert checkpoint["model"] == {
        "name": "lecture.py",
        "width": None,
        "code": json.loads((run / "config.json").read_text())["code"],
    }
    assert (here.config / "cnnlab" / "trusted-code" / digest).is_file()


def test_the_run_reopens_from_its_copy_after_the_script_is_edited_then_deleted(here, tmp_path, capsys):
    run = copy_run(here, tmp_path)
    script = tmp_path / "lecture.py"
    shutil.copy(here.folder / "lecture.py", script)
    digit = tmp_path / "seven.png"
    draw_digit("7").save(digit)

    def answers() -> list[str]:
        assert main(["evaluate", str(run)]) == 0
        assert main(["predict", str(run), str(digit)]) == 0
        return capsys.readouterr().out.splitlines()

    before = answers()
    assert "Accuracy:" in before[1] and before[-1].startswith(f"{digit}: ")
    script.write_text("this is no longer Python (\n")
    assert answers() == before
    script.unlink()
    assert answers() == before
    for fmt in ("onnx", "torchscript"):
        assert main(["export", str(run), "--format", fmt, "--out", str(tmp_path / f"m.{fmt}")]) == 0
        assert "checked: largest difference from PyTorch" in capsys.readouterr().out
    for what in ("filters", "features"):
        assert main(["viz", str(run), "--what", what]) == 0
        assert (run / (f"{what}-0.png" if what == "features" else f"{what}.png")).is_file()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "rebuilt from the run's copy (model.py" in out and "Final test accuracy" in out


def tamper(run: Path, where: str, victim: Path) -> None:
    """model.py changed to write `victim` when its class is built (`where`: "class body" or "__init__"), and the
    recorded hashes (checkpoint and config.json) updated to match: a run folder crafted to look consistent."""
    text = (run / "model.py").read_text()
    if where == "class body":
        text = text.replace("class Net(nn.Module):\n", f"class Net(nn.Module):\n    open({str(victim)!r}, 'w')\n")
    else:
        text = text.replace(
            "super(Net, self).__init__()\n", f"super(Net, self).__init__()\n        open({str(victim)!r}, 'w')\n"
        )
    assert str(victim) in text
    (run / "model.py").write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    checkpoint["model"]["code"]["sha256"] = digest
    torch.save(checkpoint, run / "checkpoint.pt")
    config = json.loads((run / "config.json").read_text())
    config["code"]["sha256"] = digest
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("where", ["class body", "__init__"])
def test_a_tampered_run_does_not_run_its_code_without_trust_code(here, tmp_path, capsys, where):
    run, victim = copy_run(here, tmp_path), tmp_path / "PWNED"
    tamper(run, where, victim)
    digit = tmp_path / "seven.png"
    draw_digit("7").save(digit)
    for command in (
        ["evaluate", run],
        ["predict", run, digit],
        ["export", run, "--out", tmp_path / "m.onnx"],
        ["viz", run, "--what", "features"],
        ["pool", "--run", run],
        ["bench", "--inference", run, "--out", tmp_path / "bench"],
        ["train", "--resume", run, "--epochs", "2"],
    ):
        code, err = run_cli(command, capsys)
        assert_one_line_error(code, err, f"opening this run runs the Python code of {run / 'model.py'} (class Net")
        assert "which was not trained on this machine: read it, then add --trust-code to allow it" in err
        assert not victim.exists(), command
    with pytest.raises(CnnlabError, match="add --trust-code"):
        create_app([run])
    assert not victim.exists()
    assert main(["evaluate", str(run), "--trust-code"]) == 0  # the user's consent: it runs, and writes
    assert victim.exists()


def test_a_copy_changed_after_training_is_refused_and_code_trained_elsewhere_needs_consent(here, tmp_path, capsys):
    run = copy_run(here, tmp_path)
    (run / "model.py").write_text((run / "model.py").read_text() + "\n# edited\n")
    code, err = run_cli(["evaluate", run], capsys)
    assert_one_line_error(code, err, "model.py was changed after training")
    run = copy_run(here, tmp_path, "sent")
    here_ = tmp_path / "another-machine"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(here_))
        code, err = run_cli(["evaluate", run], capsys)
        assert_one_line_error(code, err, "which was not trained on this machine")
        assert main(["evaluate", str(run), "--trust-code"]) == 0


def test_compare_takes_a_script_beside_registered_names_and_reuses_its_run(here, tmp_path, capsys):
    out = tmp_path / "compare"
    command = ["compare", "--models", "cnn,lecture.py", "--dataset", "mnist-sample", "--epochs", "1"]
    command += ["--no-progress", "--out", str(out)]
    assert main(command) == 0
    rows = [line.split("|")[1:3] for line in (out / "leaderboard.md").read_text().splitlines()[2:]]
    assert sorted((model.strip(), parameters.strip()) for model, parameters in rows) == [
        ("cnn", "8,490"),
        ("lecture.py", "8,490"),  # the lecture's network, from the learner's script
    ]
    assert (out / "lecture" / "model.py").is_file()
    capsys.readouterr()
    assert main(command) == 0
    assert "lecture.py: reusing the finished run" in capsys.readouterr().out
    script = here.folder / "lecture.py"
    original = script.read_text()
    try:
        script.write_text(original.replace("kernel_size=5)", "kernel_size=5)  # edited"))
        code, err = run_cli(command, capsys)  # another model now: its old run is not silently reused or replaced
        assert_one_line_error(code, err, "already exists; pass --overwrite to replace it")
    finally:
        script.write_text(original)


def test_bench_times_a_script_through_both_pipelines(here, tmp_path, capsys):
    """`bench --models lecture.py` on a small IDX set (--quick keeps its first tenth of MNIST's sizes): the learner's
    network through cnnlab's pipeline and the lecture's own loop, then its inference rates; its top level never runs."""
    data = write_idx_dataset(tmp_path / "mnist", n_train=200, n_test=50)
    command = ["bench", "--models", "lecture.py", "--quick", "--repeats", "1", "--data-dir", data]
    assert run_cli([*command, "--out", tmp_path / "bench"], capsys)[0] == 0
    entry = json.loads(next((tmp_path / "bench").glob("*.json")).read_text())["models"]["lecture.py"]
    assert entry["parameters"] == 8490
    assert entry["cnnlab"]["seconds_per_epoch"] > 0 and entry["reference"]["seconds_per_epoch"] > 0
    assert set(entry["onnxruntime_images_per_s"]) == {"1", "1024"}
    assert not (here.folder / "SIDE_EFFECT").exists()


# --- learners' networks, trained tiny --------------------------------------------------------------------------

# A CIFAR-10 network as the PyTorch tutorial "Training a classifier" writes it, with BatchNorm and a residual add.
CIFAR_RESIDUAL = """\
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as transforms

transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
trainset = torchvision.datasets.CIFAR10(root='./data', train=True, download=True, transform=transform)


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(16 * 16 * 16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(x + self.bn2(self.conv2(x)))
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


net = Net()
"""


def test_a_sequential_script_trains_and_evaluates(here, tmp_path, capsys):
    here.script(SEQUENTIAL, "seq.py")
    assert main(["train", "--model", "seq.py", *TINY, "--out", str(tmp_path / "seq")]) == 0
    assert "Training seq.py (5,258 parameters)" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "seq")]) == 0


def test_an_rgb_network_with_batchnorm_and_a_residual_add_on_colour_images(here, tmp_path, capsys):
    files, _, _ = cifar10_files(n_train=20, n_test=10)
    data = write_release(tmp_path / "cifar", files)
    here.script(CIFAR_RESIDUAL, "cifar_net.py")
    run = tmp_path / "rgb"
    command = ["train", "--model", "cifar_net.py", "--dataset", "cifar10", "--data-dir", data, "--epochs", "1"]
    assert main([*map(str, command), "--no-progress", "--out", str(run)]) == 0
    assert main(["evaluate", str(run)]) == 0
    assert "evaluated on the cifar10 test set" in capsys.readouterr().out
    code, err = run_cli(["train", "--model", "cifar_net.py", *TINY, "--out", tmp_path / "digits"], capsys)
    assert_one_line_error(code, err, "cifar_net.py:Net fails on 1x28x28 images, at line 22")
    assert err.strip().endswith("it runs on 3x32x32 images")


# --- ONNX files as runs -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_files(learner):
    """The lecture run's network as the learner exports it, with plain torch.onnx.export (lecture.onnx); and a
    learner's nn.Sequential as onnxruntime's optimiser rewrote it (seq-ort.onnx: its Conv + ReLU fused into
    com.microsoft.FusedConv, which cnnlab does not rebuild, so it runs through onnxruntime)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(learner.config))
        model = open_run(learner.folder / "run-lecture").model
    plain = onnx_export(model, learner.folder / "lecture.onnx", (1, 28, 28), dynamo=False, opset=13)
    torch.manual_seed(0)
    sequential = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(1152, 10)
    )
    seq = onnx_export(sequential, learner.folder / "seq.onnx", (1, 28, 28), dynamo=False, opset=13)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(learner.folder / "seq-ort.onnx")
    onnxruntime.InferenceSession(str(seq), options, providers=["CPUExecutionProvider"])
    return {"plain": plain, "ort": learner.folder / "seq-ort.onnx"}


def onnxruntime_correct(path: Path, mnist_dir: Path, mean: float, std: float) -> int:
    """How many of MNIST's test digits onnxruntime itself classifies right with the file, inputs scaled so."""
    test = load_dataset("mnist", mnist_dir)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = ((test.test_images.float() / 255 - mean) / std).numpy()
    predicted = np.concatenate(
        [session.run(None, {"input": x[i : i + 1000]})[0].argmax(1) for i in range(0, len(x), 1000)]
    )
    return int((predicted == test.test_labels.numpy()).sum())


@pytest.mark.parametrize("kind", ["plain", "ort"])
def test_an_onnx_file_evaluates_as_onnxruntime_scores_it(onnx_files, mnist_dir, capsys, kind):
    path = onnx_files[kind]
    assert main(["evaluate", str(path), "--dataset", "mnist", "--data-dir", str(mnist_dir)]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    how = "rebuilt as PyTorch layers" if kind == "plain" else "runs through onnxruntime: cnnlab does not rebuild"
    assert header.startswith(f"{path}: ONNX opset ") and how in header
    assert "inputs scaled as (x - 0.1307) / 0.3081 (MNIST's: the default --normalize)" in header
    assert header.endswith("evaluated on the mnist test set")
    correct = onnxruntime_correct(path, mnist_dir, 0.1307, 0.3081)
    assert f"Accuracy: {correct}/10000" in line and (kind == "ort" or correct > 3000)  # chance: 1,000
    assert main(["evaluate", str(path), "--data-dir", str(mnist_dir), "--normalize", "0.5,0.5"]) == 0
    header, line = capsys.readouterr().out.splitlines()[:2]
    assert "inputs scaled as (x - 0.5) / 0.5 (--normalize)" in header
    assert f"Accuracy: {onnxruntime_correct(path, mnist_dir, 0.5, 0.5)}/10000" in line


def test_an_onnx_file_predicts_exports_and_draws(onnx_files, tmp_path, capsys):
    digit = tmp_path / "seven.png"
    draw_digit("7").save(digit)
    names = "zero,one,two,three,four,five,six,seven,eight,nine"
    assert main(["predict", str(onnx_files["plain"]), str(digit), "--classes", names]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(rf"{digit}: (unsure: )?({names.replace(',', '|')}) \(.*", out.strip())  # the names given
    assert "classes named by --classes" in err
    code, err = run_cli(["predict", onnx_files["plain"], digit, "--classes", "a,b,c"], capsys)
    assert_one_line_error(code, err, "--classes names 3 classes; ")
    for kind, fmt in (("plain", "torchscript"), ("plain", "onnx"), ("ort", "onnx")):
        out = tmp_path / f"{kind}.{fmt}"
        assert main(["export", str(onnx_files[kind]), "--format", fmt, "--out", str(out)]) == 0
        assert out.is_file() and "checked: largest difference" in capsys.readouterr().out
    code, err = run_cli(["export", onnx_files["ort"], "--format", "torchscript", "--out", tmp_path / "x.pt"], capsys)
    assert_one_line_error(code, err, "runs through onnxruntime")
    for what in ("filters", "features"):
        picture = tmp_path / f"{what}.png"
        command = ["viz", onnx_files["plain"], "--what", what, "--dataset", "mnist-sample", "--out", picture]
        assert main(list(map(str, command))) == 0
        assert picture.stat().st_size > 1000


def test_the_lab_on_onnx_files_shows_every_stage_and_the_multiply_add(onnx_files):
    pixels = np.asarray(draw_digit("7").resize((28, 28))).tolist()
    client = lab_client(create_app([onnx_files["plain"]]))
    body = client.post("/activations", json={"pixels": pixels}).json()
    assert [s["name"] for s in body["stages"]] == [
        "conv1",
        "mp + ReLU",
        "conv2",
        "mp + ReLU",
        "flatten",
        "fc",
        "softmax",
    ]
    assert "inputs scaled as (x - 0.1307) / 0.3081" in body["notes"][0]
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    named = lab_client(create_app([onnx_files["plain"]], options=OpenOptions(normalize=(0.5, 0.5), classes=names)))
    served = named.get("/runs").json()[0]
    assert (served["mean"], served["std"], served["classes"]) == (0.5, 0.5, list(names))
    answer = named.post("/activations", json={"pixels": pixels}).json()
    assert "inputs scaled as (x - 0.5) / 0.5 (--normalize)" in answer["notes"][0]
    assert {p["class"] for p in answer["predictions"]} <= set(names)
    cell = client.post("/explain", json={"pixels": pixels, "module": "conv2", "channel": 7, "row": 3, "col": 5}).json()
    assert cell["sum"] == pytest.approx(cell["activation"], abs=1e-4)
    ort = lab_client(create_app([onnx_files["ort"]]))
    body = ort.post("/activations", json={"pixels": pixels}).json()
    assert [s["name"].split(" (")[-1] for s in body["stages"]] == [
        "FusedConv)",
        "MaxPool)",
        "Flatten)",
        "Gemm)",
        "softmax",
    ]
    assert any("runs through onnxruntime" in note and "not a multiply-add" in note for note in body["notes"])
    refused = ort.post(
        "/explain", json={"pixels": pixels, "module": body["stages"][0]["name"], "channel": 0, "row": 0, "col": 0}
    )
    assert refused.status_code == 422


def test_serve_says_how_a_model_file_is_scaled_and_named(onnx_files):
    """`cnnlab serve model.onnx --normalize --classes` says, before its "serving on" line, what evaluate and predict
    say: how the file's inputs are scaled and where its classes' names come from."""
    command = ["serve", str(onnx_files["plain"]), "--normalize", "0.5,0.5", "--classes", "a,b,c,d,e,f,g,h,i,j"]
    command += ["--port", str(free_port())]
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = [process.stdout.readline(), process.stdout.readline()]
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=30)
    finally:
        process.kill()
    assert "inputs scaled as (x - 0.5) / 0.5 (--normalize); classes named by --classes" in lines[0], lines
    assert lines[1].startswith(f"cnnlab: serving {onnx_files['plain']} on http://127.0.0.1:"), lines


# --- bad input: one line each -------------------------------------------------------------------------------------

BROKEN = "import torch.nn as nn\n\n\nclass Net(nn.Module)\n    pass\n"
FIVE_SCORES = """\
import torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))
"""


def test_bad_models_are_one_line_each(here, onnx_files, tmp_path, capsys):
    here.script(BROKEN, "broken.py")
    here.script(FIVE_SCORES, "five.py")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_files["plain"].read_bytes()[:3000])
    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as f:
        f.truncate(600 * 2**20)  # sparse: 600 MiB that take no disk
    two = tmp_path / "two-inputs.onnx"
    onnx.save(simple_graph(value("image", "N", 1, 8, 8), value("scores", "N", 10), [value("mask", "N", 1)]), two)
    five = onnx_export(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)), tmp_path / "five.onnx", (1, 28, 28), False
    )
    run = here.folder / "run-lecture"
    for command, message in [
        (["summary", "missing.py"], "no such file: missing.py"),
        (["train", "--model", "missing.py:Net", *TINY], "no such file: missing.py"),
        (["evaluate", "missing.onnx"], "no such file: missing.onnx"),
        (["summary", "lecture.py:Nope"], "lecture.py does not define Nope (it defines: Net, train, test)"),
        (["train", "--model", "broken.py", *TINY], "broken.py, line 4: syntax error: expected ':'"),
        (
            ["summary", "lecture.py", "--input", "3x32x32"],
            "lecture.py:Net fails on 3x32x32 images, at line 37 (`x = F.relu(self.mp(self.conv1(x)))`): "
            "RuntimeError: Given groups=1, weight of size [10, 1, 5, 5], expected input[2, 3, 32, 32] to have 1 "
            "channels, but got 3 channels instead; it runs on 1x28x28 images",
        ),
        (
            ["train", "--model", "five.py", *TINY],
            "five.py:Net gives 2x5 for a batch of 2 1x28x28 images; cnnlab needs 2x10: one score per class",
        ),
        (["evaluate", truncated], "truncated.onnx: not an ONNX model, or a truncated one (its bytes do not parse)"),
        (["predict", huge, "x.png"], "huge.onnx: 629,145,600 bytes is more than the 536,870,912 allowed"),
        (["evaluate", two], "the graph takes 2 inputs (image, mask); cnnlab feeds it one image batch"),
        (
            ["evaluate", five, "--dataset", "mnist-sample"],
            f"dataset mnist-sample (1x28x28, 10 classes) does not fit the model of {five} (1x28x28, 5 classes)",
        ),
        (["train", "--model", "lecture.onnx", *TINY], "lecture.onnx is a trained model, not one to train"),
        (["evaluate", run, "--classes", "a,b"], "--normalize and --classes are for a model file (model.onnx)"),
        (
            ["evaluate", onnx_files["plain"], "--normalize", "0.1,0.2,0.3,1,1,1"],
            "--normalize takes MEAN,STD for a model of 1 channel, got 6 numbers",
        ),
        (["evaluate", onnx_files["plain"], "--normalize", "0.5,0"], "expected MEAN,STD such as 0.1307,0.3081"),
        (
            ["evaluate", onnx_files["plain"], "--dataset", "mnist-sample", "--classes", "a,b,c,d,e,f,g,h,i,j"],
            "are not those --classes names (a, b, c, d, e, f, g, h, i, j), in that order: leave --classes out",
        ),
        (["viz", onnx_files["plain"], "--what", "curves"], "lecture.onnx is a model file: it has no training curves"),
        (["evaluate", "lecture.py"], "lecture.py is a script, not a trained run: train it first"),
    ]:
        code, err = run_cli(command, capsys)
        assert_one_line_error(code, err, message)


# --- the lab in a real browser ------------------------------------------------------------------------------------


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_the_lab_in_chromium_explains_a_scripts_run_and_an_onnx_files_cells(here, onnx_files, tmp_path):
    """The lab over the lecture script's run and the learner's ONNX export of it, side by side: drawing a 7 shows
    each one's stages; clicking a conv1 map cell shows the multiply-add, whose total is the model's own value."""
    from playwright.sync_api import sync_playwright

    run = here.folder / "run-lecture"
    with serving_in_thread([run, onnx_files["plain"]]) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url)
        page.wait_for_function("() => window.lab.runs.length === 2")
        draw_a_seven(page, runs=2)
        assert (
            "inputs scaled as (x - 0.1307) / 0.3081" in page.locator('#columns section.run[data-run="1"]').inner_text()
        )
        for index, path in enumerate((run, onnx_files["plain"])):
            assert [s[0] for s in stages_of(page, index)][:4] == ["conv1", "mp + ReLU", "conv2", "mp + ReLU"]
            cells = page.locator(f'section.stage[data-run="{index}"][data-stage="conv1"] canvas.map')
            cells.nth(3).click(position={"x": 20, "y": 16})
            chosen = f"window.lab.selected && window.lab.selected.runIndex === {index}"
            page.wait_for_function(f"() => {chosen} && document.getElementById('total') !== null", timeout=30_000)
            selected = page.evaluate(
                "({channel: lab.selected.channel, cell: lab.selected.cell, input: lab.selected.input})"
            )
            model = open_run(path).model
            pixels = torch.tensor(selected["input"], dtype=torch.float32)[None, None] / 255
            with torch.no_grad():
                maps = model.get_submodule("conv1")((pixels - 0.1307) / 0.3081)
            (row, col), channel = selected["cell"], selected["channel"]
            assert float(page.locator("#total").inner_text()) == pytest.approx(
                maps[0, channel, row, col].item(), abs=1e-4
            )
            assert "✓" in page.locator("#inspector").inner_text()
            page.screenshot(path=str(tmp_path / f"cell-{index}.png"))
        browser.close()


def test_a_toml_config_names_a_factory_and_its_arguments(here, tmp_path, capsys):
    here.script(FACTORY, "factory.py")
    config = tmp_path / "run.toml"
    config.write_text('model = "factory.py:make_model"\nmodel_args = { width = 8 }\n')
    run = tmp_path / "factory"
    assert main(["train", "--config", str(config), *TINY, "--out", str(run)]) == 0
    assert "Training factory.py:make_model (170 parameters)" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["model_args"] == {"width": 8}
    (here.folder / "factory.py").unlink()  # reopened from the run's copy, with the arguments it was trained with
    assert main(["summary", str(run / "model.py:make_model"), "--model-args", '{"width": 8}']) == 0
    assert main(["evaluate", str(run)]) == 0
