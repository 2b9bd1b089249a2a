"""Numbers in the lab (issue 25), in a real headless Chromium: a number drawn on the wide pad with the mouse, and
with a finger on a phone's touch screen; the boxes, each digit as the network received it, the number; a digit
clicked goes through the layers and opens the inspector; a photo of a number uploaded; two lines refused in one
sentence of the page's language."""

import pytest
from PIL import Image

from cnnlab.inference.serve import serving_in_thread
from test_lab import CHROMIUM, CHROMIUM_ARGS
from test_serve import png

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")

# "42" in the pad's units (x, y in [0, 1] of its width and height), as strokes: a 4 in two strokes, then a 2.
FORTY_TWO = [
    [(0.26, 0.18), (0.16, 0.6), (0.4, 0.6)],
    [(0.33, 0.3), (0.33, 0.86)],
    [(0.56, 0.3), (0.62, 0.17), (0.72, 0.16), (0.77, 0.3), (0.72, 0.48), (0.56, 0.84), (0.8, 0.84)],
]


@pytest.fixture(scope="module")
def lab_url(robust_run, trained_run):
    """The robust run reads the number (run 0); the lecture's cnn beside it shows a convolution's multiply-add
    (the robust net's stages are blocks of convolution, batch norm and pooling)."""
    with serving_in_thread([robust_run, trained_run]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# A digit's 28x28 canvas back as rows of grey levels (digitCanvas paints each pixel grey).
PIXELS = """c => { const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;
  return Array.from({ length: 28 }, (_, r) => Array.from({ length: 28 }, (_, k) => d[4 * (28 * r + k)])); }"""


def points(page, strokes):
    """The strokes in the page's pixels, from the pad's units."""
    box = page.locator("#pad").bounding_box()
    return [[(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke] for stroke in strokes]


def with_mouse(page, strokes):
    for stroke in points(page, strokes):
        page.mouse.move(*stroke[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            for i in range(1, 9):
                page.mouse.move(x0 + (x1 - x0) * i / 8, y0 + (y1 - y0) * i / 8)
        page.mouse.up()


def with_a_finger(page, strokes):
    """Touch events, as a phone's screen sends them (Chromium makes them pointer events of type touch)."""
    cdp = page.context.new_cdp_session(page)
    touch = lambda kind, x, y: cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    for stroke in points(page, strokes):
        touch("touchStart", *stroke[0])
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            for i in range(1, 9):
                touch("touchMove", x0 + (x1 - x0) * i / 8, y0 + (y1 - y0) * i / 8)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def read_after(page):
    page.wait_for_function("() => window.lab.results.length === 2 && !window.lab.busy", timeout=60_000)
    return page.locator("#number-card .number").inner_text()


def test_a_number_drawn_on_the_wide_pad_is_read_and_each_digit_opens_its_layers(browser, lab_url, tmp_path):
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(lab_url)
    page.wait_for_function("() => window.lab.runs.length === 2")
    page.click('#mode button[data-mode="number"]')
    pad = page.locator("#pad").bounding_box()
    assert pad["width"] >= 1.9 * pad["height"]  # wider than tall
    assert page.locator("#pad-title").inner_text() == "Draw a number"
    with_mouse(page, FORTY_TWO)
    assert read_after(page) == "42"
    digits = page.locator("#number-card .digit")
    assert digits.count() == 2
    sizes = digits.locator("canvas").evaluate_all("cs => cs.map(c => `${c.width}x${c.height}`)")
    assert sizes == ["28x28", "28x28"]  # each digit as the network received it
    boxes = "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
    boxes += " for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"
    assert page.locator("#pad-boxes").evaluate(boxes) > 200  # the boxes drawn over the pad
    assert page.locator('.pred[data-run="0"] .top1').inner_text() == "4"  # the first digit goes through the layers
    digits.nth(1).click()
    page.wait_for_selector("#arithmetic", timeout=60_000)  # the inspector opened, on the 2's strongest cell
    assert page.locator('.pred[data-run="0"] .top1').inner_text() == "2"
    picked = page.locator("#number-card .digit.on canvas").evaluate(PIXELS)
    assert page.evaluate("window.lab.selected.input") == picked  # the cell inspected is of the 2 as received
    value = float(page.locator("#cell-value").get_attribute("data-value"))
    assert value == pytest.approx(float(page.locator("#arithmetic").get_attribute("data-activation")), abs=1e-6)
    assert "on" in digits.nth(1).get_attribute("class")
    page.screenshot(path=str(tmp_path / "number.png"))
    assert errors == []
    page.close()


def test_a_photo_of_a_number_and_two_lines(browser, lab_url, tmp_path):
    from test_numbers import REAL_DIGITS, composed, real_drawings

    if not REAL_DIGITS.is_dir():
        pytest.skip(f"the real-digits set is not at {REAL_DIGITS}")
    number, _ = composed(real_drawings(REAL_DIGITS), "insooeric", "2026")
    number.convert("RGB").save(tmp_path / "2026.jpg", quality=90)
    lines = Image.new("RGB", (number.width, 2 * number.height), "white")
    lines.paste(number, (0, 0))
    lines.paste(number, (0, number.height))
    (tmp_path / "lines.png").write_bytes(png(lines))
    context = browser.new_context(locale="ko-KR", viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.goto(lab_url)
    page.wait_for_function("() => window.lab.runs.length === 2")
    page.click('#mode button[data-mode="number"]')
    page.set_input_files("#digit-file", str(tmp_path / "2026.jpg"))
    assert read_after(page) == "2026"
    assert page.locator("#number-card canvas.found-photo").count() == 1  # the photo, with the boxes found
    assert page.locator("#pad-upload").inner_text() == "또는 여러 자리 수 사진 올리기"
    page.set_input_files("#digit-file", str(tmp_path / "lines.png"))
    page.wait_for_function("() => document.getElementById('answer').textContent.includes('한 줄로')", timeout=30_000)
    assert page.locator("#number-card").is_hidden()  # no boxes of the reading before
    context.close()


def test_a_number_drawn_with_a_finger_on_a_phone(browser, lab_url, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(lab_url)
    page.wait_for_function("() => window.lab.runs.length === 2")
    page.tap('#mode button[data-mode="number"]')
    pad = page.locator("#pad").bounding_box()
    assert pad["x"] >= 0 and pad["x"] + pad["width"] <= 390 and pad["width"] > 300  # the screen's width
    with_a_finger(page, FORTY_TWO)
    assert read_after(page) == "42"
    digit = page.locator("#number-card .digit").nth(1)
    box = digit.bounding_box()
    assert box["x"] + box["width"] <= 390
    digit.tap()
    page.wait_for_selector("#arithmetic", timeout=30_000)
    sheet = page.locator("#inspector").bounding_box()
    assert sheet["y"] < 844 and sheet["y"] + sheet["height"] <= 845  # the inspector opens where it is seen
    page.screenshot(path=str(tmp_path / "phone-number.png"))
    context.close()
