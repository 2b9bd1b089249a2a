"""cnnlab bench: training speed against the lecture's pipeline, time to an accuracy, inference backends, the GPU
suite."""

import argparse

from cnnlab.cli.options import add_open_options, int_range, ints, names, open_options, percent, sizes

NAME = "bench"
HELP = "seconds per epoch against the lecture's pipeline; inference images/s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _epochs(parser)
    _time_to_accuracy(parser)
    _inference_and_gpu(parser)
    parser.add_argument(
        "--out", metavar="DIR", help="(default: benchmarks/results, or benchmarks/results/gpu with --gpu)"
    )


def _epochs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", metavar="DIR", help="folder holding MNIST's IDX files (default: cache or download)"
    )
    parser.add_argument(
        "--models",
        type=names,
        default="cnn,inception",
        metavar="A,B",
        help="registered names, or your own networks: file.py[:Name] (default: cnn,inception)",
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, figures scaled per epoch")
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="skip the lecture-pipeline reference (with --target: its epoch, the unit of the ratio)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, metavar="N", help="epochs timed per pipeline, median reported (default: 3)"
    )


def _time_to_accuracy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", type=percent, metavar="ACC", help="instead: seconds of training to ACC%% test accuracy"
    )
    parser.add_argument("--recipe", default="fast", metavar="NAME", help="recipe for --target (default: fast)")
    parser.add_argument(
        "--seeds",
        type=ints,
        default="0,1,2",
        metavar="S1,S2",
        help="seeds for --target, median reported (default: 0,1,2)",
    )
    parser.add_argument("--precision", metavar="P", help="precision for --target: fp32 or bf16 (default: the recipe's)")


def _inference_and_gpu(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inference",
        metavar="RUN_DIR",
        help="instead: every inference backend on a trained run or a model file, model.onnx "
        "(accuracy, int8's change, images/s per batch size, latency)",
    )
    parser.add_argument(
        "--batches",
        type=sizes,
        default=(1, 64, 1024),
        metavar="B1,B2",
        help="batch sizes for --inference (default: 1,64,1024)",
    )
    parser.add_argument(
        "--threads", type=int_range(1, 1024), default=2, metavar="N", help="threads for --inference (default: 2)"
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="instead: the GPU suite (benchmarks/gpu.sh): host syncs, "
        "fast time to 99%% cold and warm, compiled and CUDA graphs, lecture and best epochs, inference",
    )
    parser.add_argument(
        "--device",
        default="cuda",
        metavar="NAME",
        help="device for --gpu (default: cuda; cpu with --quick runs its code paths in seconds)",
    )
    add_open_options(parser)


def run(args: argparse.Namespace) -> int:
    from cnnlab.bench import gpu_bench, inference_bench, run_bench, time_to_accuracy

    if args.gpu:
        gpu_bench(args.data_dir, args.out or "benchmarks/results/gpu", args.device, args.quick)
        return 0
    if args.inference:
        out = args.out or "benchmarks/results"
        inference_bench(args.inference, args.data_dir, args.batches, args.threads, out, options=open_options(args))
        return 0
    args.out = args.out or "benchmarks/results"
    if args.target is not None:
        settings = {"precision": args.precision} if args.precision else None
        result = time_to_accuracy(
            args.data_dir,
            args.target,
            args.recipe,
            args.seeds,
            args.out,
            settings=settings,
            reference=not args.no_reference,
        )
        return 0 if result["all_reached"] else 1
    run_bench(args.data_dir, args.models, args.quick, not args.no_reference, args.out, args.repeats)
    return 0
