"""`cnnlab overfit`: the lecture's second problem of going deeper, and its cures, on one budget.

A large network (lecture 9's 682,090-parameter MLP) trains on a small subset of the training images for many
epochs: its training loss falls towards zero while the loss on held-out images turns and rises. Then each cure,
one at a time and otherwise identical: augmentation, dropout, weight decay, early stopping. Every run holds out
the same validation images (`--val-split`); early stopping and the selected epoch use them, and the test set is
only reported.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnlab import CnnlabError
from cnnlab.engine.checkpoint import read_metrics
from cnnlab.engine.config import build_config
from cnnlab.engine.fit import fit_or_reuse, training_data
from cnnlab.files import write_csv, write_text
from cnnlab.plotting import pyplot, save_figure
from cnnlab.tables import format_table

# Adam at a constant 1e-3 and batch 64: no schedule that would itself damp the late epochs.
BASELINE: dict[str, Any] = dict(
    model="mlp",
    optimizer="adam",
    lr=0.001,
    schedule="constant",
    batch_size=64,
    epochs=40,
    train_subset=1000,
    val_split=5000,
)
CURES: dict[str, dict[str, Any]] = {  # name -> what it changes from the baseline
    "baseline": {},
    "augmentation": {"augment": "affine"},  # new views of the same 1,000 digits every epoch
    "dropout": {"model": "mlp-dropout"},  # p = 0.5 after every hidden layer
    "weight-decay": {"optimizer": "adamw", "weight_decay": 1.0},  # decoupled: every step shrinks weights by lr x 1.0
    "early-stopping": {"patience": 3},  # stop 3 epochs after the best validation accuracy
}


def run_overfit(
    out: str | Path,
    *,
    cures: Sequence[str] = tuple(CURES),
    epochs: int | None = None,
    train_subset: int | None = None,
    val_split: int | None = None,
    seed: int = 0,
    dataset: str | None = None,
    data_dir: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], object] = print,
) -> list[dict]:
    """Train the baseline and each cure (finished runs in `out` are reused); write a table and a figure."""
    unknown = [c for c in cures if c not in CURES]
    if unknown:
        raise CnnlabError(f"unknown cure {unknown[0]!r}; choose from {', '.join(CURES)}")
    out = Path(out)
    given = {
        k: v
        for k, v in dict(
            epochs=epochs,
            train_subset=train_subset,
            val_split=val_split,
            seed=seed,
            dataset=dataset,
            data_dir=data_dir,
            overwrite=overwrite,
            progress=False,
        ).items()
        if v is not None
    }
    data = training_data(build_config({**BASELINE, **given}), log)
    given = {**given, **scaled_to(len(data.train_labels), data.name, given, log), "dataset": data.name}
    configs = {cure: build_config({**BASELINE, **CURES[cure], **given, "out": str(out / cure)}) for cure in cures}
    for cure, config in configs.items():
        done = fit_or_reuse(config, log=lambda line: None, dataset=data)
        log(f"{cure}: {'finished earlier, kept' if done == 'reused' else 'trained'}")
    rows = [_row(cure, read_metrics(out / cure)) for cure in configs]
    table = _table(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "overfit_table.md", table + "\n")
    write_csv(out / "overfit_table.csv", [list(rows[0])] + [list(r.values()) for r in rows])
    _plot({cure: read_metrics(out / cure) for cure in configs}, out / "overfit_curves.png")
    log(table)
    log(f"wrote {out}/overfit_table.md, overfit_table.csv and overfit_curves.png")
    return rows


def _table(rows: list[dict]) -> str:
    headers = [
        "run",
        "epochs run",
        "final train acc %",
        "final train loss",
        "lowest val loss (epoch)",
        "final val loss",
        "final test acc %",
        "test acc % at best val epoch",
    ]
    body = [
        [
            r["cure"],
            r["epochs"],
            f"{r['train_accuracy']:.1f}",
            f"{r['train_loss']:.4f}",
            f"{r['best_val_loss']:.4f} ({r['best_val_loss_epoch']})",
            f"{r['val_loss']:.4f}",
            f"{r['test_accuracy']:.2f}",
            f"{r['selected_test_accuracy']:.2f}",
        ]
        for r in rows
    ]
    return format_table(headers, body)


def scaled_to(images: int, name: str, given: dict, log: Callable[[str], object]) -> dict:
    """The validation split and training subset of the baseline, cut to a dataset of `images` training images
    when they do not fit in it (a quarter held out, at most the rest trained on), said in one line; what the
    user gave is kept as given. {} when the defaults fit."""
    val = given.get("val_split", min(BASELINE["val_split"], images // 4))
    subset = given.get("train_subset", min(BASELINE["train_subset"], images - val))
    chosen = dict(val_split=val, train_subset=subset)
    scaled = {k: v for k, v in chosen.items() if k not in given and v != BASELINE[k]}
    if scaled:
        log(
            f"{name} has {images:,} training images, too few for the defaults: "
            + ", ".join(f"--{k.replace('_', '-')} {v:,} (default {BASELINE[k]:,})" for k, v in scaled.items())
        )
    return scaled


def _row(cure: str, history: list[dict]) -> dict:
    lowest = min(history, key=lambda r: r["val_loss"])
    selected = max(history, key=lambda r: (r["val_accuracy"], -r["epoch"]))
    last = history[-1]
    return {
        "cure": cure,
        "epochs": len(history),
        "train_accuracy": last["train_accuracy"],
        "train_loss": last["train_loss"],
        "best_val_loss": lowest["val_loss"],
        "best_val_loss_epoch": lowest["epoch"],
        "val_loss": last["val_loss"],
        "test_accuracy": last["test_accuracy"],
        "selected_test_accuracy": selected["test_accuracy"],
    }


def _plot(histories: dict[str, list[dict]], path: Path) -> None:
    fig, axes = pyplot().subplots(1, len(histories), figsize=(3.6 * len(histories), 3.6), sharey=True, squeeze=False)
    for ax, (cure, history) in zip(axes[0], histories.items()):
        epochs = [r["epoch"] for r in history]
        ax.plot(epochs, [r["train_loss"] for r in history], label="training")
        ax.plot(epochs, [r["val_loss"] for r in history], ls="--", label="validation")
        ax.plot(epochs, [r["test_loss"] for r in history], ls=":", label="test")
        selected = max(history, key=lambda r: (r["val_accuracy"], -r["epoch"]))["epoch"]
        ax.axvline(selected, color="grey", lw=0.8, ls="-.", label="best validation accuracy")
        ax.set(title=cure, xlabel="epoch", yscale="log")
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("cross-entropy loss")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Overfitting: training loss falls, held-out loss turns (same budget, one cure per panel)", y=1.03)
    save_figure(fig, path)
