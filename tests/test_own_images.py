"""A folder of your own images: layout, decoding, bad files, the cache, memory refusal, training and predict,
on coloured shapes the tests draw (PNG and JPEG, of varied sizes) with broken files mixed in."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cnnlab import memory
from cnnlab.cli import main
from cnnlab.data import datasets
from cnnlab.data.folder import FolderError, fit_image, load_folder, luma
from cnnlab.data.idx import DataError
from cnnlab.engine.run import open_run
from cnnlab.inference.decode import ImageError
from cnnlab.inference.predict import Predictor
from test_predict import bomb_png

SHAPES = ("circle", "square", "triangle")
BAD_FILES = {
    "circle/bomb.png": bomb_png(),
    "circle/empty.png": b"",
    "square/notes.jpg": b"not an image at all",
    "triangle/cut.png": None,
    "triangle/noise.png": bytes(range(256)) * 4,
}


def draw_shape(kind: str, rng, size=None) -> Image.Image:
    """One shape of a random colour on a background of another, at a random place, in an image of random size."""
    width, height = size or (int(rng.integers(36, 72)), int(rng.integers(36, 72)))
    paper = tuple(int(v) for v in rng.integers(0, 256, 3))
    ink = tuple(int((p + rng.integers(90, 166)) % 256) for p in paper)
    image = Image.new("RGB", (width, height), paper)
    side = min(width, height) * rng.uniform(0.45, 0.8)
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6)
    box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
    draw = ImageDraw.Draw(image)
    if kind == "circle":
        draw.ellipse(box, fill=ink)
    elif kind == "square":
        draw.rectangle(box, fill=ink)
    else:
        draw.polygon([(cx, box[1]), (box[2], box[3]), (box[0], box[3])], fill=ink)
    return image


def write_shapes(root, per_class=100, seed=0, bad=True):
    """`per_class` images of each shape in root/<shape>/, alternately PNG and JPEG, and the BAD_FILES."""
    rng = np.random.default_rng(seed)
    for kind in SHAPES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(kind, rng).save(root / kind / f"{i:03}.{'png' if i % 2 else 'jpg'}", quality=90)
    if bad:
        for name, data in BAD_FILES.items():
            (root / name).write_bytes((root / "triangle" / "001.png").read_bytes()[:120] if data is None else data)
    return root


@pytest.fixture(scope="module")
def shapes_template(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("template") / "shapes")


@pytest.fixture
def shapes(shapes_template, tmp_path):
    """A fresh copy (no cache yet) of the 300 shapes and 5 bad files."""
    return shutil.copytree(shapes_template, tmp_path / "shapes")


def test_classes_split_statistics_and_the_bad_file_report(shapes):
    ds = datasets.load_dataset("folder", shapes)
    assert ds.classes == SHAPES and ds.name == "folder" and not ds.info.mnist_style
    assert ds.train_images.shape == (240, 3, 32, 32) and ds.test_images.shape == (60, 3, 32, 32)
    assert torch.bincount(ds.test_labels).tolist() == [20, 20, 20]  # stratified 0.2 of each class
    pixels = ds.train_images.double() / 255
    for c in range(3):  # the constants are the training images', per channel
        assert ds.mean[c] == pytest.approx(pixels[:, c].mean().item(), abs=1e-4)
        assert ds.std[c] == pytest.approx(pixels[:, c].std().item(), abs=1e-3)
    assert "300 images of 3 classes (circle, square, triangle)" in ds.notice
    assert (
        "skipped 5 files that are not readable images: circle/bomb.png (too many pixels, a decompression "
        "bomb?); circle/empty.png (empty file); square/notes.jpg (not an image: cnnlab reads PNG, JPEG, BMP, GIF, "
        "WEBP, TIFF and PPM); triangle/cut.png (truncated or corrupt: OSError: image file is truncated); "
        "triangle/noise.png (not an image: cnnlab reads PNG" in ds.notice
    )  # a few bad files: each one named
    again = datasets.load_dataset("folder", shapes)  # the split is a function of the files alone
    assert torch.equal(again.test_images, ds.test_images) and torch.equal(again.train_labels, ds.train_labels)


def test_a_class_of_one_image_is_trained_on_and_reported_untested(shapes):
    (shapes / "star").mkdir()
    draw_shape("circle", np.random.default_rng(3)).save(shapes / "star" / "only.png")
    ds = datasets.load_dataset("folder", shapes)
    assert ds.classes == (*SHAPES[:2], "star", SHAPES[2])
    assert torch.bincount(ds.train_labels).tolist()[2] == 1 and 2 not in ds.test_labels
    assert ds.notice.endswith("; no test image of: star")
    # 5 of 25 held out: every class's share has the remainder 0.2, and the tie used to take the fifth's only image.
    labels = torch.tensor([0] * 6 + [1] * 6 + [2] * 6 + [3] * 6 + [4])
    for seed in range(10):
        held_out = datasets.stratified_holdout(labels, 5, 5, seed)
        assert 24 not in held_out and len(held_out) == 5


def test_second_load_hits_the_cache_until_a_file_changes(shapes):
    first = load_folder(shapes)
    assert not first.cache_hit
    second = load_folder(shapes)
    assert second.cache_hit and torch.equal(second.images, first.images) and second.skipped == first.skipped
    draw_shape("circle", np.random.default_rng(9)).save(shapes / "circle" / "000.jpg")  # replaced: new size, time
    third = load_folder(shapes)
    assert not third.cache_hit and not torch.equal(third.images, first.images)
    other_size = load_folder(shapes, (24, 20))
    assert not other_size.cache_hit and other_size.images.shape[1:] == (3, 24, 20)
    assert load_folder(shapes).cache_hit  # one cache file per size


@pytest.fixture
def read_only_copy(shapes_template, tmp_path):
    """The shapes in a folder this process cannot write: a read-only tmpfs as root, else a chmod."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        shutil.copytree(shapes_template, target / "shapes")
        (target / "shapes").chmod(0o555)
        yield target / "shapes"
        (target / "shapes").chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(target)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    shutil.copytree(shapes_template, target / "shapes")
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
    yield target / "shapes"
    subprocess.run(["umount", str(target)], check=True)


