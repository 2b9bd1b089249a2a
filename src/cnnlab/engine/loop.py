"""One training epoch: batches -> forward -> loss -> backward -> update, with no host sync per step.

The running loss and accuracy are summed on the device; the loss is read back only to test it for NaN/inf
every `check_every` steps (every step on a CPU, where reading it is free; the default on a GPU is 50), and
callbacks that need a number (a progress bar, a step checkpoint) read it themselves. With `check_every` 1
the test comes before the update, so the weights are never touched by a bad step; with N > 1 a NaN is
caught within N steps, the run stops without saving, and resuming starts from the last checkpoint.

`compile_for_training` wraps a model in `torch.compile` and compiles it before the first epoch, so that
the compile is timed on its own rather than inside the first epoch.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab import CnnlabError


@dataclass
class EpochProgress:
    """The sums of an epoch so far: a checkpoint taken part-way through an epoch keeps them to resume exactly."""

    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    @property
    def train_loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def train_accuracy(self) -> float:
        return 100.0 * self.correct / max(self.seen, 1)


@dataclass
class Step:
    """What a callback sees after each update."""

    number: int  # steps done in this epoch, this one included
    loss: torch.Tensor  # this batch's mean loss, on the device
    output: torch.Tensor
    labels: torch.Tensor
    sums: Callable[[], EpochProgress]  # the epoch's sums so far (reads them back from the device)


class NonFiniteLoss(CnnlabError):
    pass


def _guard(loss: torch.Tensor, step: int, optimizer: torch.optim.Optimizer) -> None:
    if not torch.isfinite(loss):
        raise NonFiniteLoss(
            f"training stopped: loss became {loss.item()} by step {step} of the epoch (learning "
            f"rate {optimizer.param_groups[0]['lr']:.3g}). Try a lower --lr, or --optimizer adam"
        )


def _loss(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    amp_dtype: torch.dtype | None,
    label_smoothing: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        output = model(images).float()
    return F.cross_entropy(output, labels, label_smoothing=label_smoothing), output


def compile_for_training(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    mode: str,
    amp_dtype: torch.dtype | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.nn.Module, float]:
    """`torch.compile(model, mode=mode)`, compiled now by a forward and backward pass on each of `batches` (one
    per batch shape the epoch will show: compiled for fixed shapes, a new shape would compile again mid-epoch).
    The weights, buffers (BatchNorm's running statistics), gradients and generators are put back afterwards,
    so training then runs exactly as if the passes had not happened. Returns the compiled model and the
    seconds the compile took."""
    start = time.perf_counter()
    compiled = torch.compile(model, mode=mode, dynamic=False)
    saved = {name: value.clone() for name, value in model.state_dict().items()}
    device = next(model.parameters()).device
    model.train()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for images, labels in batches:
            _loss(compiled, images, labels, amp_dtype, label_smoothing)[0].backward()
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return compiled, time.perf_counter() - start  # type: ignore[return-value]  # a Module, typed as a callable


def train_one_epoch(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    label_smoothing: float = 0.0,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
    amp_dtype: torch.dtype | None = None,
    start: EpochProgress | None = None,
    callbacks: Iterable[Callable[[Step], object]] = (),
    should_stop: Callable[[], bool] = lambda: False,
    check_every: int = 1,
) -> tuple[EpochProgress, bool]:
    """Train on every batch; returns the epoch's sums and whether it ran to the end (False: `should_stop`).

    `start` resumes an epoch part-way; each callback is called with a `Step` after every update."""
    model.train()
    begun = start or EpochProgress()
    clock = time.perf_counter() - begun.seconds
    device = next(model.parameters()).device
    total_type = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    loss_sum = torch.tensor(begun.loss_sum, dtype=total_type, device=device)
    correct = torch.tensor(begun.correct, dtype=torch.int64, device=device)
    step, seen = begun.step, begun.seen

    def sums() -> EpochProgress:  # a host sync: for checkpoints, logs and the end of the epoch
        return EpochProgress(step, loss_sum.item(), int(correct.item()), seen, time.perf_counter() - clock)

    finished = True
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss, output = _loss(model, images, labels, amp_dtype, label_smoothing)
        if check_every == 1:  # before the update, so the weights and the last checkpoint stay good
            _guard(loss, step + 1, optimizer)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach().to(total_type) * len(labels)
        correct += (output.detach().argmax(1) == labels).sum()
        step, seen = step + 1, seen + len(labels)
        if check_every > 1 and step % check_every == 0:
            _guard(loss_sum, step, optimizer)
        for callback in callbacks:
            callback(Step(step, loss, output, labels, sums))
        if should_stop():
            finished = False
            break
    if check_every > 1:
        _guard(loss_sum, step, optimizer)
    return sums(), finished


def channels_last_refusal(model: torch.nn.Module, input_shape: tuple, device: torch.device | str) -> str | None:
    """Why `model` cannot run on channels-last batches (its weights still NCHW), or None when it can: a
    learner's `x.view(n, -1)` needs a contiguous tensor (the lecture's own CNN does it)."""
    x = torch.zeros(2, *input_shape, device=device).to(memory_format=torch.channels_last)
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
        return None
    except Exception as e:  # whatever the learner's forward raises on it
        return str(e).split(" (")[0].strip().splitlines()[0][:80] if str(e).strip() else type(e).__name__
    finally:
        model.train(was_training)


def fastest_layout(
    model: torch.nn.Module, input_shape: tuple, device: torch.device | str = "cpu"
) -> torch.memory_format:
    """channels_last (measured faster on CPU for these nets), unless `model`'s forward refuses it."""
    refused = channels_last_refusal(model, input_shape, device) is not None
    return torch.contiguous_format if refused else torch.channels_last
