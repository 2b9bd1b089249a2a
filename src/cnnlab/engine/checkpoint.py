"""The checkpoint format and a run folder's files: written atomically, loaded with weights_only=True
(plain tensors and numbers: never pickled code).

A checkpoint is one dict: the format tag, what rebuilds the model ("model": name and width, and for a model
built by a learner's script "code": the SHA-256 of the run's copy of it and what it defines; "dataset":
DatasetInfo.to_dict(), "config": the resolved TrainConfig) and the training state (TrainState.state_dict()).
"""

import dataclasses
import io
import json
import pickle
import re
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.data.datasets import DatasetInfo, is_finite, is_whole
from cnnlab.data.idx import DataError
from cnnlab.engine.config import MAX_CONFIG_BYTES, MAX_WIDTH, TrainConfig, config_from_saved
from cnnlab.engine.loop import EpochProgress
from cnnlab.engine.state import TrainState
from cnnlab.external.spec import SCRIPT, parse_spec
from cnnlab.files import BEST as BEST  # the run's file names (files.py), as the engine and the server use them
from cnnlab.files import CHECKPOINT, CONFIG, METRICS, read_bounded, write_bytes, write_json, write_text

FORMAT = "cnnlab-checkpoint/1"
MAX_CHECKPOINT_BYTES = 4 << 30
MAX_TEXT_BYTES = 64 << 20  # metrics.jsonl


def save_checkpoint(
    path: Path, *, config: TrainConfig, info: DatasetInfo, state: TrainState, code: dict | None = None
) -> None:
    """`code`: for a model built by a script, what run.ModelCode.record() gives."""
    buffer = io.BytesIO()  # serialise first: then a full disk shows up as the OSError of one write
    torch.save(
        {
            "format": FORMAT,
            "model": {"name": config.model, "width": config.width, **({"code": code} if code else {})},
            "dataset": info.to_dict(),
            "config": dataclasses.asdict(config),
            **state.state_dict(),
        },
        buffer,
    )
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict:
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
    return check_checkpoint(payload, path)


def check_checkpoint(payload: dict, path: str | Path) -> dict:
    """`payload`, every field checked for its kind and range; the first one wrong is a one-line error naming the
    file and the field. An edited or damaged file is refused here, not met later as a traceback, a NaN answer or
    a 500. The optimizer, schedule and generator states are checked for their kind here, and in full when
    resuming loads them (TrainState.load_state_dict)."""
    try:
        info = DatasetInfo.from_dict(payload.get("dataset"))
    except DataError as e:
        problem: str | None = str(e)
    else:
        problem = _model_problem(payload, info) or _progress_problem(payload) or _tensors_problem(payload)
    if problem:
        raise CnnlabError(f"{path}: {problem}; the checkpoint is damaged or was edited")
    return payload


def _model_problem(payload: dict, info: DatasetInfo) -> str | None:
    """The model it names, and the settings it was trained with (which must name the same model and data)."""
    model = payload.get("model")
    if not isinstance(model, dict):
        return f"model is {type(model).__name__}: expected a table of its name and width"
    if not isinstance(model.get("name"), str):
        return f"model.name is {repr(model.get('name'))[:60]}: expected a model name"
    width = model.get("width")
    if width is not None and not is_whole(width, 1, MAX_WIDTH):
        return f"model.width is {repr(width)[:60]}: expected a whole number from 1 to {MAX_WIDTH}, or null"
    saved = payload.get("config")
    if not isinstance(saved, dict):
        return f"config is {type(saved).__name__}: expected a table of settings"
    try:
        config = config_from_saved(saved, "config")
    except CnnlabError as e:
        return str(e) if str(e).startswith("config") else f"config: {e}"
    if (config.model, config.width, config.dataset) != (model["name"], width, info.name):
        return (
            f"config ({config.model} on {config.dataset}) disagrees with "
            f"model and dataset ({model['name']} on {info.name})"
        )
    return _code_problem(model)


def _code_problem(model: dict) -> str | None:
    """A model built by a script records its copy's hash and what it defines; a registered one records none."""
    code, script = model.get("code"), parse_spec(model["name"]).kind == SCRIPT
    if code is None and not script:
        return None
    if not isinstance(code, dict) or not script:
        return f"model.code is {repr(code)[:60]}: a model built by a script records its code, a registered one none"
    digest, what = code.get("sha256"), code.get("model")
    if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        return f"model.code.sha256 is {repr(digest)[:60]}: expected a SHA-256 in hex"
    if not (isinstance(what, str) and 0 < len(what) <= 300 and what.isprintable()):
        return f'model.code.model is {repr(what)[:60]}: expected what the script defines, e.g. "class Net of net.py"'
    return None


