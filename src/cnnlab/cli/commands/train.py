"""cnnlab train: train a model and write a run folder (or several processes under torchrun: --nproc)."""

import argparse
import dataclasses
import functools
import json

from cnnlab import CnnlabError
from cnnlab.cli.options import MAX_PORT, TRUST_HELP, add_data_options, channels, config_flags, int_range, model_args
from cnnlab.engine.config import RECIPES, describe_recipe

NAME = "train"
HELP = "train a model and write a run folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    _data(parser.add_argument_group("Data"))
    _model(parser.add_argument_group("Model"))
    _optimization(parser.add_argument_group("Optimization"))
    _augmentation(parser.add_argument_group("Augmentation"))
    system = parser.add_argument_group("Output and system")
    _system(system)
    _run_control(system)


def _data(group) -> None:
    group.add_argument(
        "--image-size",
        metavar="HxW",
        help="--dataset folder: scale each image, aspect ratio kept, "
        "to cover HxW, then centre-crop it to HxW (default: 32x32)",
    )
    group.add_argument(
        "--channels",
        type=channels,
        metavar="C",
        help="--dataset folder: 1 (grey), 3 (colour) or auto: 1 when every image is grey (default: auto)",
    )
    group.add_argument(
        "--test-split",
        type=float,
        metavar="F",
        help="--dataset folder without train/ and test/: "
        "hold out this share of each class as the test set (default: 0.2)",
    )
    group.add_argument("--train-subset", type=int, metavar="K", help="train on K training images (seeded subset)")
    group.add_argument(
        "--val-split",
        type=int,
        metavar="N",
        help="hold out N training images (stratified) to choose "
        "the best epoch and stop early; the test set is then only reported (default: 0, none)",
    )


def _model(group) -> None:
    group.add_argument(
        "--model",
        metavar="NAME",
        help="a name from `cnnlab models`, or your own network: file.py[:Name] (a class, a function that returns "
        "a model, or a variable; see docs/own-network.md) (default: cnn)",
    )
    group.add_argument(
        "--model-args",
        type=model_args,
        metavar="JSON",
        help="""constructor arguments of the model, e.g. '{"hidden": 64}' (default: none)""",
    )
    group.add_argument("--width", type=int, metavar="W", help="base width for families that have one")


def _optimization(group) -> None:
    recipes = "; ".join(map(describe_recipe, RECIPES)).replace("%", "%%")  # argparse formats help with %
    group.add_argument(
        "--recipe",
        metavar="NAME",
        help=f"named defaults: {recipes} (default: cifar for cifar10 and cifar100, else default)",
    )
    group.add_argument("--epochs", type=int, metavar="N", help="(default: from the recipe)")
    group.add_argument(
        "--patience",
        type=int,
        metavar="E",
        help="with --val-split: stop after E epochs without a better validation accuracy (default: never)",
    )
    group.add_argument("--batch-size", type=int, metavar="B", help="(default: from the recipe)")
    group.add_argument("--test-batch-size", type=int, metavar="B", help="(default: 1000)")
    group.add_argument("--optimizer", metavar="NAME", help="sgd, adam or adamw (default: from the recipe)")
    group.add_argument(
        "--lr", type=float, metavar="LR", help="learning rate, the peak for onecycle (default: from the recipe)"
    )
    group.add_argument(
        "--momentum", type=float, metavar="M", help="SGD momentum, with --schedule constant (default: from the recipe)"
    )
    group.add_argument("--weight-decay", type=float, metavar="WD", help="(default: 0)")
    group.add_argument(
        "--schedule",
        metavar="NAME",
        help="constant, onecycle, or step (the rate /10 at half and "
        "three quarters of training, as He et al.) (default: from the recipe)",
    )
    group.add_argument("--label-smoothing", type=float, metavar="EPS", help="(default: 0)")
    group.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="evaluate and save an exponential moving average of the "
        "weights, e.g. 0.999 (default: from the recipe; 0 = off)",
    )


def _augmentation(group) -> None:
    group.add_argument(
        "--augment",
        metavar="NAME",
        help="none, affine (batched random rotation, scale, shift: "
        "digits), crop (random crops of the image padded by 1/8 of its side), crop-flip (and "
        "horizontal flips: natural images, never digits), clothes (crops padded by 2 px, flips, random "
        "erasing: Fashion-MNIST) (default: from the recipe and the dataset)",
    )


def _system(group) -> None:
    """Where the run computes and writes."""
    group.add_argument("--seed", type=int, metavar="S", help="(default: 0)")
    group.add_argument("--device", metavar="NAME", help="auto, cpu, cuda or mps (default: auto)")
    group.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    group.add_argument(
        "--precision",
        metavar="P",
        help="fp32, bf16 (autocast; weights stay fp32) or auto: bf16 on a "
        "CUDA GPU that supports it, else fp32 (default: auto)",
    )
    group.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_const",
        const=False,
        help="keep NCHW memory layout (default: channels_last, faster on CPU)",
    )
    group.add_argument("--out", metavar="DIR", help="run folder (default: runs/<model>-<dataset>-<time>)")
    group.add_argument(
        "--overwrite",
        action="store_const",
        const=True,
        help="replace an existing cnnlab run folder (never a folder holding other files)",
    )
    group.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")
    group.add_argument("--config", metavar="FILE", help="TOML file of settings (flags override it)")
    group.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")


