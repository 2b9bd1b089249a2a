"""Data-parallel training on PyTorch's own engine: DistributedDataParallel under torch's elastic launcher
(`cnnlab train --nproc N` runs it in-process; torchrun by hand runs the same).

The launcher sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op, so one code
path serves one process and many. Backend gloo on CPU, nccl on CUDA; collectives time out rather than
hang when a rank dies.
"""

import contextlib
import dataclasses
import hashlib
import logging
import os
import signal
import sys
import uuid
from collections.abc import Iterator
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

    def sum(self, *values: float) -> list[float]:
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

    def gather(self, obj: object) -> list[object]:
        if self.world == 1:
            return [obj]
        result: list[object] = [None] * self.world
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

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


SINGLE_PROCESS = DistContext()  # immutable, so one instance serves as every default


def init_distributed(device_type: str, batch_size: int) -> DistContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext()
    if batch_size < world:
        raise CnnlabError(f"--batch-size {batch_size} is smaller than the {world} processes sharing it")
    if not dist.is_initialized():
        # Before the process group exists, on purpose: torch.distributed.nn's functions take `group=group.WORLD`
        # as a default argument, evaluated at import. Imported later (DDP's constructor imports torch._dynamo,
        # which imports it), ten defaults hold the default group, so destroy_process_group cannot free it: gloo's
        # worker and TCP threads then still run as the interpreter exits. Imported first, the defaults are None.
        import torch.distributed.nn  # noqa: F401

        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=TIMEOUT_S))
    return DistContext(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def shutdown() -> None:
    """Destroy the process group, and with it gloo's threads, while the interpreter is whole (see init_distributed)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def launch(worker_args: list[str], *, nproc: int, device: torch.device, sync_bn: bool, threads: int | None) -> int:
    """`cnnlab train --nproc N`: run `python -m cnnlab WORKER_ARGS` as N processes under torch's elastic launcher
    (what torchrun runs), with this process as the launcher; returns the job's exit code.

    There is no torchrun process between us and the workers: a SIGTERM or Ctrl-C here reaches every rank (the
    launcher forwards it and waits for them), each saves and stops as a single process does, and we exit 128 +
    the signal, leaving nothing behind."""
    # Only the launching process needs the launcher (0.1 s of imports): not at module level, which every rank loads.
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher import LaunchConfig, elastic_launch

    check_processes(nproc, device=device, sync_bn=sync_bn)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",  # torchrun --standalone: a rendezvous on a free local port
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    # Chosen here, so torchrun's OMP_NUM_THREADS banner never shows; each rank's start line says what it got.
    threads = threads or _inherited_threads() or max(1, cpu_count() // nproc)
    with _environment(OMP_NUM_THREADS=str(threads)), _launcher_quiet(), _signal_handlers_kept():
        try:
            elastic_launch(config, sys.executable)("-u", "-m", "cnnlab", *worker_args)
        except SignalException as e:  # the launcher has already stopped every rank with the same signal
            return 128 + e.sigval
        except ChildFailedError as e:
            rank, failure = e.get_first_failure()
            if failure.exitcode > 0:  # the rank printed its own message
                return failure.exitcode
            raise CnnlabError(
                f"the process of rank {rank} was killed by {failure.signal_name()}; the job stopped"
            ) from None
    return 0


def check_processes(nproc: int, *, device: torch.device, sync_bn: bool) -> None:
    """Refuse, before anything starts, a job that cannot run here."""
    if nproc < 1:
        raise CnnlabError(f"--nproc must be at least 1, got {nproc}")
    if device.type == "cuda":
        available, what = torch.cuda.device_count(), "CUDA GPUs"
    else:
        available, what = cpu_count(), "CPU cores"
    if nproc > available:
        raise CnnlabError(
            f"--nproc {nproc}: this machine has {available} {what}, and each process holds its own copy of the "
            f"model and the data: use --nproc {available} or fewer"
        )
    check_sync_bn(sync_bn, device)


def check_sync_bn(sync_bn: bool, device: torch.device) -> None:
    if sync_bn and device.type != "cuda":
        raise CnnlabError(f"--sync-bn needs CUDA GPUs (SyncBatchNorm has no {device.type} kernels): leave it out here")


def _inherited_threads() -> int | None:
    """An OMP_NUM_THREADS the user set, when it is a thread count."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def cpu_count() -> int:
    """The cores this process may run on (its affinity, where the system reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Environment variables that the workers inherit, put back afterwards (tests call main() in-process)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _launcher_quiet() -> Iterator[None]:
    """The launcher logs each signal it forwards and each worker it stops as warnings; the ranks and our own one
    line say what happened."""
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """The launcher installs handlers that raise its SignalException; ours (Ctrl-C's KeyboardInterrupt) come back."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")  # what it handles; Windows lacks the last two
    signals = [getattr(signal, name) for name in names if hasattr(signal, name)]
    saved = {sig: signal.getsignal(sig) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
