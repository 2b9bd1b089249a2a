"""Exit codes of consecutive two-process DDP runs (a benchmark, not a test; issue 29).

Once, 1 two-process run in 7 died at exit with SIGABRT ("terminate called without an active exception")
after training had finished and the run was written: a job scheduler would have marked it failed. This runs
the same short job N times, one after another, and counts how each ended: the exit code, and whether
stderr holds that message or a traceback. It exits 1 when any run did not exit 0.

    python benchmarks/ddp_exits.py [--runs 30] [--json FILE] [-- extra cnnlab train flags]

Each run: cnnlab train --nproc 2 --model cnn --dataset mnist-sample --epochs 1 --no-progress (about 20 s on
the shared 2-core VM; mnist-sample ships with cnnlab, so no download).
"""

import argparse
import collections
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from cnnlab.files import write_json

COMMAND = ["train", "--nproc", "2", "--model", "cnn", "--dataset", "mnist-sample", "--epochs", "1", "--no-progress"]
ABORT = "terminate called without an active exception"


def one_run(out: Path, extra: list[str]) -> dict:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", *COMMAND, "--out", str(out), "--overwrite", *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {
        "exit_code": result.returncode,
        "seconds": round(time.perf_counter() - start, 1),
        "abort_message": ABORT in result.stderr,
        "traceback": "Traceback" in result.stderr,
        "stderr_tail": result.stderr.strip().splitlines()[-3:] if result.returncode else [],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", metavar="FILE", help="write every run's result here")
    parser.add_argument("extra", nargs="*", help="more cnnlab train flags, after --")
    args = parser.parse_args()
    runs = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnlab-ddp-exits-") as folder:
        for i in range(args.runs):
            runs.append(one_run(Path(folder) / "run", args.extra))
            row = runs[-1]
            print(
                f"run {i + 1}/{args.runs}: exit {row['exit_code']} in {row['seconds']} s",
                *row["stderr_tail"],
                flush=True,
            )
    elapsed = time.perf_counter() - start
    codes = collections.Counter(r["exit_code"] for r in runs)
    aborts = sum(r["abort_message"] for r in runs)
    tracebacks = sum(r["traceback"] for r in runs)
    print(
        f"{args.runs} consecutive two-process runs in {elapsed / 60:.1f} min: "
        + ", ".join(f"{n} exited {code}" for code, n in sorted(codes.items()))
        + f"; '{ABORT}' in {aborts}, a traceback in {tracebacks}"
    )
    if args.json:
        write_json(
            args.json,
            {
                "date": str(date.today()),
                "machine": platform.machine(),
                "torch": torch.__version__,
                "command": ["cnnlab", *COMMAND, *args.extra],
                "runs": runs,
                "exit_codes": {str(code): n for code, n in sorted(codes.items())},
                "minutes": round(elapsed / 60, 1),
            },
        )
    return 0 if set(codes) == {0} else 1


if __name__ == "__main__":
    sys.exit(main())