def _run_control(group) -> None:
    """How the run proceeds: resume, checkpoints, checks, compilation, processes, and what it records."""
    group.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run exactly where it stopped "
        "(with --epochs N: extend a finished constant-rate run)",
    )
    group.add_argument("--trust-code", action="store_true", help="with --resume: " + TRUST_HELP)
    group.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps")
    group.add_argument(
        "--check-every",
        type=int,
        metavar="N",
        help="test the loss for NaN every N steps (default: every step on CPU, 50 on a GPU: fewer host syncs)",
    )
    group.add_argument(
        "--compile",
        metavar="MODE",
        help="torch.compile the training step, compiled before the first "
        "epoch and timed apart: default, reduce-overhead (CUDA graphs), max-autotune, "
        "max-autotune-no-cudagraphs (default: off, eager)",
    )
    group.add_argument(
        "--deterministic",
        action="store_const",
        const=True,
        help="torch.use_deterministic_algorithms(True); slower on GPU, same on CPU",
    )
    group.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N DDP processes on this machine, at most one per CPU core (per GPU on CUDA), "
        "each with cores/N threads unless --threads",
    )
    group.add_argument("--sync-bn", action="store_const", const=True, help="under DDP on CUDA GPUs: SyncBatchNorm")
    group.add_argument(
        "--trace-grad",
        action="store_const",
        const=True,
        help="record each step's first-layer gradient norm, loss and error (grad_norms.json)",
    )
    group.add_argument(
        "--tensorboard",
        action="store_const",
        const=True,
        help="also write each epoch's losses, accuracies, learning rate and first-layer kernels as TensorBoard "
        "event files into the run (view: pip install tensorboard; tensorboard --logdir runs)",
    )
    group.add_argument("--plot", action="store_true", help="write curves.png and confusion.png into the run at the end")
    group.add_argument(
        "--lab",
        action="store_true",
        help="serve the lab on this run as it trains, from its first checkpoint on: curves and the first "
        "kernels forming, live; it stays open after training until Ctrl-C (needs --out or --resume)",
    )
    group.add_argument(
        "--lab-port", type=int_range(1, MAX_PORT), default=8000, metavar="PORT", help="the lab's port (default: 8000)"
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.engine.config import build_config
    from cnnlab.engine.distributed import shutdown
    from cnnlab.engine.fit import fit, resume_run

    if args.nproc is not None and args.lab:
        raise CnnlabError("--lab serves one process's run: leave out --nproc, or serve the run with `cnnlab serve`")
    if args.resume and (args.config or args.print_config):
        raise CnnlabError("--resume takes the run's own settings: --config and --print-config do not apply")
    config = None
    if args.resume:
        train = functools.partial(resume_run, args.resume, log=print, trust_code=args.trust_code, **config_flags(args))
    else:
        config = build_config(config_flags(args), args.config)  # checked once, before any process starts
        if args.print_config:
            print(json.dumps(dataclasses.asdict(config), indent=2))
            return 0
        train = functools.partial(fit, config, log=print)
    if args.nproc is not None:
        return _launch(args, config)
    lab = _lab_alongside(args, config)
    try:
        result = train()
    except BaseException:
        if lab is not None:
            lab.stop()
        raise
    finally:
        shutdown()  # of the DDP process group, when there is one
    if result.is_main:
        selected = f" (epoch {result.best_epoch}, chosen on the validation split)" if result.best_epoch else ""
        print(f"Final test accuracy: {result.test_accuracy:.2f}%{selected} on {result.dataset} (run: {result.run_dir})")
        if args.plot:
            from cnnlab.explain.viz import draw

            for what in ("curves", "confusion"):
                print(f"wrote {draw([result.run_dir], what, data_dir=args.data_dir)}")
    if lab is not None:
        lab.keep_open()
    return 0


def _lab_alongside(args: argparse.Namespace, config):
    """With --lab: the lab over the run folder, bound now and opened at the first checkpoint (serve/running.py)."""
    if not args.lab:
        return None
    folder = args.resume or (config and config.out)
    if not folder:
        raise CnnlabError("--lab serves the run folder as it trains: give it with --out DIR")
    from cnnlab.inference.serve import AlongsideLab

    return AlongsideLab(folder, port=args.lab_port, log=print)


def _launch(args: argparse.Namespace, config) -> int:
    """--nproc N: this command as N DDP processes (`config`: the settings resolved here; None when resuming)."""
    from cnnlab.engine.device import select_device
    from cnnlab.engine.distributed import launch

    return launch(
        worker_command(args),
        nproc=args.nproc,
        device=select_device(config.device if config else args.device or "auto"),
        sync_bn=bool(config.sync_bn if config else args.sync_bn),
        threads=config.threads if config else args.threads,
    )


NEGATED = {"progress": "--no-progress", "channels_last": "--no-channels-last"}  # store_const False


def worker_command(args: argparse.Namespace) -> list[str]:
    """What each DDP process runs, rebuilt from what was parsed (never the literal argv, whose spellings
    only this parser knows), without --nproc."""
    given = {**config_flags(args), "resume": args.resume, "config": args.config, "plot": args.plot or None}
    given["trust_code"] = args.trust_code or None
    command = ["--debug", NAME] if args.debug else [NAME]
    for name, value in given.items():
        flag = NEGATED.get(name) or "--" + name.replace("_", "-")
        if isinstance(value, bool):  # a switch: given, so present
            command.append(flag)
        elif isinstance(value, dict):  # --model-args: JSON, as its parser reads it (not Python's repr)
            command.append(f"{flag}={json.dumps(value)}")
        elif value is not None:
            command.append(f"{flag}={value}")  # one word: a value that starts with '-' stays a value
    return command
