# The two commands of the README: `make run` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real MNIST for tests and benchmarks; tests skip with a reason where it is absent.
MNIST_DIR ?= ../shared/data/mnist
REAL_DIGITS ?= ../shared/data/real-digits

.PHONY: install run test lint docs notebook bench clean browser

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# Trains the lecture CNN: on MNIST when it is cached or downloadable, else on the bundled 5,000-digit sample.
run: install
	$(BIN)/cnnlab train --model cnn --out runs/quickstart --overwrite

# The browser test drives Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo -n sh -c 'apt-get update -qq && apt-get install -y -qq chromium' >/dev/null \
	    || echo "warning: could not install chromium (needs root); the browser test will be skipped"; fi; }

# Chromium's install waits on the network, so it runs beside the Python install and lint, not before them.
test:
	$(MAKE) --no-print-directory -j2 browser lint
	CNNLAB_MNIST_DIR=$(MNIST_DIR) $(BIN)/python -m pytest -q

# Style and types, as .pre-commit-config.yaml runs them before each commit.
lint: install
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy

# The lecture as a notebook, run top to bottom (tests/test_notebook.py does the same and checks its numbers);
# to open it instead: .venv/bin/pip install jupyterlab && .venv/bin/jupyter lab notebooks/lecture.ipynb
notebook: install
	$(BIN)/jupyter-execute notebooks/lecture.ipynb

# docs/cli.md is the parser's own help (tests/test_docs.py fails when it has drifted).
docs: install
	$(BIN)/python -c "from cnnlab.cli import cli_reference; from cnnlab.files import write_text; \
	  write_text('docs/cli.md', cli_reference())"

# Every CPU figure of docs/speed.md: lecture recipe against the lecture's pipeline, deep models, time to 99% (float32
# and bf16; each seed beside one epoch of the lecture's pipeline, their ratio with its median and range),
# inference backends, the serving load test; docs/real-digits.md's generated real-world set (also as `cnnlab
# predict` answers it: the number reader) and numbers (exact-number and per-digit accuracy, a 12 MP photo's and
# the lab pad's reading time beside the single-digit path's on the same file), read by the default cnn
# and the robust recipe; and what the lab's training snapshots cost (docs/lab.md). About 20 minutes on 2 idle
# cores, plus the DDP exit counter. The GPU figures come from benchmarks/gpu.sh on a GPU machine; `best`'s
# 10-minute runs are commands in docs/speed.md. A --target run that misses its accuracy on a seed exits 1; the
# leading - lets the rest of the bench run.
bench: install
	$(BIN)/cnnlab bench --data-dir $(MNIST_DIR)
	$(BIN)/cnnlab bench --data-dir $(MNIST_DIR) --models resnet-20,densenet-bc-22-8 --quick --no-reference --out benchmarks/results/deep
	-$(BIN)/cnnlab bench --target 99.0 --data-dir $(MNIST_DIR)
	-$(BIN)/cnnlab bench --target 99.0 --data-dir $(MNIST_DIR) --precision bf16
	$(BIN)/cnnlab train --model cnn --data-dir $(MNIST_DIR) --no-progress --out runs/bench-cnn --overwrite >/dev/null
	$(BIN)/cnnlab bench --inference runs/bench-cnn --data-dir $(MNIST_DIR)
	$(BIN)/cnnlab train --recipe robust --val-split 5000 --data-dir $(MNIST_DIR) --no-progress --out runs/bench-robust --overwrite >/dev/null
	$(BIN)/python benchmarks/real_digits.py runs/bench-cnn runs/bench-robust --data-dir $(MNIST_DIR) \
	  $(if $(wildcard $(REAL_DIGITS)),--real $(REAL_DIGITS)) --reader --json benchmarks/results/real-digits-$(shell date +%F).json
	$(BIN)/python benchmarks/number_reading.py runs/bench-cnn runs/bench-robust --data-dir $(MNIST_DIR) --speed \
	  --json benchmarks/results/numbers-$(shell date +%F).json
	$(BIN)/python benchmarks/snapshot_cost.py --data-dir $(MNIST_DIR)
	$(BIN)/cnnlab train --dataset mnist-sample --no-progress --out runs/bench-serve --overwrite >/dev/null
	$(BIN)/python benchmarks/load.py runs/bench-serve --clients 8 --requests 800
	$(BIN)/python benchmarks/load.py runs/bench-serve --clients 8 --requests 400 --upload
	$(BIN)/python benchmarks/ddp_exits.py --runs 30 --json benchmarks/results/ddp-exits-$(shell date +%F).json

clean:
	rm -rf $(VENV) runs .pytest_cache
