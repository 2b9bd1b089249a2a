"""`fit`: set up, then for each epoch train, evaluate and save. The pieces live beside it: the loop in
loop.py, evaluation in evaluate.py, the training state in state.py, the run folder in rundir.py."""

import contextlib
import dataclasses
import signal
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cnnlab import CnnlabError
from cnnlab.data.augment import AUGMENTATIONS
from cnnlab.data.batches import epoch_order, iterate_batches, mixed_seed, steps_per_epoch
from cnnlab.data.datasets import ImageDataset, load_training_dataset
from cnnlab.engine import checkpoint as ckpt
from cnnlab.engine.config import TrainConfig, config_from_saved, dataset_notice, same_settings
from cnnlab.engine.device import autocast_dtype, select_device, torch_settings
from cnnlab.engine.distributed import DistContext, check_sync_bn, init_distributed
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.loop import (
    EpochProgress,
    NonFiniteLoss,
    Step,
    channels_last_refusal,
    compile_for_training,
    train_one_epoch,
)
from cnnlab.engine.metrics import test_line
from cnnlab.engine.run import ModelCode, build_model, check_run, script_code
from cnnlab.engine.rundir import RunFolder, is_run
from cnnlab.engine.snapshots import snapshot_callbacks
from cnnlab.engine.state import TrainState
from cnnlab.engine.tensorboard import EventFile, log_epoch
from cnnlab.external.spec import SCRIPT, parse_spec
from cnnlab.external.trust import remember
from cnnlab.files import MODEL_SOURCE, write_bytes, write_json
from cnnlab.models import count_parameters


@dataclasses.dataclass
class FitResult:
    run_dir: Path
    dataset: str
    parameters: int
    history: list[dict]  # one row of metrics per epoch, as in metrics.jsonl
    best_epoch: int | None  # chosen on the validation split; None without one
    is_main: bool  # False on the other ranks of a DDP job
    compile_seconds: float = 0.0  # with --compile: the compile, timed apart from the epochs

    @property
    def test_accuracy(self) -> float:
        """Of the selected epoch: the best on validation, else the last."""
        return self.history[(self.best_epoch or len(self.history)) - 1]["test_accuracy"]


