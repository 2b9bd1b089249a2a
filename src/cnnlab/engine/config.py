"""Training configuration: one typed dataclass, defaults < recipe < config file < flags."""

import dataclasses
import tomllib
import typing
from dataclasses import dataclass

from cnnlab import CnnlabError
from cnnlab.data.augment import AUGMENTATIONS
from cnnlab.data.folder import parse_image_size
from cnnlab.external.spec import ONNX, REGISTRY, parse_spec
from cnnlab.files import read_bounded
from cnnlab.models import list_models

MAX_CONFIG_BYTES = 1 << 20

# A recipe is a named set of defaults; flags given by the user still win.
RECIPES: dict[str, dict[str, typing.Any]] = {
    # The lecture's script exactly: SGD lr 0.01 momentum 0.5, batch 64, 9 epochs (range(1, 10)).
    "lecture": dict(
        optimizer="sgd",
        lr=0.01,
        momentum=0.5,
        batch_size=64,
        epochs=9,
        schedule="constant",
        weight_decay=0.0,
        label_smoothing=0.0,
    ),
    # Fewer seconds to a better accuracy: larger batches, Adam, one-cycle. Peak 0.004: at 0.01 the
    # Inception net (no BatchNorm) diverged to 10% accuracy in a 3-epoch run.
    "default": dict(
        optimizer="adam", lr=0.004, batch_size=128, epochs=3, schedule="onecycle", weight_decay=0.0, label_smoothing=0.0
    ),
    # Least wall time to 99% on MNIST on 2 CPU cores: one epoch of a BatchNorm CNN whose 4x4 stride-2 stem
    # quarters the maps before any wide layer, large batches, Adam one-cycle (2.1x less time than two epochs
    # of cnn-bn-8-24, measured side by side: docs/speed.md).
    "fast": dict(
        model="cnn-bn-s16-32-64",
        optimizer="adam",
        lr=0.02,
        batch_size=256,
        epochs=1,
        schedule="onecycle",
        weight_decay=0.0,
        label_smoothing=0.1,
    ),
    # Highest accuracy in under 10 minutes on 2 CPU cores: a 3-conv BatchNorm CNN with batched random affine
    # augmentation and an average of the weights (EMA over ~1,000 steps, about 2 epochs).
    "best": dict(
        model="cnn-bn-32-64-64-fc256",
        optimizer="adam",
        lr=0.005,
        batch_size=128,
        epochs=12,  # 20 did no better on a validation split (99.46% against 99.48%), for 1.7x the time
        schedule="onecycle",
        weight_decay=0.0,
        label_smoothing=0.1,
        augment="affine",
        ema=0.999,
    ),
    # For predict and serve (issue 12): the best recipe's model and optimiser, trained on what users' digits
    # look like once preprocessed (augment robust: elastic and affine shape, stroke width, contrast, blur),
    # 4 epochs (~25 s each) to stay under 3 minutes on 2 CPU cores; no EMA, whose ~1,000-step average
    # would still remember the first of these 1,876 steps.
    "robust": dict(
        model="cnn-bn-32-64-64-fc256",
        optimizer="adam",
        lr=0.005,
        batch_size=128,
        epochs=4,
        schedule="onecycle",
        weight_decay=0.0,
        label_smoothing=0.1,
        augment="robust",
        ema=0.0,
    ),
    # He et al.'s CIFAR recipe at a CPU budget, for the depth experiment (cnnlab depth).
    "depth": dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        batch_size=128,
        epochs=3,
        schedule="constant",
        weight_decay=0.0,
        label_smoothing=0.0,
    ),
    # Natural images at 32x32 (CIFAR-10, photo folders): resnet-20, SGD one-cycle with weight decay, random
    # crops of the image padded by 4 px and horizontal flips (He et al.'s augmentation) in 30 epochs.
    "cifar": dict(
        model="resnet-20",
        optimizer="sgd",
        lr=0.1,
        batch_size=128,
        epochs=30,
        schedule="onecycle",
        weight_decay=5e-4,
        label_smoothing=0.0,
        augment="crop-flip",
    ),
    # He et al. 2015, section 4.2, as printed: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, the rate
    # divided by 10 at 32k and 48k of 64k iterations (the step schedule: at half and three quarters), crops
    # and flips; 164 epochs of CIFAR-10's 50,000 images are their 64k iterations. Meant for a GPU.
    "he-cifar": dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        batch_size=128,
        epochs=164,
        schedule="step",
        weight_decay=1e-4,
        label_smoothing=0.0,
        augment="crop-flip",
    ),
}
# What a recipe is expected to reach, and whether that was measured here (shown in the --recipe help).
EXPECTED = {
    "cifar": "about 90% on CIFAR-10 expected, unmeasured",
    "he-cifar": "He et al. report 91.25% (resnet-20) to 93.57% (resnet-110) on CIFAR-10; unmeasured here",
}
# The recipe a dataset trains with when none is named.
DATASET_RECIPES = {"cifar10": "cifar", "cifar100": "cifar"}


