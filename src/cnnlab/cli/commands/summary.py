"""cnnlab summary: one model, layer by layer."""

import argparse

from cnnlab.cli.options import shape

NAME = "summary"
HELP = "layer-by-layer table: shapes, parameters, FLOPs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a name from `cnnlab models`")
    parser.add_argument(
        "--input", type=shape, default="1x28x28", metavar="CxHxW", help="input shape (default: 1x28x28)"
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.arithmetic import summary

    print(summary(args.model, args.input))
    return 0
