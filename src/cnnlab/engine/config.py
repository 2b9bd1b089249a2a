"""Training configuration: one typed dataclass, defaults < recipe < config file < flags."""
import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cnnlab import CnnlabError
from cnnlab.data.augment import AUGMENTATIONS
from cnnlab.models import list_models

# A recipe is a named set of defaults; flags given by the user still win.
RECIPES = {
    # The lecture's script exactly: SGD lr 0.01 momentum 0.5, batch 64, 9 epochs (range(1, 10)).
    "lecture": dict(optimizer="sgd", lr=0.01, momentum=0.5, batch_size=64, epochs=9, schedule="constant",
                    weight_decay=0.0, label_smoothing=0.0),
    # Fewer seconds to a better accuracy: larger batches, Adam, one-cycle. Peak 0.004: at 0.01 the
    # Inception net (no BatchNorm) diverged to 10% accuracy in a 3-epoch run.
    "default": dict(optimizer="adam", lr=0.004, momentum=0.9, batch_size=128, epochs=3, schedule="onecycle",
                    weight_decay=0.0, label_smoothing=0.0),
    # Least wall time to 99% on MNIST on 2 CPU cores: a BatchNorm CNN, 2 epochs, large batches, Adam one-cycle.
    "fast": dict(model="cnn-bn-8-24", optimizer="adam", lr=0.01, batch_size=256, epochs=2, schedule="onecycle",
                 weight_decay=0.0, label_smoothing=0.1),
    # Highest accuracy in under 10 minutes on 2 CPU cores: a 3-conv BatchNorm CNN with batched random affine
    # augmentation and an average of the weights (EMA over ~1,000 steps, about 2 epochs).
    "best": dict(model="cnn-bn-32-64-64-fc256", optimizer="adam", lr=0.005, batch_size=128, epochs=20,
                 schedule="onecycle", weight_decay=0.0, label_smoothing=0.1, augment="affine", ema=0.999),
    # For predict and serve (issue 12): the best recipe's model and optimiser, trained on what users' digits
    # look like once preprocessed (augment robust: elastic and affine shape, stroke width, contrast, blur),
    # 4 epochs (~25 s each) to stay under 3 minutes on 2 CPU cores; no EMA, whose ~1,000-step average
    # would still remember the first of these 1,876 steps.
    "robust": dict(model="cnn-bn-32-64-64-fc256", optimizer="adam", lr=0.005, batch_size=128, epochs=4,
                   schedule="onecycle", weight_decay=0.0, label_smoothing=0.1, augment="robust", ema=0.0),
    # He et al.'s CIFAR recipe at a CPU budget, for the depth experiment (cnnlab depth).
    "depth": dict(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=128, epochs=3, schedule="constant",
                  weight_decay=0.0, label_smoothing=0.0),
}


@dataclass
class TrainConfig:
    model: str = "cnn"
    dataset: str | None = None      # None: mnist when found or downloadable, else mnist-sample
    data_dir: str | None = None
    train_subset: int | None = None  # train on this many training images (a seeded, fixed subset)
    recipe: str = "default"         # see RECIPES
    epochs: int = 3
    batch_size: int = 128
    test_batch_size: int = 1000
    optimizer: str = "adam"         # sgd, adam or adamw
    lr: float = 0.004
    momentum: float = 0.9           # sgd only
    weight_decay: float = 0.0
    schedule: str = "onecycle"      # constant or onecycle (per step)
    label_smoothing: float = 0.0
    augment: str = "none"           # none, or affine: random rotation +-10 deg, scale 0.9-1.1, shift +-2.8 px
    ema: float = 0.0                # evaluate and save an exponential moving average of the weights (decay); 0: off
    width: int | None = None        # model width, for families that have one
    seed: int = 0
    device: str = "auto"            # auto, cpu, cuda or mps
    channels_last: bool = True      # measured ~1.5x faster on CPU for the lecture nets
    precision: str = "auto"         # fp32, bf16 (autocast), or auto: bf16 on a CUDA GPU that has it, else fp32
    threads: int | None = None      # torch intra-op threads; None: torch's default
    out: str | None = None          # run directory; None: runs/<model>-<dataset>-<time>
    overwrite: bool = False
    progress: bool = True
    checkpoint_every: int | None = None  # also checkpoint every N steps (default: each epoch end only)
    deterministic: bool = False     # torch.use_deterministic_algorithms(True), cudnn.benchmark off
    sync_bn: bool = False           # under DDP: BatchNorm statistics over the global batch
    trace_grad: bool = False        # record the first layer's gradient norm at every step (grad_norms.json)

    def validate(self) -> "TrainConfig":
        checks = [
            (self.model in list_models(), f"unknown model {self.model!r}; choose from {', '.join(list_models())}"),
            (self.recipe in RECIPES, f"unknown recipe {self.recipe!r}; choose from {', '.join(RECIPES)}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.test_batch_size >= 1, f"--test-batch-size must be at least 1, got {self.test_batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.momentum >= 0, f"--momentum must be non-negative, got {self.momentum}"),
            (self.weight_decay >= 0, f"--weight-decay must be non-negative, got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.ema < 1, f"--ema must be a decay in [0, 1), got {self.ema}"),
            (self.augment in AUGMENTATIONS, f"unknown augmentation {self.augment!r}; choose from {', '.join(AUGMENTATIONS)}"),
            (self.optimizer in ("sgd", "adam", "adamw"), f"unknown optimizer {self.optimizer!r}; choose sgd, adam or adamw"),
            (self.schedule in ("constant", "onecycle"), f"unknown schedule {self.schedule!r}; choose constant or onecycle"),
            (self.precision in ("auto", "fp32", "bf16"), f"unknown precision {self.precision!r}; choose auto, fp32 or bf16"),
            (self.device in ("auto", "cpu", "cuda", "mps"), f"unknown device {self.device!r}; choose auto, cpu, cuda or mps"),
            (self.threads is None or self.threads >= 1, f"--threads must be at least 1, got {self.threads}"),
            (self.width is None or self.width >= 1, f"--width must be at least 1, got {self.width}"),
            (self.checkpoint_every is None or self.checkpoint_every >= 1, f"--checkpoint-every must be at least 1, got {self.checkpoint_every}"),
            (self.train_subset is None or self.train_subset >= 1, f"--train-subset must be at least 1, got {self.train_subset}"),
        ]
        for ok, message in checks:
            if not ok:
                raise CnnlabError(message)
        return self


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _check_keys(values: dict, source: str) -> None:
    for key, value in values.items():
        if key not in FIELDS:
            raise CnnlabError(f"{source}: unknown setting {key!r}")
        default = FIELDS[key].default
        if default is not None and value is not None and not isinstance(value, type(default)) \
                and not (isinstance(default, float) and isinstance(value, int)):
            raise CnnlabError(f"{source}: {key} must be {type(default).__name__}, got {value!r}")


def build_config(flags: dict, config_file: str | None = None) -> TrainConfig:
    """Resolve a TrainConfig: dataclass defaults, then the recipe, then the TOML file, then flags."""
    file_values = {}
    if config_file:
        try:
            file_values = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise CnnlabError(f"config file {config_file}: {e}") from None
        _check_keys(file_values, config_file)
    given = {k: v for k, v in flags.items() if v is not None}
    _check_keys(given, "flags")
    recipe = given.get("recipe", file_values.get("recipe", "default"))
    if recipe not in RECIPES:
        raise CnnlabError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    return TrainConfig(**{**RECIPES[recipe], **file_values, **given, "recipe": recipe}).validate()