# Per-dataset changes to a recipe, where a dataset needs other defaults than MNIST's; applied over the recipe
# when the dataset is named (--dataset or a config file), under any flag or config value given.
DATASET_CHANGES: dict[tuple[str, str], dict[str, typing.Any]] = {
    # Clothes are photographed upright and centred, and seen from either side: shifts of 2 pixels, left-right
    # flips and random erasing (`clothes`), not the digits' rotations. A padded net keeps a garment's outline,
    # which the digits' unpadded convolutions crop away, and clothes need more features than digits: 192
    # channels in the last convolution gave 93.45 and 93.33% dev validation after 18 epochs (seeds 0, 1), 128
    # gave 93.22 and 92.98%, the digits' net 92.78%; 1.2x the step time of 128's, inside 10 minutes on 2 cores
    # (docs/speed.md). `fast` needs no change: it has no augmentation.
    ("best", "fashion-mnist"): dict(model="cnn-bn-p32-64-192-fc256", augment="clothes", epochs=18),
    # The lecture cnn underfits clothes in 3 epochs (training loss 0.30, validation 0.31): twice the steps at
    # the lecture's batch of 64 gave 89.29 and 89.04% validation accuracy against 88.88 and 88.51% (seeds 0, 1).
    # The peak rate stays 0.004, which the Inception net (no BatchNorm) also takes (it diverged at 0.01).
    ("default", "fashion-mnist"): dict(batch_size=64),
    # CIFAR's photos: He et al.'s crops and flips, as the cifar recipe.
    ("best", "cifar10"): dict(augment="crop-flip"),
    ("best", "cifar100"): dict(augment="crop-flip"),
}
# Recipes whose settings are the digits' (rotations are for handwriting), and what they use on a dataset that
# has no entry above: random crops (small shifts) and nothing that could change what an image shows (a flip
# turns a "b" into a "d", a rotation a "6" into a "9"). Announced when a run starts.
DIGITS = ("mnist", "mnist-sample")
GENERIC_CHANGES: dict[str, dict[str, typing.Any]] = {"best": dict(augment="crop")}


def dataset_changes(recipe: str, dataset: str | None) -> dict[str, typing.Any]:
    """What `recipe` changes on `dataset` (None: MNIST or its sample, whichever is found)."""
    if dataset is None or dataset in DIGITS:
        return {}
    return DATASET_CHANGES.get((recipe, dataset), GENERIC_CHANGES.get(recipe, {}))


def dataset_notice(config: "TrainConfig") -> str | None:
    """One line saying which of the recipe's per-dataset (or generic) settings this run uses, if any."""
    changes = dataset_changes(config.recipe, config.dataset)
    used = {k: v for k, v in changes.items() if getattr(config, k) == v}  # a flag given may have replaced one
    if not used:
        return None
    settings = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in used.items())
    if (config.recipe, config.dataset) in DATASET_CHANGES:
        return f"Recipe {config.recipe} on {config.dataset}: {settings} (its settings for this dataset)"
    return (
        f"Recipe {config.recipe} has no settings measured on {config.dataset}: generic {settings} in place of "
        "the digits' (no flips or rotations, which can change what an image shows)"
    )


