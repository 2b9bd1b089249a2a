"""The lab in a real headless Chromium (Debian's): draw a digit and check what every view shows against the
model itself; and that names from data and runs (HTML in class folders, batches.meta.txt, run folders) are shown
as text in every view, with no dialog and nothing refused by the content-security policy. Screenshots go to
pytest's tmp_path."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.engine.checkpoint import CONFIG, read_metrics, write_metrics
from cnnlab.engine.run import open_run
from cnnlab.inference.serve import serving_in_thread
from test_serve import png as png_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")

CNN_STAGES = [
    ("conv1", "10", "24x24"),
    ("mp + ReLU", "10", "12x12"),
    ("conv2", "20", "8x8"),
    ("mp + ReLU", "20", "4x4"),
    ("flatten", "320", None),
    ("fc", "10", None),
    ("softmax", "10", None),
]


@pytest.fixture(scope="module")
def live_run(trained_run, tmp_path_factory):
    """A copy of the trained cnn whose config plans one more epoch: the lab sees it as still training."""
    run = tmp_path_factory.mktemp("live") / "cnn"
    shutil.copytree(trained_run, run)
    config = json.loads((run / CONFIG).read_text())
    (run / CONFIG).write_text(json.dumps({**config, "epochs": len(read_metrics(run)) + 1}))
    return run


@pytest.fixture(scope="module")
def inception_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("inception") / "inception"
    assert (
        main(
            [
                "train",
                "--model",
                "inception",
                "--dataset",
                "mnist-sample",
                "--epochs",
                "1",
                "--train-subset",
                "400",
                "--seed",
                "0",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def lab_url(live_run, inception_run):
    with serving_in_thread([live_run, inception_run]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, lab_url):
    """The lab on a laptop-sized screen with a 7 drawn on it."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(lab_url)
    page.wait_for_function("() => window.lab.runs.length === 2")
    draw_a_seven(page, runs=2)
    yield page
    page.close()


