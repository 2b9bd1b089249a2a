"""Run folders: what cnnlab may write, replace and delete, and one writer at a time.

A run folder carries a marker file that cnnlab writes when it creates the folder. `--overwrite` replaces a
folder only when it is recognisably a cnnlab run (the marker, or a run made before markers existed) that holds
nothing but files cnnlab writes; anything else is refused with the list of what would have been lost. The old
run is moved aside, not deleted, until the new one has written its first checkpoint; if the new run fails
before that, the old one is put back.

Every process that writes a run holds an exclusive `flock` on its lock file for its whole life, so a second
writer gets a one-line error naming the PID that holds it. The kernel drops the lock when a process dies,
so a run killed with kill -9 resumes without any clean-up.
"""

import fcntl
import fnmatch
import os
import shutil
import types
from pathlib import Path

from cnnlab import CnnlabError
from cnnlab.engine.checkpoint import read_config
from cnnlab.files import RUN_LOCK, RUN_MARKER, RUN_STATE_FILES

MARKER = RUN_MARKER
LOCK = RUN_LOCK
# Every name cnnlab writes into a run folder; only folders holding nothing else may be replaced.
RUN_FILES = (
    *RUN_STATE_FILES,
    "model.onnx",
    "model.torchscript.pt",
    "curves.png",
    "confusion.png",
    "errors.png",
    "filters.png",
    "features-*.png",
    "pool*.png",
    "events.out.tfevents.*",  # --tensorboard
    "snapshot-*.npz",
    "errors-*.png",
    "attribution.png",
    ".*.tmp",
)


def _is_run_file(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


def foreign_entries(folder: Path) -> list[str]:
    """What in `folder` cnnlab did not write (sorted names; folders end with /)."""
    return sorted(
        p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if p.is_dir() or not _is_run_file(p.name)
    )


def is_run(folder: Path) -> bool:
    """A folder cnnlab created as a run: its marker, or (older runs) a config.json naming a model and recipe."""
    if (folder / MARKER).is_file():
        return True
    try:
        config = read_config(folder, missing_ok=True)
    except CnnlabError:  # unreadable or corrupt: not recognisably ours
        return False
    return {"model", "recipe", "epochs"} <= set(config)


class RunLock:
    """An exclusive flock on the run's lock file, held until `release` (or process exit)."""

    def __init__(self, folder: Path):
        self.folder = folder
        try:
            self.file = open(folder / LOCK, "a+")
        except OSError as e:
            raise CnnlabError(f"cannot lock run folder {folder}: {e.strerror or e}") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise CnnlabError(
                f"run folder {folder} is in use by another cnnlab process (PID {holder}); "
                "wait for it to finish or stop it"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


class RunFolder:
    """The folder of a run being written: created (or replacing an old run safely) and locked.

    Use as a context manager; call `commit()` once the new run holds a checkpoint, which deletes the run it
    replaced. Leaving the block with an exception before that puts the old run back."""

    def __init__(self, path: Path, lock: RunLock, replaced: Path | None = None):
        self.path, self.lock, self.replaced = path, lock, replaced

    @classmethod
    def create(cls, path: str | Path, overwrite: bool = False) -> "RunFolder":
        path = Path(path)
        replaced = None
        if path.exists() and not path.is_dir():
            raise CnnlabError(f"--out {path} is a file, not a folder")
        if path.is_dir() and any(path.iterdir()):
            replaced = cls._move_aside(path, overwrite)
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / MARKER).write_text("cnnlab run folder: cnnlab may replace it with --overwrite\n")
        except OSError as e:
            if replaced is not None:
                os.replace(replaced, path)
            raise CnnlabError(f"cannot create run folder {path}: {e.strerror or e}") from None
        return cls(path, RunLock(path), replaced)

    @staticmethod
    def _move_aside(path: Path, overwrite: bool) -> Path:
        run, foreign = is_run(path), foreign_entries(path)
        if not run or foreign:
            entries = foreign if run else sorted(p.name for p in path.iterdir())
            listed = ", ".join(entries[:8]) + (f" and {len(entries) - 8} more" if len(entries) > 8 else "")
            what = "holds files cnnlab did not write" if run else "is not empty and is not a cnnlab run"
            raise CnnlabError(f"{path} {what} ({listed}); refusing to replace it: choose another --out")
        if not overwrite:
            raise CnnlabError(
                f"run folder {path} already exists; pass --overwrite to replace it, or --resume {path} to continue it"
            )
        lock = RunLock(path)  # refuse to replace a run that is still being written
        aside = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        try:
            os.replace(path, aside)
        except OSError as e:
            raise CnnlabError(f"cannot move the old run {path} aside: {e.strerror or e}") from None
        finally:
            lock.release()
        return aside

    @classmethod
    def open_existing(cls, path: str | Path) -> "RunFolder":
        """An existing run, locked for resuming."""
        path = Path(path)
        if not path.is_dir() or not is_run(path):
            raise CnnlabError(f"{path} is not a cnnlab run folder")
        return cls(path, RunLock(path))

    def commit(self) -> None:
        """The new run stands on its own: delete the run it replaced."""
        if self.replaced is not None:
            shutil.rmtree(self.replaced, ignore_errors=True)
            self.replaced = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: types.TracebackType | None
    ) -> None:
        if self.replaced is not None:  # failed before its first checkpoint: the old run comes back
            shutil.rmtree(self.path, ignore_errors=True)
            os.replace(self.replaced, self.path)
        self.lock.release()
