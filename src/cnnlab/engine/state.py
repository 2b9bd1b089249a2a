"""Everything a run needs to continue exactly: model, optimizer, schedule, weight average, generators,
history and position. `TrainState.state_dict()` is the training half of the checkpoint format and
`load_state_dict` its one reader, so saving and resuming cannot drift apart."""

import dataclasses
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from cnnlab import CnnlabError
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.loop import EpochProgress


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "constant":
        return None
    if config.schedule == "step":  # He et al.: the rate divided by 10 at half and at three quarters of training
        steps = config.epochs * steps_per_epoch
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[steps // 2, steps * 3 // 4], gamma=0.1)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )


class WeightAverage(torch.optim.swa_utils.AveragedModel):
    """An exponential moving average of a model's weights and buffers, whose decay grows as (1 + n) / (10 + n)
    up to `decay` (n: updates so far), so that a short run's average is not stuck near the initial weights.

    No host sync per update: the count n stays on the CPU and the decay is a Python number (AveragedModel's
    own update copies its count to the device each step, which on a GPU waits for the queued work)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__(model, use_buffers=True)
        self.decay = decay

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        n = int(self.n_averaged)  # a CPU tensor: free to read
        weight = 1.0 if n == 0 else 1.0 - min((1 + n) / (10 + n), self.decay)  # the first update copies
        pairs = zip([*self.module.parameters(), *self.module.buffers()], [*model.parameters(), *model.buffers()])
        floats: list[tuple[torch.Tensor, torch.Tensor]] = []  # weights and statistics
        counters: list[tuple[torch.Tensor, torch.Tensor]] = []  # BatchNorm's step counts, which take the current value
        for averaged, current in pairs:
            (floats if averaged.is_floating_point() else counters).append((averaged, current))
        torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], weight)
        if counters:
            torch._foreach_copy_([a for a, _ in counters], [c for _, c in counters])
        self.n_averaged += 1


def rng_state() -> dict:
    """Every generator's state, as tensors and numbers only (weights_only loading allows nothing else)."""
    version, words, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [version, list(words), gauss],
        "numpy": [torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # None: a constant rate
    ema: torch.optim.swa_utils.AveragedModel | None = None
    epoch: int = 0  # epochs completed
    progress: EpochProgress | None = None  # sums of an epoch stopped part-way
    history: list[dict] = field(default_factory=list)
    trace: dict | None = None  # per-step lists when tracing (grad_norms.json)
    best_epoch: int | None = None  # by validation accuracy, when there is a validation split
    stopped_early: bool = False  # early stopping ended the run before its last epoch

    @classmethod
    def create(cls, model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int) -> "TrainState":
        optimizer = build_optimizer(model, config)
        # The average is what gets evaluated and saved as the run's weights; BatchNorm statistics are averaged too.
        ema = WeightAverage(model, config.ema) if config.ema else None
        trace: dict[str, list[float]] | None = (
            {"grad_norms": [], "train_loss": [], "train_error": []} if config.trace_grad else None
        )
        return cls(model, optimizer, build_scheduler(optimizer, config, steps_per_epoch), ema, trace=trace)

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are evaluated and saved: the average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self) -> dict:
        return {
            "state_dict": self.evaluated.state_dict(),
            "train_state_dict": self.model.state_dict() if self.ema is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "epoch_state": dataclasses.asdict(self.progress) if self.progress else None,
            "metrics": self.history,
            "rng": rng_state(),
            "trace": self.trace,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }

    def load_state_dict(self, payload: dict) -> None:
        """Restore from a checkpoint of this run; a checkpoint that does not fit is a one-line error."""
        try:
            self.model.load_state_dict(payload.get("train_state_dict") or payload["state_dict"])
            if self.ema is not None:
                self.ema.load_state_dict(payload["ema"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            set_rng_state(payload["rng"])
            self.epoch, self.history = int(payload["epoch"]), list(payload["metrics"])
            self.progress = EpochProgress(**payload["epoch_state"]) if payload.get("epoch_state") else None
            if self.trace is not None:
                self.trace = {k: list(v) for k, v in (payload.get("trace") or self.trace).items()}
            self.best_epoch, self.stopped_early = payload.get("best_epoch"), bool(payload.get("stopped_early"))
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CnnlabError(
                f"the checkpoint does not fit this run's model and settings ({type(e).__name__}: {detail})"
            ) from None