def draw_a_seven(page, runs: int) -> None:
    """Draw a 7 on the pad with the mouse, and wait for every run's stages."""
    box = page.locator("#pad").bounding_box()
    at = lambda x, y: (box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.mouse.move(*at(0.22, 0.2))
    page.mouse.down()
    for (x0, y0), (x1, y1) in (((0.22, 0.2), (0.78, 0.2)), ((0.78, 0.2), (0.45, 0.85))):
        for i in range(1, 11):
            page.mouse.move(*at(x0 + (x1 - x0) * i / 10, y0 + (y1 - y0) * i / 10))
    page.mouse.up()
    page.wait_for_function(f"() => window.lab.results.length === {runs} && !window.lab.busy", timeout=30_000)


def stages_of(page, run: int):
    return page.eval_on_selector_all(
        f'#columns section.stage[data-run="{run}"]',
        "ns => ns.map(n => [n.dataset.stage, n.dataset.count, n.dataset.size || null])",
    )


def test_drawing_shows_every_cnn_stage(page, tmp_path):
    assert stages_of(page, 0) == [list(s) for s in CNN_STAGES]
    for name, count, size in CNN_STAGES:
        if size:
            selector = f'section.stage[data-run="0"][data-stage="{name}"][data-size="{size}"] canvas.map'
            sizes = page.eval_on_selector_all(selector, "maps => maps.map(m => `${m.height}x${m.width}`)")
            assert sizes == [size] * int(count)
    assert page.locator('.pred[data-run="0"] .top1').inner_text() == "7"
    page.screenshot(path=str(tmp_path / "layers.png"))


def test_two_runs_side_by_side(page):
    assert page.locator("#columns section.run").count() == 2
    assert page.locator("#predictions .pred").count() == 2
    incept = page.locator('section.stage[data-run="1"][data-stage="incept1"]')
    assert incept.get_attribute("data-count") == "88" and incept.get_attribute("data-size") == "12x12"
    branches = incept.locator(".branch h4").all_inner_texts()
    assert branches == ["branch1x1 · 16", "branch5x5 · 24", "branch3x3dbl · 24", "branch_pool · 24"]
    assert [s[0] for s in stages_of(page, 1)] == [
        "conv1",
        "mp + ReLU",
        "incept1",
        "conv2",
        "mp + ReLU",
        "incept2",
        "flatten",
        "fc",
        "softmax",
    ]


def test_clicking_a_conv1_cell_shows_the_models_own_arithmetic(page, live_run, tmp_path):
    page.locator('section.stage[data-run="0"][data-stage="conv1"] canvas.map').nth(4).click(position={"x": 22, "y": 18})
    page.wait_for_selector("#arithmetic")
    selected = page.evaluate("({channel: lab.selected.channel, cell: lab.selected.cell, input: lab.selected.input})")
    channel, (row, col) = selected["channel"], selected["cell"]
    saved = open_run(live_run)
    x = (torch.tensor(selected["input"], dtype=torch.float32)[None, None] / 255 - saved.info.mean) / saved.info.std
    with torch.no_grad():
        activation = saved.model.conv1(x)[0, channel, row, col].item()
    shown = page.locator("#arithmetic")
    total = float(page.locator("#total").inner_text())
    terms = shown.locator(".term").all_inner_texts()
    assert len(terms) == 25
    written = sum(float(w) * float(v) for w, v in (re.sub(r"[()]", "", t).replace("−", "-").split("·") for t in terms))
    assert abs(total - activation) < 1e-4
    assert abs(written + float(shown.get_attribute("data-bias")) - activation) < 1e-3  # terms as written, 4 decimals
    assert page.locator("#rf").get_attribute("data-box") == f"{row},{col},{row + 4},{col + 4}"
    assert "✓" in page.locator("#inspector").inner_text()
    page.screenshot(path=str(tmp_path / "cell.png"))


def test_explorer_output_size_is_cnnlab_shape(page, capsys):
    page.click('.tabs button[data-view="explorer"]')
    for name, value in (("size", "28"), ("kernel", "5"), ("stride", "2"), ("padding", "1")):
        page.fill(f"#ex-{name}", value)
    page.wait_for_function("() => document.getElementById('ex-command').textContent.includes('--padding 1')")
    page.wait_for_function("() => document.getElementById('ex-formula').textContent.includes('28 + 2*1')")
    assert main(["shape", "--input", "28", "--kernel", "5", "--stride", "2", "--padding", "1"]) == 0
    printed = capsys.readouterr().out.strip()
    assert page.locator("#ex-formula").inner_text().strip() == printed
    size = printed.rsplit("output: ", 1)[1].split("x")[0]
    assert page.locator("#ex-output").inner_text() == f"output: {size}×{size}"
    page.fill("#ex-kernel", "40")  # larger than the padded input: the same refusal as the CLI
    page.wait_for_function("() => document.getElementById('ex-output').textContent === 'no output'")
    page.click('.tabs button[data-view="layers"]')


def test_a_training_runs_curve_updates_live(page, live_run, tmp_path):
    page.click('.tabs button[data-view="training"]')
    card = page.locator('#training-columns section.run[data-run="0"]')
    rows = read_metrics(live_run)
    epochs = "document.querySelector('#training-columns [data-run=\"0\"] .curves').dataset.epochs"
    page.wait_for_function(f"() => {epochs} === '{len(rows)}'")
    assert "training" in card.locator(".live").inner_text()
    points = card.locator("circle.point").count()
    write_metrics(live_run, rows + [{**rows[-1], "epoch": len(rows) + 1, "test_accuracy": 97.0}])  # as the engine does
    page.wait_for_function(f"() => {epochs} === '{len(rows) + 1}'", timeout=10_000)
    assert card.locator("circle.point").count() > points
    assert "finished" in card.locator(".live").inner_text()
    page.wait_for_selector('#training-columns [data-run="0"] table.confusion', timeout=20_000)
    page.screenshot(path=str(tmp_path / "training.png"))
    page.click('.tabs button[data-view="layers"]')


# ---- issue 29: strings from data and runs are shown as text, never run as HTML ----

RUN_NAME = "<img src=x onerror=alert('run')>"  # a folder name: no "/" in it
FOLDER_CLASSES = ("<img src=x onerror=alert(1)>", '"><svg onload=alert(2)>')
CIFAR_CLASSES = ('"><script>alert(3)</script>', "<img src=x onerror=alert(4)>", "</table><b onmouseover=alert(5)>b")
DIGIT_CLASSES = tuple(f"<img src=x onerror=alert({i})>" if i % 2 else f'"><svg onload=alert({i})>' for i in range(10))
INJECTED = "document.querySelectorAll('img[src=\"x\"], svg[onload], b[onmouseover], script:not([src])').length"


@pytest.fixture(scope="module")
def hostile_image_runs(tmp_path_factory):
    """A folder run whose class folders and run folder are HTML, and a CIFAR-10 run whose batches.meta.txt is."""
    from test_cifar import cifar10_files, write_release

    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    for k, name in enumerate(FOLDER_CLASSES):
        (root / "images" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 90, (24, 24, 3))
            pixels[..., k] += 160  # red or green: learnable in an epoch
            Image.fromarray(pixels.astype(np.uint8)).save(root / "images" / name / f"{i}.png")
    files, _, _ = cifar10_files(n_train=4, n_test=10)
    files["batches.meta.txt"] = "\n".join(CIFAR_CLASSES + tuple(f"class {i}" for i in range(7))).encode()
    write_release(root / "cifar" / "cifar-10-batches-bin", files)
    train = ["train", "--model", "cnn-bn-8-24", "--epochs", "1", "--batch-size", "8", "--seed", "0", "--no-progress"]
    for dataset, data, out in (("folder", "images", RUN_NAME), ("cifar10", "cifar", "cifar-run")):
        assert main([*train, "--dataset", dataset, "--data-dir", str(root / data), "--out", str(root / out)]) == 0
    return [root / RUN_NAME, root / "cifar-run"]


@pytest.fixture(scope="module")
def hostile_digit_run(trained_run, tmp_path_factory):
    """The trained cnn, its class names replaced by HTML in its checkpoint, in a run folder named as HTML."""
    run = shutil.copytree(trained_run, tmp_path_factory.mktemp("hostile-digits") / RUN_NAME)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    payload["dataset"]["classes"] = list(DIGIT_CLASSES)
    torch.save(payload, run / "checkpoint.pt")
    return run


def watched_page(browser, url: str):
    """A new page on `url` that records every dialog (dismissed) and every content-security-policy report."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    dialogs, refused = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: refused.append(str(error)))
    page.goto(url)
    return page, dialogs, refused


def open_docs(page, url: str) -> None:
    """Swagger UI under the lab's policy: the runs' names are in its description; "Try it out" on /health."""
    page.goto(url + "docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert RUN_NAME in page.locator(".info").inner_text()
    health = page.locator(".opblock", has_text="/health")
    health.locator(".opblock-summary").click()
    health.locator("button.try-out__btn").click()
    health.locator("button.execute").click()
    status = health.locator(".live-responses-table tbody .response-col_status")
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"


def test_image_runs_show_html_names_as_text_in_every_view(browser, hostile_image_runs):
    with serving_in_thread(hostile_image_runs) as url:
        page, dialogs, refused = watched_page(browser, url)
        page.wait_for_function("() => window.lab.runs.length === 2")  # Training opens by itself for image runs
        for i, classes in enumerate((FOLDER_CLASSES, CIFAR_CLASSES)):
            table = f'#training-columns [data-run="{i}"] table.confusion'
            page.wait_for_selector(table, timeout=60_000)
            assert set(classes) <= set(page.locator(f"{table} th").all_inner_texts())
        assert RUN_NAME in page.locator("#training-columns").inner_text()
        upload = {"name": f"{RUN_NAME}.png", "mimeType": "image/png", "buffer": png_of(Image.new("RGB", (40, 30)))}
        page.set_input_files("#file", files=[upload])
        page.wait_for_function("() => window.lab.results.length === 2 && !window.lab.busy", timeout=30_000)
        assert page.locator("#upload-answer").inner_text().startswith(RUN_NAME)
        assert page.locator(".pred .top1").first.inner_text() in FOLDER_CLASSES
        for view in ("explorer", "training"):
            page.click(f'.tabs button[data-view="{view}"]')
        assert page.evaluate(INJECTED) == 0
        open_docs(page, url)
        page.close()
    assert dialogs == [] and refused == [], (dialogs, refused)


def test_a_digit_run_shows_html_names_as_text_in_every_view(browser, hostile_digit_run):
    with serving_in_thread([hostile_digit_run]) as url:
        page, dialogs, refused = watched_page(browser, url)
        page.wait_for_function("() => window.lab.runs.length === 1")
        draw_a_seven(page, runs=1)
        assert page.locator(".pred .top1").inner_text() in DIGIT_CLASSES
        softmax = page.locator('section.stage[data-stage="softmax"] .vector').inner_text()
        assert all(name in softmax for name in DIGIT_CLASSES)
        page.locator('section.stage[data-stage="conv1"] canvas.map').first.click(position={"x": 10, "y": 10})
        page.wait_for_selector("#arithmetic")
        for view in ("kernels", "explorer", "training", "layers"):
            page.click(f'.tabs button[data-view="{view}"]')
        page.click('.tabs button[data-view="training"]')
        boxes = "[...document.querySelectorAll('.confusion-box')]"
        answered = f"() => {boxes}.every(box => !/^(Waiting|Computing)/.test(box.textContent))"
        page.wait_for_function(answered, timeout=60_000)  # the matrix, or why there is none
        assert page.evaluate(INJECTED) == 0
        open_docs(page, url)
        page.close()
    assert dialogs == [] and refused == [], (dialogs, refused)
