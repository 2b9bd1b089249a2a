#!/usr/bin/env bash
# The GPU benchmark of issue 17 (goal 5) in one prepared run: at most 8 minutes on one H100/H200, results as JSON.
#
#   bash benchmarks/gpu.sh [MNIST_DIR] [OUT_DIR]
#
# Runs cnnlab from this checkout's src/ with the machine's own python3 and PyTorch (2.11 with CUDA 13 on the
# lent H200s): no install and no network. MNIST_DIR (default: data/mnist, which .gitignore keeps out of git,
# else ../shared/data/mnist) holds MNIST's four IDX .gz files. OUT_DIR (default: $OUT when set, else
# benchmarks/results/gpu) receives gpu-<date>-gpu-suite.json, written after every section, the log and
# nvidia-smi's description of the GPU. What it measures: `cnnlab bench --gpu --help`, docs/speed.md.
#
# Through the device tool, from the repository root (the data travels as an ignored folder named in carry):
#   mkdir -p data/mnist && cp ../shared/data/mnist/*.gz data/mnist/
#   run(command="bash benchmarks/gpu.sh data/mnist $OUT", carry=["data"], timeout_s=560)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-data/mnist}
[ -d "$data" ] || data=../shared/data/mnist
out=${2:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=$(command -v python3 || command -v python)

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out/nvidia-smi.csv" 2>&1 || true
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())'
# The suite stops starting sections after 7 minutes (its own budget); the timeout is the backstop for a hung one.
set -o pipefail
timeout 470 "$python" -m cnnlab bench --gpu --data-dir "$data" --out "$out" 2>&1 | tee "$out/gpu-log.txt"
