"""Command-line interface: parse arguments, then call one library function per subcommand.

Handlers import their command's module when they run, so that `cnnlab shape` does not pay for onnxruntime,
FastAPI and matplotlib.
"""

import argparse
import dataclasses
import functools
import json
import sys
import traceback

from cnnlab import CnnlabError, __version__
from cnnlab.engine.config import FIELDS, RECIPES, describe_recipe

MAX_PORT = 65535


class _Parser(argparse.ArgumentParser):
    commands: dict = {}  # the top-level parser's subcommand parsers, by name

    def __init__(self, **kwargs):  # a fixed width: the help reads the same everywhere, and docs/cli.md is its copy
        super().__init__(**kwargs, formatter_class=lambda prog: argparse.HelpFormatter(prog, width=110))

    def error(self, message):  # one line instead of argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_range(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, got {value:,}")
        return value

    return parse


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(b) for b in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or not all(1 <= b <= 1 << 20 for b in sizes):
        raise argparse.ArgumentTypeError(f"expected sizes between 1 and {1 << 20:,} separated by commas, got {text!r}")
    return sizes


def _shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape[0] > 1024 or max(shape[1:]) > 65536:
        raise argparse.ArgumentTypeError(
            f"expected CxHxW with positive sizes (C <= 1024, H, W <= 65536) such as 1x28x28, got {text!r}"
        )
    return shape


def _data_options() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--dataset",
        metavar="NAME",
        help="mnist, fashion-mnist, kmnist, mnist-sample, cifar10, "
        "cifar100, or folder: your own images in --data-dir (default: mnist when found or "
        "downloadable, else mnist-sample)",
    )
    parent.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder holding the dataset's files: IDX files, CIFAR's "
        "binary files, or for --dataset folder the images as DIR/<class>/* or DIR/train/<class>/* "
        "and DIR/test/<class>/* (default: $CNNLAB_DATA_DIR for IDX files, then the cache "
        "~/.cache/cnnlab/<dataset>, then download)",
    )
    return parent


def _sweep_options(out: str) -> _Parser:
    """What every sweep (compare, depth) shares: budget, output folder and the overwrite rule."""
    parent = _Parser(add_help=False)
    parent.add_argument("--epochs", type=int, metavar="N", help="(default: from the recipe)")
    parent.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    parent.add_argument(
        "--out",
        default=out,
        metavar="DIR",
        help=f"(default: {out}); finished runs with the same settings are reused, unfinished ones resumed",
    )
    parent.add_argument(
        "--overwrite",
        action="store_const",
        const=True,
        help="replace runs in DIR whose settings differ (default: refuse)",
    )
    return parent


