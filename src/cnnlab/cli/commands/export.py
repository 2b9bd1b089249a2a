"""cnnlab export: a run as ONNX or TorchScript, checked against PyTorch."""

import argparse

from cnnlab.cli.options import add_open_options, add_overwrite_option, open_options

NAME = "export"
HELP = "export a run to ONNX or TorchScript, verified against PyTorch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_DIR", help="run folder (or checkpoint file), or a model file: model.onnx")
    parser.add_argument("--format", default="onnx", metavar="NAME", help="onnx or torchscript (default: onnx)")
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="(default: RUN_DIR/model.onnx or model.torchscript.pt; for MODEL.onnx, MODEL-model.onnx or "
        "MODEL-model.torchscript.pt in the current folder)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="test images to verify on (default: the folder the run was trained from, then $CNNLAB_DATA_DIR, then the "
        "cache, never a download; else random images)",
    )
    add_overwrite_option(parser, "the --out FILE")
    add_open_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference.export import export

    path, difference, checked_on = export(
        args.run, args.format, args.out, args.data_dir, overwrite=args.overwrite, options=open_options(args)
    )
    print(f"wrote {path} (checked: largest difference from PyTorch on {checked_on} {difference:.1e})")
    return 0
