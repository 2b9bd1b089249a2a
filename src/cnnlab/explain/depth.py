"""`cnnlab depth`: the degradation experiment of He et al. 2015 (Figure 1/6) on MNIST-style data, with
DenseNet-BC (Huang et al. 2017) beside the plain and residual nets.

Each (family, depth, seed) is trained with the same recipe, budget and gradient trace; finished runs are
kept, so an interrupted sweep resumes where it stopped. Outputs: depth_table.md/.csv, depth_curves.png
(training error against iterations, smoothed, as the paper's Figure 1; test error at each epoch's end),
depth_loss.png (final training loss against depth), depth_gradients.png (first-layer gradient norm per
step) and, with DenseNet, depth_reuse.png (how strongly each dense layer draws on each earlier layer's
output: Huang et al.'s Figure 5).
"""

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.ticker import FormatStrFormatter, NullFormatter
from tqdm import tqdm

from cnnlab import CnnlabError
from cnnlab.data.datasets import ImageDataset
from cnnlab.engine.checkpoint import read_metrics
from cnnlab.engine.config import build_config
from cnnlab.engine.fit import fit_or_reuse, training_data
from cnnlab.engine.run import open_run
from cnnlab.files import write_csv, write_text
from cnnlab.models import count_parameters, create_model, list_models
from cnnlab.models.resnet import DEPTHS
from cnnlab.plotting import pyplot, save_figure
from cnnlab.tables import format_table

# What a block passes on besides its own output: nothing, its input added (ResNet), or its input
# concatenated, so every later layer sees every earlier output (DenseNet).
CONNECTIONS = {"plain": "none", "resnet": "sum x + F(x)", "densenet": "concat [x, F(x)]"}
TITLES = {"plain": "plain", "resnet": "ResNet (x + F(x))", "densenet": "DenseNet-BC ([x, F(x)])"}
DENSENET_GROWTH = 8  # k of the densenet-bc-L-8 counterparts registered in models/densenet.py
DEFAULTS = dict(families=("plain", "resnet"), depths=(8, 20, 56))
# 12,000 images, width 8, SGD 0.1/0.9, batch 128, 3 epochs: a probe showed plain-56 ending at a training
# loss about 4x plain-8's with this budget, while the runs fit in about 10 minutes on 2 cores per seed.
PRESETS = {"quick": dict(depths=(8, 20, 56), epochs=3, train_subset=12000, width=8)}
# On CIFAR, He et al.'s own recipe (meant for a GPU; the quick preset cuts it to 3 epochs on 12,000 images).
RECIPE_FOR = {"cifar10": "he-cifar", "cifar100": "he-cifar"}


def resolve_settings(preset: str | None = None, **given: object) -> dict:
    """DEFAULTS, then the preset's settings, then those given (None: not given)."""
    if preset is not None and preset not in PRESETS:
        raise CnnlabError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return {**DEFAULTS, **PRESETS.get(preset or "", {}), **{k: v for k, v in given.items() if v is not None}}


def layers(family: str, depth: int) -> int:
    """DenseNet-BC has the plain/residual net's 6n block convolutions plus two transition convolutions."""
    return depth + 2 if family == "densenet" else depth


def model_name(family: str, depth: int) -> str:
    """The registered model of `family` at `depth` (DenseNet-BC: the counterpart with as many block layers)."""
    if family == "densenet":
        return f"densenet-bc-{layers(family, depth)}-{DENSENET_GROWTH}"
    return f"{family}-{depth}"


def _check(families: Sequence[str], depths: Sequence[int], seeds: Sequence[int]) -> None:
    for family in families:
        if family not in CONNECTIONS:
            raise CnnlabError(f"unknown family {family!r}; choose from {', '.join(CONNECTIONS)}")
        for depth in depths:
            if model_name(family, depth) not in list_models():
                known = [str(d) for d in DEPTHS if model_name(family, d) in list_models()]
                raise CnnlabError(
                    f"no {family} net for depth {depth} ({model_name(family, depth)} is not a "
                    f"registered model); choose depths from {', '.join(known)}"
                )
    if not seeds:
        raise CnnlabError("--seeds needs at least one seed")


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _read_trace(run_dir: Path) -> dict:
    trace = json.loads((run_dir / "grad_norms.json").read_text())
    if "train_error" not in trace:
        raise CnnlabError(
            f"{run_dir}: grad_norms.json has no per-step training error (a run from an older "
            f"cnnlab); run the sweep again with a fresh --out folder"
        )
    return trace


