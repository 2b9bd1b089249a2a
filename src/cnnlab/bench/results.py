"""What every benchmark shares: where its figures were taken, where they are written, how a spread reads."""

import os
import platform
import statistics
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.files import write_json


def check_destination(out_dir: str | Path) -> Path:
    """The folder the results will go to, checked before any measuring (a bench takes minutes: a wrong --out
    found at the end would lose them). It may not exist yet; its nearest existing parent must be a writable
    folder."""
    path = Path(out_dir)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        what = "" if existing == path else f" ({existing} is a file)"
        raise CnnlabError(f"--out {out_dir} is not a folder{what}: give a folder for the result files")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CnnlabError(f"--out {out_dir}: cannot write into {existing} (permission denied)")
    return path


def save_result(out_dir: str | Path, name: str, result: dict) -> Path:
    """<out_dir>/<name>, written atomically: an interrupted bench leaves no half a file."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / name, result)
    return Path(out_dir) / name


def spread(values: Sequence[float], digits: int = 0) -> str:
    """The median and the range: "5.95 (5.94-6.33)"."""
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def environment() -> dict:
    """Where a figure was taken: machine, processor, torch, threads, date, and the load other work put on it."""
    return {
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": date.today().isoformat(),
    }
