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
from conftest import train_sample
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
    return train_sample(out, "--model", "inception", "--epochs", "1", "--train-subset", "400")


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
        page.click('.tabs button[data-view="where"]')  # attribution is for digit runs: said on the page
        assert "draws it for its test images" in page.locator("#where-columns").inner_text()
        page.click('.tabs button[data-view="training"]')
        page.locator('#training-columns [data-run="0"] button.count[data-true="0"][data-predicted="0"]').click()
        page.wait_for_selector('#training-columns [data-run="0"] .cell-said')
        said = page.locator('#training-columns [data-run="0"] .cell-said').inner_text()
        assert any(name in said for name in FOLDER_CLASSES)  # the class's name as text
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
        page.click('.tabs button[data-view="where"]')
        page.wait_for_selector("canvas.heat", timeout=30_000)
        assert set(page.locator("#where-columns .classes button").all_inner_texts()) == set(DIGIT_CLASSES)
        page.click('.tabs button[data-view="training"]')
        boxes = "[...document.querySelectorAll('.confusion-box')]"
        answered = f"() => {boxes}.every(box => !/^(Waiting|Computing)/.test(box.textContent))"
        page.wait_for_function(answered, timeout=60_000)  # the matrix, or why there is none
        assert page.evaluate(INJECTED) == 0
        open_docs(page, url)
        page.close()
    assert dialogs == [] and refused == [], (dialogs, refused)


# ---- issue 26: mistakes you can click, where it looks, watch it learn, Korean, exact numbers, a phone ----

LOCALE_PAGE = {"viewport": {"width": 1366, "height": 768}}
# Words that stay as they are in every language: the names of runs, models, layers and the data, and notation.
NAMES = re.compile(
    r"(cnn|inception|cnnlab|API|Grad-CAM|ReLU|English|PyTorch|Zero|To|All|mnist-sample|conv\d+|mp|fc|softmax|flatten"
    r"|incept\d+|branch\w*|[xwp])"
)
NUMBER = re.compile(r"(?<![A-Za-z_])[-−]?\d+(\.\d+)?(e[-+]?\d+)?")


def test_the_fc_bars_stand_on_a_zero_line_with_their_values_and_softmax_warns(page):
    fc = page.locator('section.stage[data-run="0"][data-stage="fc"] .bar-cell')
    logits = [float(v) for v in fc.evaluate_all("cells => cells.map(c => c.dataset.value)")]
    assert any(v < 0 for v in logits) and any(v > 0 for v in logits)
    for i, value in enumerate(logits):
        bar, zero = fc.nth(i).locator("i").bounding_box(), fc.nth(i).locator(".zero").bounding_box()
        if value < 0:
            assert bar["y"] >= zero["y"] - 1  # hangs below the line
        else:
            assert bar["y"] + bar["height"] <= zero["y"] + 1  # stands on it
        assert fc.nth(i).locator(".value").inner_text() == f"{value:.2f}"
    softmax = page.locator('section.stage[data-run="0"][data-stage="softmax"]')
    assert "confident answer can still be wrong" in softmax.inner_text()


def test_the_inspector_prints_the_models_exact_value(page):
    page.locator('section.stage[data-run="0"][data-stage="conv1"] canvas.map').nth(2).click(position={"x": 20, "y": 20})
    page.wait_for_selector("#arithmetic")
    value = float(page.locator("#cell-value").get_attribute("data-value"))
    activation = float(page.locator("#arithmetic").get_attribute("data-activation"))
    assert value == pytest.approx(activation, abs=1e-6)  # the header and the multiply-add agree
    assert f"value = {activation:.6f}" in page.locator("#cell-value").inner_text()


def test_an_inception_branch_cell_knows_where_it_looks(page):
    maps = page.locator('section.stage[data-run="1"][data-stage="incept1"] .branch').nth(1).locator("canvas.map")
    maps.nth(3).click(position={"x": 2, "y": 2})  # branch5x5's fourth map: channel 19 of the 88
    page.wait_for_selector("#arithmetic")
    assert "branch5x5 · map 3 of the branch" in page.locator("#inspector h2").inner_text()
    top, left, bottom, right = map(int, page.locator("#rf").get_attribute("data-box").split(","))
    assert (bottom - top + 1, right - left + 1) == (14, 14)  # conv1 + pool (6x6), then 1x1 and 5x5: not "unknown"


