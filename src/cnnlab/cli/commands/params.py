"""cnnlab params: what a fully connected, a locally connected and a convolutional layer cost on one input."""

import argparse

from cnnlab.cli.options import shape

NAME = "params"
HELP = "parameters and FLOPs: fully connected vs locally connected vs conv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=shape, required=True, metavar="CxHxW")
    parser.add_argument("--out-channels", type=int, required=True, metavar="O")
    parser.add_argument("--kernel", type=int, required=True, metavar="K")
    parser.add_argument("--stride", type=int, default=1, metavar="S", help="(default: 1)")
    parser.add_argument("--padding", type=int, default=0, metavar="P", help="(default: 0)")


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.arithmetic import params

    print(params(args.input, args.out_channels, args.kernel, args.stride, args.padding))
    return 0
