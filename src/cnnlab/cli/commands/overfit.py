"""cnnlab overfit: a big net on few images, then each cure on the same budget."""

import argparse

from cnnlab.cli.options import add_sweep_options

NAME = "overfit"
HELP = "the overfitting experiment: a big net on few images, then each cure on the same budget"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sweep_options(parser, "runs/overfit")
    parser.add_argument(
        "--cures",
        default="baseline,augmentation,dropout,weight-decay,early-stopping",
        metavar="A,B",
        help="(default: baseline,augmentation,dropout,weight-decay,early-stopping)",
    )
    parser.add_argument("--train-subset", type=int, metavar="K", help="training images (default: 1000)")
    parser.add_argument("--val-split", type=int, metavar="N", help="held-out validation images (default: 5000)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="(default: 0)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.overfit import run_overfit

    run_overfit(
        args.out,
        cures=tuple(args.cures.split(",")),
        epochs=args.epochs,
        train_subset=args.train_subset,
        val_split=args.val_split,
        seed=args.seed,
        dataset=args.dataset,
        data_dir=args.data_dir,
        overwrite=bool(args.overwrite),
    )
    return 0
