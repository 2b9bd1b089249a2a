"""cnnlab pool: max and average pooling side by side, on numbers or on a run's feature maps."""

import argparse

from cnnlab.cli.options import RUN_DATA_ORDER, add_open_options, add_overwrite_option, open_options

NAME = "pool"
HELP = "max and average pooling side by side: the lecture's 4x4 example, or a run's feature maps as a picture"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grid",
        metavar="ROWS",
        help="pool these numbers instead: rows separated by ';' "
        "(default: the lecture's '1 1 2 4; 5 6 7 8; 3 2 1 0; 1 2 3 4')",
    )
    parser.add_argument("--window", type=int, default=2, metavar="K", help="KxK windows (default: 2)")
    parser.add_argument("--stride", type=int, default=2, metavar="S", help="(default: 2)")
    parser.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="instead, pool the feature maps of this trained run (or model file, model.onnx) as a picture",
    )
    parser.add_argument("--out", metavar="FILE.png", help="with --run (default: RUN_DIR/pool-<image>.png)")
    parser.add_argument("--image", type=int, default=0, metavar="N", help="with --run: test image index (default: 0)")
    parser.add_argument(
        "--layer", metavar="NAME", help="with --run: the convolution whose output is pooled (default: the first)"
    )
    parser.add_argument(
        "--channels",
        type=int,
        default=4,
        metavar="C",
        help="with --run: how many channels, the most active first (default: 4)",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help=f"with --run: folder holding the dataset's files (default: {RUN_DATA_ORDER})"
    )
    add_overwrite_option(parser, "the --out file")
    add_open_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.pooling import pool_command

    print(
        pool_command(
            args.grid,
            args.window,
            args.stride,
            args.run,
            args.out,
            args.image,
            args.layer,
            args.channels,
            args.data_dir,
            overwrite=args.overwrite,
            options=open_options(args),
        )
    )
    return 0