def test_the_cache_is_kept_in_the_cnnlab_cache_never_in_the_users_folder(shapes, tmp_path, capsys):
    """Training on a folder writes nothing into it: the cache lives under the cnnlab cache, keyed by the folder's
    resolved path (the same folder by another name reads it) and by its files."""
    before = sorted(p.relative_to(shapes) for p in shapes.rglob("*"))
    argv = ["train", "--dataset", "folder", "--model", "cnn-bn-8-24", "--epochs", "1", "--no-progress"]
    assert main([*argv, "--data-dir", str(shapes), "--out", str(tmp_path / "run")]) == 0
    assert sorted(p.relative_to(shapes) for p in shapes.rglob("*")) == before
    cached = load_folder(shapes)
    assert cached.cache_hit and cached.cache.is_relative_to(tmp_path / "cache" / "cnnlab" / "folder")
    (tmp_path / "link").symlink_to(shapes)
    assert load_folder(tmp_path / "link").cache == cached.cache and load_folder(tmp_path / "link").cache_hit


def test_a_class_folder_that_is_a_symbolic_link_is_skipped_and_said(shapes, tmp_path):
    """`ln -s /usr DIR/z` made /usr a class and decoded it; a linked class folder is not followed, and named."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    draw_shape("circle", np.random.default_rng(5)).save(elsewhere / "x.png")
    (shapes / "z").symlink_to(elsewhere)
    ds = datasets.load_dataset("folder", shapes)
    assert ds.classes == SHAPES and len(ds.train_labels) + len(ds.test_labels) == 300
    assert ds.notice.endswith("; skipped class folders that are symbolic links (not followed): z")


def test_read_only_folder_is_cached_in_the_cnnlab_cache(read_only_copy, tmp_path):
    first = load_folder(read_only_copy)
    assert first.cache.is_relative_to(tmp_path / "cache" / "cnnlab" / "folder")  # XDG_CACHE_HOME of the tests
    assert load_folder(read_only_copy).cache_hit


def test_a_folder_too_large_for_memory_is_refused_before_decoding(shapes, monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_memory", lambda: 2**30)  # a 1 GiB machine
    # 305 files at 3x1024x1024, twice over: 1.8 GiB
    code = main(
        [
            "train",
            "--dataset",
            "folder",
            "--data-dir",
            str(shapes),
            "--image-size",
            "1024x1024",
            "--out",
            str(shapes.parent / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "305 images at 3x1024x1024 need 1.8 GiB of memory, more than the 1.0 GiB available" in err
    assert len(err.strip().splitlines()) == 1 and not list(shapes.glob(".cnnlab-cache-*"))  # nothing decoded


def test_free_memory_is_what_the_kernel_can_give():
    """One rule for every refusal (a folder decoded, a model built): MemAvailable, which counts the page cache the
    kernel can drop; free pages alone refused models that fit on a machine whose memory is mostly cache."""
    lines = [line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemAvailable:")]
    if not lines:
        pytest.skip("no MemAvailable in /proc/meminfo")
    assert abs(memory.available_memory() - int(lines[0].split()[1]) * 1024) < 256 << 20


def test_predict_and_folder_training_say_the_same_of_each_bad_file(shapes, trained_run, capsys):
    """One decoder: what `predict` says of a file that is not a readable image is what a folder's report says."""
    notice = datasets.load_dataset("folder", shapes).notice
    for name in BAD_FILES:
        main(["predict", str(trained_run), str(shapes / name)])
        reason = capsys.readouterr().out.strip().split(": error: ", 1)[1]
        assert f"{name} ({reason})" in notice


