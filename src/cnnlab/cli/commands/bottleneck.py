"""cnnlab bottleneck: what the 1x1 reduction of an Inception branch saves."""

import argparse

from cnnlab.cli.options import shape

NAME = "bottleneck"
HELP = "parameters and FLOPs of an Inception branch with and without its 1x1 reduction"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--block",
        metavar="NAME",
        help="incept1 or incept2 (the lecture's InceptionA blocks) or googlenet "
        "(192 channels, 1x1 to 16, 5x5 to 32, on 28x28) (default: all three)",
    )
    parser.add_argument("--input", type=shape, metavar="CxHxW", help="instead, a branch on this input ...")
    parser.add_argument("--reduce", type=int, metavar="R", help="... whose 1x1 convolution produces R channels ...")
    parser.add_argument("--out-channels", type=int, metavar="O", help="... followed by a KxK convolution to O channels")
    parser.add_argument("--kernel", type=int, metavar="K", help="odd kernel size of that convolution")


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.bottleneck import bottleneck

    print(bottleneck(args.block, args.input, args.reduce, args.out_channels, args.kernel))
    return 0
