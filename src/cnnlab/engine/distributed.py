"""Data-parallel training on PyTorch's own engine: DistributedDataParallel under torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op, so one code
path serves one process and many. Backend gloo on CPU, nccl on CUDA; collectives time out rather than
hang when a rank dies.
"""

import dataclasses
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from cnnlab import CnnlabError
from cnnlab.engine.loop import EpochProgress
from cnnlab.files import write_json

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

    def local_device(self, device: torch.device) -> torch.device:
        """Each rank's own GPU under DDP; the device as it is otherwise."""
        return torch.device("cuda", self.local_rank) if self.world > 1 and device.type == "cuda" else device

    def sum_progress(self, progress: EpochProgress) -> EpochProgress:
        """An epoch's sums over all ranks' shards."""
        if self.world == 1:
            return progress
        loss_sum, correct, seen = self.sum(progress.loss_sum, progress.correct, progress.seen)
        return dataclasses.replace(progress, loss_sum=loss_sum, correct=int(correct), seen=int(seen))

    def check_replicas(self, model: torch.nn.Module, test_size: int, run_dir: Path | None) -> None:
        """DDP keeps replicas equal: check it (weight hashes), and record every rank's share of the test set."""
        if self.world == 1:
            return
        weights = b"".join(p.detach().cpu().numpy().tobytes() for p in model.parameters())
        digests = self.gather(hashlib.sha256(weights).hexdigest())
        shares = self.gather(len(range(self.rank, test_size, self.world)))
        if run_dir is not None:
            write_json(
                run_dir / "ddp.json",
                {"world_size": self.world, "weight_sha256_per_rank": digests, "test_images_per_rank": shares},
            )
        if len(set(digests)) != 1:
            raise CnnlabError(f"ranks ended with different weights: {digests}")

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _device(self):
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


SINGLE_PROCESS = DistContext()  # immutable, so one instance serves as every default


def init_distributed(device_type: str, batch_size: int) -> DistContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext()
    if batch_size < world:
        raise CnnlabError(f"--batch-size {batch_size} is smaller than the {world} processes sharing it")
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    return DistContext(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def relaunch_under_torchrun(nproc: int, argv: list[str]) -> int:
    """`cnnlab train --nproc N ...`: the same command, without --nproc, as N processes under torchrun's
    elastic launcher on this machine; returns its exit code."""
    if nproc < 1:
        raise CnnlabError(f"--nproc must be at least 1, got {nproc}")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "cnnlab",
        *_without_option(argv, "--nproc"),
    ]
    return subprocess.call(command)


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out
