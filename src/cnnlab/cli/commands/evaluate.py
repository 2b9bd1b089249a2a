"""cnnlab evaluate: a run's loss, accuracy, per-class accuracy and confusion matrix on its test set."""

import argparse

from cnnlab.cli.options import add_data_options, int_range

NAME = "evaluate"
HELP = "evaluate a run: loss, accuracy, per-class accuracy, confusion matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument("run", metavar="RUN_DIR", help="run folder (or checkpoint file)")
    parser.add_argument("--batch-size", type=int_range(1, 1 << 20), default=1000, metavar="B", help="(default: 1000)")
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average the image and its 4 one-pixel shifts"
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference.evaluate import evaluate_run

    print(evaluate_run(args.run, args.dataset, args.data_dir, args.batch_size, args.tta))
    return 0