def _channels(text: str) -> int | None:
    if text not in ("1", "3", "auto"):
        raise argparse.ArgumentTypeError(f"expected 1, 3 or auto, got {text!r}")
    return None if text == "auto" else int(text)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return names


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def _train_args(p):
    data = p.add_argument_group("Data")
    data.add_argument(
        "--image-size",
        metavar="HxW",
        help="--dataset folder: scale each image, aspect ratio kept, "
        "to cover HxW, then centre-crop it to HxW (default: 32x32)",
    )
    data.add_argument(
        "--channels",
        type=_channels,
        metavar="C",
        help="--dataset folder: 1 (grey), 3 (colour) or auto: 1 when every image is grey (default: auto)",
    )
    data.add_argument(
        "--test-split",
        type=float,
        metavar="F",
        help="--dataset folder without train/ and test/: "
        "hold out this share of each class as the test set (default: 0.2)",
    )
    data.add_argument("--train-subset", type=int, metavar="K", help="train on K training images (seeded subset)")
    data.add_argument(
        "--val-split",
        type=int,
        metavar="N",
        help="hold out N training images (stratified) to choose "
        "the best epoch and stop early; the test set is then only reported (default: 0, none)",
    )
    model = p.add_argument_group("Model")
    model.add_argument("--model", metavar="NAME", help="a name from `cnnlab models` (default: cnn)")
    model.add_argument("--width", type=int, metavar="W", help="base width for families that have one")
    opt = p.add_argument_group("Optimization")
    recipes = "; ".join(map(describe_recipe, RECIPES)).replace("%", "%%")  # argparse formats help with %
    opt.add_argument(
        "--recipe",
        metavar="NAME",
        help=f"named defaults: {recipes} (default: cifar for cifar10 and cifar100, else default)",
    )
    opt.add_argument("--epochs", type=int, metavar="N", help="(default: from the recipe)")
    opt.add_argument(
        "--patience",
        type=int,
        metavar="E",
        help="with --val-split: stop after E epochs without a better validation accuracy (default: never)",
    )
    opt.add_argument("--batch-size", type=int, metavar="B", help="(default: from the recipe)")
    opt.add_argument("--test-batch-size", type=int, metavar="B", help="(default: 1000)")
    opt.add_argument("--optimizer", metavar="NAME", help="sgd, adam or adamw (default: from the recipe)")
    opt.add_argument(
        "--lr", type=float, metavar="LR", help="learning rate, the peak for onecycle (default: from the recipe)"
    )
    opt.add_argument(
        "--momentum", type=float, metavar="M", help="SGD momentum, with --schedule constant (default: from the recipe)"
    )
    opt.add_argument("--weight-decay", type=float, metavar="WD", help="(default: 0)")
    opt.add_argument(
        "--schedule",
        metavar="NAME",
        help="constant, onecycle, or step (the rate /10 at half and "
        "three quarters of training, as He et al.) (default: from the recipe)",
    )
    opt.add_argument("--label-smoothing", type=float, metavar="EPS", help="(default: 0)")
    opt.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="evaluate and save an exponential moving average of the "
        "weights, e.g. 0.999 (default: from the recipe; 0 = off)",
    )
    aug = p.add_argument_group("Augmentation")
    aug.add_argument(
        "--augment",
        metavar="NAME",
        help="none, affine (batched random rotation, scale, shift: "
        "digits), crop (random crops of the image padded by 1/8 of its side), crop-flip (and "
        "horizontal flips: natural images, never digits) (default: from the recipe)",
    )
    system = p.add_argument_group("Output and system")
    system.add_argument("--seed", type=int, metavar="S", help="(default: 0)")
    system.add_argument("--device", metavar="NAME", help="auto, cpu, cuda or mps (default: auto)")
    system.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    system.add_argument(
        "--precision",
        metavar="P",
        help="fp32, bf16 (autocast; weights stay fp32) or auto: bf16 on a "
        "CUDA GPU that supports it, else fp32 (default: auto)",
    )
    system.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_const",
        const=False,
        help="keep NCHW memory layout (default: channels_last, faster on CPU)",
    )
    system.add_argument("--out", metavar="DIR", help="run folder (default: runs/<model>-<dataset>-<time>)")
    system.add_argument(
        "--overwrite",
        action="store_const",
        const=True,
        help="replace an existing cnnlab run folder (never a folder holding other files)",
    )
    system.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    system.add_argument("--config", metavar="FILE", help="TOML file of settings (flags override it)")
    system.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    system.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run exactly where it stopped "
        "(with --epochs N: extend a finished constant-rate run)",
    )
    system.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps")
    system.add_argument(
        "--check-every",
        type=int,
        metavar="N",
        help="test the loss for NaN every N steps (default: every step on CPU, 50 on a GPU: fewer host syncs)",
    )
    system.add_argument(
        "--compile",
        metavar="MODE",
        help="torch.compile the training step, compiled before the first "
        "epoch and timed apart: default, reduce-overhead (CUDA graphs), max-autotune, "
        "max-autotune-no-cudagraphs (default: off, eager)",
    )
    system.add_argument(
        "--deterministic",
        action="store_const",
        const=True,
        help="torch.use_deterministic_algorithms(True); slower on GPU, same on CPU",
    )
    system.add_argument("--nproc", type=int, metavar="N", help="train with N DDP processes on this machine (torchrun)")
    system.add_argument("--sync-bn", action="store_const", const=True, help="under DDP: SyncBatchNorm")
    system.add_argument(
        "--trace-grad",
        action="store_const",
        const=True,
        help="record each step's first-layer gradient norm, loss and error (grad_norms.json)",
    )
    system.add_argument(
        "--plot", action="store_true", help="write curves.png and confusion.png into the run at the end"
    )


