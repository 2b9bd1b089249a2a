"""Where and how a run computes: the device, the autocast dtype, and process-wide torch settings that a
run sets when it starts and puts back when it ends."""

import contextlib
from collections.abc import Iterator

import torch

from cnnlab import CnnlabError


def select_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is visible to this PyTorch build")
    if name == "mps" and not torch.backends.mps.is_available():
        raise CnnlabError("--device mps: Apple's Metal backend is not available here")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`; None: plain float32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if precision == "bf16" else None


@contextlib.contextmanager
def torch_settings(threads: int | None = None, deterministic: bool = False) -> Iterator[None]:
    """Set torch's thread count and determinism for the block, then restore what was there."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    try:
        if threads:
            torch.set_num_threads(threads)
        if deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.benchmark = saved[2]
