"""`cnnlab bench`: seconds per epoch against the lecture's own pipeline, and inference throughput.

The reference is a faithful re-implementation of the lecture script's data path (torchvision is not
installable beside this torch): a map-style Dataset turning each uint8 image into a PIL image, then
ToTensor and Normalize per sample, a DataLoader with batch 64 and shuffling, NCHW, test batch 64.
Both run the lecture recipe (SGD 0.01/0.5, batch 64) on the same data in the same process.
"""
import platform
import resource
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.data.batches import epoch_order, iterate_batches
from cnnlab.data.datasets import load_dataset
from cnnlab.engine.config import build_config
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.fit import fit
from cnnlab.engine.loop import train_one_epoch
from cnnlab.engine.run import build_model
from cnnlab.engine.state import build_optimizer
from cnnlab.files import write_json
from cnnlab.inference.onnx import onnx_session, to_onnx
from cnnlab.models import count_parameters
from cnnlab.tables import format_table
from cnnlab.timing import images_per_second


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
        batch_size=64, shuffle=True, generator=generator)
    test_loader = torch.utils.data.DataLoader(
        _LectureMNIST(dataset.test_images, dataset.test_labels, dataset.mean, dataset.std), batch_size=64)
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
    return time.perf_counter() - start, 100.0 * correct / len(test_loader.dataset)


def _cnnlab_epoch(model, optimizer, dataset, config) -> tuple[float, float]:
    memory_format = torch.channels_last
    model.to(memory_format=memory_format)
    start = time.perf_counter()
    batches = iterate_batches(dataset.train_images, dataset.train_labels, config.batch_size, dataset.mean,
                              dataset.std, epoch_order(len(dataset.train_labels), config.seed, 1),
                              memory_format=memory_format)
    train_one_epoch(model, batches, optimizer=optimizer)
    result = evaluate(model, dataset.test_images, dataset.test_labels, mean=dataset.mean, std=dataset.std,
                      num_classes=dataset.num_classes, memory_format=memory_format)
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


def time_to_accuracy(data_dir, target: float, recipe: str = "fast", seeds=(0, 1, 2), out_dir="benchmarks/results",
                     log=print) -> dict:
    """Seconds from the start of training to the first evaluation at or above `target` (evaluations counted)."""
    dataset = load_dataset("mnist", data_dir)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            config = build_config({"recipe": recipe, "seed": seed, "out": f"{folder}/{seed}", "progress": False})
            history = fit(config, log=lambda line: None, dataset=load_dataset("mnist", data_dir)).history
            elapsed, reached = 0.0, None
            for row in history:
                elapsed += row["seconds"]
                if row["test_accuracy"] >= target:
                    reached = elapsed
                    break
            runs.append({"seed": seed, "seconds": reached, "final_accuracy": history[-1]["test_accuracy"],
                         "epochs": len(history)})
            log(f"recipe {recipe}, seed {seed}: " + (f"{target}% after {reached:.2f} s" if reached is not None else
                f"never reached {target}% (final {history[-1]['test_accuracy']:.2f}%)"))
    del dataset
    times = [r["seconds"] for r in runs]
    median = statistics.median(t if t is not None else float("inf") for t in times)
    result = {"recipe": recipe, "target": target, "runs": runs, "median_seconds": median,
              "all_reached": all(t is not None for t in times), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "machine": platform.node(), "date": date.today().isoformat()}
    path = _save_result(out_dir, f"{result['machine']}-{result['date']}-time-to-{target}.json", result)
    log(f"time to {target}% with recipe {recipe}: median {median:.2f} s over seeds {list(seeds)} "
        f"(range {min(times, key=lambda t: t or 1e9) or float('nan'):.2f}-{max(t or float('inf') for t in times):.2f} s); "
        f"written to {path}")
    return result


def run_bench(data_dir, models=("cnn", "inception"), quick=False, reference=True, out_dir="benchmarks/results",
              epoch_repeats=3, log=print) -> dict:
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
    results = {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "device": "cpu",
               "date": date.today().isoformat(), "quick": quick, "models": {}}
    rows = []
    for name in models:
        config = build_config({"recipe": "lecture", "model": name})
        pipelines = ("cnnlab", "reference") if reference else ("cnnlab",)
        entry = {"parameters": None, **{pipeline: {"epoch_seconds": []} for pipeline in pipelines}}
        for _ in range(epoch_repeats):  # alternated, so that a noisy minute hits both pipelines alike
            for pipeline in pipelines:
                torch.manual_seed(config.seed)
                model = build_model(name, dataset.info)
                entry["parameters"] = count_parameters(model)
                optimizer = build_optimizer(model, config)
                seconds, accuracy = (_cnnlab_epoch(model, optimizer, dataset, config) if pipeline == "cnnlab"
                                     else _reference_epoch(model, optimizer, dataset, config.seed))
                runs = entry[pipeline]["epoch_seconds"]
                runs.append(seconds * scale)
                entry[pipeline].update(seconds_per_epoch=statistics.median(runs), test_accuracy=accuracy,
                                       train_images_per_s=60000 / statistics.median(runs))
                log(f"{name} {pipeline}: {seconds * scale:.2f} s/epoch (train + test), test accuracy {accuracy:.2f}%")
        entry["inference_images_per_s"] = {str(b): _inference_rate(model, b, repeats) for b in (1, 1024)}
        entry["onnxruntime_images_per_s"] = {str(b): _onnx_rate(model, b, repeats) for b in (1, 1024)}
        if reference:
            entry["speedup"] = entry["reference"]["seconds_per_epoch"] / entry["cnnlab"]["seconds_per_epoch"]
        results["models"][name] = entry
        rows.append([name, f"{entry['parameters']:,}", _spread(entry["cnnlab"]["epoch_seconds"], 2),
                     _spread(entry["reference"]["epoch_seconds"], 2) if reference else "-",
                     f"{entry['speedup']:.2f}x" if reference else "-",
                     f"{entry['cnnlab']['test_accuracy']:.2f}",
                     f"{entry['reference']['test_accuracy']:.2f}" if reference else "-",
                     f"{entry['cnnlab']['train_images_per_s']:,.0f}",
                     _spread(entry["inference_images_per_s"]["1"]), _spread(entry["inference_images_per_s"]["1024"]),
                     _spread(entry["onnxruntime_images_per_s"]["1"]), _spread(entry["onnxruntime_images_per_s"]["1024"])])
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = format_table(["model", "params", "s/epoch cnnlab", "s/epoch reference", "speed-up", "acc % cnnlab",
                          "acc % reference", "train img/s", "torch img/s b=1", "torch img/s b=1024", "onnxruntime img/s b=1",
                          "onnxruntime img/s b=1024"], rows)
    results["table"] = table
    path = _save_result(out_dir, f"{results['machine']}-{results['date']}.json", results)
    log(f"\nLecture recipe, 1 epoch, {results['threads']} threads, torch {results['torch']}, "
        f"peak RSS {results['peak_rss_mib']:.0f} MiB; epochs: median (min-max) of {epoch_repeats}, "
        f"inference: of {repeats}")
    log(table)
    log(f"written to {path}")
    return results
