"""What the lab's training snapshots cost (engine/snapshots.py): one epoch with and without them, side by side.

    python benchmarks/snapshot_cost.py [--data-dir DIR | --dataset mnist-sample] [--model cnn] [--repeats 3]

Each repeat trains the same first epoch (same initial weights, same batches) twice in this process, once with
the snapshot callback and once without, in alternating order; the first epoch is the worst case, as it takes
the most snapshots (steps 0, 1, 2, 4, ..., 128, then every 200 and the epoch's end). Prints the median epoch
times, their ratio, and the time spent inside the callback as a share of the epoch (the same cost, measured
without the noise of two runs on a shared machine).
"""

import argparse
import copy
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from cnnlab.data.batches import epoch_order, iterate_batches, steps_per_epoch
from cnnlab.data.datasets import load_training_dataset
from cnnlab.engine.config import build_config
from cnnlab.engine.loop import train_one_epoch
from cnnlab.engine.run import build_model
from cnnlab.engine.snapshots import snapshot_callbacks
from cnnlab.engine.state import TrainState
from cnnlab.files import write_json


def one_epoch(initial, data, config, steps: int, folder: Path | None) -> tuple[float, float, int]:
    """Seconds for the epoch, seconds inside the snapshot callback, snapshots taken."""
    model = copy.deepcopy(initial)
    state = TrainState.create(model, config, steps)
    order = epoch_order(len(data.train_labels), config.seed, 1, data.train_labels.device)
    batches = iterate_batches(
        data.train_images, data.train_labels, batch_size=config.batch_size, mean=data.mean, std=data.std, order=order
    )
    inside = 0.0

    def timed(callback):
        def call(step):
            nonlocal inside
            start = time.perf_counter()
            callback(step)
            inside += time.perf_counter() - start

        return call

    start = time.perf_counter()
    callbacks = []
    if folder is not None:
        initial_snapshot = time.perf_counter()
        callbacks = [timed(c) for c in snapshot_callbacks(model, folder, data, epoch=1, steps=steps, skip=0)]
        inside += time.perf_counter() - initial_snapshot  # the snapshot of the initial weights
    train_one_epoch(
        model, batches, optimizer=state.optimizer, scheduler=state.scheduler, callbacks=callbacks, check_every=1
    )
    seconds = time.perf_counter() - start
    return seconds, inside, len(list(folder.glob("snapshot-*"))) if folder is not None else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help=f"(default: benchmarks/results/snapshot-cost-{date.today()}.json)")
    args = parser.parse_args()
    data, _ = load_training_dataset(args.dataset, args.data_dir)
    config = build_config({"model": args.model, "dataset": data.name, "epochs": 1, "progress": False})
    steps = steps_per_epoch(len(data.train_labels), config.batch_size, 1)
    torch.manual_seed(config.seed)
    initial = build_model(config.model, data.info)
    plain, snapped, inside, taken = [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for with_snapshots in (False, True) if repeat % 2 == 0 else (True, False):
                folder = Path(tmp) / f"r{repeat}" if with_snapshots else None
                if folder is not None:
                    folder.mkdir()
                seconds, seconds_inside, taken = one_epoch(initial, data, config, steps, folder)
                (snapped if with_snapshots else plain).append(seconds)
                if with_snapshots:
                    inside.append(seconds_inside)
    result = {
        "model": config.model,
        "dataset": data.name,
        "steps": steps,
        "snapshots_in_the_epoch": taken,
        "epoch_seconds_without": plain,
        "epoch_seconds_with": snapped,
        "seconds_inside_the_callback": inside,
        "ratio_of_medians": statistics.median(snapped) / statistics.median(plain),
        "share_inside_the_callback": statistics.median(i / s for i, s in zip(inside, snapped)),
        "threads": torch.get_num_threads(),
    }
    print(
        f"{config.model} on {data.name}, first epoch ({steps} steps, {taken} snapshots), {args.repeats} repeats "
        f"side by side: median {statistics.median(plain):.2f} s without, {statistics.median(snapped):.2f} s with "
        f"snapshots (ratio {result['ratio_of_medians']:.3f}); snapshots cost "
        f"{100 * result['share_inside_the_callback']:.2f}% of the epoch (time inside the callback)"
    )
    write_json(args.json or f"benchmarks/results/snapshot-cost-{date.today()}.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