def _progress_problem(payload: dict) -> str | None:
    """How far the run got: epochs done, one row of metrics each, the epoch part-way and the selected one."""
    epochs, val_split = payload["config"]["epochs"], payload["config"].get("val_split")
    epoch = payload.get("epoch")
    if not is_whole(epoch, 0, epochs):
        return f"epoch is {repr(epoch)[:60]}: expected a whole number from 0 to {epochs} (the run's epochs)"
    rows = payload.get("metrics")
    if not isinstance(rows, list) or len(rows) != epoch:
        return f"metrics: expected one row per epoch done ({epoch})"
    scores = ("test_accuracy", "val_accuracy") if val_split else ("test_accuracy",)
    for number, row in enumerate(rows, 1):
        if not (isinstance(row, dict) and row.get("epoch") == number and all(_is_plain(v) for v in row.values())):
            return f"metrics row {number} is not the plain numbers of epoch {number}"
        if not all(is_finite(row.get(key)) and 0 <= row[key] <= 100 for key in scores):
            return f"metrics row {number}: {' and '.join(scores)} must be percentages"
    state = payload.get("epoch_state")
    if state is not None and not _is_progress(state):
        return f"epoch_state is {repr(state)[:80]}: expected the sums of an epoch stopped part-way"
    best = payload.get("best_epoch")
    if best is not None and not is_whole(best, 1, epoch):
        return f"best_epoch is {repr(best)[:60]}: expected an epoch from 1 to {epoch}, or null"
    if not isinstance(payload.get("stopped_early", False), bool):
        return "stopped_early: expected true or false"
    return None


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, str | bool | int | float)


def _is_progress(state: object) -> bool:
    """`state` is what EpochProgress saves: whole-number counts, finite sums, nothing negative."""
    names = [f.name for f in dataclasses.fields(EpochProgress)]
    if not isinstance(state, dict) or sorted(state) != sorted(names):
        return False
    counts = (
        all(is_whole(state[k], 0, 10**15) for k in ("step", "correct", "seen")) and state["correct"] <= state["seen"]
    )
    return counts and all(is_finite(state[k]) and state[k] >= 0 for k in ("loss_sum", "seconds"))


def _tensors_problem(payload: dict) -> str | None:
    """The weights (and the training copy, kept beside an average) are tensors, and finite: training stops at a
    non-finite loss, so NaN weights are damage; the training state's parts are tables."""
    for key in ("state_dict", "train_state_dict"):
        weights = payload.get(key)
        if weights is None and key == "train_state_dict":
            continue
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            return f"{key}: expected a table of tensors"
        broken = [n for n, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if broken:
            more = f" and {len(broken) - 1} more" if len(broken) > 1 else ""
            return f"{key}: weights are not finite (NaN or infinity in {broken[0]}{more})"
    for key in ("optimizer", "scheduler", "ema", "rng", "trace"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            return f"{key} is {type(payload[key]).__name__}: expected a table"
    return None


def write_config(run_dir: Path, config: TrainConfig, **facts: object) -> None:
    write_json(run_dir / CONFIG, {**dataclasses.asdict(config), **facts})


def read_config(run_dir: str | Path, *, missing_ok: bool = False) -> dict:
    """A run's config.json, read bounded, as the dict it holds; a corrupt file is a one-line error. With
    `missing_ok`, a run that has not written it yet gives {} (a page polling a run that is starting)."""
    path = Path(run_dir) / CONFIG
    if missing_ok and not path.exists():
        return {}
    try:
        config = json.loads(read_bounded(path, MAX_CONFIG_BYTES))
    except ValueError as e:
        raise CnnlabError(f"{path}: corrupt ({str(e)[:120]})") from None
    if not isinstance(config, dict):
        raise CnnlabError(f"{path}: corrupt (not a JSON object)")
    return config


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    """metrics.jsonl is rewritten whole (atomically) each epoch: it is never left with half a line."""
    write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def read_metrics(run_dir: str | Path) -> list[dict]:
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