def test_fit_keeps_the_aspect_ratio_and_crops_the_centre():
    stripes = np.zeros((30, 90, 3), dtype=np.uint8)
    stripes[:, :30, 0] = stripes[:, 30:60, 1] = stripes[:, 60:, 2] = 255  # red | green | blue, 3:1
    fitted = fit_image(Image.fromarray(stripes), (10, 10))
    assert fitted.shape == (3, 10, 10)
    assert (fitted[1] > 200).all() and (fitted[0] < 60).all() and (fitted[2] < 60).all()  # only the green middle
    tall = fit_image(Image.fromarray(stripes).rotate(90, expand=True), (8, 16))  # 90x30 into 8x16: covers, crops
    assert tall.shape == (3, 8, 16) and (tall[1] > 200).all()
    grey = fit_image(Image.new("LA", (5, 5), (0, 0)), (4, 4))  # transparent: white paper
    assert (grey == 255).all()
    assert (
        luma(fit_image(Image.new("RGB", (4, 4), (10, 200, 30)), (2, 2)))
        == np.asarray(Image.new("RGB", (2, 2), (10, 200, 30)).convert("L"))
    ).all()  # PIL's own grey


def test_grey_images_give_one_channel_unless_three_are_asked_for(tmp_path):
    rng = np.random.default_rng(1)
    for kind in ("circle", "square"):
        (tmp_path / "grey" / kind).mkdir(parents=True)
        for i in range(5):
            draw_shape(kind, rng).convert("L").save(tmp_path / "grey" / kind / f"{i}.png")
    auto = datasets.load_dataset("folder", tmp_path / "grey", image_size="20x24")
    assert auto.train_images.shape[1:] == (1, 20, 24) and isinstance(auto.mean, float)
    colour = datasets.load_dataset("folder", tmp_path / "grey", image_size="20x24", channels=3)
    assert colour.in_channels == 3 and torch.equal(colour.train_images[:, 2:], auto.train_images)
    assert "read from the cache" in colour.notice  # channels are chosen after the cache: one file serves both


def test_given_train_and_test_folders(tmp_path):
    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("test", 2)):
        for kind in ("circle", "square"):
            (tmp_path / split / kind).mkdir(parents=True)
            for i in range(n):
                draw_shape(kind, rng).save(tmp_path / split / kind / f"{i}.png")
    ds = datasets.load_dataset("folder", tmp_path)
    assert (len(ds.train_labels), len(ds.test_labels)) == (12, 4) and ds.classes == ("circle", "square")
    with pytest.raises(DataError, match="--test-split does not apply"):
        datasets.load_dataset("folder", tmp_path, test_split=0.5)
    (tmp_path / "test" / "star").mkdir()
    with pytest.raises(FolderError, match="class folders that .* lacks: star"):
        datasets.load_dataset("folder", tmp_path)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"only": ["a.png"]}, "needs at least 2 class folders, found 1"),
        ({"a": [], "b": []}, "the class folders hold no files"),
        ({"a": ["x.png"], "b": ["empty.png"]}, "class folders without a readable training image: b"),
        ({"a": ["empty.png"], "b": ["empty.png"]}, "none of its 2 files is a readable image"),
    ],
)
def test_folders_that_cannot_train_are_refused(layout, message, tmp_path):
    for kind, names in layout.items():
        (tmp_path / kind).mkdir()
        for name in names:
            path = tmp_path / kind / name
            path.write_bytes(b"") if name == "empty.png" else Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(FolderError, match=message):
        datasets.load_dataset("folder", tmp_path, test_split=0.5)