def test_where_it_looks_for_a_drawn_digit(page, live_run):
    answers = []
    page.on("response", lambda r: answers.append(r) if "/attribution" in r.url else None)
    page.click('.tabs button[data-view="where"]')
    page.wait_for_selector('#where-columns [data-run="0"] canvas.heat[data-method="occlusion"]', timeout=30_000)
    column = page.locator('#where-columns section.run[data-run="0"]')
    assert (
        "covers the image" in column.inner_text() and "misleads when the evidence is redundant" in column.inner_text()
    )
    column.locator('.toggle button[data-method="grad-cam"]').click()
    column.locator('.classes button[data-target="3"]').click()
    page.wait_for_selector('#where-columns [data-run="0"] canvas.heat[data-method="grad-cam"][data-target="3"]')
    assert column.locator(".coarse canvas").evaluate("c => [c.width, c.height]") == [8, 8]  # conv2, upsampled
    assert "8×8 grid" in column.inner_text()
    run0 = [r.json() for r in answers if "run=0" in r.url]  # run 1's answers may arrive after it
    body = next(a for a in reversed(run0) if a["method"] == "grad-cam" and a["target"] == 3)
    saved = open_run(live_run)
    x = (
        torch.tensor(page.evaluate("lab.input"), dtype=torch.float32)[None, None] / 255 - saved.info.mean
    ) / saved.info.std
    from cnnlab.explain.attribution import grad_cam

    np.testing.assert_allclose(body["heat"], grad_cam(saved.model, x, layer="conv2", target=3).heat.numpy(), atol=1e-6)
    page.click('.tabs button[data-view="layers"]')


def test_a_confusion_cell_lists_its_images_and_one_opens_in_the_inspector(page, tmp_path):
    page.click('.tabs button[data-view="training"]')
    table = '#training-columns [data-run="1"] table.confusion'
    page.wait_for_selector(table, timeout=60_000)
    counts = page.locator(f"{table} button.count").evaluate_all(
        "bs => bs.map(b => [+b.dataset.true, +b.dataset.predicted, +b.dataset.count])"
    )
    true, predicted, count = max((c for c in counts if c[0] != c[1]), key=lambda c: c[2])
    page.locator(f'{table} button.count[data-true="{true}"][data-predicted="{predicted}"]').click()
    listed = page.locator('#training-columns [data-run="1"] .cell-images')
    listed.locator(".cell-item").first.wait_for()
    assert f"{count} test image" in listed.locator(".cell-said").inner_text()
    assert listed.locator(".cell-item").count() == min(count, 24)
    confidence = [float(t.split()[1].rstrip("%")) for t in listed.locator(".top3 span:nth-child(2)").all_inner_texts()]
    assert confidence == sorted(confidence, reverse=True)  # most confident first
    page.screenshot(path=str(tmp_path / "cell-images.png"))
    first = listed.locator(".cell-item").first
    index = int(first.get_attribute("data-index"))
    first.click()
    page.wait_for_selector("#arithmetic", timeout=30_000)
    assert page.evaluate("lab.view") == "layers" and page.evaluate("lab.source.index") == index
    from cnnlab.data.datasets import load_dataset

    assert page.evaluate("lab.input") == load_dataset("mnist-sample").test_images[index, 0].tolist()
    assert f"Test digit #{index}" in page.locator("#answer").inner_text()
    empty = next(c for c in counts if c[2] == 0)
    page.click('.tabs button[data-view="training"]')
    page.locator(f'{table} button.count[data-true="{empty[0]}"][data-predicted="{empty[1]}"]').click()
    said = f"No test image of class {empty[0]} was predicted as {empty[1]}."
    page.wait_for_function(
        f"() => document.querySelector('#training-columns [data-run=\"1\"] .cell-said')?.textContent === '{said}'"
    )
    page.click('.tabs button[data-view="layers"]')


