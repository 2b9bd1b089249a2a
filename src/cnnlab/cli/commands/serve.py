"""cnnlab serve: the lab in a browser, and its JSON API."""

import argparse

from cnnlab.cli.options import MAX_PORT, add_open_options, int_range, open_options

NAME = "serve"
HELP = "the lab: draw a digit, watch every layer of your runs; a JSON API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="one or more runs (or model files: model.onnx), shown side by side"
    )
    parser.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int_range(1, MAX_PORT), default=8000, help="(default: 8000)")
    add_open_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference.serve import serve

    serve(args.runs, host=args.host, port=args.port, options=open_options(args))
    return 0
