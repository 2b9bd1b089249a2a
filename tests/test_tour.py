"""A newcomer's walk through the README's tour, offline, in an empty folder with an empty cache: the commands are
read from README.md itself (the quick start's `make run` command, then the tour table, in order), so the test
fails when the README and cnnlab drift apart. Each must exit 0; `serve` must answer, then stop on Ctrl-C as
any command does.

Only the budget is cut (SHORTER): one epoch, and the depth sweep's shallowest depth. The newcomer's own files
(`my-digit.png`, `my-photos/`) are drawn here, and `my_net.py` is the lecture's script as a learner typed it. A
row added to the tour must run offline from what this test prepares, or be listed in NOT_RUN with the reason."""

import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cnnlab.cli import main
from conftest import ROOT, draw_digit
from test_own_images import write_shapes

# Tour commands not run here, and why: a key that matches no tour command any more fails the test.
NOT_RUN = {
    "bench": "time to 99% on full MNIST: it needs MNIST (offline it says so in one line) and takes minutes",
    "--nproc": "DDP in two processes: tests/test_distributed.py runs it",
}
# What each training command gets appended: the tour's own command, on a smaller budget.
SHORTER = {
    "train": ["--epochs", "1"],
    "compare": ["--epochs", "1"],
    "overfit": ["--epochs", "1"],
    "depth": ["--epochs", "1", "--depths", "8"],
}
INTERRUPTED = 130  # every command's exit on Ctrl-C (cli.main; tests/test_reliability.py for train)
FALLBACK = "training on mnist-sample"  # the one line a training command prints offline (README: the tour)


def readme_commands() -> list[str]:
    """The quick start's `make run` command, then the tour table's, in order, as README.md writes them."""
    readme = (ROOT / "README.md").read_text()
    quick_start = re.search(r"`make run` is `(cnnlab [^`]+)`", readme)
    assert quick_start, "README.md no longer says which command `make run` runs"
    makefile = (ROOT / "Makefile").read_text()
    assert f"$(BIN)/{quick_start.group(1)}\n" in makefile, "README's `make run` command is not the Makefile's"
    tour = readme.split("## A tour", 1)[1].split("\n## ", 1)[0]
    table = tour.index("\n| command |")
    assert "source .venv/bin/activate" in tour[:table], "the tour must say how `cnnlab` gets on the PATH first"
    rows = re.findall(r"^\| `(cnnlab [^`]+)` \|", tour, flags=re.MULTILINE)
    assert len(rows) >= 10, "README.md's tour table was not found"
    return [quick_start.group(1), *rows]


def not_run_reason(command: str) -> str | None:
    words = shlex.split(command)
    return next((why for key, why in NOT_RUN.items() if key in words), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_then_stop(argv: list[str]) -> int:
    """`cnnlab serve ...` in its own process until /health answers 200, then Ctrl-C, the way the lab is stopped:
    0 when it stopped as every interrupted command does (130, "interrupted"), else its exit code."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", *argv, "--port", str(port)], stderr=subprocess.PIPE)
    try:
        deadline, answered = time.monotonic() + 120, False
        while not answered and time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    answered = answer.status == 200
            except OSError:
                time.sleep(0.2)
        assert answered, f"`cnnlab {shlex.join(argv)}` did not answer /health within 120 s"
        server.send_signal(signal.SIGINT)
        code = server.wait(30)
        said = server.stderr.read().decode()  # type: ignore[union-attr]
        return 0 if code == INTERRUPTED and said.endswith(f"cnnlab {argv[0]}: interrupted\n") else code
    finally:
        if server.poll() is None:
            server.kill()


def test_the_readme_tour_runs_offline_as_written(tmp_path, monkeypatch, capsys):
    newcomer = tmp_path / "newcomer"  # an empty folder; the cache (conftest) is empty and downloads are off
    newcomer.mkdir()
    monkeypatch.chdir(newcomer)
    draw_digit("7", size=200).save("my-digit.png")
    shutil.copy(ROOT / "docs/own-network/lecture.py", "my_net.py")  # torchvision imports: never run
    photos = write_shapes(Path("my-photos"), per_class=20, seed=1, bad=False)
    their_files = sorted(photos.rglob("*"))
    ran, skipped = [], []
    for command in readme_commands():
        if not_run_reason(command):
            skipped.append(command)
            continue
        argv = shlex.split(command)[1:]
        argv += SHORTER.get(argv[0], [])
        code = serve_then_stop(argv) if argv[0] == "serve" else main(argv)
        output = capsys.readouterr()
        assert code == 0, (
            f"`{command}` exited {code} offline: {output.err or output.out[-2000:]}\n"
            "A new tour row must run from what this test prepares, or go into NOT_RUN with the reason."
        )
        if argv[0] in SHORTER and "--dataset" not in argv:
            assert FALLBACK in output.out + output.err, f"`{command}` did not say it fell back to mnist-sample"
        ran.append(command)
    assert len(skipped) == len(NOT_RUN), f"skipped {skipped}: a key of NOT_RUN matches no tour command any more"
    assert len(ran) >= 14
    assert Path("runs/inception/model.onnx").is_file() and Path("runs/quickstart/checkpoint.pt").is_file()
    assert sorted(photos.rglob("*")) == their_files  # nothing written into the user's photos