def test_a_finished_runs_snapshots_replay_with_the_slider(page):
    page.click('.tabs button[data-view="training"]')
    replay = page.locator('#training-columns [data-run="1"] .learn')
    page.wait_for_function(
        "() => +document.querySelector('#training-columns [data-run=\"1\"] .learn').dataset.snapshots > 2"
    )
    steps = int(replay.get_attribute("data-snapshots"))
    last = replay.get_attribute("data-step")
    replay.locator("input[type=range]").fill("0")
    assert replay.get_attribute("data-step") == "0" and "step 0 (epoch 1)" in replay.inner_text()
    assert replay.locator(".learn-kernels canvas").count() == 10
    replay.locator("button").click()  # play to the end
    page.wait_for_function(
        f"() => document.querySelector('#training-columns [data-run=\"1\"] .learn').dataset.step === '{last}'",
        timeout=steps * 1000 + 5000,
    )
    page.click('.tabs button[data-view="layers"]')


def test_chart_ticks_are_round_and_epochs_whole(page):
    page.click('.tabs button[data-view="training"]')
    page.wait_for_selector("#training-columns text.tick")
    text = "ts => ts.map(t => t.textContent)"
    ticks = page.locator("#training-columns text.tick").evaluate_all(text)
    epochs = page.locator("#training-columns text.tick.epoch").evaluate_all(text)
    assert epochs and all(re.fullmatch(r"\d+", e) for e in epochs)
    assert all(re.fullmatch(r"\d+(\.\d)?|\d?\.\d{1,2}|\de-?\d", t) for t in ticks), ticks
    page.click('.tabs button[data-view="layers"]')


def test_a_random_test_digit_and_the_lecture_links(page):
    page.evaluate("lab.source = null")
    page.click("#random")
    page.wait_for_function("() => window.lab.source && window.lab.source.kind === 'test' && !window.lab.busy")
    index = page.evaluate("lab.source.index")
    from cnnlab.data.datasets import load_dataset

    assert page.evaluate("lab.input") == load_dataset("mnist-sample").test_images[index, 0].tolist()
    links = page.locator("footer a").evaluate_all("as => as.map(a => a.href)")
    assert "https://www.youtube.com/playlist?list=PLlMkM4tgfjnJ3I-dbhO9JTw7gNty6o_2m" in links
    assert "https://github.com/hunkim/PyTorchZeroToAll" in links


def visible_texts(page) -> list[str]:
    """Every piece of text shown on the page's header, main views and footer (not the CLI's own formula)."""
    return page.evaluate(
        """() => {
        const texts = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
          const parent = node.parentElement, text = node.textContent.trim();
          if (!text || parent.closest("pre.formula, code, #tip, [hidden], option") || !parent.offsetParent) continue;
          texts.push(text);
        }
        return texts;
      }"""
    )


def english_left(page) -> list[str]:
    """The shown texts with a word that is neither Korean nor a name: what was left untranslated."""
    words = lambda text: re.findall(r"[A-Za-z][\w-]*", NUMBER.sub(" ", text))
    hangul = re.compile(r"[\uac00-\ud7a3]")
    return sorted(
        {t for t in visible_texts(page) if not hangul.search(t) and any(not NAMES.fullmatch(w) for w in words(t))}
    )