class TrainingInterrupted(CnnlabError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved. `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class StopOnSignal:
    """SIGINT/SIGTERM set a flag that the loop reads after each step, so a checkpoint can be written."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}  # signal -> the handler it had

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def training_data(config: TrainConfig, log: Callable[[str], object] = print) -> ImageDataset:
    """The dataset `config` trains on: `config.dataset`, or MNIST when found or downloadable, else mnist-sample,
    said in one line. A sweep loads it once for all its runs (fit_or_reuse)."""
    dataset, notice = load_training_dataset(
        config.dataset,
        config.data_dir,
        image_size=config.image_size,
        channels=config.channels,
        test_split=config.test_split,
    )
    if notice:
        log(notice)
    return dataset


def prepare_data(config: TrainConfig, dataset: ImageDataset | None, log: Callable[[str], object]) -> ImageDataset:
    """The run's dataset, checked, with its validation split held out, then subset."""
    dataset = training_data(config, log) if dataset is None else dataset
    dataset.check_trainable()
    if config.val_split:
        dataset = dataset.with_validation(config.val_split)
    return dataset.subset(config.train_subset, config.seed) if config.train_subset else dataset


def build_training_model(
    config: TrainConfig, dataset: ImageDataset, device: torch.device, dist: DistContext, code: ModelCode | None = None
) -> torch.nn.Module:
    """`code`: the script the model is built from (a run's own copy when resuming)."""
    if dist.world > 1:  # torchrun by hand: before the run folder exists (cnnlab train --nproc checks it earlier)
        check_sync_bn(config.sync_bn, device)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    source = code.source if code else None
    model = build_model(config.model, dataset.info, config.width, model_args=config.model_args, source=source)
    if dist.world > 1 and config.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(device)


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def _augmentation(config: TrainConfig, epoch: int, skip: int) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    """The batch augmentation of `epoch`, its randomness a function of (seed, epoch, step): exact on resume.

    The generator lives on the batch's device: random numbers drawn on the CPU would be copied to a GPU each
    step, a host sync."""
    transform = AUGMENTATIONS[config.augment]
    if transform is None:
        return None
    return lambda pixels, step: transform(
        pixels, torch.Generator(pixels.device).manual_seed(mixed_seed(config.seed, epoch, skip + step))
    )


class RunWriter:
    """What rank 0 writes into the run folder (the other ranks hold one with no folder, which writes nothing)."""

    def __init__(
        self,
        folder: RunFolder | None,
        config: TrainConfig,
        dataset: ImageDataset,
        steps: int,
        code: ModelCode | None = None,
    ):
        self.folder, self.config, self.info, self.steps = folder, config, dataset.info, steps
        self.code = code.record() if code else None
        self.events = EventFile(folder.path) if folder is not None and config.tensorboard else None

    def start(self, code: ModelCode | None, **facts: object) -> None:
        """A new run's config.json, and the copy of the script its model is built from (model.py), whose hash
        is remembered as code this user runs here (external/trust.py): the run reopens from it silently."""
        if self.folder is None:
            return
        if code is not None:
            write_bytes(self.folder.path / MODEL_SOURCE, code.source)
            remember(code.source, origin=f"{code.model}, trained into {self.folder.path.resolve()}")
        ckpt.write_config(self.folder.path, self.config, **facts, **({"code": self.code} if self.code else {}))

    def checkpoint(self, state: TrainState, name: str = ckpt.CHECKPOINT) -> None:
        if self.folder is not None:
            path = self.folder.path / name
            ckpt.save_checkpoint(path, config=self.config, info=self.info, state=state, code=self.code)
            self.folder.commit()  # the new run now stands on its own: the run it replaced goes

    def epoch_end(self, state: TrainState) -> None:
        self.checkpoint(state)
        if state.best_epoch == state.epoch:
            self.checkpoint(state, ckpt.BEST)
        if self.folder is not None:
            ckpt.write_metrics(self.folder.path, state.history)
            if state.trace is not None:
                write_json(self.folder.path / "grad_norms.json", {"steps_per_epoch": self.steps, **state.trace})
        if self.events is not None:
            lr = state.optimizer.param_groups[0]["lr"]
            log_epoch(self.events, state.history[-1], learning_rate=lr, model=state.evaluated)


def fit(
    config: TrainConfig,
    log: Callable[[str], object] = print,
    dataset: ImageDataset | None = None,
    resume: bool = False,
    trust_code: bool = False,
) -> FitResult:
    """Train `config.model` as configured into the run folder `config.out`; with `resume`, continue the run
    there exactly where its last checkpoint was taken (a model built by a script: from the run's copy of it,
    which must be code trained here, or `trust_code`)."""
    device = select_device(config.device)
    dist = init_distributed(device.type, config.batch_size)
    log = log if dist.is_main else (lambda *_: None)  # only rank 0 prints, writes metrics and checkpoints
    if config.compile != "off" and dist.world > 1:
        raise CnnlabError("--compile does not run under DDP (--nproc) yet: leave out one of the two")
    with torch_settings(config.threads, config.deterministic):
        device = dist.local_device(device)
        data = prepare_data(config, dataset, log).to(device)
        config = _settled(config, data.name)
        steps = steps_per_epoch(len(data.train_labels), config.batch_size, dist.world)
        code = _model_code(config, resume, trust_code)
        model = build_training_model(config, data, device, dist, code)
        config = _layout_for(model, config, data, log) if code is not None else config
        model = model.to(memory_format=_memory_format(config))  # type: ignore[call-overload]  # torch's stubs lack it
        state = TrainState.create(model, config, steps)
        with _open_folder(config, dist, resume) as folder:
            if resume:
                assert config.out is not None  # set above
                state.load_state_dict(check_run(config.out, resumable=True, trust_code=trust_code).checkpoint)
            writer = RunWriter(folder if dist.is_main else None, config, data, steps, code)
            if not resume:
                writer.start(code, device=str(device), torch=torch.__version__, threads=torch.get_num_threads())
            for line in _start_lines(config, data, state, device, dist, resume, code):
                log(line)
            compiled, compile_seconds = _compiled(config, data, state, log) if config.compile != "off" else (None, 0.0)
            with StopOnSignal() as stopper:
                for epoch in range(state.epoch + 1, config.epochs + 1):
                    progress = _train_epoch(
                        config=config,
                        data=data,
                        state=state,
                        writer=writer,
                        stopper=stopper,
                        dist=dist,
                        epoch=epoch,
                        steps=steps,
                        compiled=compiled,
                    )
                    row = _evaluate_epoch(config, data, state.evaluated, progress, dist, epoch)
                    if compile_seconds and not any("compile_seconds" in r for r in state.history):
                        row["compile_seconds"] = round(compile_seconds, 3)
                    if _end_epoch(config, state, row, writer, log):
                        break
            dist.check_replicas(state.model, len(data.test_labels), folder.path if folder else None)
    return FitResult(
        Path(config.out or ""),
        data.name,
        count_parameters(state.model),
        state.history,
        state.best_epoch,
        dist.is_main,
        compile_seconds,
    )


def _settled(config: TrainConfig, dataset: str) -> TrainConfig:
    """The settings as the run records them: the dataset's name, the run folder, and the data folder absolute (so
    evaluate, export and resume find it from any working directory)."""
    return dataclasses.replace(
        config,
        dataset=dataset,
        out=config.out or _default_out(config, dataset),
        data_dir=config.data_dir and str(Path(config.data_dir).resolve()),
    )


def _start_lines(
    config: TrainConfig,
    data: ImageDataset,
    state: TrainState,
    device: torch.device,
    dist: DistContext,
    resume: bool,
    code: ModelCode | None,
) -> list[str]:
    """What a run says as it starts: the run, a script's model and its copy, any notice about the dataset."""
    lines = [_start_line(config, data, state, device, dist, resume)]
    if code is not None:
        lines.append(f"The model: {code.described or code.model}; {_copied(code, resume)}")
    if (notice := dataset_notice(config)) is not None:
        lines.append(notice)
    return lines


def _model_code(config: TrainConfig, resume: bool, trust_code: bool) -> ModelCode | None:
    """The script the model is built from: the one named, as it is now, for a new run; the run's own copy when
    resuming (the original may have been edited or deleted since)."""
    if parse_spec(config.model).kind != SCRIPT:
        return None
    if resume:
        assert config.out is not None  # resume_run names the run
        return check_run(config.out, resumable=True, trust_code=trust_code).code
    return script_code(config.model)


def _layout_for(
    model: torch.nn.Module, config: TrainConfig, data: ImageDataset, log: Callable[[str], object]
) -> TrainConfig:
    """`config`, in NCHW memory layout when a learner's forward fails on channels-last batches (`x.view(n, -1)`
    needs a contiguous tensor: the lecture's own CNN does it)."""
    if not config.channels_last:
        return config
    refusal = channels_last_refusal(model, (data.in_channels, *data.input_size), data.train_labels.device)
    if refusal is None:
        return config
    log(f"{config.model}'s forward needs NCHW batches ({refusal}): training without channels_last")
    return dataclasses.replace(config, channels_last=False)


def _copied(code: ModelCode, resume: bool) -> str:
    if resume:
        return f"rebuilt from the run's copy ({MODEL_SOURCE}, SHA-256 {code.sha256[:16]}...)"
    return f"the script copied into the run as {MODEL_SOURCE} (SHA-256 {code.sha256[:16]}...), which it reopens from"


def _end_epoch(
    config: TrainConfig, state: TrainState, row: dict, writer: "RunWriter", log: Callable[[str], object]
) -> bool:
    """Record the epoch, report it, save it; True when early stopping ends the run here."""
    state.epoch, state.progress = row["epoch"], None
    state.history.append(row)
    state.best_epoch = _best_epoch(state.history) if config.val_split else None
    log(
        f"Epoch {row['epoch']}: train loss {row['train_loss']:.4f}, {row['seconds']:.2f} s, "
        f"{row['images_per_s']:,.0f} img/s"
        + (f", validation accuracy {row['val_accuracy']:.2f}%" if config.val_split else "")
    )
    log(test_line(row["test_loss"], row["test_correct"], row["test_total"]))
    writer.epoch_end(state)
    if config.patience and state.best_epoch is not None and row["epoch"] - state.best_epoch >= config.patience:
        state.stopped_early = True
        writer.checkpoint(state)
        log(f"Early stop: no better validation accuracy for {config.patience} epochs (best: epoch {state.best_epoch})")
        return True
    return False


def _open_folder(config: TrainConfig, dist: DistContext, resume: bool) -> "RunFolder | _NoFolder":
    """Rank 0 creates (or, resuming, reopens) and locks the run folder; the other ranks wait for it."""
    folder = None
    assert config.out is not None  # fit() sets it before opening the folder
    if dist.is_main:
        folder = RunFolder.open_existing(config.out) if resume else RunFolder.create(config.out, config.overwrite)
    dist.barrier()
    return folder if folder is not None else _NoFolder()


class _NoFolder:
    path = None

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _compiled(
    config: TrainConfig, data: ImageDataset, state: TrainState, log: Callable[[str], object]
) -> tuple[torch.nn.Module, float]:
    """The training model under torch.compile, compiled on each batch shape of an epoch before training starts."""
    n, size = len(data.train_labels), config.batch_size
    shapes = [min(size, n)] + ([n % size] if n > size and n % size else [])  # full batches, then the last one
    batches = [
        next(
            iterate_batches(
                data.train_images[:k],
                data.train_labels[:k],
                batch_size=k,
                mean=data.mean,
                std=data.std,
                memory_format=_memory_format(config),
            )
        )
        for k in shapes
    ]
    compiled, seconds = compile_for_training(
        state.model,
        batches,
        mode=config.compile,
        label_smoothing=config.label_smoothing,
        amp_dtype=autocast_dtype(config.precision, data.train_labels.device),
    )
    log(
        f"Compiled the training step (torch.compile, mode {config.compile}, batches of {shapes}) in {seconds:.1f} s, "
        "not counted in the epoch times"
    )
    return compiled, seconds


def _train_epoch(
    *,
    config: TrainConfig,
    data: ImageDataset,
    state: TrainState,
    writer: RunWriter,
    stopper: StopOnSignal,
    dist: DistContext,
    epoch: int,
    steps: int,
    compiled: torch.nn.Module | None = None,
) -> EpochProgress:
    """One epoch of training, with step checkpoints and progress; on a signal, checkpoint and stop.

    `compiled`: the model under torch.compile, trained in place of the plain one (they share the weights)."""
    skip = state.progress.step if state.progress else 0
    if dist.world > 1 and state.progress and not dist.is_main:  # saved partial sums are all ranks': count once
        state.progress = EpochProgress(step=skip, seconds=state.progress.seconds)
    batches = _epoch_batches(config, data, dist, epoch, skip)
    bar = tqdm(
        total=steps,
        initial=skip,
        desc=f"epoch {epoch}/{config.epochs}",
        unit="batch",
        leave=False,
        disable=not (config.progress and dist.is_main),
        dynamic_ncols=True,
    )
    callbacks = [lambda step: bar.update(1)]
    if config.checkpoint_every:
        callbacks.append(_step_checkpoints(config.checkpoint_every, state, writer))
    if state.trace is not None:
        callbacks.append(_tracer(state.model, state.trace))
    if writer.folder is not None:  # the lab's replay of kernels forming (engine/snapshots.py)
        callbacks += snapshot_callbacks(state.model, writer.folder.path, data, epoch=epoch, steps=steps, skip=skip)
    device = data.train_labels.device
    with bar, _last_checkpoint_named(state):
        progress, finished = train_one_epoch(
            compiled if compiled is not None else _distributed(state.model, dist),
            batches,
            optimizer=state.optimizer,
            scheduler=state.scheduler,
            label_smoothing=config.label_smoothing,
            ema=state.ema,
            amp_dtype=autocast_dtype(config.precision, device),
            start=state.progress,
            callbacks=callbacks,
            should_stop=lambda: dist.any(stopper.signal is not None),
            check_every=config.check_every or (1 if device.type == "cpu" else 50),
        )
    state.progress = dist.sum_progress(progress)
    if not finished:
        writer.checkpoint(state)
        number = stopper.signal or signal.SIGTERM  # a rank that got no signal itself stops with the others
        message = (
            f"{signal.Signals(number).name}: stopped at epoch {epoch} step {progress.step}, "
            f"checkpoint saved; resume with: cnnlab train --resume {config.out}"
        )
        raise TrainingInterrupted(message if dist.is_main else "", 128 + number)  # said once, by rank 0
    return state.progress


def _epoch_batches(
    config: TrainConfig, data: ImageDataset, dist: DistContext, epoch: int, skip: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's batches of `epoch`, from step `skip` on (a resumed epoch continues its own order)."""
    order = epoch_order(len(data.train_labels), config.seed, epoch, data.train_labels.device)
    return iterate_batches(
        data.train_images,
        data.train_labels,
        batch_size=config.batch_size,
        mean=data.mean,
        std=data.std,
        order=order[skip * config.batch_size :],
        rank=dist.rank,
        world=dist.world,
        augment=_augmentation(config, epoch, skip),
        memory_format=_memory_format(config),
    )


def _step_checkpoints(every: int, state: TrainState, writer: RunWriter) -> Callable[[Step], None]:
    def save(step: Step) -> None:
        if step.number % every == 0:
            state.progress = step.sums()
            writer.checkpoint(state)

    return save


def _tracer(model: torch.nn.Module, trace: dict) -> Callable[[Step], None]:
    weights = (getattr(m, "weight", None) for m in model.modules())
    weight = next(w for w in weights if isinstance(w, torch.Tensor) and w.dim() > 1)

    def record(step: Step) -> None:
        assert weight.grad is not None  # called after each backward pass
        trace["grad_norms"].append(weight.grad.norm().item())
        trace["train_loss"].append(step.loss.item())
        trace["train_error"].append(100.0 * (1 - (step.output.argmax(1) == step.labels).float().mean().item()))

    return record


@contextlib.contextmanager
def _last_checkpoint_named(state: TrainState) -> Iterator[None]:
    """Say, when a NaN stops the run, which checkpoint is the last good one."""
    try:
        yield
    except NonFiniteLoss as e:
        last = (
            f"the checkpoint of epoch {state.epoch} is intact"
            if state.epoch or state.progress
            else "no checkpoint had been written yet"
        )
        raise NonFiniteLoss(f"{e}; {last}") from None


def _distributed(model: torch.nn.Module, dist: DistContext) -> torch.nn.Module:
    return torch.nn.parallel.DistributedDataParallel(model) if dist.world > 1 else model


def _evaluate_epoch(
    config: TrainConfig,
    data: ImageDataset,
    model: torch.nn.Module,
    progress: EpochProgress,
    dist: DistContext,
    epoch: int,
) -> dict:
    start = time.perf_counter()
    options: dict[str, Any] = dict(
        mean=data.mean,
        std=data.std,
        num_classes=data.num_classes,
        batch_size=config.test_batch_size,
        memory_format=_memory_format(config),
        dist=dist,
        amp_dtype=autocast_dtype(config.precision, data.train_labels.device),
    )
    test = evaluate(model, data.test_images, data.test_labels, **options)
    row = {
        "epoch": epoch,
        "train_loss": round(progress.train_loss, 6),
        "train_accuracy": progress.train_accuracy,
        "test_loss": round(test.loss, 6),
        "test_accuracy": test.accuracy,
        "test_correct": test.correct,
        "test_total": test.total,
    }
    if data.val_images is not None and data.val_labels is not None:
        val = evaluate(model, data.val_images, data.val_labels, **options)
        row.update(val_loss=round(val.loss, 6), val_accuracy=val.accuracy)
    row.update(
        seconds=round(progress.seconds + time.perf_counter() - start, 3),
        train_seconds=round(progress.seconds, 3),
        images_per_s=round(progress.seen / max(progress.seconds, 1e-9), 1),
    )
    return row


def _best_epoch(history: list[dict]) -> int:
    """The first epoch with the highest validation accuracy."""
    return max(history, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]


def _start_line(
    config: TrainConfig, data: ImageDataset, state: TrainState, device: torch.device, dist: DistContext, resume: bool
) -> str:
    parts = [
        f"{'Resuming' if resume else 'Training'} {config.model} ({count_parameters(state.model):,} parameters) "
        f"on {data.name} ({len(data.train_labels):,} train / "
        + (f"{len(data.val_labels):,} validation / " if data.val_labels is not None else "")
        + f"{len(data.test_labels):,} test images)",
        f"recipe {config.recipe}",
        f"device {device}",
    ]
    if autocast_dtype(config.precision, device):
        parts.append("bf16 autocast")
    parts.append(f"run folder {config.out}")
    if dist.world > 1:
        threads = torch.get_num_threads()
        parts.append(
            f"{dist.world} processes of {config.batch_size // dist.world}+ images per step, "
            f"{threads} thread{'s' if threads > 1 else ''} each"
        )
    if resume:
        parts.append(f"from epoch {state.epoch + 1} step {state.progress.step if state.progress else 0}")
    return ", ".join(parts)


def _default_out(config: TrainConfig, dataset_name: str) -> str:
    return str(Path("runs") / f"{parse_spec(config.model).slug}-{dataset_name}-{datetime.now():%Y%m%d-%H%M%S}")


# What `--resume` may change: how the run executes, and `epochs` to extend a constant-rate run.
RESUME_CHANGES = ("epochs", "progress", "threads", "checkpoint_every", "check_every", "device")


def resume_run(
    run_dir: str | Path, log: Callable[[str], object] = print, trust_code: bool = False, **changes: Any
) -> FitResult:
    """Continue the run in `run_dir` from its last checkpoint, with the settings it was started with.

    `changes` may set RESUME_CHANGES: `epochs` extends a finished constant-rate run (a one-cycle schedule
    was planned for its epochs and cannot be stretched). `trust_code`: the user's consent to run the run's copy
    of its script, for a model built from one that was not trained here."""
    flag = lambda name: "--no-progress" if name == "progress" else "--" + name.replace("_", "-")
    refused = sorted(k for k, v in changes.items() if v is not None and k not in RESUME_CHANGES)
    if refused:
        raise CnnlabError(
            f"--resume continues a run with its own settings; it cannot change "
            f"{', '.join(map(flag, refused))} (it can change {', '.join(map(flag, RESUME_CHANGES))})"
        )
    # a run folder, its checkpoint whole and agreeing with config.json
    run = check_run(run_dir, resumable=True, trust_code=trust_code)
    config = config_from_saved({**run.checkpoint["config"], "out": str(run_dir), "overwrite": False}, str(run_dir))
    given = {k: v for k, v in changes.items() if v is not None}
    if given.get("epochs", config.epochs) != config.epochs and config.schedule != "constant":
        raise CnnlabError(
            f"{run_dir}: its {config.schedule} schedule was planned for {config.epochs} epochs and "
            "cannot be extended; train a new run with more --epochs"
        )
    config = dataclasses.replace(config, **given).validate()
    if run.is_finished(config.epochs):
        raise CnnlabError(
            f"{run_dir}: the run already finished its {config.epochs} epochs"
            + ("" if run.checkpoint.get("stopped_early") else "; pass --epochs N to extend it")
        )
    return fit(config, log=log, resume=True, trust_code=trust_code)


def fit_or_reuse(
    config: TrainConfig,
    log: Callable[[str], object] = print,
    dataset: ImageDataset | None = None,
    trust_code: bool = False,
) -> str:
    """For sweeps (compare, depth, overfit): reuse a finished run of the same settings in `config.out` (a
    script's model: of the script as it is now), resume an unfinished one, or else train (on `dataset` when the
    sweep loaded it once for all its runs), a folder holding anything else being replaced only with `overwrite`.
    Returns what it did: "reused", "resumed" or "trained"."""
    out = Path(config.out or "")
    if is_run(out) and (out / ckpt.CHECKPOINT).is_file():
        saved = ckpt.read_config(out)
        code = script_code(config.model)
        if same_settings(saved, config) and saved.get("code") == (code.record() if code else None):
            if check_run(out, resumable=True, trust_code=trust_code).is_finished():
                return "reused"
            resume_run(out, log=log, trust_code=trust_code, progress=config.progress)
            return "resumed"
    fit(config, log=log, dataset=dataset)
    return "trained"