def run_depth(
    *,
    preset: str | None = None,
    families: Sequence[str] | None = None,
    depths: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    out: str | Path = "runs/depth",
    epochs: int | None = None,
    train_subset: int | None = None,
    width: int | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    recipe: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> list[dict]:
    """Train every (family, depth, seed) with one budget; write the table and figures into `out`.
    Finished runs of the same settings are reused, unfinished ones resumed; with `overwrite`, runs of other
    settings in `out` are replaced."""
    settings = resolve_settings(
        preset, families=families, depths=depths, epochs=epochs, train_subset=train_subset, width=width
    )
    families, depths = settings["families"], settings["depths"]
    _check(families, depths, seeds)
    recipe = recipe or RECIPE_FOR.get(dataset or "", "depth")
    data = training_data(build_config({"dataset": dataset, "data_dir": data_dir, "recipe": recipe}), log)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(f, d, s) for f in families for d in depths for s in seeds]
    shared = dict(
        recipe=recipe,
        epochs=settings.get("epochs"),
        train_subset=_subset(settings.get("train_subset"), data, preset if train_subset is None else None, log),
        dataset=data.name,
        data_dir=data_dir,
        trace_grad=True,
        overwrite=overwrite,
        progress=False,
    )
    configs = {
        (f, d, s): build_config(
            {
                **shared,
                "model": model_name(f, d),
                "seed": s,
                "width": None if f == "densenet" else settings.get("width"),  # DenseNet's width is k
                "out": str(out / f"{model_name(f, d)}-s{s}"),
            }
        )
        for f, d, s in runs
    }
    _train_all([configs[key] for key in runs], data, progress, log)
    rows = [
        _summarise(
            family,
            depth,
            [Path(str(configs[family, depth, s].out)) for s in seeds],
            configs[family, depth, seeds[0]].width,
        )
        for family in families
        for depth in depths
    ]
    _write_tables(rows, out, seeds)
    written = _plot(rows, out)
    log(format_table(*_table(rows)))
    log(f"wrote {out}/depth_table.md, depth_table.csv, {', '.join(p.name for p in written)}")
    return rows


def _train_all(configs: list, data: ImageDataset, progress: bool, log: Callable[[str], object]) -> None:
    for config in tqdm(configs, desc="depth sweep", unit="run", disable=not progress):
        if fit_or_reuse(config, log=lambda line: None, dataset=data) == "reused":
            log(f"{config.model} seed {config.seed}: finished earlier, kept")
        else:
            final = read_metrics(config.out)[-1]["train_loss"]
            log(f"{config.model} seed {config.seed}: final training loss {final:.4f}")


def _subset(subset: int | None, data: ImageDataset, preset: str | None, log: Callable[[str], object]) -> int | None:
    """The training subset: a preset's cut to the dataset when it has fewer images (said in one line); what the
    user gave (`preset` None) as given."""
    images = len(data.train_labels)
    if subset is None or preset is None or subset <= images:
        return subset
    log(f"{data.name} has {images:,} training images, fewer than the {preset} preset's {subset:,}: all are used")
    return images


