"""cnnlab compare: several models trained on the same budget, a leaderboard and a scatter plot."""

import argparse

from cnnlab.cli.options import add_sweep_options, add_trust_option, config_flags, names

NAME = "compare"
HELP = "train several models with the same budget; leaderboard and scatter plot"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sweep_options(parser, "runs/compare")
    parser.add_argument(
        "--models",
        type=names,
        default="cnn,inception,mlp,lcn",
        metavar="A,B,...",
        help="registered names, or your own networks: file.py[:Name] (default: cnn,inception,mlp,lcn)",
    )
    parser.add_argument("--recipe", metavar="NAME", help="(default: default)")
    parser.add_argument("--seed", type=int, metavar="S")
    add_trust_option(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.compare import compare

    compare(list(args.models), args.out, trust_code=args.trust_code, **config_flags(args))
    return 0
