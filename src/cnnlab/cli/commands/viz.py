"""cnnlab viz: pictures of a run."""

import argparse

from cnnlab.cli.options import RUN_DATA_ORDER, add_open_options, add_overwrite_option, open_options

NAME = "viz"
HELP = "pictures of a run: curves, confusion, errors, filters, features, attribution"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run folder (several for --what curves), or a model file: model.onnx"
    )
    parser.add_argument(
        "--what",
        required=True,
        metavar="PICTURE",
        help="curves, confusion, errors, filters, features, or attribution (occlusion and Grad-CAM for the first "
        "test image of each class)",
    )
    parser.add_argument(
        "--image",
        type=int,
        default=0,
        metavar="N",
        help="features: this test image; attribution: each class's first test image from this index on (default: 0)",
    )
    parser.add_argument(
        "--dataset",
        metavar="NAME",
        help="the test images to draw (default: the run's own; MNIST for a digit model file)",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help=f"folder holding the dataset's files (default: {RUN_DATA_ORDER})"
    )
    parser.add_argument("--out", metavar="FILE.png", help="(default: RUN_DIR/<what>.png, replaced if there)")
    add_overwrite_option(parser, "the --out file")
    add_open_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.viz import draw

    options = dict(overwrite=args.overwrite, dataset_name=args.dataset, options=open_options(args))
    print(f"wrote {draw(args.runs, args.what, args.out, args.data_dir, args.image, **options)}")
    return 0