def _summarise(family: str, depth: int, run_dirs: list[Path], width: int | None) -> dict:
    histories = [read_metrics(d) for d in run_dirs]
    traces = [_read_trace(d) for d in run_dirs]
    finals = [h[-1] for h in histories]
    last_epoch = [t["grad_norms"][-t["steps_per_epoch"] :] for t in traces]
    return {
        "family": family,
        "depth": depth,
        "model": model_name(family, depth),
        "layers": layers(family, depth),
        "parameters": count_parameters(create_model(model_name(family, depth), width=width)),
        "final_train_loss": _mean([f["train_loss"] for f in finals]),
        "train_loss_per_seed": [f["train_loss"] for f in finals],
        "train_error": 100 - _mean([f["train_accuracy"] for f in finals]),
        "test_error": 100 - _mean([f["test_accuracy"] for f in finals]),
        "grad_norm": _mean([statistics.median(norms) for norms in last_epoch]),
        "seconds": _mean([sum(r["seconds"] for r in h) for h in histories]),
        "histories": histories,
        "traces": traces,
        "run_dir": run_dirs[0],
    }


def _table(rows: list[dict]) -> tuple[list[str], list[list]]:
    headers = [
        "model",
        "connection",
        "parameters",
        "final train loss (per seed)",
        "train error %",
        "test error %",
        "first-layer grad norm, last epoch",
        "seconds",
    ]
    body = [
        [
            r["model"],
            CONNECTIONS[r["family"]],
            f"{r['parameters']:,}",
            f"{r['final_train_loss']:.4f} ({', '.join(f'{v:.3f}' for v in r['train_loss_per_seed'])})",
            f"{r['train_error']:.2f}",
            f"{r['test_error']:.2f}",
            f"{r['grad_norm']:.2g}",
            f"{r['seconds']:.0f}",
        ]
        for r in rows
    ]
    return headers, body