def describe_recipe(name: str) -> str:
    """A recipe's settings in a few words, for help texts (generated, so it cannot drift from RECIPES)."""
    r = RECIPES[name]
    parts = [r["model"]] if "model" in r else []
    parts.append(f"{r['optimizer']} {r['lr']:g}" + (f"/{r['momentum']:g}" if "momentum" in r else ""))
    parts += [r["schedule"], f"batch {r['batch_size']}", f"{r['epochs']} epoch{'s' * (r['epochs'] != 1)}"]
    parts += [f"{r['augment']} augmentation"] if r.get("augment", "none") != "none" else []
    parts += [f"EMA {r['ema']:g}"] if r.get("ema") else []
    parts += [EXPECTED[name]] if name in EXPECTED else []
    return f"{name} ({', '.join(parts)})"


MAX_LR = 1e30  # larger rates overflow float32 arithmetic in the optimizer (1e308 did)
MAX_SEED = 2**32 - 1  # what numpy's and Python's generators take, and what the seed mixing keeps exact
MAX_WIDTH = 4096
MAX_BATCH = 1 << 20
# torch.compile's modes: reduce-overhead replays CUDA graphs, max-autotune also benchmarks kernel choices.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    model: str = "cnn"  # a registered name, or a learner's script: "net.py", "net.py:Net" (external/spec.py)
    dataset: str | None = None  # None: mnist when found or downloadable, else mnist-sample
    data_dir: str | None = None
    image_size: str | None = None  # --dataset folder: "HxW" every image is fitted to; None: 32x32
    channels: int | None = None  # --dataset folder: 1 or 3; None: 1 when every image is grey, else 3
    test_split: float | None = None  # --dataset folder without train/ and test/: share of each class tested; None: 0.2
    train_subset: int | None = None  # train on this many training images (a seeded, fixed subset)
    val_split: int = 0  # hold out this many training images (stratified, seeded) to select the epoch
    patience: int | None = None  # with val_split: stop after this many epochs without a better validation accuracy
    recipe: str = "default"  # see RECIPES (default: the dataset's in DATASET_RECIPES, else "default")
    epochs: int = 3
    batch_size: int = 128
    test_batch_size: int = 1000
    optimizer: str = "adam"  # sgd, adam or adamw
    lr: float = 0.004
    momentum: float = 0.9  # sgd with a constant schedule only (one-cycle cycles momentum itself)
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # constant, onecycle, or step (/10 at half and three quarters); set per step
    label_smoothing: float = 0.0
    augment: str = "none"  # a name in data.augment.AUGMENTATIONS
    ema: float = 0.0  # evaluate and save an exponential moving average of the weights (decay); 0: off
    width: int | None = None  # model width, for families that have one
    model_args: dict | None = None  # more constructor arguments, e.g. a script's {"hidden": 64} (--model-args)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda or mps
    channels_last: bool = True  # measured ~1.5x faster on CPU for the lecture nets
    precision: str = "auto"  # fp32, bf16 (autocast), or auto: bf16 on a CUDA GPU that has it, else fp32
    threads: int | None = None  # torch intra-op threads; None: torch's default
    out: str | None = None  # run directory; None: runs/<model>-<dataset>-<time>
    overwrite: bool = False
    progress: bool = True
    checkpoint_every: int | None = None  # also checkpoint every N steps (default: each epoch end only)
    check_every: int | None = None  # test the loss for NaN/inf every N steps; None: every step on CPU, 50 on a GPU
    compile: str = "off"  # off, or a torch.compile mode for the training step (default, reduce-overhead, ...)
    deterministic: bool = False  # torch.use_deterministic_algorithms(True), cudnn.benchmark off
    sync_bn: bool = False  # under DDP: BatchNorm statistics over the global batch
    trace_grad: bool = False  # record each step's first-layer gradient norm, loss and error (grad_norms.json)
    tensorboard: bool = False  # also write each epoch's scalars and first-layer kernels as TensorBoard events

    def validate(self) -> "TrainConfig":
        for ok, message in [*self._choice_checks(), *self._range_checks(), *self._data_checks()]:
            if not ok:
                raise CnnlabError(message)
        if self.image_size is not None:
            parse_image_size(self.image_size)
        return self

    def _choice_checks(self) -> list[tuple[bool, str]]:
        """The named settings: a model that can be trained, and each choice among its options."""
        return [
            (
                parse_spec(self.model).kind != REGISTRY or self.model in list_models(),
                f"unknown model {self.model!r}; choose from {', '.join(list_models())}, or a script: file.py[:Name]",
            ),
            (
                parse_spec(self.model).kind != ONNX,
                f"{self.model} is a trained model, not one to train: evaluate, predict, viz or serve it as it is "
                "(cnnlab evaluate " + self.model + "); to train, give the script that defines it",
            ),
            (self.recipe in RECIPES, f"unknown recipe {self.recipe!r}; choose from {', '.join(RECIPES)}"),
            (
                self.augment in AUGMENTATIONS,
                f"unknown augmentation {self.augment!r}; choose from {', '.join(AUGMENTATIONS)}",
            ),
            (
                self.optimizer in ("sgd", "adam", "adamw"),
                f"unknown optimizer {self.optimizer!r}; choose sgd, adam or adamw",
            ),
            (
                self.schedule in ("constant", "onecycle", "step"),
                f"unknown schedule {self.schedule!r}; choose constant, onecycle or step",
            ),
            (
                self.precision in ("auto", "fp32", "bf16"),
                f"unknown precision {self.precision!r}; choose auto, fp32 or bf16",
            ),
            (
                self.device in ("auto", "cpu", "cuda", "mps"),
                f"unknown device {self.device!r}; choose auto, cpu, cuda or mps",
            ),
            (
                self.compile in COMPILE_MODES,
                f"unknown --compile mode {self.compile!r}; choose from {', '.join(COMPILE_MODES)}",
            ),
        ]

    def _range_checks(self) -> list[tuple[bool, str]]:
        """The numeric settings, each within its bounds (None: not set)."""
        between = lambda value, low, high: value is None or low <= value <= high
        return [
            (between(self.epochs, 1, 100_000), f"--epochs must be between 1 and 100,000, got {self.epochs}"),
            (
                between(self.batch_size, 1, MAX_BATCH),
                f"--batch-size must be between 1 and {MAX_BATCH:,}, got {self.batch_size}",
            ),
            (
                between(self.test_batch_size, 1, MAX_BATCH),
                f"--test-batch-size must be between 1 and {MAX_BATCH:,}, got {self.test_batch_size}",
            ),
            (0 < self.lr <= MAX_LR, f"--lr must be in (0, {MAX_LR:g}], got {self.lr:g}"),
            (between(self.momentum, 0, 1), f"--momentum must be in [0, 1], got {self.momentum}"),
            (between(self.weight_decay, 0, 1), f"--weight-decay must be in [0, 1], got {self.weight_decay}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (0 <= self.ema < 1, f"--ema must be a decay in [0, 1), got {self.ema}"),
            (between(self.seed, 0, MAX_SEED), f"--seed must be between 0 and {MAX_SEED:,}, got {self.seed}"),
            (between(self.threads, 1, 1024), f"--threads must be between 1 and 1024, got {self.threads}"),
            (between(self.width, 1, MAX_WIDTH), f"--width must be between 1 and {MAX_WIDTH}, got {self.width}"),
            (
                between(self.checkpoint_every, 1, 10**9),
                f"--checkpoint-every must be at least 1, got {self.checkpoint_every}",
            ),
            (between(self.check_every, 1, 10**9), f"--check-every must be at least 1, got {self.check_every}"),
            (between(self.train_subset, 1, 10**9), f"--train-subset must be at least 1, got {self.train_subset}"),
            (between(self.val_split, 0, 10**9), f"--val-split must be at least 0, got {self.val_split}"),
            (between(self.patience, 1, 10**6), f"--patience must be at least 1, got {self.patience}"),
        ]

    def _data_checks(self) -> list[tuple[bool, str]]:
        """Settings that only make sense with others: validation for --patience, a folder's options."""
        return [
            (
                self.patience is None or self.val_split > 0,
                "--patience stops on validation accuracy: give --val-split N too (the test set never selects)",
            ),
            (self.channels in (None, 1, 3), f"--channels must be 1, 3 or auto, got {self.channels}"),
            (
                self.test_split is None or 0 < self.test_split < 1,
                f"--test-split must be a fraction between 0 and 1 such as 0.2, got {self.test_split}",
            ),
            (
                self.dataset == "folder" or (self.image_size, self.channels, self.test_split) == (None, None, None),
                "--image-size, --channels and --test-split are for --dataset folder (other datasets come in one size)",
            ),
            (
                self.dataset != "folder" or bool(self.data_dir),
                "--dataset folder needs --data-dir DIR: DIR/<class>/<images>, "
                "or DIR/train/<class>/ and DIR/test/<class>/",
            ),
        ]


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def _allowed(key: str, value: object) -> bool:
    """Whether `value` has the type of field `key` (an int where a float belongs is fine; a bool is no number)."""
    types = typing.get_args(_TYPES[key]) or (_TYPES[key],)
    if value is None:
        return type(None) in types
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, tuple(t for t in types if t is not type(None))) or (
        float in types and isinstance(value, int)
    )


