"""The training loop: dataset tensor -> index-slice batches -> model -> metrics and checkpoint.

Functions with explicit arguments, in the order they run: device, model, optimizer, one epoch,
evaluation, then `fit`, which ties them together and reports through the `log` callable it is given.
"""
import dataclasses
import hashlib
import random
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cnnlab import CnnlabError
from cnnlab.data.augment import AUGMENTATIONS
from cnnlab.data.batches import epoch_order, iterate_batches
from cnnlab.data.batches import steps_per_epoch as count_steps
from cnnlab.data.datasets import ImageDataset, load_training_dataset
from cnnlab.engine import checkpoint as ckpt
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.distributed import init_distributed
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.metrics import test_line
from cnnlab.engine.run import build_model
from cnnlab.files import write_json
from cnnlab.models import count_parameters


def select_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is visible to this PyTorch build")
    if name == "mps" and not torch.backends.mps.is_available():
        raise CnnlabError("--device mps: Apple's Metal backend is not available here")
    return torch.device(name)


def build_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs,
                                               steps_per_epoch=steps_per_epoch)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None: plain float32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if precision == "bf16" else None


def ema_with_warmup(decay: float):
    """AveragedModel's update for an exponential moving average whose decay grows as (1 + n) / (10 + n)
    up to `decay` (n: updates so far), so that a short run's average is not stuck near the initial weights."""
    @torch.no_grad()
    def update(averaged: list, current: list, num_averaged) -> None:
        if not averaged[0].is_floating_point():  # BatchNorm's step counters: take the current count
            torch._foreach_copy_(averaged, current)
            return
        n = int(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1 + n) / (10 + n)))
    return update


def first_layer(model) -> torch.nn.Module:
    return next(m for m in model.modules() if hasattr(m, "weight") and m.weight is not None and m.weight.dim() > 1)


