"""`cnnlab depth`: the degradation experiment of He et al. 2015, Figure 1/6, on MNIST-style data.

Each (family, depth, seed) is trained with the same recipe and budget; finished runs are kept, so an
interrupted sweep resumes where it stopped. Outputs: depth_table.md/.csv, depth_curves.png (training
error solid, test error dashed, plain and residual side by side), depth_loss.png (final training loss
against depth) and depth_gradients.png (first-layer gradient norm per step).
"""
import json
import statistics
from pathlib import Path

from tqdm import tqdm

from cnnlab import CnnlabError
from cnnlab.engine.checkpoint import read_metrics
from cnnlab.engine.config import build_config
from cnnlab.engine.fit import fit_or_reuse
from cnnlab.files import write_csv, write_text
from cnnlab.models import count_parameters, create_model
from cnnlab.plotting import pyplot, save_figure
from cnnlab.tables import format_table

# 12,000 images, width 8, SGD 0.1/0.9, batch 128, 3 epochs: a probe showed plain-56 ending at a training
# loss about 4x plain-8's with this budget, while the runs fit in about 10 minutes on 2 cores per seed.
PRESETS = {"quick": dict(families=("plain", "resnet"), depths=(8, 20, 56), epochs=3, train_subset=12000, width=8)}
# On CIFAR, He et al.'s own recipe (meant for a GPU; the quick preset cuts it to 3 epochs on 12,000 images).
RECIPE_FOR = {"cifar10": "he-cifar", "cifar100": "he-cifar"}


def _mean(values):
    return statistics.fmean(values) if values else float("nan")


def run_depth(families, depths, seeds, out, epochs=None, train_subset=None, width=None, dataset=None,
              data_dir=None, recipe=None, overwrite=False, log=print) -> list[dict]:
    recipe = recipe or RECIPE_FOR.get(dataset, "depth")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for family in families:
        if family not in ("plain", "resnet"):
            raise CnnlabError(f"unknown family {family!r}; choose plain or resnet")
    runs = [(f, d, s) for f in families for d in depths for s in seeds]
    configs = {}
    for family, depth, seed in runs:
        configs[family, depth, seed] = build_config({
            "model": f"{family}-{depth}", "recipe": recipe, "epochs": epochs, "train_subset": train_subset,
            "width": width, "dataset": dataset, "data_dir": data_dir, "seed": seed, "trace_grad": True,
            "out": str(out / f"{family}-{depth}-s{seed}"), "overwrite": overwrite, "progress": False})
    for key in tqdm(runs, desc="depth sweep", unit="run"):
        config = configs[key]
        if fit_or_reuse(config, log=lambda line: None) == "reused":
            log(f"{config.model} seed {config.seed}: finished earlier, kept")
        else:
            log(f"{config.model} seed {config.seed}: final training loss "
                f"{read_metrics(config.out)[-1]['train_loss']:.4f}")
    rows = []
    for family in families:
        for depth in depths:
            histories = [read_metrics(configs[family, depth, s].out) for s in seeds]
            finals = [h[-1] for h in histories]
            model = create_model(f"{family}-{depth}", width=configs[family, depth, seeds[0]].width)
            rows.append({"family": family, "depth": depth, "parameters": count_parameters(model),
                         "final_train_loss": _mean([f["train_loss"] for f in finals]),
                         "train_loss_per_seed": [f["train_loss"] for f in finals],
                         "train_error": 100 - _mean([f["train_accuracy"] for f in finals]),
                         "test_error": 100 - _mean([f["test_accuracy"] for f in finals]),
                         "seconds": _mean([sum(r["seconds"] for r in h) for h in histories]),
                         "histories": histories})
    _write_tables(rows, out, seeds)
    _plot(rows, configs, seeds, out)
    log(format_table(*_table(rows)))
    log(f"wrote {out}/depth_table.md, depth_table.csv, depth_curves.png, depth_loss.png, depth_gradients.png")
    return rows


def _table(rows):
    headers = ["model", "parameters", "final train loss (per seed)", "train error %", "test error %", "seconds"]
    body = [[f"{r['family']}-{r['depth']}", f"{r['parameters']:,}",
             f"{r['final_train_loss']:.4f} ({', '.join(f'{v:.3f}' for v in r['train_loss_per_seed'])})",
             f"{r['train_error']:.2f}", f"{r['test_error']:.2f}", f"{r['seconds']:.0f}"] for r in rows]
    return headers, body


def _write_tables(rows, out: Path, seeds) -> None:
    headers, body = _table(rows)
    write_text(out / "depth_table.md", f"Mean over seeds {', '.join(map(str, seeds))}.\n\n{format_table(headers, body)}\n")
    header = ["family", "depth", "parameters", "final_train_loss", "train_error", "test_error", "seconds"]
    write_csv(out / "depth_table.csv", [header] + [
        [r["family"], r["depth"], r["parameters"], f"{r['final_train_loss']:.6f}", f"{r['train_error']:.4f}",
         f"{r['test_error']:.4f}", f"{r['seconds']:.1f}"] for r in rows])


def _plot(rows, configs, seeds, out: Path) -> None:
    plt = pyplot()
    families = list(dict.fromkeys(r["family"] for r in rows))
    colours = {d: c for d, c in zip(sorted({r["depth"] for r in rows}), plt.rcParams["axes.prop_cycle"].by_key()["color"])}
    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4.2), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        for r in (r for r in rows if r["family"] == family):
            epochs = [row["epoch"] for row in r["histories"][0]]
            train = [100 - _mean([h[i]["train_accuracy"] for h in r["histories"]]) for i in range(len(epochs))]
            test = [100 - _mean([h[i]["test_accuracy"] for h in r["histories"]]) for i in range(len(epochs))]
            ax.plot(epochs, train, color=colours[r["depth"]], marker="o", label=f"{family}-{r['depth']} train")
            ax.plot(epochs, test, color=colours[r["depth"]], ls="--", label=f"{family}-{r['depth']} test")
        ax.set(title=f"{'plain' if family == 'plain' else 'ResNet'}: training (solid) and test (dashed) error",
               xlabel="epoch", ylabel="error (%)", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, out / "depth_curves.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for family in families:
        mine = [r for r in rows if r["family"] == family]
        ax.plot([r["depth"] for r in mine], [r["final_train_loss"] for r in mine], marker="o", label=family)
    ax.set(title="Final training loss against depth", xlabel="layers", ylabel="training loss", yscale="log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save_figure(fig, out / "depth_loss.png")

    fig, axes = plt.subplots(1, len(families), figsize=(6 * len(families), 4), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families):
        for r in (r for r in rows if r["family"] == family):
            trace = json.loads((Path(configs[family, r["depth"], seeds[0]].out) / "grad_norms.json").read_text())["grad_norms"]
            window = max(1, len(trace) // 60)
            smooth = [_mean(trace[i:i + window]) for i in range(0, len(trace), window)]
            ax.plot([i * window for i in range(len(smooth))], smooth, color=colours[r["depth"]], label=f"{family}-{r['depth']}")
        ax.set(title=f"{family}: first-layer gradient norm (seed {seeds[0]})", xlabel="step", ylabel="||grad||", yscale="log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    save_figure(fig, out / "depth_gradients.png")
