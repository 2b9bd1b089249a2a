"""cnnlab viz: pictures of a run."""

import argparse

NAME = "viz"
HELP = "pictures of a run: curves, confusion, errors, filters, features, attribution"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folder (several for --what curves)")
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
    parser.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset's IDX files")
    parser.add_argument("--out", metavar="FILE.png", help="(default: RUN_DIR/<what>.png, replaced if there)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --out: replace an existing file (default: refuse); a run's own files are never replaced",
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain.viz import draw

    print(f"wrote {draw(args.runs, args.what, args.out, args.data_dir, args.image, overwrite=args.overwrite)}")
    return 0