def _config_flags(args) -> dict:
    """The TrainConfig fields the command line gave (a whitelist: everything else is not a setting)."""
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}


def cmd_train(args) -> int:
    from cnnlab.engine.config import build_config
    from cnnlab.engine.distributed import relaunch_under_torchrun, shutdown
    from cnnlab.engine.fit import fit, resume_run

    if args.nproc is not None:
        return relaunch_under_torchrun(args.nproc, args.argv)
    if args.resume and (args.config or args.print_config):
        raise CnnlabError("--resume takes the run's own settings: --config and --print-config do not apply")
    if args.resume:
        run = functools.partial(resume_run, args.resume, log=print, **_config_flags(args))
    else:
        config = build_config(_config_flags(args), args.config)
        if args.print_config:
            print(json.dumps(dataclasses.asdict(config), indent=2))
            return 0
        run = functools.partial(fit, config, log=print)
    try:
        result = run()
    finally:
        shutdown()  # of the DDP process group, when there is one
    if result.is_main:
        selected = f" (epoch {result.best_epoch}, chosen on the validation split)" if result.best_epoch else ""
        print(f"Final test accuracy: {result.test_accuracy:.2f}%{selected} on {result.dataset} (run: {result.run_dir})")
        if args.plot:
            from cnnlab.explain.viz import draw

            for what in ("curves", "confusion"):
                print(f"wrote {draw([result.run_dir], what, data_dir=args.data_dir)}")
    return 0


def cmd_compare(args) -> int:
    from cnnlab.explain.compare import compare

    compare([name for name in args.models.split(",") if name], args.out, **_config_flags(args))
    return 0


def cmd_evaluate(args) -> int:
    from cnnlab.inference.evaluate import evaluate_run

    print(evaluate_run(args.run, args.dataset, args.data_dir, args.batch_size, args.tta))
    return 0


def cmd_models(args) -> int:
    from cnnlab.models.stats import models_table

    print(models_table(args.pattern, args.input))
    return 0


def cmd_summary(args) -> int:
    from cnnlab.explain.arithmetic import summary

    print(summary(args.model, args.input))
    return 0


def cmd_shape(args) -> int:
    from cnnlab.explain.arithmetic import shape

    print(shape(args.input, args.kernel, args.stride, args.padding, args.dilation, args.pool))
    return 0


def cmd_params(args) -> int:
    from cnnlab.explain.arithmetic import params

    print(params(args.input, args.out_channels, args.kernel, args.stride, args.padding))
    return 0


def cmd_bottleneck(args) -> int:
    from cnnlab.explain.bottleneck import bottleneck

    print(bottleneck(args.block, args.input, args.reduce, args.out_channels, args.kernel))
    return 0


def cmd_pool(args) -> int:
    from cnnlab.explain.pooling import pool_command

    print(
        pool_command(
            args.grid,
            args.window,
            args.stride,
            args.run,
            args.out,
            args.image,
            args.layer,
            args.channels,
            args.data_dir,
        )
    )
    return 0


def cmd_depth(args) -> int:
    from cnnlab.explain.depth import run_depth

    run_depth(
        preset=args.preset,
        families=args.families,
        depths=args.depths,
        seeds=args.seeds,
        out=args.out,
        epochs=args.epochs,
        train_subset=args.train_subset,
        width=args.width,
        dataset=args.dataset,
        data_dir=args.data_dir,
        overwrite=bool(args.overwrite),
        progress=args.progress is not False,
    )
    return 0


def cmd_overfit(args) -> int:
    from cnnlab.explain.overfit import run_overfit

    run_overfit(
        args.out,
        cures=tuple(args.cures.split(",")),
        epochs=args.epochs,
        train_subset=args.train_subset,
        val_split=args.val_split,
        seed=args.seed,
        dataset=args.dataset,
        data_dir=args.data_dir,
        overwrite=bool(args.overwrite),
    )
    return 0


def cmd_viz(args) -> int:
    from cnnlab.explain.viz import draw

    print(f"wrote {draw(args.runs, args.what, args.out, args.data_dir, args.image)}")
    return 0


def cmd_predict(args) -> int:
    from cnnlab.inference.predict import predict_files

    return predict_files(args.run, args.images, args.top_k, args.backend, args.json, args.show_input)


