"""cnnlab depth: the degradation experiment, plain against residual and dense nets of growing depth."""

import argparse

from cnnlab.cli.options import add_sweep_options, ints, names

NAME = "depth"
HELP = "the degradation experiment: plain, residual and dense nets of growing depth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sweep_options(parser, "runs/depth")
    parser.add_argument("--preset", choices=["quick"], help="quick: 12,000 images, width 8, depths 8,20,56, 3 epochs")
    parser.add_argument(
        "--families",
        type=names,
        metavar="A,B",
        help="plain, resnet and/or densenet (DenseNet-BC, "
        "k = 8, two layers deeper: densenet-bc-10-8 beside plain-8) (default: plain,resnet)",
    )
    parser.add_argument("--depths", type=ints, metavar="N,M", help="6n+2 depths (default: 8,20,56)")
    parser.add_argument(
        "--train-subset", type=int, metavar="K", help="train on K images (default: all, or the preset's)"
    )
    parser.add_argument(
        "--width", type=int, metavar="W", help="base width w of plain and resnet nets (default: 16, or the preset's)"
    )
    parser.add_argument("--seeds", type=ints, default=(0,), metavar="S1,S2", help="(default: 0)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.depth import run_depth

    run_depth(
        preset=args.preset,
        families=args.families,
        depths=args.depths,
        seeds=args.seeds,
        out=args.out,
        epochs=args.epochs,
        train_subset=args.train_subset,
        width=args.width,
        dataset=args.dataset,
        data_dir=args.data_dir,
        overwrite=bool(args.overwrite),
        progress=args.progress is not False,
    )
    return 0
