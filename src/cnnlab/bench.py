"""`cnnlab bench`: seconds per epoch against the lecture's own pipeline, and inference throughput.

The reference is a faithful re-implementation of the lecture script's data path (torchvision is not
installable beside this torch): a map-style Dataset turning each uint8 image into a PIL image, then
ToTensor and Normalize per sample, a DataLoader with batch 64 and shuffling, NCHW, test batch 64.
Both run the lecture recipe (SGD 0.01/0.5, batch 64) on the same data in the same process.
"""

import json
import os
import platform
import resource
import statistics
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.data.batches import epoch_order, iterate_batches, normalise
from cnnlab.data.datasets import load_dataset
from cnnlab.engine.config import build_config
from cnnlab.engine.device import select_device, torch_settings
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.fit import fit
from cnnlab.engine.loop import train_one_epoch
from cnnlab.engine.run import build_model, open_run
from cnnlab.engine.state import WeightAverage, build_optimizer
from cnnlab.files import write_json
from cnnlab.inference.onnx import ChunkedSession, onnx_session, quantize_int8, to_onnx
from cnnlab.models import count_parameters, create_model
from cnnlab.tables import format_table
from cnnlab.timing import images_per_cpu_second, images_per_second, latencies_ms


class _LectureMNIST(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST + ToTensor + Normalize((0.1307,), (0.3081,)), per sample."""

    def __init__(self, images, labels, mean, std):
        self.images, self.labels, self.mean, self.std = images[:, 0].numpy(), labels.numpy(), mean, std

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        picture = Image.fromarray(self.images[i], mode="L")
        x = torch.from_numpy(np.array(picture, copy=True)).view(1, 28, 28).float().div(255)
        return (x - self.mean) / self.std, int(self.labels[i])


def _reference_epoch(model, optimizer, dataset, seed) -> tuple[float, float]:
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
    start = time.perf_counter()
    model.train()
    for data, target in train_loader:
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            correct += int((model(data).argmax(1) == target).sum())
    return time.perf_counter() - start, 100.0 * correct / len(test_loader.dataset)  # type: ignore[arg-type]


def _cnnlab_epoch(model, optimizer, dataset, config) -> tuple[float, float]:
    memory_format = torch.channels_last
    model.to(memory_format=memory_format)
    start = time.perf_counter()
    batches = iterate_batches(
        dataset.train_images,
        dataset.train_labels,
        batch_size=config.batch_size,
        mean=dataset.mean,
        std=dataset.std,
        order=epoch_order(len(dataset.train_labels), config.seed, 1),
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
    return time.perf_counter() - start, result.accuracy


def _inference_rate(model, batch_size, repeats) -> list[float]:
    """PyTorch eager: eval, inference mode, channels_last."""
    model.eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return images_per_second(lambda: model(x), batch_size, repeats)


def _onnx_rate(model, batch_size, repeats) -> list[float]:
    """The same model exported with a dynamic batch, through onnxruntime."""
    session = onnx_session(to_onnx(model.to(memory_format=torch.contiguous_format).eval(), torch.randn(2, 1, 28, 28)))
    x = torch.randn(batch_size, 1, 28, 28).numpy()
    return images_per_second(lambda: session.run(None, {"input": x}), batch_size, repeats)


def _save_result(out_dir, name: str, result: dict) -> Path:
    """benchmarks/results/<name>, written atomically: an interrupted bench leaves no half a file."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / name, result)
    return Path(out_dir) / name


def _spread(values, digits=0) -> str:
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def _environment() -> dict:
    """Where a figure was taken: machine, processor, torch, threads, date, and the load other work put on it."""
    return {
        "machine": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": date.today().isoformat(),
    }


def _seconds_to(history: list[dict], target: float) -> float | None:
    """Training and evaluation seconds up to the first epoch whose test accuracy reaches `target`."""
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["test_accuracy"] >= target:
            return elapsed
    return None


def time_to_accuracy(
    data_dir,
    target: float,
    recipe: str = "fast",
    seeds=(0, 1, 2),
    out_dir="benchmarks/results",
    log=print,
    settings: dict | None = None,
    dataset: str = "mnist",
    name: str | None = None,
    data=None,
) -> dict:
    """Seconds from the start of training to the first evaluation at or above `target` (evaluations counted),
    one run per seed in this order (a seed may repeat: the first run of a process is the cold one). With
    `compile` among `settings` (TrainConfig values over the recipe's), the compile is timed apart. `data`:
    the dataset already loaded (fit moves it to the device; later runs find it there)."""
    data = data if data is not None else load_dataset(dataset, data_dir)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for i, seed in enumerate(seeds):
            config = build_config(
                {**(settings or {}), "recipe": recipe, "seed": seed, "out": f"{folder}/{i}", "progress": False}
            )
            result = fit(config, log=lambda line: None, dataset=data)
            reached = _seconds_to(result.history, target)
            runs.append(
                {
                    "seed": seed,
                    "seconds": reached,
                    "compile_seconds": round(result.compile_seconds, 3),
                    "final_accuracy": result.history[-1]["test_accuracy"],
                    "epochs": len(result.history),
                    "epoch_seconds": [row["seconds"] for row in result.history],
                }
            )
            log(
                f"recipe {recipe}{_describe(settings)}, seed {seed}: "
                + (
                    f"{target}% after {reached:.2f} s"
                    if reached is not None
                    else f"never reached {target}% (final {result.history[-1]['test_accuracy']:.2f}%)"
                )
                + (f" (+ {result.compile_seconds:.1f} s compile)" if result.compile_seconds else "")
            )
    times = [r["seconds"] for r in runs]
    median = statistics.median(t if t is not None else float("inf") for t in times)
    summary = {
        "recipe": recipe,
        "settings": settings or {},
        "dataset": dataset,
        "target": target,
        "runs": runs,
        "median_seconds": median,
        "all_reached": all(t is not None for t in times),
        **_environment(),
    }
    if out_dir is not None:
        variant = "".join(f"-{value}" for value in (settings or {}).values())
        path = _save_result(
            out_dir, name or f"{summary['machine']}-{summary['date']}-time-to-{target}{variant}.json", summary
        )
        log(
            f"time to {target}% with recipe {recipe}{_describe(settings)}: median {median:.2f} s over seeds "
            f"{list(seeds)} (range {_range(times)}); load average {summary['load_average'][0]}; written to {path}"
        )
    return summary


def _describe(settings: dict | None) -> str:
    return "".join(f", {k.replace('_', '-')} {v}" for k, v in (settings or {}).items())


def _range(times) -> str:
    reached = [t for t in times if t is not None]
    return f"{min(reached):.2f}-{max(reached):.2f} s" if reached else "none reached"


def run_bench(
    data_dir,
    models=("cnn", "inception"),
    quick=False,
    reference=True,
    out_dir="benchmarks/results",
    epoch_repeats=3,
    log=print,
) -> dict:
    """Per model: the lecture recipe's epoch, cnnlab's pipeline and the reference alternately, each from fresh
    weights `epoch_repeats` times (median and range reported); then inference throughput."""
    if epoch_repeats < 1:
        raise CnnlabError(f"--repeats must be at least 1, got {epoch_repeats}")
    dataset = load_dataset("mnist", data_dir)
    if quick:  # a tenth of the data: same code paths, seconds scaled up to a full epoch
        dataset.train_images, dataset.train_labels = dataset.train_images[:6000], dataset.train_labels[:6000]
        dataset.test_images, dataset.test_labels = dataset.test_images[:1000], dataset.test_labels[:1000]
    scale = 60000 / len(dataset.train_labels)
    repeats = 3 if quick else 5
    results = {**_environment(), "device": "cpu", "quick": quick, "models": {}}
    rows = []
    for name in models:
        config = build_config({"recipe": "lecture", "model": name})
        pipelines = ("cnnlab", "reference") if reference else ("cnnlab",)
        entry: dict[str, Any] = {"parameters": None, **{pipeline: {"epoch_seconds": []} for pipeline in pipelines}}
        for _ in range(epoch_repeats):  # alternated, so that a noisy minute hits both pipelines alike
            for pipeline in pipelines:
                torch.manual_seed(config.seed)
                model = build_model(name, dataset.info)
                entry["parameters"] = count_parameters(model)
                optimizer = build_optimizer(model, config)
                seconds, accuracy = (
                    _cnnlab_epoch(model, optimizer, dataset, config)
                    if pipeline == "cnnlab"
                    else _reference_epoch(model, optimizer, dataset, config.seed)
                )
                runs = entry[pipeline]["epoch_seconds"]
                runs.append(seconds * scale)
                entry[pipeline].update(
                    seconds_per_epoch=statistics.median(runs),
                    test_accuracy=accuracy,
                    train_images_per_s=60000 / statistics.median(runs),
                )
                log(f"{name} {pipeline}: {seconds * scale:.2f} s/epoch (train + test), test accuracy {accuracy:.2f}%")
        entry["inference_images_per_s"] = {str(b): _inference_rate(model, b, repeats) for b in (1, 1024)}
        entry["onnxruntime_images_per_s"] = {str(b): _onnx_rate(model, b, repeats) for b in (1, 1024)}
        if reference:
            entry["speedup"] = entry["reference"]["seconds_per_epoch"] / entry["cnnlab"]["seconds_per_epoch"]
        results["models"][name] = entry
        rows.append(
            [
                name,
                f"{entry['parameters']:,}",
                _spread(entry["cnnlab"]["epoch_seconds"], 2),
                _spread(entry["reference"]["epoch_seconds"], 2) if reference else "-",
                f"{entry['speedup']:.2f}x" if reference else "-",
                f"{entry['cnnlab']['test_accuracy']:.2f}",
                f"{entry['reference']['test_accuracy']:.2f}" if reference else "-",
                f"{entry['cnnlab']['train_images_per_s']:,.0f}",
                *(
                    _spread(entry[backend][b])
                    for backend in ("inference_images_per_s", "onnxruntime_images_per_s")
                    for b in ("1", "1024")
                ),
            ]
        )
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = format_table(
        [
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
        ],
        rows,
    )
    results["table"] = table
    path = _save_result(out_dir, f"{results['machine']}-{results['date']}.json", results)
    log(
        f"\nLecture recipe, 1 epoch, {results['threads']} threads, torch {results['torch']}, "
        f"peak RSS {results['peak_rss_mib']:.0f} MiB; epochs: median (min-max) of {epoch_repeats}, "
        f"inference: of {repeats}; load average {results['load_average'][0]} on {results['cpus']} CPUs"
    )
    log(table)
    log(f"written to {path}")
    return results


# Inference backends: name -> (model, float ONNX bytes, int8 ONNX bytes, threads) -> make(images) -> forward().
# A forward takes its batch ready in the backend's own format, so that only the model's work is timed.
def _torch_backend(bf16: bool):
    def make(model, float_onnx, int8_onnx, threads):
        model = model.to(memory_format=torch.channels_last)

        def prepare(images: np.ndarray):
            x = torch.from_numpy(images).contiguous(memory_format=torch.channels_last)

            @torch.inference_mode()
            def forward():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return model(x).float().numpy()

            return forward

        return prepare

    return make


def _onnx_backend(int8: bool, chunked: bool):
    def make(model, float_onnx, int8_onnx, threads):
        session = onnx_session(int8_onnx if int8 else float_onnx, threads=1 if chunked else threads)
        runner = ChunkedSession(session, workers=threads) if chunked else None
        return lambda images: (
            (lambda: runner.run(images)) if chunked else (lambda: session.run(None, {"input": images})[0])
        )

    return make


INFERENCE_BACKENDS = {
    "torch": _torch_backend(bf16=False),
    "torch bf16": _torch_backend(bf16=True),  # autocast: fast only where the CPU has bf16 units (AMX, AVX512-BF16)
    "onnxruntime": _onnx_backend(int8=False, chunked=False),
    "onnxruntime, chunks of 64": _onnx_backend(int8=False, chunked=True),
    "onnxruntime int8": _onnx_backend(int8=True, chunked=False),
    "onnxruntime int8, chunks of 64": _onnx_backend(int8=True, chunked=True),
}


def inference_bench(
    run_dir,
    data_dir=None,
    batches=(1, 64, 1024),
    threads: int = 2,
    out_dir="benchmarks/results",
    budget_s: float = 1.0,
    log=print,
) -> dict:
    """Every backend on a trained run: test accuracy (int8's change against float32), images/s at each batch
    size (wall clock: median (min-max) of 3 slices of `budget_s`; and per second of this process's CPU time),
    and the latency of one image. int8 is static quantisation calibrated on 1,024 training images."""
    run = open_run(run_dir)
    data = run.load_dataset(data_dir=data_dir)
    test = normalise(data.test_images, data.mean, data.std).numpy()
    float_onnx = to_onnx(run.model, torch.from_numpy(test[:2]))
    int8_onnx = quantize_int8(float_onnx, normalise(data.train_images[:1024], data.mean, data.std).numpy())
    labels = data.test_labels.numpy()
    results = {
        **_environment(),
        "run": str(run_dir),
        "model": run.model_name,
        "dataset": data.name,
        "threads": threads,
        "backends": {},
    }
    rows = []
    with torch_settings(threads):
        for name, make in INFERENCE_BACKENDS.items():
            prepare = make(run.model, float_onnx, int8_onnx, threads)
            predictions = np.concatenate([prepare(test[i : i + 1000])().argmax(1) for i in range(0, len(test), 1000)])
            entry: dict[str, Any] = {
                "accuracy": 100.0 * float((predictions == labels).mean()),
                "images_per_s": {},
                "images_per_cpu_s": {},
            }
            for b in batches:
                forward = prepare(np.ascontiguousarray(np.resize(test, (b, *test.shape[1:]))))
                entry["images_per_s"][str(b)] = images_per_second(forward, b, 3, budget_s)
                entry["images_per_cpu_s"][str(b)] = images_per_cpu_second(forward, b, budget_s / 3)
            entry["latency_ms_batch_1"] = statistics.median(latencies_ms(prepare(test[:1]), 100))
            results["backends"][name] = entry
            rows.append(
                [
                    name,
                    f"{entry['accuracy']:.2f}",
                    *(_spread(entry["images_per_s"][str(b)]) for b in batches),
                    *(f"{entry['images_per_cpu_s'][str(b)]:,.0f}" for b in batches),
                    f"{entry['latency_ms_batch_1']:.3f}",
                ]
            )
            log(
                f"{name}: {entry['accuracy']:.2f}%, "
                + ", ".join(f"b={b} {statistics.median(entry['images_per_s'][str(b)]):,.0f} img/s" for b in batches)
            )
    float_accuracy = results["backends"]["onnxruntime"]["accuracy"]
    results["int8_accuracy_change"] = results["backends"]["onnxruntime int8"]["accuracy"] - float_accuracy
    results["table"] = format_table(
        [
            "backend",
            "test acc %",
            *(f"img/s b={b}" for b in batches),
            *(f"img/CPU-s b={b}" for b in batches),
            "latency b=1 ms",
        ],
        rows,
    )
    path = _save_result(out_dir, f"{results['machine']}-{results['date']}-inference-{run.model_name}.json", results)
    log(
        f"\n{run.model_name} on {data.name}, {threads} threads, load average {results['load_average'][0]} on "
        f"{results['cpus']} CPUs; img/s: median (min-max) of 3 slices; int8 changes the test accuracy by "
        f"{results['int8_accuracy_change']:+.2f} points"
    )
    log(results["table"])
    log(f"written to {path}")
    return results


def _host_syncs(data, device, steps: int) -> dict:
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


def _inference_on_device(device, batches, budget_s: float) -> dict:
    """images/s of the recipes' models on `device` at each batch size, float32 and bf16 autocast (untrained
    weights: the arithmetic is the same)."""
    rates = {}
    for name in ("cnn", "cnn-bn-s16-32-64", "cnn-bn-32-64-64-fc256"):
        model = create_model(name).to(device=device, memory_format=torch.channels_last).eval()
        for precision in ("fp32", "bf16"):
            for b in batches:
                x = torch.randn(b, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
                forward = _synchronised_forward(model, x, torch.bfloat16 if precision == "bf16" else None)
                rates[f"{name} {precision} b={b}"] = statistics.median(images_per_second(forward, b, 3, budget_s))
    return rates


def _synchronised_forward(model, x, amp_dtype):
    """A forward pass that returns when the device has finished it."""

    @torch.inference_mode()
    def forward():
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            model(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    return forward


def gpu_bench(
    data_dir,
    out_dir="benchmarks/results/gpu",
    device_name: str = "cuda",
    quick: bool = False,
    budget_s: float = 330.0,
    log=print,
) -> dict:
    """The GPU figures of issue 17 in one run, each section written to the JSON file as soon as it is done and
    skipped once `budget_s` has passed: host syncs per step, `fast` time to 99% cold (the process's first run)
    and warm (eager, bf16 and float32, compiled, CUDA graphs), the lecture recipe's s/epoch, `best` for
    3 epochs in bf16 and float32, and inference images/s. `quick`: tiny runs of the same code on mnist-sample
    (for a test on a CPU); on a CPU the compiled sections are left out (minutes of compile) and host syncs are
    not countable."""
    device = select_device(device_name)
    start = time.perf_counter()
    small = {"train_subset": 1024, "epochs": 1} if quick else {}
    target = 50.0 if quick else 99.0
    results = {**_environment(), "device": str(device), "quick": quick, "sections": {}}
    if device.type == "cuda":
        results.update(
            gpu=torch.cuda.get_device_name(device),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
        )
    name = f"{'gpu' if device.type == 'cuda' else results['machine']}-{results['date']}-gpu-suite.json"
    base = {"device": device.type, **small}

    def time_to(recipe, seeds, **settings):
        return time_to_accuracy(
            data_dir, target, recipe, seeds, out_dir=None, log=log, settings={**base, **settings}, data=data
        )

    def epochs_of(recipe, epochs, **settings):
        with tempfile.TemporaryDirectory() as folder:
            history = fit(
                build_config(
                    {**base, "recipe": recipe, "epochs": epochs, **settings, "progress": False, "out": f"{folder}/run"}
                ),
                log=lambda line: None,
                dataset=data,
            ).history
        return {
            "epoch_seconds": [row["seconds"] for row in history],
            "train_images_per_s": [row["images_per_s"] for row in history],
            "test_accuracy": [row["test_accuracy"] for row in history],
        }

    data = load_dataset("mnist-sample") if quick else load_dataset("mnist", data_dir)
    seeds = (0, 0) if quick else (0, 1, 2, 0)  # the first run is cold: CUDA kernels load, cuDNN picks algorithms
    sections = {  # the headline figures first: a section starts only while the budget lasts
        "host_syncs": lambda: (
            _host_syncs(data.to(device), device, 200)
            if device.type == "cuda"
            else {"skipped": "CUDA's sync debug mode counts host syncs; there is none on a CPU"}
        ),
        "fast_eager_bf16": lambda: time_to("fast", seeds, precision="bf16"),
        "fast_eager_fp32": lambda: time_to("fast", seeds[1:] or seeds, precision="fp32"),
        "lecture_fp32": lambda: epochs_of("lecture", 1 if quick else 2, precision="fp32"),
        "lecture_bf16": lambda: epochs_of("lecture", 1 if quick else 2, precision="bf16"),
        "best_bf16": lambda: epochs_of("best", 1 if quick else 3, precision="bf16"),
        "best_fp32": lambda: epochs_of("best", 1 if quick else 3, precision="fp32"),
        "inference": lambda: _inference_on_device(
            device, (1, 64) if quick else (1, 1024, 16384), 0.05 if quick else 1.5
        ),
        "fast_compiled": lambda: time_to("fast", seeds, precision="bf16", compile="default"),
        "fast_cuda_graphs": lambda: time_to("fast", seeds, precision="bf16", compile="reduce-overhead"),
        "fast_batch_512": lambda: time_to("fast", seeds[1:] or seeds, precision="bf16", batch_size=512, lr=0.04),
    }
    if device.type != "cuda":  # compiling the training step on a CPU takes minutes; tests/test_sync_free.py covers it
        sections = {k: v for k, v in sections.items() if k not in ("fast_compiled", "fast_cuda_graphs")}
    for section, run in sections.items():
        if time.perf_counter() - start > budget_s:
            results["sections"][section] = {"skipped": f"time budget of {budget_s:.0f} s spent"}
        else:
            began = time.perf_counter()
            try:
                results["sections"][section] = {**run(), "section_seconds": round(time.perf_counter() - began, 1)}
            except Exception as e:  # noqa: BLE001 -- one run on a lent GPU: keep the other sections' figures
                results["sections"][section] = {"error": f"{type(e).__name__}: {e}"[:600]}
        log(f"{section}: {json.dumps(_summary(results['sections'][section]))}")
        path = _save_result(out_dir, name, results)
    log(f"written to {path} ({time.perf_counter() - start:.0f} s)")
    return results


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
