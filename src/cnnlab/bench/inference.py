"""Inference throughput: a model's images/s in PyTorch and onnxruntime (for the epoch benchmark's table), and
every inference backend on a trained run (`cnnlab bench --inference RUN`)."""

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab import CnnlabError
from cnnlab.bench.results import check_destination, environment, save_result, spread
from cnnlab.data.batches import normalise
from cnnlab.engine.device import torch_settings
from cnnlab.engine.loop import fastest_layout
from cnnlab.engine.run import OpenOptions, open_run
from cnnlab.external.spec import parse_spec
from cnnlab.inference.onnx import ChunkedSession, onnx_session, quantize_int8, to_onnx
from cnnlab.tables import format_table
from cnnlab.timing import images_per_cpu_second, images_per_second, latencies_ms

Forward = Callable[[], np.ndarray]  # one batch through the model: its outputs
Prepare = Callable[[np.ndarray], Forward]  # a batch of normalised images -> its forward


def torch_rate(model: torch.nn.Module, batch_size: int, repeats: int) -> list[float]:
    """PyTorch eager: eval, inference mode, channels_last (unless the model's forward refuses it)."""
    layout = fastest_layout(model, (1, 28, 28))
    model.eval().to(memory_format=layout)  # type: ignore[call-overload]  # torch's stubs lack memory_format
    x = torch.randn(batch_size, 1, 28, 28).contiguous(memory_format=layout)
    with torch.inference_mode():
        return images_per_second(lambda: model(x), batch_size, repeats)


def onnx_rate(model: torch.nn.Module, batch_size: int, repeats: int) -> list[float]:
    """The same model exported with a dynamic batch, through onnxruntime."""
    # Module.to takes memory_format; its typed overloads omit it
    model = model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    session = onnx_session(to_onnx(model.eval(), torch.randn(2, 1, 28, 28)))
    x = torch.randn(batch_size, 1, 28, 28).numpy()
    return images_per_second(lambda: session.run(None, {"input": x}), batch_size, repeats)


# Inference backends: name -> (model, float ONNX bytes, int8 ONNX bytes, threads) -> prepare(images) -> forward().
# A forward takes its batch ready in the backend's own format, so that only the model's work is timed.
def _torch_backend(bf16: bool) -> Callable[[torch.nn.Module, bytes, bytes, int], Prepare]:
    def make(model: torch.nn.Module, float_onnx: bytes, int8_onnx: bytes, threads: int) -> Prepare:
        def prepare(images: np.ndarray) -> Forward:
            layout = fastest_layout(model, images.shape[1:])
            model.to(memory_format=layout)  # type: ignore[call-overload]  # torch's stubs lack memory_format
            x = torch.from_numpy(images).contiguous(memory_format=layout)

            @torch.inference_mode()
            def forward() -> np.ndarray:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return model(x).float().numpy()

            return forward

        return prepare

    return make


def _onnx_backend(int8: bool, chunked: bool) -> Callable[[torch.nn.Module, bytes, bytes, int], Prepare]:
    def make(model: torch.nn.Module, float_onnx: bytes, int8_onnx: bytes, threads: int) -> Prepare:
        session = onnx_session(int8_onnx if int8 else float_onnx, threads=1 if chunked else threads)
        if chunked:
            runner = ChunkedSession(session, workers=threads)
            return lambda images: lambda: runner.run(images)
        return lambda images: lambda: session.run(None, {"input": images})[0]

    return make


INFERENCE_BACKENDS = {
    "torch": _torch_backend(bf16=False),
    "torch bf16": _torch_backend(bf16=True),  # autocast: fast only where the CPU has bf16 units (AMX, AVX512-BF16)
    "onnxruntime": _onnx_backend(int8=False, chunked=False),
    "onnxruntime, chunks of 64": _onnx_backend(int8=False, chunked=True),
    "onnxruntime int8": _onnx_backend(int8=True, chunked=False),
    "onnxruntime int8, chunks of 64": _onnx_backend(int8=True, chunked=True),
}


def _measure_backend(
    prepare: Prepare, test: np.ndarray, labels: np.ndarray, *, batches: Sequence[int], budget_s: float
) -> dict[str, Any]:
    """One backend's test accuracy, images/s per batch size (wall clock, 3 slices; and per CPU-second) and the
    median latency of one image."""
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
    return entry


def _table(backends: dict, batches: Sequence[int]) -> str:
    rows = [
        [
            name,
            f"{entry['accuracy']:.2f}",
            *(spread(entry["images_per_s"][str(b)]) for b in batches),
            *(f"{entry['images_per_cpu_s'][str(b)]:,.0f}" for b in batches),
            f"{entry['latency_ms_batch_1']:.3f}",
        ]
        for name, entry in backends.items()
    ]
    columns = ["backend", "test acc %", *(f"img/s b={b}" for b in batches), *(f"img/CPU-s b={b}" for b in batches)]
    return format_table([*columns, "latency b=1 ms"], rows)


def inference_bench(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    batches: Sequence[int] = (1, 64, 1024),
    threads: int = 2,
    out_dir: str | Path = "benchmarks/results",
    budget_s: float = 1.0,
    log: Callable[[str], object] = print,
    options: OpenOptions = OpenOptions(),
) -> dict:
    """Every backend on a trained run: test accuracy (int8's change against float32), images/s at each batch
    size (wall clock: median (min-max) of 3 slices of `budget_s`; and per second of this process's CPU time),
    and the latency of one image. int8 is static quantisation calibrated on 1,024 training images."""
    check_destination(out_dir)
    run = open_run(run_dir, options)
    if not any(True for _ in run.model.parameters()):
        raise CnnlabError(f"{run_dir} {getattr(run.model, 'note', '')}: it has no PyTorch layers to benchmark")
    data = run.load_dataset(data_dir=data_dir)
    test = normalise(data.test_images, data.mean, data.std).numpy()
    float_onnx = to_onnx(run.model, torch.from_numpy(test[:2]))
    int8_onnx = quantize_int8(float_onnx, normalise(data.train_images[:1024], data.mean, data.std).numpy())
    labels = data.test_labels.numpy()
    results = {**environment(), "run": str(run_dir), "model": run.model_name, "dataset": data.name, "threads": threads}
    backends: dict[str, dict] = {}
    with torch_settings(threads):
        for name, make in INFERENCE_BACKENDS.items():
            prepare = make(run.model, float_onnx, int8_onnx, threads)
            entry = backends[name] = _measure_backend(prepare, test, labels, batches=batches, budget_s=budget_s)
            log(
                f"{name}: {entry['accuracy']:.2f}%, "
                + ", ".join(f"b={b} {statistics.median(entry['images_per_s'][str(b)]):,.0f} img/s" for b in batches)
            )
    results["backends"] = backends
    results["int8_accuracy_change"] = backends["onnxruntime int8"]["accuracy"] - backends["onnxruntime"]["accuracy"]
    results["table"] = _table(backends, batches)
    name = parse_spec(run.model_name).slug  # "net-Net" for net.py:Net: a file name
    path = save_result(out_dir, f"{results['machine']}-{results['date']}-inference-{name}.json", results)
    log(
        f"\n{run.model_name} on {data.name}, {threads} threads, load average {results['load_average'][0]} on "
        f"{results['cpus']} CPUs; img/s: median (min-max) of 3 slices; int8 changes the test accuracy by "
        f"{results['int8_accuracy_change']:+.2f} points"
    )
    log(results["table"])
    log(f"written to {path}")
    return results