def _check_keys(values: dict, source: str) -> None:
    for key, value in values.items():
        if key not in FIELDS:
            raise CnnlabError(f"{source}: unknown setting {key!r}")
        if not _allowed(key, value):
            expected = " or ".join(
                t.__name__ for t in (typing.get_args(_TYPES[key]) or (_TYPES[key],)) if t is not type(None)
            )
            raise CnnlabError(f"{source}: {key} must be {expected}, got {value!r}")


# Settings that change how a run executes, not what it computes: a sweep reuses a run that differs only in these.
HOW_TO_RUN = (
    "out",
    "overwrite",
    "progress",
    "threads",
    "checkpoint_every",
    "check_every",
    "data_dir",
    "device",
    "compile",
    "tensorboard",
    "channels_last",  # a memory layout: the same arithmetic (a script whose forward needs NCHW trains without it)
)


def config_from_saved(values: dict, source: str) -> TrainConfig:
    """The TrainConfig saved in a run (config.json or a checkpoint), checked like a config file."""
    if not isinstance(values, dict):
        raise CnnlabError(f"{source}: the saved settings are not a table")
    known = {k: v for k, v in values.items() if k in FIELDS}  # a newer cnnlab may have saved more
    _check_keys(known, source)
    return TrainConfig(**known).validate()


