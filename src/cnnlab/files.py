"""Every file cnnlab writes goes through `atomic_write`; every file it reads from a user is read bounded.

A write lands in a temp file beside its target, is fsync'd, then renamed over it: a crash or a full disk
never leaves half a file, and the new file gets the permissions the user's umask gives any new file.
A file the user asks for by name (`--out FILE`) is written by `write_output`, which replaces an existing file
only when told to, and a run's own files (RUN_STATE_FILES, named here for rundir.py and checkpoint.py) never.
"""

import csv
import functools
import io
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from cnnlab import CnnlabError

# What cnnlab needs to reopen a run: no output the user names may replace one of them, whatever --overwrite says
# (`export --out RUN/checkpoint.pt` left a run that no command could open).
RUN_MARKER = ".cnnlab-run"
RUN_LOCK = ".lock"
CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"  # the last one
BEST = "best.pt"  # the epoch with the best validation accuracy (only with a validation split)
METRICS = "metrics.jsonl"
MODEL_SOURCE = "model.py"  # a run trained from a learner's script: that script, as it was trained (engine/run.py)
RUN_STATE_FILES = (RUN_MARKER, RUN_LOCK, CONFIG, CHECKPOINT, BEST, METRICS, MODEL_SOURCE, "grad_norms.json", "ddp.json")


@functools.cache
def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once, and once per process
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call write(binary file) on a temp file beside `path`, fsync, then rename it over `path`."""
    path = _writable(Path(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CnnlabError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make every run private whatever the umask
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CnnlabError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    return path


def _writable(path: Path) -> Path:
    if path.exists() and not path.is_file():  # a folder, or /dev/null and its kind: never replaced
        raise CnnlabError(f"cannot write {path}: it is {'a folder' if path.is_dir() else 'not a regular file'}")
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def check_output(path: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse, before any work, to write a file the user named over one that exists (unless `overwrite`) or over
    one of a run's own files (ever); returns the path."""
    path = _writable(Path(path))
    folder = path.parent
    if path.name.lower() in RUN_STATE_FILES and ((folder / RUN_MARKER).is_file() or (folder / CHECKPOINT).is_file()):
        raise CnnlabError(
            f"refusing to write {path}: {path.name} is one of the files cnnlab needs to reopen the run in "
            f"{folder}; choose another name"
        )
    if not overwrite and (path.exists() or path.is_symlink()):
        raise CnnlabError(f"{path} already exists; pass --overwrite to replace it, or choose another name")
    return path


def write_output(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write a file the user asked for (`--out FILE`, `--show-input FILE`) atomically, as `check_output` allows."""
    return write_bytes(check_output(path, overwrite=overwrite), data)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: str | Path, data: object) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: str | Path, rows: Iterable[Iterable[object]]) -> Path:
    """Rows (the first one the header) as a CSV file."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return write_text(path, buffer.getvalue())


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; devices, pipes and folders are refused
    before anything is read (reading /dev/zero or a FIFO would never end)."""
    path = Path(path)
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise CnnlabError(f"{path}: not a regular file")
            if info.st_size > limit:
                raise CnnlabError(f"{path}: {info.st_size:,} bytes is more than the {limit:,} allowed")
            data = f.read(limit + 1)
    except IsADirectoryError:
        raise CnnlabError(f"{path}: is a folder, not a file") from None
    except OSError as e:
        raise CnnlabError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:  # grew while we read it
        raise CnnlabError(f"{path}: more than the {limit:,} bytes allowed")
    return data
