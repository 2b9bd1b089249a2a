"""cnnlab summary: one model, layer by layer."""

import argparse

from cnnlab.cli.options import model_args, shape

NAME = "summary"
HELP = "layer-by-layer table: shapes, parameters, FLOPs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="a name from `cnnlab models`, or your own network: file.py[:Name] or model.onnx"
    )
    parser.add_argument(
        "--input", type=shape, metavar="CxHxW", help="input shape (default: 1x28x28; an ONNX file's own)"
    )
    parser.add_argument(
        "--model-args", type=model_args, metavar="JSON", help="""constructor arguments, e.g. '{"hidden": 64}'"""
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.arithmetic import summary

    print(summary(args.model, args.input, args.model_args))
    return 0
