"""The GPU suite (`cnnlab bench --gpu`, run by benchmarks/gpu.sh): each section written to the JSON file as
soon as it is done, and skipped once the time budget has passed."""

import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from cnnlab.bench.accuracy import time_to_accuracy
from cnnlab.bench.results import check_destination, environment, save_result
from cnnlab.data.batches import epoch_order, iterate_batches
from cnnlab.data.datasets import ImageDataset, load_dataset
from cnnlab.engine.config import build_config
from cnnlab.engine.device import select_device
from cnnlab.engine.fit import fit
from cnnlab.engine.loop import train_one_epoch
from cnnlab.engine.run import build_model
from cnnlab.engine.state import WeightAverage, build_optimizer
from cnnlab.models import create_model
from cnnlab.timing import images_per_second

INFERENCE_MODELS = ("cnn", "cnn-bn-s16-32-64", "cnn-bn-32-64-64-fc256")  # the recipes' models


def _host_syncs(data: ImageDataset, device: torch.device, steps: int) -> dict:
    """Host syncs in `steps` training steps of the fast recipe's model with a weight average, counted by
    CUDA's sync debug mode (each sync warns). The loop's NaN test is every 50 steps; reading the sums at the
    end of the epoch adds 3."""
    config = build_config({"recipe": "fast", "ema": 0.99})
    torch.manual_seed(0)
    model = build_model(config.model, data.info).to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer, average = build_optimizer(model, config), WeightAverage(model, config.ema)
    order = epoch_order(len(data.train_labels), 0, 1, device)[: steps * config.batch_size]
    batches = list(
        iterate_batches(
            data.train_images,
            data.train_labels,
            batch_size=config.batch_size,
            mean=data.mean,
            std=data.std,
            order=order,
            memory_format=torch.channels_last,
        )
    )
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train_one_epoch(model, batches, optimizer=optimizer, ema=average, check_every=50, amp_dtype=torch.bfloat16)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0][:120] for w in caught if "synchroniz" in str(w.message)]
    return {"steps": steps, "check_every": 50, "syncs": len(syncs), "first": syncs[:3]}