def cmd_export(args) -> int:
    from cnnlab.inference.export import export

    path, difference, checked_on = export(args.run, args.format, args.out, args.data_dir)
    print(f"wrote {path} (checked: largest difference from PyTorch on {checked_on} {difference:.1e})")
    return 0


def cmd_serve(args) -> int:
    from cnnlab.inference.serve import serve

    serve(args.runs, host=args.host, port=args.port)
    return 0


def cmd_bench(args) -> int:
    from cnnlab.bench import gpu_bench, inference_bench, run_bench, time_to_accuracy

    if args.gpu:
        gpu_bench(args.data_dir, args.out or "benchmarks/results/gpu", args.device, args.quick)
        return 0
    if args.inference:
        inference_bench(args.inference, args.data_dir, args.batches, args.threads, args.out or "benchmarks/results")
        return 0
    args.out = args.out or "benchmarks/results"
    if args.target is not None:
        seeds = tuple(int(s) for s in args.seeds.split(","))
        settings = {"precision": args.precision} if args.precision else None
        result = time_to_accuracy(args.data_dir, args.target, args.recipe, seeds, args.out, settings=settings)
        return 0 if result["all_reached"] else 1
    run_bench(args.data_dir, tuple(args.models.split(",")), args.quick, not args.no_reference, args.out, args.repeats)
    return 0


