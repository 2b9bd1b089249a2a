"""Pictures of a run (matplotlib, PNG): curves, confusion, errors, filters, feature maps stage by stage, and
where the model looks (attribution.py's picture)."""

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.colors import LogNorm

from cnnlab import CnnlabError
from cnnlab.data.batches import iterate_batches, normalise
from cnnlab.engine.checkpoint import read_metrics
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.run import OpenOptions, default_output, is_model_file, open_run
from cnnlab.explain.stages import trace
from cnnlab.files import check_output
from cnnlab.plotting import pyplot, save_figure

WHAT = ("curves", "confusion", "errors", "filters", "features", "attribution")


def curves(run_dirs: Iterable[str | Path], out: Path) -> Path:
    """Training loss and test accuracy against epoch, one line per run."""
    fig, (loss_ax, acc_ax) = pyplot().subplots(1, 2, figsize=(11, 4))
    for run in run_dirs:
        rows = read_metrics(run)
        if not rows:
            raise CnnlabError(f"{run}: no metrics.jsonl to plot (is it a run directory?)")
        epochs = [r["epoch"] for r in rows]
        (line,) = loss_ax.plot(epochs, [r["train_loss"] for r in rows], marker="o", label=f"{Path(run).name} train")
        loss_ax.plot(
            epochs, [r["test_loss"] for r in rows], ls="--", color=line.get_color(), label=f"{Path(run).name} test"
        )
        acc_ax.plot(epochs, [r["test_accuracy"] for r in rows], marker="o", label=Path(run).name)
    loss_ax.set(title="Loss (solid: training, dashed: test)", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    acc_ax.set(title="Test accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out)


def confusion(
    run: str | Path,
    out: Path,
    data_dir: str | Path | None = None,
    *,
    dataset_name: str | None = None,
    options: OpenOptions = OpenOptions(),
) -> Path:
    saved = open_run(run, options)
    dataset = saved.load_dataset(dataset_name, data_dir=data_dir)
    result = evaluate(
        saved.model,
        dataset.test_images,
        dataset.test_labels,
        mean=saved.info.mean,
        std=saved.info.std,
        num_classes=dataset.num_classes,
    )
    matrix = result.confusion.numpy()
    fig, ax = pyplot().subplots(figsize=(7.5, 6.5))
    image = ax.imshow(matrix, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(matrix.max(), 2)))
    for i in range(len(matrix)):
        for j in range(len(matrix)):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > matrix.max() / 4 else "black",
                )
    ax.set(
        xticks=range(len(matrix)),
        yticks=range(len(matrix)),
        xlabel="predicted",
        ylabel="true",
        title=f"Confusion matrix: {result.correct:,}/{result.total:,} correct ({result.accuracy:.2f}%)",
    )
    ax.set_xticklabels(dataset.classes, rotation=45 if len(dataset.classes[0]) > 2 else 0)
    ax.set_yticklabels(dataset.classes)
    fig.colorbar(image, ax=ax, label="images (log scale)")
    return save_figure(fig, out)


