"""Data-parallel training on PyTorch's own engine: DistributedDataParallel under torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op, so one code
path serves one process and many. Backend gloo on CPU, nccl on CUDA; collectives time out rather than
hang when a rank dies.
"""
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

TIMEOUT_S = 300


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, *values) -> list:
        """All-reduce numbers (as float64) across ranks; identity in a single process."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            tensor = tensor.to(self._device())
            dist.all_reduce(tensor)
        return tensor.cpu()

    def any(self, flag: bool) -> bool:
        return self.sum(float(flag))[0] > 0 if self.world > 1 else flag

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        result = [None] * self.world
        dist.all_gather_object(result, obj)
        return result

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _device(self):
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(device_type: str) -> DistContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    return DistContext(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """`cnnlab train --nproc N ...`: the same command under torchrun's elastic launcher, on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "cnnlab", *argv]
    return subprocess.call(command)
