"""cnnlab evaluate: a run's loss, accuracy, per-class accuracy and confusion matrix on its test set; with
--errors T:P, the test images of one cell of that matrix as a PNG sheet."""

import argparse

from cnnlab import CnnlabError
from cnnlab.cli.options import add_data_options, add_open_options, add_overwrite_option, int_range, open_options

NAME = "evaluate"
HELP = "evaluate a run: loss, accuracy, per-class accuracy, confusion matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser, of_run=True)
    parser.add_argument("run", metavar="RUN_DIR", help="run folder (or checkpoint file), or a model file: model.onnx")
    parser.add_argument("--batch-size", type=int_range(1, 1 << 20), default=1000, metavar="B", help="(default: 1000)")
    parser.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average the image and its 4 one-pixel shifts"
    )
    parser.add_argument(
        "--errors",
        metavar="T:P",
        help="also draw the test images of true class T predicted as P (indices or class names, e.g. 4:9), "
        "most confident first, each with its top 3",
    )
    parser.add_argument("--out", metavar="FILE.png", help="the --errors sheet (default: RUN_DIR/errors-T-P.png)")
    add_overwrite_option(parser, "the --out file", also="; the sheet in a run folder is always replaced")
    add_open_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.files import check_output
    from cnnlab.inference.evaluate import evaluate_run

    if args.out and not args.errors:
        raise CnnlabError("--out names the --errors sheet: give --errors T:P too")
    out = check_output(args.out, overwrite=args.overwrite) if args.out else None  # before the evaluation's wait
    options = open_options(args)
    print(evaluate_run(args.run, args.dataset, args.data_dir, args.batch_size, args.tta, options=options))
    if args.errors:
        from cnnlab.engine.run import default_output
        from cnnlab.explain.mistakes import cell_sheet, run_cell

        cell, dataset = run_cell(
            args.run, args.errors, dataset_name=args.dataset, data_dir=args.data_dir, options=options
        )
        print()
        if not cell.examples:
            print(f"{cell.describe()}: no sheet to draw")
            return 0
        if out is None:  # in the run folder, replaced there; elsewhere (a checkpoint's folder, a model file's
            # name in the current folder) only with --overwrite
            default, replaces = default_output(args.run, f"errors-{cell.true}-{cell.predicted}.png")
            out = check_output(default, overwrite=replaces or args.overwrite)
        print(f"{cell.describe()}: wrote {cell_sheet(cell, dataset, out)}")
    return 0