def _write_tables(rows: list[dict], out: Path, seeds: Sequence[int]) -> None:
    headers, body = _table(rows)
    note = (
        f"Mean over seeds {', '.join(map(str, seeds))}. The gradient norm is the first layer's, median over "
        f"the last epoch's steps."
    )
    write_text(out / "depth_table.md", f"{note}\n\n{format_table(headers, body)}\n")
    header = [
        "family",
        "depth",
        "model",
        "parameters",
        "final_train_loss",
        "train_error",
        "test_error",
        "grad_norm_last_epoch",
        "seconds",
    ]
    write_csv(
        out / "depth_table.csv",
        [header]
        + [
            [
                r["family"],
                r["depth"],
                r["model"],
                r["parameters"],
                f"{r['final_train_loss']:.6f}",
                f"{r['train_error']:.4f}",
                f"{r['test_error']:.4f}",
                f"{r['grad_norm']:.6g}",
                f"{r['seconds']:.1f}",
            ]
            for r in rows
        ],
    )


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over `window` values (fewer at the start)."""
    total, out = 0.0, []
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def _per_step(row: dict, key: str) -> tuple[list[float], int]:
    """The seeds' mean of a per-step trace, smoothed over a quarter epoch, and that window."""
    steps = row["traces"][0]["steps_per_epoch"]
    window = max(1, steps // 4)
    return smooth([_mean(values) for values in zip(*(t[key] for t in row["traces"]))], window), window


def _percent_axis(ax: Axes) -> None:
    """Log scale labelled 0.5, 1, 2, 5, 10, ... rather than in powers of ten."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if low <= t <= high]
    if len(ticks) >= 3:
        ax.set_yticks(ticks)
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:  # less than a decade: label the minor ticks too
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))


def _plot(rows: list[dict], out: Path) -> list[Path]:
    plt = pyplot()
    families = list(dict.fromkeys(r["family"] for r in rows))
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # one colour per depth: plain-8, resnet-8 and densenet-bc-10-8 alike
    colours = {d: c for d, c in zip(sorted({r["depth"] for r in rows}), palette)}
    written = []

    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4.2), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        for r in (r for r in rows if r["family"] == family):
            train, window = _per_step(r, "train_error")
            ax.plot(range(1, len(train) + 1), train, color=colours[r["depth"]], lw=1.2, label=f"{r['model']} train")
            steps = r["traces"][0]["steps_per_epoch"]
            epochs = range(len(r["histories"][0]))
            test = [100 - _mean([h[i]["test_accuracy"] for h in r["histories"]]) for i in epochs]
            ax.plot(
                [steps * (i + 1) for i in epochs],
                test,
                color=colours[r["depth"]],
                ls="--",
                marker="o",
                ms=4,
                lw=2,
                label=f"{r['model']} test",
            )
        ax.set(title=TITLES[family], xlabel="iteration", ylabel="error (%)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    _percent_axis(axes[0, 0])  # the axes share y
    fig.suptitle(
        f"Training error (solid: moving average over {window} step{'s' if window > 1 else ''}, a quarter "
        f"epoch) and test error after each epoch (dashed)"
    )
    written.append(save_figure(fig, out / "depth_curves.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for family in families:
        mine = [r for r in rows if r["family"] == family]
        ax.plot([r["layers"] for r in mine], [r["final_train_loss"] for r in mine], marker="o", label=TITLES[family])
    ax.set(title="Final training loss against depth", xlabel="layers", ylabel="training loss", yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    written.append(save_figure(fig, out / "depth_loss.png"))

    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        for r in (r for r in rows if r["family"] == family):
            norms, window = _per_step(r, "grad_norms")
            ax.plot(range(1, len(norms) + 1), norms, color=colours[r["depth"]], label=r["model"])
        ax.set(
            title=f"{TITLES[family]}: first-layer gradient norm", xlabel="iteration", ylabel="||grad||", yscale="log"
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    written.append(save_figure(fig, out / "depth_gradients.png"))

    dense = [r for r in rows if r["family"] == "densenet"]
    if dense:
        written.append(_plot_reuse(max(dense, key=lambda r: r["layers"]), out / "depth_reuse.png"))
    return written


def reuse(model: torch.nn.Module) -> list[torch.Tensor]:
    """For each dense block, a (layers x sources) matrix: how strongly layer l's first (1x1) convolution
    weighs the block's input (source 0) and each earlier layer's k new channels (sources 1 .. l-1):
    mean |weight x BatchNorm scale| over the source's channels, each row divided by its largest entry.
    Entries above the diagonal (later layers' outputs) are NaN."""
    blocks: dict[str, list] = {}
    features: Any = model.features  # a DenseNetBC's: its layers are read by their names
    for name, layer in features.named_children():
        if "_layer" in name:  # denseblockB_layerI
            with torch.no_grad():
                strength = layer.conv1.weight.abs().mean((0, 2, 3)) * layer.norm1.weight.abs()  # per input channel
            blocks.setdefault(name.split("_")[0], []).append((strength, layer.conv2.out_channels))
    matrices = []
    for block in blocks.values():
        first, growth = len(block[0][0]), block[0][1]
        matrix = torch.full((len(block), len(block)), float("nan"))
        for i, (strength, _) in enumerate(block):
            sources = [strength[:first]] + [strength[first + j * growth : first + (j + 1) * growth] for j in range(i)]
            means = torch.stack([s.mean() for s in sources])
            matrix[i, : i + 1] = means / means.max()
        matrices.append(matrix)
    return matrices


def _plot_reuse(row: dict, path: Path) -> Path:
    matrices = reuse(open_run(row["run_dir"]).model)
    fig, axes = pyplot().subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4), squeeze=False)
    for b, (ax, matrix) in enumerate(zip(axes[0], matrices), start=1):
        image = ax.imshow(matrix.numpy(), cmap="viridis", vmin=0, vmax=1)
        ticks = range(len(matrix))
        ax.set(xticks=ticks, yticks=ticks, xlabel="source layer s (in: the block's input)", title=f"dense block {b}")
        ax.set_xticklabels(["in"] + [str(s) for s in range(1, len(matrix))], fontsize=7)
        ax.set_yticklabels([str(s) for s in range(1, len(matrix) + 1)], fontsize=7)
    axes[0, 0].set_ylabel("target layer l")
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight on s, relative to the row's largest")
    fig.suptitle(
        f"{row['model']} ({row['run_dir'].name}): how much layer l uses each earlier output it is "
        f"given by concatenation"
    )
    return save_figure(fig, path)