def test_trains_predicts_by_class_name_and_exports(shapes, tmp_path, capsys):
    out = tmp_path / "run"
    # One thread: batches of 32 small images gain nothing from a second (measured 2,200 images/s with one).
    train = [
        "train",
        "--dataset",
        "folder",
        "--data-dir",
        str(shapes),
        "--model",
        "cnn-bn-8-24",
        "--batch-size",
        "32",
        "--epochs",
        "10",
        "--seed",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(train) == 0
    printed = capsys.readouterr().out
    assert "decoded and cached in" in printed and "skipped 5 files" in printed
    accuracy = float(printed.split("Final test accuracy: ")[1].split("%")[0])
    assert accuracy >= 90, printed  # measured 96.67% (58/60)
    info = open_run(out).info
    assert info.classes == SHAPES and info.in_channels == 3 and not info.mnist_style and len(info.mean) == 3
    assert main(["evaluate", str(out)]) == 0  # the run finds its folder again, fitted as for training
    assert "| triangle |" in capsys.readouterr().out
    predictor = Predictor(out)
    assert not predictor.digits and predictor.prepare(draw_shape("circle", np.random.default_rng(3))).shape == (
        3,
        32,
        32,
    )
    with pytest.raises(ImageError, match="the model takes 3x32x32 inputs, not 1x28x28"):
        predictor.top_k(np.zeros((28, 28), dtype=np.uint8), 1)  # a digit made for another run: a clear error

    rng = np.random.default_rng(7)  # new drawings, larger than the training images, not square
    for kind in SHAPES:
        for i in range(3):
            draw_shape(kind, rng, size=(120, 80)).save(tmp_path / f"{kind}-{i}.png")
    files = sorted(tmp_path.glob("*.png"))
    assert main(["predict", str(out), *map(str, files), "--json", "--show-input", str(tmp_path / "seen.png")]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    right = sum(r["top"][0]["class"] == r["file"].split("/")[-1].split("-")[0] for r in results)
    assert right >= 8, results  # of 9
    assert Image.open(tmp_path / "seen.png").size == (9 * 32 * 7, 32 * 7)

    assert (
        main(["export", str(out)]) == 0
        and "largest difference from PyTorch on 60 test images" in capsys.readouterr().out
    )
    assert main(["predict", str(out), str(files[0]), "--backend", "onnxruntime", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top"][0]["class"] == results[0]["top"][0]["class"]

    assert main([*train[:-1], str(tmp_path / "again"), "--epochs", "1"]) == 0  # the cache serves a second run
    assert "read from the cache" in capsys.readouterr().out


def test_a_run_finds_its_folder_from_anywhere_and_says_when_it_is_gone(shapes, tmp_path, monkeypatch, capsys):
    (shapes / "star").mkdir()  # one image: trained on, never tested
    draw_shape("circle", np.random.default_rng(3)).save(shapes / "star" / "only.png")
    monkeypatch.chdir(shapes.parent)
    assert (
        main(
            [
                "train",
                "--dataset",
                "folder",
                "--data-dir",
                "shapes",
                "--model",
                "cnn-bn-8-24",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--no-progress",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    monkeypatch.chdir(tmp_path / "run")  # the relative --data-dir was saved absolute
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "evaluated on the folder test set" in printed and "| star     |      0 |          - |" in printed
    shapes.rename(tmp_path / "moved")
    assert main(["evaluate", str(tmp_path / "run")]) == 1
    assert (
        capsys.readouterr().err == f"cnnlab evaluate: error: {shapes}, the folder of images this run was "
        "trained on, is gone: pass --data-dir DIR\n"
    )
    assert main(["evaluate", str(tmp_path / "run"), "--data-dir", str(tmp_path / "moved")]) == 0
    renamed = shutil.copytree(tmp_path / "moved", tmp_path / "renamed")  # as many classes, of other names
    (renamed / "square").rename(renamed / "box")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--data-dir", str(renamed)]) == 1
    assert capsys.readouterr().err == (
        "cnnlab evaluate: error: dataset folder: its classes (box, circle, star, triangle) are not those the model "
        "was trained on (circle, square, star, triangle), in that order\n"
    )
    assert main(["export", str(tmp_path / "run")]) == 0
    assert "on 256 random images (the run's test images are not at hand)" in capsys.readouterr().out