def same_settings(saved: dict, config: TrainConfig) -> bool:
    """Whether a saved run computed what `config` asks for (the dataset None means "whatever it chose")."""
    fields = [f for f in FIELDS if f not in HOW_TO_RUN and f != "dataset"]
    return all(saved.get(f, FIELDS[f].default) == getattr(config, f) for f in fields) and config.dataset in (
        None,
        saved.get("dataset"),
    )


def _read_config_file(path: str) -> dict:
    try:
        values = tomllib.loads(read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8"))
    except UnicodeDecodeError:
        raise CnnlabError(f"config file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise CnnlabError(f"config file {path}: {e}") from None
    _check_keys(values, f"config file {path}")
    return values


def build_config(flags: dict, config_file: str | None = None) -> TrainConfig:
    """Resolve a TrainConfig: dataclass defaults, then the recipe, then the TOML file, then flags.

    `flags` holds TrainConfig fields; None means "not given"."""
    file_values = _read_config_file(config_file) if config_file else {}
    given = {k: v for k, v in flags.items() if v is not None}
    _check_keys(given, "flags")
    dataset = given.get("dataset", file_values.get("dataset"))
    recipe = given.get("recipe", file_values.get("recipe", DATASET_RECIPES.get(str(dataset), "default")))
    if recipe not in RECIPES:
        raise CnnlabError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    chosen = {
        k: float(v) if float in typing.get_args(_TYPES[k]) + (_TYPES[k],) and isinstance(v, int) else v
        for k, v in {**file_values, **given}.items()
    }
    if "momentum" in chosen and chosen.get("schedule", RECIPES[recipe]["schedule"]) == "onecycle":
        raise CnnlabError(
            "--momentum has no effect with the one-cycle schedule, which cycles momentum itself "
            "(0.85-0.95); use it with --optimizer sgd --schedule constant"
        )
    for_dataset = dataset_changes(recipe, dataset)
    return TrainConfig(**{**RECIPES[recipe], **for_dataset, **chosen, "recipe": recipe}).validate()
