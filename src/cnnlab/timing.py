"""Throughput timing shared by `cnnlab bench` and `cnnlab compare`."""
import time


def images_per_second(forward, batch_size: int, repeats: int, budget_s: float = 1.0) -> list[float]:
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
