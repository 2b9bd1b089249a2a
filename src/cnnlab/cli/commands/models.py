"""cnnlab models: the registered models with their parameters and forward FLOPs per image."""

import argparse

from cnnlab.cli.options import shape

NAME = "models"
HELP = "list models with parameters and forward FLOPs per image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: *)")
    parser.add_argument(
        "--input", type=shape, default="1x28x28", metavar="CxHxW", help="input shape (default: 1x28x28)"
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.models.stats import models_table

    print(models_table(args.pattern, args.input))
    return 0