def test_in_korean_no_english_is_left_on_the_main_views(browser, lab_url, tmp_path):
    context = browser.new_context(locale="ko-KR", **LOCALE_PAGE)  # the browser's language: Korean
    page = context.new_page()
    page.goto(lab_url)
    page.wait_for_function("() => window.lab.runs.length === 2")
    assert page.evaluate("document.documentElement.lang") == "ko"
    draw_a_seven(page, runs=2)
    page.locator('section.stage[data-run="0"][data-stage="conv1"] canvas.map').first.click(position={"x": 10, "y": 10})
    page.wait_for_selector("#arithmetic")
    left = {"layers": english_left(page)}
    page.click('.tabs button[data-view="where"]')
    page.wait_for_selector("canvas.heat", timeout=30_000)
    left["where"] = english_left(page)
    for view in ("kernels", "explorer"):
        page.click(f'.tabs button[data-view="{view}"]')
        page.wait_for_timeout(300)
        left[view] = english_left(page)
    page.click('.tabs button[data-view="training"]')
    page.wait_for_selector('#training-columns [data-run="1"] table.confusion', timeout=60_000)
    cells = page.locator('#training-columns [data-run="1"] button.count')
    counts = cells.evaluate_all("bs => bs.map(b => +b.dataset.count)")
    cells.nth(counts.index(max(counts))).click()  # the fullest cell: a run of one epoch on 400 digits may miss some
    page.wait_for_selector('#training-columns [data-run="1"] .cell-item', timeout=60_000)
    left["training"] = english_left(page)
    assert {view: texts for view, texts in left.items() if texts} == {}
    page.screenshot(path=str(tmp_path / "korean.png"))
    page.select_option("#language", "en")  # the switch overrides the browser, and is remembered
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    assert "Confusion matrix on the test set" in page.locator("#training-columns").inner_text()
    assert len(english_left(page)) > 20  # the same check finds the English it is there to find
    page.reload()
    page.wait_for_function("() => window.lab.runs.length === 2")
    assert page.evaluate("document.documentElement.lang") == "en"
    context.close()


def test_an_unknown_language_falls_back_to_english(browser, lab_url):
    context = browser.new_context(locale="xx-YY", **LOCALE_PAGE)
    page = context.new_page()
    page.goto(lab_url)
    page.wait_for_function("() => window.lab.runs.length === 2")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.locator('.tabs button[data-view="layers"]').inner_text() == "Layers"
    context.close()


def test_the_phone_layout_with_touch(browser, lab_url, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.goto(lab_url)
    page.wait_for_function("() => window.lab.runs.length === 2")
    assert "Hover" not in page.locator("#answer").inner_text() and "finger" in page.locator("#answer").inner_text()
    tops = page.locator(".tabs button").evaluate_all("bs => bs.map(b => b.getBoundingClientRect().top)")
    assert len(set(tops)) == 1  # the tabs on one line
    page.tap("#random")
    page.wait_for_function("() => window.lab.results.length === 2 && !window.lab.busy", timeout=30_000)
    assert (
        "Tap a map cell" in page.locator("#answer").inner_text() or "Test digit" in page.locator("#answer").inner_text()
    )
    for view in ("where", "kernels", "explorer", "training", "layers"):
        page.tap(f'.tabs button[data-view="{view}"]')
        page.wait_for_timeout(400)
        top = page.locator(f"#view-{view}").evaluate("v => v.getBoundingClientRect().top")
        assert 0 <= top < 844 * 0.6, (view, top)  # the tapped tab's view is in sight
    page.locator('section.stage[data-run="0"][data-stage="conv1"] canvas.map').nth(1).tap()
    page.wait_for_selector("#arithmetic")
    sheet = page.locator("#inspector").bounding_box()
    assert sheet["y"] < 844 and sheet["y"] + sheet["height"] <= 845  # the inspector opens where it is seen
    assert page.locator("#tip").is_hidden()  # a tap leaves no hover tooltip behind
    page.screenshot(path=str(tmp_path / "phone-cell.png"))
    assert missing == []  # no 404, /favicon.ico included
    context.close()


def test_the_explorer_clears_its_animation_when_there_is_no_output(page):
    page.click('.tabs button[data-view="explorer"]')
    page.fill("#ex-kernel", "3")
    page.wait_for_function("() => document.getElementById('ex-step').textContent !== ''")
    page.fill("#ex-kernel", "40")
    page.wait_for_function("() => document.getElementById('ex-output').textContent === 'no output'")
    assert page.locator("#ex-step").inner_text() == ""
    pixels = "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every(v => v === 0)"
    assert page.locator("#ex-anim").evaluate(pixels)  # blank: the previous animation is gone
    page.fill("#ex-kernel", "3")
    page.click('.tabs button[data-view="layers"]')
