"""`cnnlab serve` over a run trained on a folder of your own (colour) images: uploads classified by class name,
fitted as the training images were; what only a digit run takes answers a clear 4xx; the page's upload box."""

import base64
import io
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.inference.predict import Predictor
from cnnlab.inference.serve import create_app, serving_in_thread
from conftest import ROOT
from test_lab import CHROMIUM, CHROMIUM_ARGS
from test_own_images import SHAPES, draw_shape, write_shapes
from test_serve import lab_client, png


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """cnn-bn-8-24 trained on 300 coloured shapes at 32x32 as test_own_images trains it (96.67% test accuracy)."""
    root = tmp_path_factory.mktemp("own")
    shapes = write_shapes(root / "shapes", bad=False)
    train = ["train", "--dataset", "folder", "--data-dir", str(shapes), "--model", "cnn-bn-8-24", "--batch-size", "32"]
    assert (
        main([*train, "--epochs", "10", "--seed", "0", "--threads", "1", "--no-progress", "--out", str(root / "run")])
        == 0
    )
    return root / "run"


@pytest.fixture(scope="module")
def client(shapes_run):
    return lab_client(create_app([shapes_run]))


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"  # PIL opens it by running Ghostscript


def new_shapes():
    """Three new drawings of each shape, larger than the training images and not square."""
    rng = np.random.default_rng(7)
    return [(kind, draw_shape(kind, rng, size=(120, 80))) for kind in SHAPES for _ in range(3)]


def test_model_tells_the_page_to_offer_an_upload_box(client):
    about = client.get("/model").json()
    assert about["input"] == "upload" and about["dataset"] == "folder" and about["classes"] == list(SHAPES)
    assert about["channels"] == 3 and about["input_size"] == [32, 32]
    assert client.get("/runs").json()[0]["input"] == "upload"


def test_uploads_are_classified_by_name_as_predict_would(client, shapes_run):
    predictor = Predictor(shapes_run)
    right = 0
    for kind, image in new_shapes():
        body = client.post("/predict", files={"file": (f"{kind}.png", png(image), "image/png")}).json()
        assert {p["class"] for p in body["predictions"]} == set(SHAPES)  # names, not indices
        right += body["predictions"][0]["class"] == kind
        seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["seen"].split(",", 1)[1]))))
        assert np.array_equal(seen.transpose(2, 0, 1), predictor.prepare(image))  # fitted as in training
        assert body["predictions"] == predictor.top_k(predictor.prepare(image), 3)
    assert right >= 8  # of 9; test_own_images measured 96.67% on the held-out shapes


def test_the_confusion_matrix_is_on_the_folders_test_images(client):
    matrix = np.array(client.get("/runs/0/confusion").json()["matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 60  # 0.2 of each class held out


@pytest.mark.parametrize(
    "path, kwargs, status, says",
    [
        ("/predict", dict(files={"file": ("a.png", b"not an image", "image/png")}), 415, "not an image"),
        ("/predict", dict(files={"file": ("a.png", b"", "image/png")}), 422, "empty file"),
        ("/predict", dict(files={"file": ("a.eps", EPS, "application/postscript")}), 415, "not an image"),
        ("/predict", dict(json={"pixels": [[0] * 28] * 28}), 422, "takes 3x32x32 images of folder, not 28x28 pixels"),
        ("/activations", dict(files={"file": ("a.png", png(Image.new("RGB", (9, 9))), "image/png")}), 422, "stages"),
        ("/activations", dict(json={"pixels": [[0] * 28] * 28}), 422, "POST /predict an image file"),
        (
            "/explain",
            dict(json={"pixels": [[0] * 28] * 28, "module": "conv1", "channel": 0, "row": 0, "col": 0}),
            422,
            "",
        ),
        (
            "/explain",
            dict(files={"file": ("a.png", png(Image.new("RGB", (9, 9))), "image/png")}),
            415,
            "send application/json with",
        ),
        ("/predict", dict(files={"file": ("big.png", b"\0" * (2 * 1024 * 1024 + 1), "image/png")}), 413, "over"),
    ],
)
def test_what_an_image_run_cannot_take_gets_a_clear_4xx(client, path, kwargs, status, says):
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


def test_digit_and_image_runs_are_not_served_together(shapes_run, trained_run, capsys):
    with pytest.raises(CnnlabError, match=r"digit runs \(.*\) and image runs \(.*\) are not served together"):
        create_app([trained_run, shapes_run])
    assert main(["serve", str(shapes_run), str(trained_run)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "serve them separately" in err


def with_classes(run, classes, out):
    """A copy of `run` whose checkpoint lists `classes`, as a hand edit would leave it."""
    shutil.copytree(run, out)
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    checkpoint["dataset"]["classes"] = classes
    torch.save(checkpoint, out / "checkpoint.pt")
    return out


def test_a_checkpoint_edited_to_no_classes_is_one_line(shapes_run, tmp_path, capsys):
    edited = with_classes(shapes_run, [], tmp_path / "run")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert main(["serve", str(edited)]) == 1
    assert [str(w.message) for w in warned] == []  # PyTorch's warnings would be lines of their own
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "dataset.classes is []: expected a list of at least 2" in err


def test_a_checkpoint_edited_to_a_million_classes_is_refused_before_allocating_them(shapes_run, tmp_path):
    """A 600-input layer of a million outputs is 2.4 GB: the server process is allowed 2 GB in all."""
    edited = with_classes(shapes_run, [f"class {i}" for i in range(1_000_000)], tmp_path / "run")
    limited = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
        f"from cnnlab.cli import main; sys.exit(main(['serve', {str(edited)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", limited], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-500:]
    assert "weights do not fit" in done.stderr or "GiB" in done.stderr  # GiB: a machine with under 10 GB free


def test_the_run_that_cannot_be_served_is_named(shapes_run, tmp_path, capsys):
    edited = with_classes(shapes_run, 3, tmp_path / "run")  # a number where the list of names was
    assert main(["serve", str(shapes_run), str(edited)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{edited / 'checkpoint.pt'}: dataset.classes is 3:" in err
    assert main(["serve", str(shapes_run / "checkpoint.pt")]) == 1  # predict takes a file; serve a folder
    assert "checkpoint.pt is not a run directory" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_the_page_offers_an_upload_box_and_names_the_class(shapes_run, tmp_path):
    from playwright.sync_api import sync_playwright

    kind, image = new_shapes()[0]
    image.save(tmp_path / "mine.png")
    with serving_in_thread([shapes_run]) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(url)
        page.wait_for_function("() => window.lab.runs.length === 1")
        assert page.locator("#pad").is_hidden() and page.locator("#drop").is_visible()
        assert page.locator('.tabs button[data-view="layers"]').is_hidden()
        assert "3×32×32" in page.locator("#seen-hint").inner_text()
        page.set_input_files("#file", str(tmp_path / "mine.png"))
        page.wait_for_function("() => window.lab.results.length === 1 && !window.lab.busy", timeout=30_000)
        assert page.locator('.pred[data-run="0"] .top1').inner_text() == kind
        assert page.locator('.pred[data-run="0"] .bar').count() == 3
        page.wait_for_function("() => document.getElementById('seen-image').naturalWidth === 32")  # the model's input
        page.set_input_files("#file", {"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
        page.wait_for_function("() => document.getElementById('upload-answer').textContent.includes('not an image')")
        page.screenshot(path=str(tmp_path / "upload.png"))
        browser.close()
