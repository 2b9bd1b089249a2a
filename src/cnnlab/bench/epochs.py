"""Seconds per epoch of the lecture recipe through cnnlab's pipeline against the lecture's own pipeline.

The reference is a faithful re-implementation of the lecture script's data path (torchvision is not
installable beside this torch): a map-style Dataset turning each uint8 image into a PIL image, then
ToTensor and Normalize per sample, a DataLoader with batch 64 and shuffling, NCHW, test batch 64.
Both run the lecture recipe (SGD 0.01/0.5, batch 64) on the same data in the same process.
"""

import resource
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.bench.inference import onnx_rate, torch_rate
from cnnlab.bench.results import check_destination, environment, save_result, spread
from cnnlab.data.batches import epoch_order, iterate_batches
from cnnlab.data.datasets import ImageDataset, PerChannel, load_dataset
from cnnlab.engine.config import TrainConfig, build_config
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.loop import fastest_layout, train_one_epoch
from cnnlab.engine.run import build_model
from cnnlab.engine.state import build_optimizer
from cnnlab.models import count_parameters
from cnnlab.tables import format_table
from cnnlab.timing import timed

COLUMNS = [
    "model",
    "params",
    "s/epoch cnnlab",
    "s/epoch reference",
    "speed-up",
    "acc % cnnlab",
    "acc % reference",
    "train img/s",
    "torch img/s b=1",
    "torch img/s b=1024",
    "onnxruntime img/s b=1",
    "onnxruntime img/s b=1024",
]


class _LectureMNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST + ToTensor + Normalize((0.1307,), (0.3081,)), per sample."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: PerChannel, std: PerChannel) -> None:
        assert isinstance(mean, float) and isinstance(std, float)  # MNIST's: one channel
        self.images, self.labels, self.mean, self.std = images[:, 0].numpy(), labels.numpy(), mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        picture = Image.fromarray(self.images[i], mode="L")
        x = torch.from_numpy(np.array(picture, copy=True)).view(1, 28, 28).float().div(255)
        return (x - self.mean) / self.std, int(self.labels[i])


def reference_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset: ImageDataset, seed: int
) -> tuple[float, float]:
    """One epoch of the lecture script: train() then test(); returns (seconds, test accuracy)."""
    generator = torch.Generator().manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(
        _LectureMNIST(dataset.train_images, dataset.train_labels, dataset.mean, dataset.std),
        batch_size=64,
        shuffle=True,
        generator=generator,
    )
    test_loader = torch.utils.data.DataLoader(
        _LectureMNIST(dataset.test_images, dataset.test_labels, dataset.mean, dataset.std), batch_size=64
    )

    def epoch() -> float:
        model.train()
        for data, target in train_loader:
            optimizer.zero_grad()
            F.nll_loss(model(data), target).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(data).argmax(1) == target).sum()) for data, target in test_loader)
        return 100.0 * correct / len(dataset.test_labels)

    return timed(epoch)


def cnnlab_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, dataset: ImageDataset, config: TrainConfig
) -> tuple[float, float]:
    """The same epoch through cnnlab's pipeline (index-slice batches, channels_last unless the model's forward
    needs NCHW: a learner's `x.view`); (seconds, test accuracy)."""
    memory_format = fastest_layout(model, (dataset.in_channels, *dataset.input_size))
    model.to(memory_format=memory_format)  # type: ignore[call-overload]  # torch's stubs lack memory_format

    def epoch() -> float:
        order = epoch_order(len(dataset.train_labels), config.seed, 1)
        batches = iterate_batches(
            dataset.train_images,
            dataset.train_labels,
            batch_size=config.batch_size,
            mean=dataset.mean,
            std=dataset.std,
            order=order,
            memory_format=memory_format,
        )
        train_one_epoch(model, batches, optimizer=optimizer)
        result = evaluate(
            model,
            dataset.test_images,
            dataset.test_labels,
            mean=dataset.mean,
            std=dataset.std,
            num_classes=dataset.num_classes,
            memory_format=memory_format,
        )
        return result.accuracy

    return timed(epoch)


def lecture_pipeline_epoch(dataset: ImageDataset, seed: int = 0) -> float:
    """Seconds of one epoch of the lecture's `cnn` and recipe through the lecture's own pipeline, from fresh
    weights: the unit that time to accuracy is compared against."""
    config = build_config({"recipe": "lecture", "model": "cnn", "seed": seed})
    torch.manual_seed(seed)
    model = build_model("cnn", dataset.info)
    return reference_epoch(model, build_optimizer(model, config), dataset, seed)[0]


