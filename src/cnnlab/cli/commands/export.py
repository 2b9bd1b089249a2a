"""cnnlab export: a run as ONNX or TorchScript, checked against PyTorch."""

import argparse

NAME = "export"
HELP = "export a run to ONNX or TorchScript, verified against PyTorch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_DIR")
    parser.add_argument("--format", default="onnx", metavar="NAME", help="onnx or torchscript (default: onnx)")
    parser.add_argument("--out", metavar="FILE", help="(default: RUN_DIR/model.onnx or model.torchscript.pt)")
    parser.add_argument("--data-dir", metavar="DIR", help="test images to verify on (default: cache; else random)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing FILE (default: refuse); a run's own files are never replaced",
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference.export import export

    path, difference, checked_on = export(args.run, args.format, args.out, args.data_dir, overwrite=args.overwrite)
    print(f"wrote {path} (checked: largest difference from PyTorch on {checked_on} {difference:.1e})")
    return 0
