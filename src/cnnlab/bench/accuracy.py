"""Time to accuracy: seconds from the start of training to the first evaluation at or above a target,
evaluations included, per seed; on MNIST-shaped data also as a ratio to one epoch of the lecture's own
pipeline, measured alternately in the same process (a shared machine's load then hits both alike)."""

import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from cnnlab.bench.epochs import lecture_pipeline_epoch
from cnnlab.bench.results import check_destination, environment, save_result
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.engine.config import build_config
from cnnlab.engine.fit import fit


def seconds_to(history: list[dict], target: float) -> float | None:
    """Training and evaluation seconds up to the first epoch whose test accuracy reaches `target`."""
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["test_accuracy"] >= target:
            return elapsed
    return None


def _one_run(data: ImageDataset, *, recipe: str, seed: int, settings: dict | None, target: float, out: str) -> dict:
    config = build_config({**(settings or {}), "recipe": recipe, "seed": seed, "out": out, "progress": False})
    result = fit(config, log=lambda line: None, dataset=data)
    return {
        "seed": seed,
        "seconds": seconds_to(result.history, target),
        "compile_seconds": round(result.compile_seconds, 3),
        "final_accuracy": result.history[-1]["test_accuracy"],
        "epochs": len(result.history),
        "epoch_seconds": [row["seconds"] for row in result.history],
    }


def _describe(settings: dict | None) -> str:
    return "".join(f", {k.replace('_', '-')} {v}" for k, v in (settings or {}).items())


def _run_line(run: dict, *, recipe: str, settings: dict | None, target: float) -> str:
    reached = run["seconds"]
    return (
        f"recipe {recipe}{_describe(settings)}, seed {run['seed']}: "
        + (f"{target}% after {reached:.2f} s" if reached is not None else f"never reached {target}%")
        + f" (final {run['final_accuracy']:.2f}%)"
        + (f" (+ {run['compile_seconds']:.1f} s compile)" if run["compile_seconds"] else "")
        + (
            f"; the lecture's pipeline: {run['lecture_epoch_seconds']:.2f} s per epoch, ratio {run['ratio']:.2f}"
            if run.get("ratio")
            else ""
        )
    )


def _spread(values: Sequence[float | None], unit: str = "") -> str:
    """Median (min-max) of the numbers among `values` (None: a seed that never reached the target)."""
    numbers = [v for v in values if v is not None]
    if not numbers:
        return "none reached"
    return f"{statistics.median(numbers):.2f}{unit} ({min(numbers):.2f}-{max(numbers):.2f}{unit})"


def _summary_line(summary: dict, path: Path) -> str:
    runs, target = summary["runs"], summary["target"]
    reached = [r["seconds"] for r in runs if r["seconds"] is not None]
    line = (
        f"time to {target}% with recipe {summary['recipe']}{_describe(summary['settings'])}, seeds "
        f"{[r['seed'] for r in runs]}: median {summary['median_seconds']:.2f} s"
        + (f" ({min(reached):.2f}-{max(reached):.2f} s)" if reached else "")
    )
    if "median_ratio" in summary:
        line += (
            f"; one epoch of the lecture's pipeline {_spread([r['lecture_epoch_seconds'] for r in runs], ' s')}; "
            f"ratio {_spread([r['ratio'] for r in runs])}"
        )
    return line + f"; load average {summary['load_average'][0]}; written to {path}"


def time_to_accuracy(
    data_dir: str | Path | None,
    target: float,
    recipe: str = "fast",
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path | None = "benchmarks/results",
    log: Callable[[str], object] = print,
    settings: dict | None = None,
    dataset: str = "mnist",
    name: str | None = None,
    data: ImageDataset | None = None,
    reference: bool = True,
) -> dict:
    """Seconds from the start of training to the first evaluation at or above `target` (evaluations counted),
    one run per seed in this order (a seed may repeat: the first run of a process is the cold one). With
    `compile` among `settings` (TrainConfig values over the recipe's), the compile is timed apart. `data`:
    the dataset already loaded (fit moves it to the device; later runs find it there). With `reference`, on
    1x28x28 images, one epoch of the lecture's own pipeline runs before each seed, and each seed's ratio (that
    epoch's seconds over the seed's time to `target`) is reported: the median and the range."""
    if out_dir is not None:
        check_destination(out_dir)
    data = data if data is not None else load_dataset(dataset, data_dir)
    reference = reference and data.info.in_channels == 1 and tuple(data.info.input_size) == (28, 28)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for i, seed in enumerate(seeds):
            lecture = lecture_pipeline_epoch(data, seed) if reference else None
            run = _one_run(data, recipe=recipe, seed=seed, settings=settings, target=target, out=f"{folder}/{i}")
            if lecture is not None:
                run.update(lecture_epoch_seconds=lecture, ratio=lecture / run["seconds"] if run["seconds"] else None)
            runs.append(run)
            log(_run_line(run, recipe=recipe, settings=settings, target=target))
    times = [r["seconds"] for r in runs]
    summary = {
        "recipe": recipe,
        "settings": settings or {},
        "dataset": dataset,
        "target": target,
        "runs": runs,
        "median_seconds": statistics.median(t if t is not None else float("inf") for t in times),
        "all_reached": all(t is not None for t in times),
        **environment(),
    }
    if reference:  # a seed that never reached the target has the ratio 0
        summary["median_ratio"] = statistics.median(r["ratio"] or 0.0 for r in runs)
    if out_dir is not None:
        variant = "".join(f"-{value}" for value in (settings or {}).values())
        filename = name or f"{summary['machine']}-{summary['date']}-time-to-{target}{variant}.json"
        log(_summary_line(summary, save_result(out_dir, filename, summary)))
    return summary
