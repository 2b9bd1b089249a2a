"""DDP on CPU: real processes (gloo on 127.0.0.1), short runs on mnist-sample; and what `--nproc` refuses before
it starts anything."""

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.cli import build_parser
from cnnlab.cli.commands.train import worker_command
from cnnlab.engine.checkpoint import load_checkpoint, read_metrics
from cnnlab.engine.distributed import cpu_count
from cnnlab.engine.snapshots import read_snapshots
from conftest import assert_one_line_error, run_cli

TRAIN = [sys.executable, "-m", "cnnlab", "train", "--dataset", "mnist-sample", "--no-progress"]
# torchrun by hand, as docs/ddp.md shows it (cnnlab train --nproc caps the processes at the cores; this does not)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def processes_naming(text: str) -> list[int]:
    """The processes whose command line holds `text` (a run's unique folder): what a job left running."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:  # ended meanwhile
            continue
    return found


@pytest.mark.slow
def test_three_processes_train_in_lockstep(tmp_path):
    out = tmp_path / "run"
    # 3 ranks: the 1,000 test images do not divide evenly (334 + 333 + 333)
    result = subprocess.run(
        [*TORCHRUN, "--nproc-per-node", "3", *TRAIN[1:], "--epochs", "2", "--batch-size", "96", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
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
        [*TRAIN, "--nproc", "2", "--epochs", "2", "--optimizer", "sgd", "--lr", "1e30", "--schedule", "constant"]
        + ["--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "loss became" in result.stderr and "Traceback" not in result.stderr
    assert "failed (exitcode" not in result.stderr  # the launcher's own log stays out of it


@pytest.mark.slow
def test_sigterm_stops_every_rank_saves_and_leaves_nothing_running(tmp_path):
    """What a job scheduler does: SIGTERM to the command it started. Every rank stops after its step, rank 0 saves,
    the command exits 128 + 15 once they have, and no process of the job survives it (nor holds the run's lock)."""
    out = tmp_path / "run"
    job = subprocess.Popen(
        [*TRAIN, "--nproc", "2", "--epochs", "8", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        start_line = job.stdout.readline()
        while not job.stdout.readline().startswith("Epoch 1"):
            assert job.poll() is None, job.stderr.read()
        job.send_signal(signal.SIGTERM)
        _, stderr = job.communicate(timeout=120)
        survivors = processes_naming(str(out))
    finally:
        for pid in processes_naming(str(out)):  # the old wrapper left torchrun and its ranks training
            os.kill(pid, signal.SIGKILL)
        job.kill()
    assert job.returncode == 128 + signal.SIGTERM, stderr
    assert survivors == []
    assert "Traceback" not in stderr and "OMP_NUM_THREADS" not in stderr
    assert_one_line_error(job.returncode, stderr, "SIGTERM: stopped at epoch ")
    assert "checkpoint saved; resume with: cnnlab train --resume" in stderr
    checkpoint = load_checkpoint(out)
    assert checkpoint["epoch"] >= 1 and checkpoint["config"]["epochs"] == 8  # the job's own, saved on the way out
    with (out / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises BlockingIOError while a rank holds it
    # the threads per process are chosen (no torchrun banner) and said
    threads = max(1, cpu_count() // 2)
    assert f"2 processes of 64+ images per step, {threads} thread{'s' * (threads > 1)} each" in start_line


@pytest.mark.slow
def test_the_ranks_threads_end_before_the_interpreter_does(tmp_path):
    """A rare SIGABRT at exit ("terminate called without an active exception") came from gloo's threads still
    running as the interpreter ended: DDP's first construction imported torch.distributed.nn after the process
    group existed, and its `group=group.WORLD` defaults kept the group alive past destroy_process_group."""
    script = tmp_path / "rank.py"
    script.write_text(
        "import os, sys\n"
        "from cnnlab.cli import main\n"
        f"code = main({['train', '--dataset', 'mnist-sample', '--epochs', '1', '--train-subset', '640']!r}"
        f" + ['--no-progress', '--out', {str(tmp_path / 'run')!r}])\n"
        "names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in os.listdir('/proc/self/task')]\n"
        "print('native threads after main:', sorted(names), flush=True)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [*TORCHRUN, "--nproc-per-node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    threads = [line for line in result.stdout.splitlines() if line.startswith("native threads after main:")]
    assert len(threads) == 2  # each rank
    assert not any("gloo" in line for line in threads), threads


def test_sync_bn_on_cpu_is_refused_before_anything_starts(tmp_path, capsys):
    """It used to launch, print about 105 lines of tracebacks from every rank, and leave a run folder holding only
    config.json that blocked a retry."""
    argv = ["train", "--nproc", "2", "--sync-bn", "--device", "cpu", "--dataset", "mnist-sample"]
    assert_one_line_error(*run_cli([*argv, "--out", tmp_path / "run"], capsys), "--sync-bn needs CUDA GPUs")
    assert list(tmp_path.iterdir()) == []


def test_more_processes_than_cores_are_refused(tmp_path, capsys):
    """--nproc 24 on 2 cores reached 6.8 GiB in 60 s before training."""
    too_many = cpu_count() + 1
    argv = ["train", "--nproc", too_many, "--device", "cpu", "--dataset", "mnist-sample", "--out", tmp_path / "run"]
    assert_one_line_error(*run_cli(argv, capsys), f"--nproc {too_many}: this machine has {cpu_count()} CPU cores")
    assert list(tmp_path.iterdir()) == []


TRAIN_FLAGS = [
    "--dataset=folder",
    "--data-dir=-odd dir",  # a value that starts with '-' stays a value
    "--image-size=24x24",
    "--channels=3",
    "--test-split=0.25",
    "--train-subset=100",
    "--val-split=20",
    "--model=resnet-8",
    '--model-args={"depth": 8, "name": "it\'s"}',
    "--width=4",
    "--recipe=lecture",
    "--epochs=2",
    "--patience=1",
    "--batch-size=32",
    "--test-batch-size=50",
    "--optimizer=sgd",
    "--lr=1e-05",
    "--momentum=0.7",
    "--weight-decay=0.0001",
    "--schedule=step",
    "--label-smoothing=0.1",
    "--ema=0.99",
    "--augment=crop",
    "--seed=3",
    "--device=cpu",
    "--threads=1",
    "--precision=fp32",
    "--no-channels-last",
    "--out=runs/x",
    "--overwrite",
    "--no-progress",
    "--config=c.toml",
    "--checkpoint-every=5",
    "--check-every=2",
    "--compile=default",
    "--deterministic",
    "--sync-bn",
    "--trace-grad",
    "--tensorboard",
    "--plot",
    "--trust-code",
]


def test_each_rank_gets_what_was_parsed_not_the_typed_words():
    """Rebuilt from the parsed options (--print-config and --resume are the launcher's, exclusive with --config)."""
    parse = build_parser().parse_args
    given = parse(["--debug", "train", "--nproc", "2", *TRAIN_FLAGS])
    command = worker_command(given)
    assert "--nproc" not in " ".join(command) and command[:2] == ["--debug", "train"]
    again = parse(command)
    assert {**vars(again), "nproc": 2} == vars(given)
    # every option of `train` is in TRAIN_FLAGS: a new one must be passed on too, and tested here
    defaults = vars(parse(["train"]))
    untested = {name for name, value in defaults.items() if vars(given)[name] == value}
    # --lab and --lab-port are refused with --nproc (test_lab_api), so no rank ever needs them
    assert untested == {"command", "handler", "print_config", "resume", "lab", "lab_port"}
    resumed = parse(["train", "--nproc", "2", "--resume", "runs/x", "--epochs", "4"])
    assert worker_command(resumed) == ["train", "--epochs=4", "--resume=runs/x"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: the GPU count caps --nproc there")
def test_more_processes_than_gpus_are_refused(tmp_path, capsys):
    too_many = torch.cuda.device_count() + 1
    argv = ["train", "--nproc", too_many, "--device", "cuda", "--dataset", "mnist-sample", "--out", tmp_path / "r"]
    assert_one_line_error(*run_cli(argv, capsys), f"--nproc {too_many}: this machine has {too_many - 1} CUDA GPUs")
