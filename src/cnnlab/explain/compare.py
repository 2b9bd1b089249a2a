"""`cnnlab compare`: several models, the same budget and recipe, one leaderboard and one scatter plot."""

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.engine.checkpoint import read_metrics
from cnnlab.engine.config import build_config
from cnnlab.engine.fit import fit_or_reuse, training_data
from cnnlab.engine.run import OpenOptions, open_run, script_code
from cnnlab.external.spec import parse_spec
from cnnlab.files import write_csv, write_text
from cnnlab.models import count_flops, count_parameters
from cnnlab.plotting import pyplot, save_figure
from cnnlab.tables import format_table
from cnnlab.timing import images_per_second


def inference_rate(model: torch.nn.Module, input_shape: Sequence[int], batch_size: int = 1024) -> float:
    x = normalise(torch.randint(0, 256, (batch_size, *input_shape), dtype=torch.uint8), 0.1307, 0.3081)
    with torch.inference_mode():
        return images_per_second(lambda: model(x), batch_size, repeats=1, budget_s=0.5)[0]


def compare(
    models: Sequence[str],
    out_dir: str | Path,
    log: Callable[[str], object] = print,
    trust_code: bool = False,
    **settings: object,
) -> list[dict]:
    """Train (or reuse) each model of `models` (registered names or scripts, net.py:Net) with the same
    `settings` into out_dir/<model>, then rank them. `trust_code`: reuse runs of scripts not trained here."""
    out_dir = Path(out_dir)
    rows = []
    # every name, script and setting is checked before the first model trains
    folders = [out_dir / parse_spec(name).slug for name in models]
    if len(set(folders)) < len(folders):
        raise CnnlabError(f"--models {','.join(models)}: two of them would share a run folder; name each once")
    configs = [build_config({**settings, "model": name, "out": str(run_dir)}) for name, run_dir in zip(models, folders)]
    for config in configs:
        script_code(config.model)  # a script that cannot be loaded is said now, not after the others trained
    data = training_data(configs[0], log)
    for name, config, run_dir in zip(models, configs, folders):
        config = dataclasses.replace(config, dataset=data.name)
        if fit_or_reuse(config, log=log, dataset=data, trust_code=trust_code) == "reused":
            log(f"{name}: reusing the finished run in {run_dir}")
        run = open_run(run_dir, OpenOptions(trust_code=trust_code))
        model, shape = run.model, (run.info.in_channels, *run.info.input_size)
        metrics = read_metrics(run_dir)
        rows.append(
            {
                "model": name,
                "parameters": count_parameters(model),
                "flops": count_flops(model, shape),
                "test_accuracy": metrics[-1]["test_accuracy"],
                "dataset": run.info.name,
                "train_seconds": round(sum(r["train_seconds"] for r in metrics), 2),
                "train_seconds_per_epoch": round(sum(r["train_seconds"] for r in metrics) / len(metrics), 2),
                "inference_images_per_s": round(inference_rate(model, shape)),
            }
        )
    rows.sort(key=lambda r: -r["test_accuracy"])
    write_csv(out_dir / "leaderboard.csv", [list(rows[0])] + [list(r.values()) for r in rows])
    table = format_table(
        ["model", "parameters", "FLOPs/image", "test accuracy %", "training s", "s/epoch", "inference img/s"],
        [
            [
                r["model"],
                f"{r['parameters']:,}",
                f"{r['flops']:,}",
                f"{r['test_accuracy']:.2f}",
                f"{r['train_seconds']:.1f}",
                f"{r['train_seconds_per_epoch']:.1f}",
                f"{r['inference_images_per_s']:,}",
            ]
            for r in rows
        ],
    )
    write_text(out_dir / "leaderboard.md", table + "\n")
    _scatter(rows, out_dir / "accuracy_vs_parameters.png")
    log(table)
    log(f"wrote {out_dir / 'leaderboard.md'}, leaderboard.csv and accuracy_vs_parameters.png")
    return rows


def _scatter(rows: list[dict], path: Path) -> None:
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(r["parameters"], r["test_accuracy"], s=40)
        ax.annotate(r["model"], (r["parameters"], r["test_accuracy"]), textcoords="offset points", xytext=(5, 5))
    ax.set(
        xscale="log",
        xlabel="parameters (log scale)",
        ylabel="test accuracy (%)",
        title=f"Accuracy against parameters ({rows[0]['dataset']}, same budget)",
    )
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, path)