def _pipeline_epochs(
    name: str,
    dataset: ImageDataset,
    *,
    pipelines: Sequence[str],
    repeats: int,
    scale: float,
    log: Callable[[str], object],
) -> dict:
    """The lecture recipe's epoch through each pipeline, alternated `repeats` times (so that a noisy minute hits
    both alike), each from fresh weights; the last model is kept for the inference figures."""
    config = build_config({"recipe": "lecture", "model": name})
    entry: dict[str, Any] = {pipeline: {"epoch_seconds": []} for pipeline in pipelines}
    for _ in range(repeats):
        for pipeline in pipelines:
            torch.manual_seed(config.seed)
            model = build_model(name, dataset.info)
            optimizer = build_optimizer(model, config)
            seconds, accuracy = (
                cnnlab_epoch(model, optimizer, dataset, config)
                if pipeline == "cnnlab"
                else reference_epoch(model, optimizer, dataset, config.seed)
            )
            runs = entry[pipeline]["epoch_seconds"]
            runs.append(seconds * scale)
            entry[pipeline].update(
                seconds_per_epoch=statistics.median(runs),
                test_accuracy=accuracy,
                train_images_per_s=60000 / statistics.median(runs),
            )
            log(f"{name} {pipeline}: {seconds * scale:.2f} s/epoch (train + test), test accuracy {accuracy:.2f}%")
    entry["parameters"], entry["model"] = count_parameters(model), model
    return entry


def _row(name: str, entry: dict, reference: bool) -> list[str]:
    versus = (
        [
            spread(entry["reference"]["epoch_seconds"], 2),
            f"{entry['speedup']:.2f}x",
            f"{entry['reference']['test_accuracy']:.2f}",
        ]
        if reference
        else ["-", "-", "-"]
    )
    rates = [
        entry[backend][b] for backend in ("inference_images_per_s", "onnxruntime_images_per_s") for b in ("1", "1024")
    ]
    return [
        name,
        f"{entry['parameters']:,}",
        spread(entry["cnnlab"]["epoch_seconds"], 2),
        versus[0],
        versus[1],
        f"{entry['cnnlab']['test_accuracy']:.2f}",
        versus[2],
        f"{entry['cnnlab']['train_images_per_s']:,.0f}",
        *(spread(r) for r in rates),
    ]


def _bench_data(data_dir: str | Path | None, quick: bool) -> ImageDataset:
    dataset = load_dataset("mnist", data_dir)
    if quick:  # a tenth of the data: same code paths, seconds scaled up to a full epoch
        dataset.train_images, dataset.train_labels = dataset.train_images[:6000], dataset.train_labels[:6000]
        dataset.test_images, dataset.test_labels = dataset.test_images[:1000], dataset.test_labels[:1000]
    return dataset


def run_bench(
    data_dir: str | Path | None,
    models: Sequence[str] = ("cnn", "inception"),
    quick: bool = False,
    reference: bool = True,
    out_dir: str | Path = "benchmarks/results",
    epoch_repeats: int = 3,
    log: Callable[[str], object] = print,
) -> dict:
    """Per model: the lecture recipe's epoch, cnnlab's pipeline and the reference alternately, each from fresh
    weights `epoch_repeats` times (median and range reported); then inference throughput."""
    if epoch_repeats < 1:
        raise CnnlabError(f"--repeats must be at least 1, got {epoch_repeats}")
    check_destination(out_dir)
    dataset = _bench_data(data_dir, quick)
    scale, repeats = 60000 / len(dataset.train_labels), 3 if quick else 5
    pipelines = ("cnnlab", "reference") if reference else ("cnnlab",)
    results: dict[str, Any] = {**environment(), "device": "cpu", "quick": quick, "models": {}}
    rows = []
    for name in models:
        entry = _pipeline_epochs(name, dataset, pipelines=pipelines, repeats=epoch_repeats, scale=scale, log=log)
        model = entry.pop("model")
        entry["inference_images_per_s"] = {str(b): torch_rate(model, b, repeats) for b in (1, 1024)}
        entry["onnxruntime_images_per_s"] = {str(b): onnx_rate(model, b, repeats) for b in (1, 1024)}
        if reference:
            entry["speedup"] = entry["reference"]["seconds_per_epoch"] / entry["cnnlab"]["seconds_per_epoch"]
        results["models"][name] = entry
        rows.append(_row(name, entry, reference))
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["table"] = format_table(COLUMNS, rows)
    path = save_result(out_dir, f"{results['machine']}-{results['date']}.json", results)
    log(
        f"\nLecture recipe, 1 epoch, {results['threads']} threads, torch {results['torch']}, "
        f"peak RSS {results['peak_rss_mib']:.0f} MiB; epochs: median (min-max) of {epoch_repeats}, "
        f"inference: of {repeats}; load average {results['load_average'][0]} on {results['cpus']} CPUs"
    )
    log(results["table"])
    log(f"written to {path}")
    return results
