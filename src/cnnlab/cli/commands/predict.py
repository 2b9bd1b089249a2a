"""cnnlab predict: classify image files with a trained run."""

import argparse

from cnnlab.cli.options import add_open_options, add_overwrite_option, open_options

NAME = "predict"
HELP = "classify image files (PNG, JPEG, BMP, GIF, ...) with a trained run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="run folder (or checkpoint file), or a model file: model.onnx")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="(default: 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument("--backend", default="torch", metavar="NAME", help="torch or onnxruntime (default: torch)")
    parser.add_argument(
        "--show-input",
        metavar="FILE.png",
        help="save the inputs the model sees (28x28 digits, or the fitted images), 16 a row, at most 256",
    )
    add_overwrite_option(parser, "the --show-input file")
    add_open_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference.predict import predict_files

    return predict_files(
        args.run,
        args.images,
        args.top_k,
        args.backend,
        args.json,
        args.show_input,
        overwrite=args.overwrite,
        options=open_options(args),
    )