def build_parser() -> _Parser:
    parser = _Parser(prog="cnnlab", description="Convolutional networks on MNIST-style images, after the lecture.")
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.commands = sub.choices
    data = _data_options()

    p = sub.add_parser("train", parents=[data], help="train a model and write a run folder")
    _train_args(p)
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "evaluate", parents=[data], help="evaluate a run: loss, accuracy, per-class accuracy, confusion matrix"
    )
    p.add_argument("run", metavar="RUN_DIR", help="run folder (or checkpoint file)")
    p.add_argument("--batch-size", type=_int_range(1, 1 << 20), default=1000, metavar="B", help="(default: 1000)")
    p.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average the image and its 4 one-pixel shifts"
    )
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("models", help="list models with parameters and forward FLOPs per image")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default: *)")
    p.add_argument("--input", type=_shape, default="1x28x28", metavar="CxHxW", help="input shape (default: 1x28x28)")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("summary", help="layer-by-layer table: shapes, parameters, FLOPs")
    p.add_argument("model", metavar="MODEL", help="a name from `cnnlab models`")
    p.add_argument("--input", type=_shape, default="1x28x28", metavar="CxHxW", help="input shape (default: 1x28x28)")
    p.set_defaults(handler=cmd_summary)

    p = sub.add_parser("shape", help="output size of a convolution (and pooling), formula written out")
    p.add_argument("--input", type=int, required=True, metavar="N", help="input height = width")
    p.add_argument("--kernel", type=int, required=True, metavar="K")
    p.add_argument("--stride", type=int, default=1, metavar="S", help="(default: 1)")
    p.add_argument("--padding", type=int, default=0, metavar="P", help="(default: 0)")
    p.add_argument("--dilation", type=int, default=1, metavar="D", help="(default: 1)")
    p.add_argument("--pool", type=int, metavar="P", help="then a PxP pooling with stride P")
    p.set_defaults(handler=cmd_shape)

    p = sub.add_parser("params", help="parameters and FLOPs: fully connected vs locally connected vs conv")
    p.add_argument("--input", type=_shape, required=True, metavar="CxHxW")
    p.add_argument("--out-channels", type=int, required=True, metavar="O")
    p.add_argument("--kernel", type=int, required=True, metavar="K")
    p.add_argument("--stride", type=int, default=1, metavar="S", help="(default: 1)")
    p.add_argument("--padding", type=int, default=0, metavar="P", help="(default: 0)")
    p.set_defaults(handler=cmd_params)

    p = sub.add_parser(
        "bottleneck", help="parameters and FLOPs of an Inception branch with and without its 1x1 reduction"
    )
    p.add_argument(
        "--block",
        metavar="NAME",
        help="incept1 or incept2 (the lecture's InceptionA blocks) or googlenet "
        "(192 channels, 1x1 to 16, 5x5 to 32, on 28x28) (default: all three)",
    )
    p.add_argument("--input", type=_shape, metavar="CxHxW", help="instead, a branch on this input ...")
    p.add_argument("--reduce", type=int, metavar="R", help="... whose 1x1 convolution produces R channels ...")
    p.add_argument("--out-channels", type=int, metavar="O", help="... followed by a KxK convolution to O channels")
    p.add_argument("--kernel", type=int, metavar="K", help="odd kernel size of that convolution")
    p.set_defaults(handler=cmd_bottleneck)

    p = sub.add_parser(
        "pool",
        help="max and average pooling side by side: the lecture's 4x4 example, or a run's feature maps as a picture",
    )
    p.add_argument(
        "--grid",
        metavar="ROWS",
        help="pool these numbers instead: rows separated by ';' "
        "(default: the lecture's '1 1 2 4; 5 6 7 8; 3 2 1 0; 1 2 3 4')",
    )
    p.add_argument("--window", type=int, default=2, metavar="K", help="KxK windows (default: 2)")
    p.add_argument("--stride", type=int, default=2, metavar="S", help="(default: 2)")
    p.add_argument("--run", metavar="RUN_DIR", help="instead, pool the feature maps of this trained run as a picture")
    p.add_argument("--out", metavar="FILE.png", help="with --run (default: RUN_DIR/pool-<image>.png)")
    p.add_argument("--image", type=int, default=0, metavar="N", help="with --run: test image index (default: 0)")
    p.add_argument(
        "--layer", metavar="NAME", help="with --run: the convolution whose output is pooled (default: the first)"
    )
    p.add_argument(
        "--channels",
        type=int,
        default=4,
        metavar="C",
        help="with --run: how many channels, the most active first (default: 4)",
    )
    p.add_argument("--data-dir", metavar="DIR", help="with --run: folder holding the dataset's IDX files")
    p.set_defaults(handler=cmd_pool)

    p = sub.add_parser(
        "compare",
        parents=[data, _sweep_options("runs/compare")],
        help="train several models with the same budget; leaderboard and scatter plot",
    )
    p.add_argument(
        "--models", default="cnn,inception,mlp,lcn", metavar="A,B,...", help="(default: cnn,inception,mlp,lcn)"
    )
    p.add_argument("--recipe", metavar="NAME", help="(default: default)")
    p.add_argument("--seed", type=int, metavar="S")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser(
        "depth",
        parents=[data, _sweep_options("runs/depth")],
        help="the degradation experiment: plain, residual and dense nets of growing depth",
    )
    p.add_argument("--preset", choices=["quick"], help="quick: 12,000 images, width 8, depths 8,20,56, 3 epochs")
    p.add_argument(
        "--families",
        type=_names,
        metavar="A,B",
        help="plain, resnet and/or densenet (DenseNet-BC, "
        "k = 8, two layers deeper: densenet-bc-10-8 beside plain-8) (default: plain,resnet)",
    )
    p.add_argument("--depths", type=_ints, metavar="N,M", help="6n+2 depths (default: 8,20,56)")
    p.add_argument("--train-subset", type=int, metavar="K", help="train on K images (default: all, or the preset's)")
    p.add_argument(
        "--width", type=int, metavar="W", help="base width w of plain and resnet nets (default: 16, or the preset's)"
    )
    p.add_argument("--seeds", type=_ints, default=(0,), metavar="S1,S2", help="(default: 0)")
    p.set_defaults(handler=cmd_depth)

    p = sub.add_parser(
        "overfit",
        parents=[data, _sweep_options("runs/overfit")],
        help="the overfitting experiment: a big net on few images, then each cure on the same budget",
    )
    p.add_argument(
        "--cures",
        default="baseline,augmentation,dropout,weight-decay,early-stopping",
        metavar="A,B",
        help="(default: baseline,augmentation,dropout,weight-decay,early-stopping)",
    )
    p.add_argument("--train-subset", type=int, metavar="K", help="training images (default: 1000)")
    p.add_argument("--val-split", type=int, metavar="N", help="held-out validation images (default: 5000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="(default: 0)")
    p.set_defaults(handler=cmd_overfit)

    p = sub.add_parser("viz", help="pictures of a run: curves, confusion, errors, filters, features")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folder (several for --what curves)")
    p.add_argument("--what", required=True, metavar="PICTURE", help="curves, confusion, errors, filters or features")
    p.add_argument("--image", type=int, default=0, metavar="N", help="test image index for features (default: 0)")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset's IDX files")
    p.add_argument("--out", metavar="FILE.png", help="(default: RUN_DIR/<what>.png)")
    p.set_defaults(handler=cmd_viz)

    p = sub.add_parser("predict", help="classify image files (PNG, JPEG, BMP, GIF, ...) with a trained run")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--top-k", type=int, default=3, metavar="K", help="(default: 3)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--backend", default="torch", metavar="NAME", help="torch or onnxruntime (default: torch)")
    p.add_argument(
        "--show-input", metavar="FILE.png", help="save the inputs the model sees (28x28 digits, or the fitted images)"
    )
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("export", help="export a run to ONNX or TorchScript, verified against PyTorch")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--format", default="onnx", metavar="NAME", help="onnx or torchscript (default: onnx)")
    p.add_argument("--out", metavar="FILE", help="(default: RUN_DIR/model.onnx or model.torchscript.pt)")
    p.add_argument("--data-dir", metavar="DIR", help="test images to verify on (default: cache; else random)")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("serve", help="the lab: draw a digit, watch every layer of your runs; a JSON API")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one or more runs, shown side by side")
    p.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=_int_range(1, MAX_PORT), default=8000, help="(default: 8000)")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("bench", help="seconds per epoch against the lecture's pipeline; inference images/s")
    p.add_argument("--data-dir", metavar="DIR", help="folder holding MNIST's IDX files (default: cache or download)")
    p.add_argument("--models", default="cnn,inception", metavar="A,B", help="(default: cnn,inception)")
    p.add_argument("--quick", action="store_true", help="a tenth of the data, figures scaled per epoch")
    p.add_argument("--no-reference", action="store_true", help="skip the lecture-pipeline reference")
    p.add_argument(
        "--repeats", type=int, default=3, metavar="N", help="epochs timed per pipeline, median reported (default: 3)"
    )
    p.add_argument("--target", type=float, metavar="ACC", help="instead: seconds of training to ACC%% test accuracy")
    p.add_argument("--recipe", default="fast", metavar="NAME", help="recipe for --target (default: fast)")
    p.add_argument(
        "--seeds", default="0,1,2", metavar="S1,S2", help="seeds for --target, median reported (default: 0,1,2)"
    )
    p.add_argument("--precision", metavar="P", help="precision for --target: fp32 or bf16 (default: the recipe's)")
    p.add_argument(
        "--inference",
        metavar="RUN_DIR",
        help="instead: every inference backend on a trained run "
        "(accuracy, int8's change, images/s per batch size, latency)",
    )
    p.add_argument(
        "--batches",
        type=_sizes,
        default=(1, 64, 1024),
        metavar="B1,B2",
        help="batch sizes for --inference (default: 1,64,1024)",
    )
    p.add_argument(
        "--threads", type=_int_range(1, 1024), default=2, metavar="N", help="threads for --inference (default: 2)"
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        help="instead: the GPU suite (benchmarks/gpu.sh): host syncs, "
        "fast time to 99%% cold and warm, compiled and CUDA graphs, lecture and best epochs, inference",
    )
    p.add_argument(
        "--device",
        default="cuda",
        metavar="NAME",
        help="device for --gpu (default: cuda; cpu with --quick runs its code paths in seconds)",
    )
    p.add_argument("--out", metavar="DIR", help="(default: benchmarks/results, or benchmarks/results/gpu with --gpu)")
    p.set_defaults(handler=cmd_bench)
    return parser


def cli_reference() -> str:
    """docs/cli.md: every command's --help, as the parser prints it (`make docs` writes it; a test compares)."""
    parser = build_parser()
    parts = [
        "# CLI reference",
        "",
        "Generated from the parser by `make docs`; `cnnlab COMMAND --help` prints the same.",
        "",
        "```",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, command in parser.commands.items():
        parts += ["", f"## cnnlab {name}", "", "```", command.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except CnnlabError as e:
        if args.debug:
            traceback.print_exc()
        print(f"cnnlab {args.command}: {'' if hasattr(e, 'exit_code') else 'error: '}{e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