def errors(
    run: str | Path,
    out: Path,
    data_dir: str | Path | None = None,
    limit: int = 36,
    *,
    dataset_name: str | None = None,
    options: OpenOptions = OpenOptions(),
) -> Path:
    """A grid of misclassified test images with true and predicted label and the model's confidence."""
    saved = open_run(run, options)
    dataset = saved.load_dataset(dataset_name, data_dir=data_dir)
    with torch.inference_mode():  # in batches: a deep net's activations for 10,000 images at once run to GBs
        probabilities = torch.cat(
            [
                saved.model(x).softmax(1)
                for x, _ in iterate_batches(
                    dataset.test_images, dataset.test_labels, batch_size=1000, mean=saved.info.mean, std=saved.info.std
                )
            ]
        )
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != dataset.test_labels).nonzero().flatten()[:limit]
    if len(wrong) == 0:
        raise CnnlabError(f"{run}: the model gets every test image right: no errors to show")
    cols = min(6, len(wrong))
    rows = math.ceil(len(wrong) / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(1.9 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong.tolist()):
        ax.imshow(dataset.test_images[i, 0].numpy(), cmap="gray")
        ax.set_title(
            f"#{i} true {dataset.classes[dataset.test_labels[i]]}\npred {dataset.classes[predicted[i]]} "
            f"({confidence[i]:.0%})",
            fontsize=8,
        )
    fig.suptitle(f"{len(wrong)} of {int((predicted != dataset.test_labels).sum())} misclassified test images")
    return save_figure(fig, out)


def filters(run: str | Path, out: Path, *, options: OpenOptions = OpenOptions()) -> Path:
    """The first convolution's kernels, one small image per (output, input) channel pair."""
    model = open_run(run, options).model
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None:
        weights = "" if any(True for _ in model.parameters()) else " (its graph runs through onnxruntime: no weights)"
        raise CnnlabError(f"{run}: model {type(model).__name__} has no convolution layer{weights}")
    weight = conv.weight.detach()[:, 0]  # (O, k, k), first input channel
    cols = min(10, len(weight))
    rows = math.ceil(len(weight) / cols)
    fig, axes = pyplot().subplots(rows, cols, figsize=(1.4 * cols, 1.6 * rows + 0.6), squeeze=False)
    limit = weight.abs().max().item()
    for ax in axes.flat:
        ax.axis("off")
    for k, (ax, kernel) in enumerate(zip(axes.flat, weight)):
        image = ax.imshow(kernel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {k}", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    fig.suptitle(f"First convolution: {conv.out_channels} kernels of {conv.kernel_size[0]}x{conv.kernel_size[1]}")
    return save_figure(fig, out)


def features(
    run: str | Path,
    out: Path,
    image_index: int = 0,
    data_dir: str | Path | None = None,
    channels: int = 8,
    *,
    dataset_name: str | None = None,
    options: OpenOptions = OpenOptions(),
) -> Path:
    """One test image and its feature maps stage by stage (the lab's stages: `stages.trace`), shapes in the titles."""
    saved = open_run(run, options)
    model, info, dataset = saved.model, saved.info, saved.load_dataset(dataset_name, data_dir=data_dir)
    if not 0 <= image_index < len(dataset.test_labels):
        raise CnnlabError(f"--image must be between 0 and {len(dataset.test_labels) - 1}, got {image_index}")
    x = normalise(dataset.test_images[image_index : image_index + 1], info.mean, info.std)
    with torch.inference_mode():
        traced = trace(model, x)
    maps = [stage for stage in traced.stages if stage.values.dim() == 3]  # (C, H, W): the feature maps
    if not maps:
        raise CnnlabError(f"{run}: model {saved.model_name} has no feature-map stages to show")
    fig, axes = pyplot().subplots(
        len(maps) + 1, channels, figsize=(1.5 * channels, 1.75 * (len(maps) + 1)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    prediction = int(traced.output.argmax())
    axes[0, 0].imshow(dataset.test_images[image_index, 0].numpy(), cmap="gray")
    axes[0, 0].set_title(
        f"input {'x'.join(map(str, x.shape[1:]))}\ntrue "
        f"{dataset.classes[dataset.test_labels[image_index]]}, pred {dataset.classes[prediction]}",
        fontsize=8,
        loc="left",
    )
    for row, stage in enumerate(maps, start=1):
        for c in range(min(channels, len(stage.values))):
            axes[row, c].imshow(stage.values[c].numpy(), cmap="viridis")
        first = f" (first {channels})" if len(stage.values) > channels else ""
        axes[row, 0].set_title(
            f"{stage.name} -> {'x'.join(map(str, stage.values.shape))}{first}", fontsize=8, loc="left"
        )
    fig.suptitle(f"Feature extraction, stage by stage: test image #{image_index} ({traced.shown})")
    return save_figure(fig, out)


def draw(
    runs: Sequence[str | Path],
    what: str,
    out: str | Path | None = None,
    data_dir: str | Path | None = None,
    image_index: int = 0,
    *,
    overwrite: bool = False,
    dataset_name: str | None = None,
    options: OpenOptions = OpenOptions(),
) -> Path:
    """Dispatch for `cnnlab viz`: the picture is saved in the (first) run directory (replacing the one there;
    for a model file, model.onnx, in the current folder, replacing nothing) unless `out` is given, which
    replaces an existing file only with `overwrite`."""
    if what not in WHAT:
        raise CnnlabError(f"unknown picture {what!r}; choose from {', '.join(WHAT)}")
    run = Path(runs[0])
    model_file = is_model_file(run)
    if not run.is_dir() and not (model_file and run.is_file()):
        raise CnnlabError(f"run directory {run} does not exist")
    if model_file and what == "curves":
        raise CnnlabError(f"{run} is a model file: it has no training curves (filters, features, confusion, ...)")
    default, replaces = default_output(run, f"{what}-{image_index}.png" if what == "features" else f"{what}.png")
    out = check_output(out or default, overwrite=overwrite or (replaces and not out))  # before drawing: it may be slow
    if what == "curves":
        return curves(runs, out)
    if len(runs) > 1:
        raise CnnlabError(f"--what {what} takes one run directory, got {len(runs)}")
    if what == "filters":
        return filters(run, out, options=options)
    opened: dict[str, Any] = dict(dataset_name=dataset_name, options=options)
    if what == "attribution":
        from cnnlab.explain.attribution import attribution_picture  # Captum: imported only for this picture

        return attribution_picture(run, out, first=image_index, data_dir=data_dir, **opened)
    if what == "confusion":
        return confusion(run, out, data_dir, **opened)
    if what == "errors":
        return errors(run, out, data_dir, **opened)
    return features(run, out, image_index, data_dir, **opened)
