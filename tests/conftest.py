import gzip
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("CNNLAB_MNIST_DIR") or ROOT.parent / "shared" / "data" / "mnist")


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {MNIST_DIR} (set CNNLAB_MNIST_DIR to its folder)")
    return MNIST_DIR


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's cache or config, and none reaches the network: downloads are off in every
    process a test starts (CNNLAB_OFFLINE), and in this one the mirrors point at a closed port too."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # code trusted by training (external/trust.py)
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    from cnnlab.data import datasets

    for name, spec in datasets.SPECS.items():
        if spec.mirrors:
            monkeypatch.setitem(
                datasets.SPECS, name, spec.__class__(**{**spec.__dict__, "mirrors": ("http://127.0.0.1:9/",)})
            )


@pytest.fixture
def small_disk(tmp_path):
    """mount(size): a folder on a tmpfs of that size ("16k"), to fill up; skips where mounting needs root."""
    mounts = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk-{len(mounts)}"
        folder.mkdir()
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        ).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", str(folder)], check=True)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, n_train=60, n_test=20, compress=True, seed=0) -> Path:
    """A small, valid dataset in the four standard files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            data = idx_bytes(np.asarray(array))
            name = f"{prefix}-{kind}-ubyte"
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return folder


def train_sample(out: Path, *flags: str) -> Path:
    """`cnnlab train` on mnist-sample, seed 0, no progress bar, into `out` (`flags` add to or override these),
    asserted to succeed."""
    from cnnlab.cli import main

    argv = ["train", "--dataset", "mnist-sample", "--seed", "0", "--no-progress", "--out", str(out), *flags]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The lecture CNN trained for 3 epochs on mnist-sample (about 96% test accuracy), once per session."""
    return train_sample(tmp_path_factory.mktemp("trained") / "cnn", "--epochs", "3")


@pytest.fixture(scope="session")
def robust_run(tmp_path_factory):
    """The robust recipe on mnist-sample (4,000 images), 8 epochs: about 20 s on 2 cores."""
    return train_sample(tmp_path_factory.mktemp("robust") / "run", "--recipe", "robust", "--epochs", "8")


# Handwriting-like strokes for each digit, in a unit square (x right, y down).
STROKES = {
    "0": [("ellipse", (0.25, 0.1, 0.75, 0.9))],
    "1": [("line", [(0.5, 0.1), (0.5, 0.9)])],
    "2": [("line", [(0.2, 0.3), (0.35, 0.12), (0.65, 0.12), (0.8, 0.3), (0.7, 0.5), (0.2, 0.9), (0.85, 0.9)])],
    "3": [("line", [(0.2, 0.15), (0.75, 0.15), (0.45, 0.45), (0.75, 0.6), (0.75, 0.8), (0.5, 0.92), (0.2, 0.85)])],
    "4": [("line", [(0.65, 0.9), (0.65, 0.1), (0.15, 0.65), (0.85, 0.65)])],
    "5": [
        ("line", [(0.8, 0.1), (0.3, 0.1), (0.25, 0.45), (0.6, 0.4), (0.8, 0.6), (0.7, 0.85), (0.4, 0.92), (0.2, 0.82)])
    ],
    "6": [
        (
            "line",
            [(0.7, 0.1), (0.35, 0.4), (0.25, 0.7), (0.4, 0.9), (0.65, 0.88), (0.75, 0.68), (0.55, 0.52), (0.3, 0.6)],
        )
    ],
    "7": [("line", [(0.15, 0.12), (0.85, 0.12), (0.4, 0.9)])],
    "8": [("ellipse", (0.3, 0.08, 0.7, 0.48)), ("ellipse", (0.25, 0.48, 0.75, 0.92))],
    "9": [("ellipse", (0.28, 0.1, 0.72, 0.5)), ("line", [(0.72, 0.3), (0.66, 0.9)])],
}


def draw_digit(digit: str, size=280, box=None, ink=0, paper=255, width=None, noise=0.0, mode="L", seed=0):
    """A digit drawn with strokes, like a pen on paper: `box` = (left, top, side) of its square."""
    from PIL import Image, ImageDraw

    left, top, side = box or (size * 0.15, size * 0.15, size * 0.7)
    image = Image.new("L", (size, size), paper)
    draw = ImageDraw.Draw(image)
    width = width or max(2, int(side * 0.09))
    at = lambda x, y: (left + x * side, top + y * side)
    for kind, shape in STROKES[digit]:
        if kind == "line":
            draw.line([at(*p) for p in shape], fill=ink, width=width, joint="curve")
        else:
            draw.ellipse([*at(shape[0], shape[1]), *at(shape[2], shape[3])], outline=ink, width=width)
    if noise:
        rng = np.random.default_rng(seed)
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, noise, (size, size))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.convert(mode)


def run_cli(argv, capsys) -> tuple[int, str]:
    """main() in this process; argparse's own errors exit through SystemExit."""
    from cnnlab.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, message):
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
