"""Run directories and checkpoints: written atomically, loaded with weights_only=True (never pickle code)."""
import io
import json
import pickle
import shutil
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.files import write_bytes, write_text

FORMAT = "cnnlab-checkpoint/1"
CHECKPOINT = "checkpoint.pt"  # the last one
BEST = "best.pt"  # by test accuracy
METRICS = "metrics.jsonl"
CONFIG = "config.json"


def prepare_run_dir(out: Path, overwrite: bool) -> Path:
    """Create `out`; an existing run is never replaced unless `overwrite` says so."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise CnnlabError(f"run directory {out} already exists and is not empty; pass --overwrite to replace it")
        if not (out / CONFIG).exists() and not (out / CHECKPOINT).exists():
            raise CnnlabError(f"{out} is not empty and holds no cnnlab run; refusing to delete it")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CnnlabError(f"cannot create run directory {out}: {e.strerror}") from None
    return out


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """metrics.jsonl is rewritten whole (atomically) each epoch: it is never left with half a line."""
    write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_finished(run_dir: Path, config) -> bool:
    """True if `run_dir` holds a completed run of the same settings: sweeps reuse it instead of re-training."""
    if not (run_dir / CHECKPOINT).exists() or not (run_dir / CONFIG).exists():
        return False
    saved = json.loads((run_dir / CONFIG).read_text())
    keys = ("model", "epochs", "recipe", "seed", "batch_size", "lr", "width", "train_subset")
    same = all(saved.get(k) == getattr(config, k) for k in keys)
    return same and config.dataset in (None, saved.get("dataset")) and len(read_metrics(run_dir)) == config.epochs


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()  # serialise first: then a full disk shows up as the OSError of one write
    torch.save({"format": FORMAT, **payload}, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path) -> dict:
    """Load a checkpoint file or the checkpoint of a run directory, refusing anything but plain data."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CnnlabError(f"no checkpoint at {path} (is it a cnnlab run directory?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise CnnlabError(f"{path}: refused: the file holds more than plain tensors and numbers, which could "
                          f"run code on load ({first[:160]})") from None
    except Exception as e:  # a truncated or garbled file fails in many ways inside the unpickler
        raise CnnlabError(f"{path}: not a readable checkpoint (truncated or corrupt: {(str(e).splitlines() or [type(e).__name__])[0][:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CnnlabError(f"{path}: not a cnnlab checkpoint")
    return payload