class TrainingInterrupted(CnnlabError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved. `exit_code` is 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def train_one_epoch(model, batches, optimizer, scheduler, label_smoothing=0.0, memory_format=torch.contiguous_format,
                    progress=None, trace=None, state=None, on_step=None, stop=lambda: False, ema=None,
                    amp_dtype=None) -> dict:
    """One pass over `batches`; returns the mean training loss and accuracy (running, as the model
    learns: the ResNet paper's training error), seconds and images/s.

    `state` carries the sums of an epoch resumed part-way; `on_step(state)` is called after every step
    (for step checkpoints); when `stop()` turns true the epoch ends early with state["complete"] False.
    When `trace` is a dict of lists, every step appends the first layer's gradient norm ("grad_norms"), the
    batch's loss ("train_loss") and its error in % ("train_error") to it; an
    `ema` (torch.optim.swa_utils.AveragedModel) is updated after every step. With `amp_dtype` the forward
    pass runs under autocast to that dtype (the weights and their updates stay float32)."""
    model.train()
    state = dict(state or {"step": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0})
    start = time.perf_counter() - state["seconds"]
    loss_sum = torch.tensor(state["loss_sum"], dtype=torch.float64)
    correct = torch.tensor(state["correct"], dtype=torch.int64)
    watched = first_layer(model) if trace is not None else None
    state["complete"] = True
    for images, labels in batches:
        images = images.contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = model(images).float()
        loss = F.cross_entropy(output, labels, label_smoothing=label_smoothing)
        if not torch.isfinite(loss):  # before the update, so the weights and the last checkpoint stay good
            raise CnnlabError(f"training stopped: loss became {loss.item()} at step {state['step'] + 1} of the epoch "
                              f"(learning rate {optimizer.param_groups[0]['lr']:.3g}); the last checkpoint is intact. "
                              "Try a lower --lr, or --optimizer adam")
        loss.backward()
        if watched is not None:
            trace["grad_norms"].append(watched.weight.grad.norm().item())
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        if scheduler is not None:
            scheduler.step()
        batch_correct = (output.detach().argmax(1) == labels).sum().cpu()
        loss_sum += loss.detach().double().cpu() * len(labels)
        correct += batch_correct
        if trace is not None:
            trace["train_loss"].append(loss.item())
            trace["train_error"].append(100.0 * (1 - batch_correct.item() / len(labels)))
        state.update(step=state["step"] + 1, seen=state["seen"] + len(labels), loss_sum=loss_sum.item(),
                     correct=correct.item(), seconds=time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
            if progress.n % 20 == 0:
                progress.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{state['seen'] / state['seconds']:,.0f}")
        if on_step is not None:
            on_step(state)
        if stop():
            state["complete"] = False
            break
    seen = max(state["seen"], 1)
    return {**state, "train_loss": state["loss_sum"] / seen, "train_accuracy": 100.0 * state["correct"] / seen,
            "train_seconds": state["seconds"], "images_per_s": state["seen"] / max(state["seconds"], 1e-9)}


def default_run_dir(config: TrainConfig, dataset_name: str) -> Path:
    return Path("runs") / f"{config.model}-{dataset_name}-{datetime.now():%Y%m%d-%H%M%S}"


def _augmentation(config: TrainConfig, epoch: int, skip: int):
    """The batch augmentation of `epoch`, its randomness a function of (seed, epoch, step): exact on resume."""
    transform = AUGMENTATIONS[config.augment]
    if transform is None:
        return None

    def augment(pixels, step):
        generator = torch.Generator().manual_seed((config.seed * 100_003 + epoch) * 1_000_003 + skip + step)
        return transform(pixels, generator)
    return augment


def _rng_state() -> dict:
    """Every generator's state, as tensors and numbers only (weights_only loading allows nothing else)."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": [version, list(words), gauss],
             "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _StopOnSignal:
    """SIGINT/SIGTERM set a flag that the loop reads after each step, so a checkpoint can be written."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclasses.dataclass
class FitResult:
    run_dir: Path
    dataset: str
    parameters: int
    history: list[dict]  # one row of metrics per epoch, as in metrics.jsonl
    is_main: bool        # False on the other ranks of a DDP job

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"]


def fit(config: TrainConfig, log=print, dataset: ImageDataset | None = None, resume: dict | None = None) -> FitResult:
    """Train `config.model` as configured; write config, metrics and checkpoints; return the summary.

    With `resume` (a checkpoint of this run) training continues exactly where that checkpoint was taken."""
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    device = select_device(config.device)
    ctx = init_distributed(device.type)
    if ctx.world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
        if not ctx.is_main:  # only rank 0 prints, writes metrics and checkpoints
            log, config = (lambda *_: None), dataclasses.replace(config, progress=False)
        if config.batch_size < ctx.world:
            raise CnnlabError(f"--batch-size {config.batch_size} is smaller than the {ctx.world} processes sharing it")
    if dataset is None:
        dataset, notice = load_training_dataset(config.dataset, config.data_dir)
        if notice:
            log(notice)
    if config.train_subset is not None and config.train_subset < len(dataset.train_labels):
        keep = torch.randperm(len(dataset.train_labels), generator=torch.Generator().manual_seed(config.seed))
        keep = keep[:config.train_subset].sort().values
        dataset.train_images, dataset.train_labels = dataset.train_images[keep], dataset.train_labels[keep]
    dataset.to(device)
    amp_dtype = autocast_dtype(config.precision, device)
    data_info = dataset.info.to_dict()
    config = dataclasses.replace(config, dataset=dataset.name)
    run_dir = Path(config.out) if config.out else default_run_dir(config, dataset.name)
    if resume is None and ctx.is_main:
        ckpt.prepare_run_dir(run_dir, config.overwrite)
    ctx.barrier()

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = build_model(config.model, dataset.info, config.width)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    if ctx.world > 1 and config.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device=device, memory_format=memory_format)
    steps_per_epoch = count_steps(len(dataset.train_labels), config.batch_size, ctx.world)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    # The average is what gets evaluated and saved as the run's weights; BatchNorm statistics are averaged too.
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_with_warmup(config.ema),
                                              use_buffers=True) if config.ema else None
    evaluated = ema.module if ema is not None else model
    trace = {"grad_norms": [], "train_loss": [], "train_error": []} if config.trace_grad else None
    history, epoch_state, first_epoch = [], None, 1
    if resume is not None:
        model.load_state_dict(resume.get("train_state_dict") or resume["state_dict"])
        if ema is not None:
            ema.load_state_dict(resume["ema"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume["scheduler"])
        _set_rng_state(resume["rng"])
        history, epoch_state = list(resume["metrics"]), resume.get("epoch_state")
        if epoch_state and not ctx.is_main:  # the saved partial sums are all ranks' together: count them once
            epoch_state = {**epoch_state, "loss_sum": 0.0, "correct": 0, "seen": 0}
        first_epoch = resume["epoch"] + 1
        if trace is not None:
            trace = {k: list(v) for k, v in (resume.get("trace") or trace).items()}
        if ctx.is_main:  # metrics.jsonl may hold a row written after this checkpoint: rewrite it from the checkpoint
            ckpt.write_metrics(run_dir, history)
    elif ctx.is_main:
        write_json(run_dir / ckpt.CONFIG, {**dataclasses.asdict(config), "device": str(device),
                                                "torch": torch.__version__, "threads": torch.get_num_threads()})
    log(f"{'Resuming' if resume else 'Training'} {config.model} ({count_parameters(model):,} parameters) on "
        f"{dataset.name} ({len(dataset.train_labels):,} train / {len(dataset.test_labels):,} test images), "
        f"recipe {config.recipe}, device {device}{', bf16 autocast' if amp_dtype else ''}, run directory {run_dir}"
        + (f", {ctx.world} processes of {config.batch_size // ctx.world}+ images per step" if ctx.world > 1 else "")
        + (f", from epoch {first_epoch} step {(epoch_state or {}).get('step', 0)}" if resume else ""))

    trained = torch.nn.parallel.DistributedDataParallel(model) if ctx.world > 1 else model

    def checkpoint(epoch_done: int, state=None, name=ckpt.CHECKPOINT):
        if not ctx.is_main:
            return
        ckpt.save_checkpoint(run_dir / name, {
            "model": {"name": config.model, "width": config.width}, "dataset": data_info,
            "config": dataclasses.asdict(config), "state_dict": evaluated.state_dict(),
            "train_state_dict": model.state_dict() if ema is not None else None,
            "ema": ema.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
            "epoch": epoch_done, "epoch_state": state, "metrics": history, "rng": _rng_state(),
            "trace": trace})

    def on_step(state):
        if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
            checkpoint(epoch - 1, state)

    with _StopOnSignal() as stopper:
        for epoch in range(first_epoch, config.epochs + 1):
            skip = epoch_state["step"] if epoch_state else 0
            order = epoch_order(len(dataset.train_labels), config.seed, epoch, device)[skip * config.batch_size:]
            batches = iterate_batches(dataset.train_images, dataset.train_labels, config.batch_size,
                                      dataset.mean, dataset.std, order, ctx.rank, ctx.world,
                                      _augmentation(config, epoch, skip))
            with tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                      leave=False, disable=not config.progress, dynamic_ncols=True) as bar:
                train = train_one_epoch(trained, batches, optimizer, scheduler, config.label_smoothing, memory_format,
                                        bar, trace, epoch_state, on_step,
                                        lambda: ctx.any(stopper.signal is not None), ema, amp_dtype)  # all ranks stop at one step
            epoch_state = None
            if ctx.world > 1:  # the epoch's loss and accuracy over all ranks' shards
                loss_sum, correct, seen = ctx.sum(train["loss_sum"], train["correct"], train["seen"])
                train.update(train_loss=loss_sum / seen, train_accuracy=100.0 * correct / seen,
                             images_per_s=seen / train["train_seconds"], loss_sum=loss_sum, correct=correct, seen=seen)
            if not train["complete"]:
                checkpoint(epoch - 1, {k: train[k] for k in ("step", "loss_sum", "correct", "seen", "seconds")})
                number = stopper.signal or signal.SIGTERM  # a rank that got no signal itself stops with the others
                raise TrainingInterrupted(f"{signal.Signals(number).name}: stopped at epoch {epoch} step {train['step']}, "
                                          f"checkpoint saved; resume with: cnnlab train --resume {run_dir}", 128 + number)
            test_start = time.perf_counter()
            test = evaluate(evaluated, dataset.test_images, dataset.test_labels, mean=dataset.mean, std=dataset.std,
                            num_classes=dataset.num_classes, batch_size=config.test_batch_size,
                            memory_format=memory_format, dist=ctx, amp_dtype=amp_dtype)
            row = {"epoch": epoch, "train_loss": round(train["train_loss"], 6),
                   "train_accuracy": train["train_accuracy"], "test_loss": round(test.loss, 6),
                   "test_accuracy": test.accuracy,
                   "seconds": round(train["train_seconds"] + time.perf_counter() - test_start, 3),
                   "train_seconds": round(train["train_seconds"], 3), "images_per_s": round(train["images_per_s"], 1)}
            history.append(row)
            log(f"Epoch {epoch}: train loss {row['train_loss']:.4f}, {row['seconds']:.2f} s, "
                f"{row['images_per_s']:,.0f} img/s")
            log(test_line(test.loss, test.correct, test.total))
            checkpoint(epoch)
            if row["test_accuracy"] >= max(r["test_accuracy"] for r in history):
                checkpoint(epoch, name=ckpt.BEST)
            if ctx.is_main:
                ckpt.write_metrics(run_dir, history)
            if trace is not None and ctx.is_main:
                write_json(run_dir / "grad_norms.json", {"steps_per_epoch": steps_per_epoch, **trace})
    if ctx.world > 1:  # DDP keeps replicas equal; check it, and that every test image was counted once
        digests = ctx.gather(hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())).hexdigest())
        shares = ctx.gather(test.local_total)
        if ctx.is_main:
            write_json(run_dir / "ddp.json", {"world_size": ctx.world, "weight_sha256_per_rank": digests,
                                                   "test_images_per_rank": shares})
            if len(set(digests)) != 1:
                raise CnnlabError(f"ranks ended with different weights: {digests}")
    return FitResult(run_dir, dataset.name, count_parameters(model), history, ctx.is_main)


def resume_run(run_dir, log=print) -> FitResult:
    """Continue the run in `run_dir` from its last checkpoint, with the settings it was started with."""
    payload = ckpt.load_checkpoint(run_dir)
    if payload.get("rng") is None:
        raise CnnlabError(f"{run_dir}: checkpoint has no training state to resume from")
    config = TrainConfig(**{**payload["config"], "out": str(run_dir)})
    if payload["epoch"] >= config.epochs and not payload.get("epoch_state"):
        raise CnnlabError(f"{run_dir}: the run already finished its {config.epochs} epochs")
    return fit(config, log=log, resume=payload)
