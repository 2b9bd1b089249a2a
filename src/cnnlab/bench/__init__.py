"""`cnnlab bench`: one module per benchmark, sharing `cnnlab.timing` and `results` (where a figure was taken,
where it is written).

- epochs.py: seconds per epoch of the lecture recipe, cnnlab's pipeline against the lecture's own;
- accuracy.py: time to an accuracy per seed, and its ratio to one epoch of the lecture's pipeline;
- inference.py: images/s of every inference backend on a trained run;
- gpu.py: the GPU suite of benchmarks/gpu.sh.
"""

from cnnlab.bench.accuracy import time_to_accuracy
from cnnlab.bench.epochs import run_bench
from cnnlab.bench.gpu import gpu_bench
from cnnlab.bench.inference import INFERENCE_BACKENDS, inference_bench

__all__ = ["INFERENCE_BACKENDS", "gpu_bench", "inference_bench", "run_bench", "time_to_accuracy"]
