"""The lab in a real headless Chromium (Debian's): draw a digit and check what every view shows against the
model itself. Screenshots go to pytest's tmp_path."""

import json
import re
import shutil

import pytest
import torch

from cnnlab.cli import main
from cnnlab.engine.checkpoint import CONFIG, read_metrics, write_metrics
from cnnlab.engine.run import open_run
from cnnlab.inference.serve import serving_in_thread

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
    page.wait_for_function("window.lab.runs.length === 2")
    box = page.locator("#pad").bounding_box()
    at = lambda x, y: (box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.mouse.move(*at(0.22, 0.2))
    page.mouse.down()
    for (x0, y0), (x1, y1) in (((0.22, 0.2), (0.78, 0.2)), ((0.78, 0.2), (0.45, 0.85))):
        for i in range(1, 11):
            page.mouse.move(*at(x0 + (x1 - x0) * i / 10, y0 + (y1 - y0) * i / 10))
    page.mouse.up()
    page.wait_for_function("window.lab.results.length === 2 && !window.lab.busy", timeout=30_000)
    yield page
    page.close()


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
    page.wait_for_function("document.getElementById('ex-command').textContent.includes('--padding 1')")
    page.wait_for_function("document.getElementById('ex-formula').textContent.includes('28 + 2*1')")
    assert main(["shape", "--input", "28", "--kernel", "5", "--stride", "2", "--padding", "1"]) == 0
    printed = capsys.readouterr().out.strip()
    assert page.locator("#ex-formula").inner_text().strip() == printed
    size = printed.rsplit("output: ", 1)[1].split("x")[0]
    assert page.locator("#ex-output").inner_text() == f"output: {size}×{size}"
    page.fill("#ex-kernel", "40")  # larger than the padded input: the same refusal as the CLI
    page.wait_for_function("document.getElementById('ex-output').textContent === 'no output'")
    page.click('.tabs button[data-view="layers"]')


def test_a_training_runs_curve_updates_live(page, live_run, tmp_path):
    page.click('.tabs button[data-view="training"]')
    card = page.locator('#training-columns section.run[data-run="0"]')
    rows = read_metrics(live_run)
    epochs = "document.querySelector('#training-columns [data-run=\"0\"] .curves').dataset.epochs"
    page.wait_for_function(f"{epochs} === '{len(rows)}'")
    assert "training" in card.locator(".live").inner_text()
    points = card.locator("circle.point").count()
    write_metrics(live_run, rows + [{**rows[-1], "epoch": len(rows) + 1, "test_accuracy": 97.0}])  # as the engine does
    page.wait_for_function(f"{epochs} === '{len(rows) + 1}'", timeout=10_000)
    assert card.locator("circle.point").count() > points
    assert "finished" in card.locator(".live").inner_text()
    page.wait_for_selector('#training-columns [data-run="0"] table.confusion', timeout=20_000)
    page.screenshot(path=str(tmp_path / "training.png"))
    page.click('.tabs button[data-view="layers"]')
