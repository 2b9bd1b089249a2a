"""cnnlab shape: the output size of a convolution, and of a pooling after it, with the formula written out."""

import argparse

NAME = "shape"
HELP = "output size of a convolution (and pooling), formula written out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=int, required=True, metavar="N", help="input height = width")
    parser.add_argument("--kernel", type=int, required=True, metavar="K")
    parser.add_argument("--stride", type=int, default=1, metavar="S", help="(default: 1)")
    parser.add_argument("--padding", type=int, default=0, metavar="P", help="(default: 0)")
    parser.add_argument("--dilation", type=int, default=1, metavar="D", help="(default: 1)")
    parser.add_argument("--pool", type=int, metavar="P", help="then a PxP pooling with stride P")


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.arithmetic import shape

    print(shape(args.input, args.kernel, args.stride, args.padding, args.dilation, args.pool))
    return 0
