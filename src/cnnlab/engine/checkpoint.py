"""The checkpoint format and a run folder's files: written atomically, loaded with weights_only=True
(plain tensors and numbers: never pickled code).

A checkpoint is one dict: the format tag, what rebuilds the model ("model": name and width, "dataset":
DatasetInfo.to_dict(), "config": the resolved TrainConfig) and the training state (TrainState.state_dict()).
"""

import dataclasses
import io
import json
import pickle
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.data.datasets import DatasetInfo
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.state import TrainState
from cnnlab.files import read_bounded, write_bytes, write_json, write_text

FORMAT = "cnnlab-checkpoint/1"
CHECKPOINT = "checkpoint.pt"  # the last one
BEST = "best.pt"  # the epoch with the best validation accuracy (only with a validation split)
METRICS = "metrics.jsonl"
CONFIG = "config.json"
MAX_CHECKPOINT_BYTES = 4 << 30
MAX_TEXT_BYTES = 64 << 20  # metrics.jsonl and config.json


def save_checkpoint(path: Path, *, config: TrainConfig, info: DatasetInfo, state: TrainState) -> None:
    buffer = io.BytesIO()  # serialise first: then a full disk shows up as the OSError of one write
    torch.save(
        {
            "format": FORMAT,
            "model": {"name": config.model, "width": config.width},
            "dataset": info.to_dict(),
            "config": dataclasses.asdict(config),
            **state.state_dict(),
        },
        buffer,
    )
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path) -> dict:
    """Load a checkpoint file or the checkpoint of a run folder, refusing anything but plain data."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CnnlabError(f"no checkpoint at {path} (is it a cnnlab run folder?)")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CnnlabError(f"{path}: {path.stat().st_size:,} bytes is too large to be a cnnlab checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if unsafe:  # the file asks to import code: a crafted file, never loaded
            raise CnnlabError(
                f"{path}: refused: it asks to load Python code, not only tensors and numbers ({unsafe[0][:120]})"
            ) from None
        raise CnnlabError(f"{path}: not a readable checkpoint (corrupt, or not a checkpoint)") from None
    except Exception as e:  # a truncated or garbled file fails in many ways inside the unpickler
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise CnnlabError(f"{path}: not a readable checkpoint (truncated or corrupt: {detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CnnlabError(f"{path}: not a cnnlab checkpoint")
    return payload


def write_config(run_dir: Path, config: TrainConfig, **facts) -> None:
    write_json(run_dir / CONFIG, {**dataclasses.asdict(config), **facts})


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / CONFIG
    try:
        config = json.loads(read_bounded(path, MAX_TEXT_BYTES))
    except ValueError as e:
        raise CnnlabError(f"{path}: corrupt ({e})") from None
    if not isinstance(config, dict):
        raise CnnlabError(f"{path}: corrupt (not a JSON object)")
    return config


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """metrics.jsonl is rewritten whole (atomically) each epoch: it is never left with half a line."""
    write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(run_dir) -> list[dict]:
    """The rows of metrics.jsonl ([] when there is none yet); a corrupt file is a one-line error."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(read_bounded(path, MAX_TEXT_BYTES).decode("utf-8", "replace").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                raise CnnlabError(f"{path}: line {number} is not a JSON object (corrupt metrics file)")
            rows.append(row)
    return rows
