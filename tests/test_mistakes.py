"""The images of a confusion cell (explain/mistakes.py) on real runs: the digits of mnist-sample and a folder of
coloured shapes with class names; the sheet `cnnlab evaluate --errors` writes; and attribution on both runs."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.run import open_run
from cnnlab.explain.attribution import GRAD_CAM, OCCLUSION, attribution_picture, explain_input
from cnnlab.explain.mistakes import cell_sheet, confusion_cell, parse_cell, probabilities_of_test_set, run_cell
from conftest import assert_one_line_error, run_cli
from test_own_images import write_shapes


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """cnn-bn-8-24 trained one epoch on 3 classes of coloured shapes, 20 a class, fitted to 16x16 RGB."""
    root = tmp_path_factory.mktemp("shapes")
    data = write_shapes(root / "shapes", per_class=20, bad=False)
    out = root / "run"
    train = ["train", "--dataset", "folder", "--data-dir", data, "--image-size", "16x16", "--model", "cnn-bn-8-24"]
    assert main([*map(str, train), "--epochs", "1", "--seed", "0", "--no-progress", "--out", str(out)]) == 0
    return out


def test_every_cell_holds_exactly_its_images_most_confident_first(trained_run):
    saved = open_run(trained_run)
    dataset = saved.load_dataset()
    probabilities = probabilities_of_test_set(saved.model, dataset, saved.info)
    labels = dataset.test_labels
    matrix = evaluate(
        saved.model, dataset.test_images, labels, mean=saved.info.mean, std=saved.info.std, num_classes=10
    ).confusion
    assert probabilities.shape == (len(labels), 10)
    for true in range(10):
        for predicted in range(10):
            cell = confusion_cell(probabilities, labels, true=true, predicted=predicted, classes=dataset.classes)
            assert len(cell.examples) == matrix[true, predicted]
            confidence = [e.top[0][1] for e in cell.examples]
            assert confidence == sorted(confidence, reverse=True)
            for example in cell.examples:
                assert labels[example.index] == true and example.top[0][0] == predicted and len(example.top) == 3
                assert [p for _, p in example.top] == sorted((p for _, p in example.top), reverse=True)
    empty = next((t, p) for t in range(10) for p in range(10) if matrix[t, p] == 0)
    cell = confusion_cell(probabilities, labels, true=empty[0], predicted=empty[1], classes=dataset.classes)
    assert cell.examples == [] and cell.describe() == f"no test image of class {empty[0]} was predicted as {empty[1]}"


def test_sheet_of_a_digit_cell(trained_run, tmp_path):
    cell, dataset = run_cell(trained_run, "7:7")
    path = cell_sheet(cell, dataset, tmp_path / "sheet.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 600
    saved = open_run(trained_run)
    probabilities = probabilities_of_test_set(saved.model, dataset, saved.info)
    cells = (
        confusion_cell(probabilities, dataset.test_labels, true=t, predicted=p, classes=dataset.classes)
        for t in range(10)
        for p in range(10)
    )
    empty = next(c for c in cells if not c.examples)
    with pytest.raises(CnnlabError, match="was predicted as .*: there is nothing to draw"):
        cell_sheet(empty, dataset, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_a_folder_run_by_class_name_in_colour(shapes_run, tmp_path):
    names = ["circle", "square", "triangle"]
    saved = open_run(shapes_run)
    dataset = saved.load_dataset()
    probabilities = probabilities_of_test_set(saved.model, dataset, saved.info)
    counts = {
        (t, p): len(confusion_cell(probabilities, dataset.test_labels, true=t, predicted=p, classes=names).examples)
        for t in range(3)
        for p in range(3)
    }
    true, predicted = max(counts, key=counts.get)
    cell, dataset = run_cell(shapes_run, f"{names[true]}:{names[predicted]}")
    assert cell.classes == names and len(cell.examples) == counts[true, predicted] > 0
    assert f"of class {names[true]} " in cell.describe()
    assert run_cell(shapes_run, f"{true}:{predicted}")[0].examples == cell.examples  # an index names the same class
    with Image.open(cell_sheet(cell, dataset, tmp_path / "shapes.png")) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    assert (np.abs(pixels[..., 0] - pixels[..., 1]) > 40).mean() > 0.01  # the shapes keep their colours


@pytest.mark.parametrize(
    "text, message",
    [
        ("4", "--errors takes TRUE:PREDICTED, two classes such as 4:9, got '4'"),
        ("4:9:1", "--errors takes TRUE:PREDICTED"),
        ("4:", "--errors takes TRUE:PREDICTED"),
        ("4:10", "--errors: no class '10'; the classes are 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 (or their indices 0 to 9)"),
        ("cat:9", "--errors: no class 'cat'"),
    ],
)
def test_bad_cells_are_one_line(text, message):
    with pytest.raises(CnnlabError) as error:
        parse_cell(text, [str(d) for d in range(10)])
    assert str(error.value) == message or str(error.value).startswith(message)


def test_attribution_on_a_digit_run_and_a_colour_run(trained_run, shapes_run, tmp_path):
    saved = open_run(trained_run)
    digit = saved.load_dataset().test_images[0]
    grad_cam = explain_input(saved, digit, GRAD_CAM, target=3)
    assert grad_cam.layer == "conv2" and grad_cam.coarse.shape == (8, 8) and grad_cam.target == 3
    assert explain_input(saved, digit, OCCLUSION).heat.shape == (28, 28)
    with pytest.raises(CnnlabError, match="the model takes 1x28x28 images of mnist-sample, not 3x16x16"):
        explain_input(saved, torch.zeros(3, 16, 16, dtype=torch.uint8), OCCLUSION)
    with pytest.raises(CnnlabError, match=r"class 10 is out of range: this model has 10 classes, 0 to 9 \(0, 1,"):
        explain_input(saved, digit, GRAD_CAM, target=10)
    shapes = open_run(shapes_run)
    image = shapes.load_dataset().test_images[0]
    assert explain_input(shapes, image, OCCLUSION).heat.shape == (16, 16)
    with pytest.raises(CnnlabError, match=r"class 3 is out of range: this model has 3 classes, 0 to 2 \(circle, "):
        explain_input(shapes, image, OCCLUSION, target=3)
    with Image.open(attribution_picture(shapes_run, tmp_path / "shapes.png")) as picture:
        assert picture.width > 400 and picture.height > 300


def test_viz_attribution_from_the_cli(trained_run, tmp_path, capsys):
    out = tmp_path / "attribution.png"
    assert main(["viz", str(trained_run), "--what", "attribution", "--image", "5", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    with Image.open(out) as picture:  # ten columns (one a class), three rows: the image, occlusion, Grad-CAM
        assert picture.width > 3 * picture.height / 2 and picture.height > 300
    assert_one_line_error(
        *run_cli(["viz", trained_run, "--what", "attribution", "--image", "1000"], capsys),
        "--image must be between 0 and 999, got 1000",
    )


def test_evaluate_errors_from_the_cli(trained_run, tmp_path, capsys):
    saved = open_run(trained_run)
    dataset = saved.load_dataset()
    probabilities = probabilities_of_test_set(saved.model, dataset, saved.info)
    counts = {
        (t, p): len(
            confusion_cell(probabilities, dataset.test_labels, true=t, predicted=p, classes=dataset.classes).examples
        )
        for t in range(10)
        for p in range(10)
        if t != p
    }
    (t, p), n = max(counts.items(), key=lambda item: item[1])
    out = tmp_path / "sheet.png"
    assert main(["evaluate", str(trained_run), "--errors", f"{t}:{p}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Confusion matrix" in printed and f"of class {t} were predicted as {p}: wrote {out}" in printed
    assert out.is_file()
    assert main(["evaluate", str(trained_run), "--errors", f"{t}:{p}", "--out", str(out), "--overwrite"]) == 0
    t, p = next(cell for cell, count in counts.items() if count == 0)
    assert main(["evaluate", str(trained_run), "--errors", f"{t}:{p}"]) == 0
    assert f"no test image of class {t} was predicted as {p}: no sheet to draw" in capsys.readouterr().out
    assert not (trained_run / f"errors-{t}-{p}.png").exists()
    for argv, message in (
        (["--errors", "4:x"], "--errors: no class 'x'"),
        (["--out", str(out)], "--out names the --errors sheet: give --errors T:P too"),
        (["--errors", f"{t}:{p}", "--out", str(out)], f"{out} already exists; pass --overwrite to replace it"),
        (["--errors", f"{t}:{p}", "--out", str(trained_run / "config.json")], "refusing to write"),
    ):
        assert_one_line_error(*run_cli(["evaluate", trained_run, *argv], capsys), message)
