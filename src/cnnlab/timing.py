"""Timing shared by `cnnlab bench` and `cnnlab compare`: a stopwatch for one piece of work, and throughput."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed(work: Callable[[], T]) -> tuple[float, T]:
    """(wall-clock seconds, result) of one call of `work()`."""
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def images_per_second(
    forward: Callable[[], object], batch_size: int, repeats: int, budget_s: float = 1.0
) -> list[float]:
    """Call `forward()` (one batch) repeatedly for `budget_s` in all; images/s of each of `repeats` slices."""
    forward()  # warm-up
    rates = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < budget_s / repeats:
            forward()
            n += batch_size
        rates.append(n / (time.perf_counter() - start))
    return rates


def images_per_cpu_second(forward: Callable[[], object], batch_size: int, budget_s: float = 1.0) -> float:
    """Images per second of this process's CPU time (all its threads together). On a machine shared with
    other work the wall clock counts the others' turns too; CPU time counts only this process's own."""
    forward()  # warm-up
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < budget_s:
        forward()
        n += batch_size
    return n / max(time.process_time() - cpu, 1e-9)


def latencies_ms(forward: Callable[[], object], calls: int = 200) -> list[float]:
    """Milliseconds of each of `calls` calls of `forward()`, after a warm-up call."""
    forward()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        forward()
        times.append(1000 * (time.perf_counter() - start))
    return times