def _synchronised_forward(model: torch.nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None) -> Callable[[], None]:
    """A forward pass that returns when the device has finished it."""

    @torch.inference_mode()
    def forward() -> None:
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            model(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    return forward


def _inference_on_device(device: torch.device, batches: Sequence[int], budget_s: float) -> dict:
    """images/s of the recipes' models on `device` at each batch size, float32 and bf16 autocast (untrained
    weights: the arithmetic is the same)."""
    rates = {}
    for name in INFERENCE_MODELS:
        model = create_model(name).to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        model.eval()
        for precision in ("fp32", "bf16"):
            for b in batches:
                x = torch.randn(b, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
                forward = _synchronised_forward(model, x, torch.bfloat16 if precision == "bf16" else None)
                rates[f"{name} {precision} b={b}"] = statistics.median(images_per_second(forward, b, 3, budget_s))
    return rates


def _epochs_of(data: ImageDataset, settings: dict) -> dict:
    """Per-epoch seconds, training images/s and test accuracy of one run with these TrainConfig values."""
    with tempfile.TemporaryDirectory() as folder:
        config = build_config({**settings, "progress": False, "out": f"{folder}/run"})
        history = fit(config, log=lambda line: None, dataset=data).history
    return {
        "epoch_seconds": [row["seconds"] for row in history],
        "train_images_per_s": [row["images_per_s"] for row in history],
        "test_accuracy": [row["test_accuracy"] for row in history],
    }


def _sections(
    data: ImageDataset, device: torch.device, quick: bool, log: Callable[[str], object]
) -> dict[str, Callable[[], dict]]:
    """The suite's sections, headline figures first: a section starts only while the budget lasts."""
    base = {"device": device.type, **({"train_subset": 1024, "epochs": 1} if quick else {})}
    seeds = (0, 0) if quick else (0, 1, 2, 0)  # the first run is cold: CUDA kernels load, cuDNN picks algorithms
    epochs = (lambda n: 1) if quick else (lambda n: n)

    def time_to(recipe: str, seeds: Sequence[int], **settings: object) -> dict:
        target = 50.0 if quick else 99.0
        settings = {**base, **settings}
        return time_to_accuracy(
            None, target, recipe, seeds, out_dir=None, log=log, settings=settings, data=data, reference=False
        )

    sections = {
        "host_syncs": lambda: (
            _host_syncs(data.to(device), device, 200)
            if device.type == "cuda"
            else {"skipped": "CUDA's sync debug mode counts host syncs; there is none on a CPU"}
        ),
        "fast_eager_bf16": lambda: time_to("fast", seeds, precision="bf16"),
        "fast_eager_fp32": lambda: time_to("fast", seeds[1:] or seeds, precision="fp32"),
        "lecture_fp32": lambda: _epochs_of(
            data, {**base, "recipe": "lecture", "epochs": epochs(2), "precision": "fp32"}
        ),
        "lecture_bf16": lambda: _epochs_of(
            data, {**base, "recipe": "lecture", "epochs": epochs(2), "precision": "bf16"}
        ),
        "best_bf16": lambda: _epochs_of(data, {**base, "recipe": "best", "epochs": epochs(3), "precision": "bf16"}),
        "best_fp32": lambda: _epochs_of(data, {**base, "recipe": "best", "epochs": epochs(3), "precision": "fp32"}),
        "inference": lambda: _inference_on_device(
            device, (1, 64) if quick else (1, 1024, 16384), 0.05 if quick else 1.5
        ),
        "fast_compiled": lambda: time_to("fast", seeds, precision="bf16", compile="default"),
        "fast_cuda_graphs": lambda: time_to("fast", seeds, precision="bf16", compile="reduce-overhead"),
        "fast_batch_512": lambda: time_to("fast", seeds[1:] or seeds, precision="bf16", batch_size=512, lr=0.04),
    }
    if device.type != "cuda":  # compiling the training step on a CPU takes minutes; tests/test_sync_free.py covers it
        del sections["fast_compiled"], sections["fast_cuda_graphs"]
    return sections


def _run_section(run: Callable[[], dict]) -> dict:
    began = time.perf_counter()
    try:
        return {**run(), "section_seconds": round(time.perf_counter() - began, 1)}
    except Exception as e:  # noqa: BLE001 -- one run on a lent GPU: keep the other sections' figures
        return {"error": f"{type(e).__name__}: {e}"[:600]}


def _summary(section: dict) -> dict:
    """A section's headline numbers for the log line (the JSON file has everything)."""
    if "runs" in section:
        runs = section["runs"]
        return {
            "cold_s": runs[0]["seconds"],
            "warm_median_s": statistics.median(
                [r["seconds"] if r["seconds"] is not None else float("inf") for r in runs[1:] or runs]
            ),
            "compile_s": [r["compile_seconds"] for r in runs],
            "final_accuracy": [r["final_accuracy"] for r in runs],
        }
    return section


def _device_description(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    return {
        "gpu": torch.cuda.get_device_name(device),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "bf16": torch.cuda.is_bf16_supported(),
    }


def gpu_bench(
    data_dir: str | Path | None,
    out_dir: str | Path = "benchmarks/results/gpu",
    device_name: str = "cuda",
    quick: bool = False,
    budget_s: float = 330.0,
    log: Callable[[str], object] = print,
) -> dict:
    """The GPU figures of issue 17 in one run, each section written to the JSON file as soon as it is done and
    skipped once `budget_s` has passed: host syncs per step, `fast` time to 99% cold (the process's first run)
    and warm (eager, bf16 and float32, compiled, CUDA graphs), the lecture recipe's s/epoch, `best` for
    3 epochs in bf16 and float32, and inference images/s. `quick`: tiny runs of the same code on mnist-sample
    (for a test on a CPU); on a CPU the compiled sections are left out (minutes of compile) and host syncs are
    not countable."""
    check_destination(out_dir)
    device = select_device(device_name)
    start = time.perf_counter()
    results = {**environment(), "device": str(device), "quick": quick, **_device_description(device), "sections": {}}
    name = f"{'gpu' if device.type == 'cuda' else results['machine']}-{results['date']}-gpu-suite.json"
    data = load_dataset("mnist-sample") if quick else load_dataset("mnist", data_dir)
    for section, run in _sections(data, device, quick, log).items():
        spent = time.perf_counter() - start > budget_s
        results["sections"][section] = (
            {"skipped": f"time budget of {budget_s:.0f} s spent"} if spent else _run_section(run)
        )
        log(f"{section}: {json.dumps(_summary(results['sections'][section]))}")
        path = save_result(out_dir, name, results)
    log(f"written to {path} ({time.perf_counter() - start:.0f} s)")
    return results
