"""Screenshots of the lab for docs/lab.md: every view on a laptop (1366x768) and a phone (390x844, touch), in
English and in Korean.

    python docs/lab_screenshots.py RUN_DIR [RUN_DIR...] [--out docs/lab]
    python docs/lab_screenshots.py IMAGE_RUN_DIR --upload IMAGE [--out docs/lab]
    python docs/lab_screenshots.py RUN_DIR [RUN_DIR...] --number [--out docs/lab]

Serves the runs on a free local port, draws a 7 in headless Chromium (Debian's /usr/bin/chromium; the Korean
pictures need a Korean font, Debian's fonts-nanum), and takes each view as a learner arrives at it: a click (a
tap on the phone) on its tab, a map cell, a class, a confusion cell, and the screen as it then is, never
scrolled by the script. Files: {laptop,phone}-VIEW.png, and -ko.png for Korean (the browser's language). For a
run on colour or own images (an upload box, no canvas), uploads IMAGE instead and saves {laptop,phone}-upload.png.
With --number, writes "42" on the wide pad instead and opens its 2: {laptop,phone}-number{,-digit}.png.
"""

import argparse
import io
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from cnnlab.inference.serve import serving_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_lab import CHROMIUM_ARGS  # noqa: E402  (the browser tests' flags: one list for both)

VIEWPORTS = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
SEVEN = [(0.22, 0.2), (0.78, 0.2), (0.45, 0.85)]  # the strokes of a 7, as fractions of the pad


def draw(page, strokes=SEVEN, steps=12):
    box = page.locator("#pad").bounding_box()
    at = lambda p: (box["x"] + p[0] * box["width"], box["y"] + p[1] * box["height"])
    page.mouse.move(*at(strokes[0]))
    page.mouse.down()
    for a, b in zip(strokes, strokes[1:]):
        for i in range(1, steps + 1):
            page.mouse.move(*at((a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps)))
    page.mouse.up()
    shown = "() => window.lab.results.length === window.lab.runs.length && !window.lab.busy"
    page.wait_for_function(shown, timeout=30_000)


def shot(page, path: Path, scroll_to: str | None = None) -> None:
    """A screenshot of the viewport as it is (`scroll_to`: only for the upload box, which opens at the top)."""
    if scroll_to:
        page.locator(scroll_to).first.evaluate("e => window.scrollTo(0, e.getBoundingClientRect().top + scrollY - 8)")
    page.wait_for_timeout(400)
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    picture.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)  # a palette: a third the bytes


def touch(page, selector: str, device: str, **click) -> None:
    """What a learner does: a click on a laptop, a tap on a phone."""
    if device == "phone":
        page.locator(selector).first.tap(**click)
    else:
        page.locator(selector).first.click(**click)


def tab(page, view: str, device: str) -> None:
    touch(page, f'.tabs button[data-view="{view}"]', device)
    page.wait_for_timeout(300)


def digit_views(browser, url: str, out: Path) -> None:
    for device, viewport in VIEWPORTS.items():
        for language, suffix in (("en-GB", ""), ("ko-KR", "-ko")):
            context = browser.new_context(
                viewport=viewport, device_scale_factor=1, locale=language, has_touch=device == "phone"
            )
            page = context.new_page()
            page.goto(url)
            page.wait_for_function("() => window.lab.runs.length > 0")
            name = lambda view, device=device, suffix=suffix: out / f"{device}-{view}{suffix}.png"
            draw(page)
            if device == "phone":
                shot(page, name("draw"))
            views(page, device, name)
            context.close()


def views(page, device: str, name) -> None:
    """Every view, reached by its tab and the clicks a learner makes there."""
    tab(page, "layers", device)
    shot(page, name("layers"))
    touch(page, 'section.stage[data-stage="conv1"] canvas.map:nth-child(4)', device, position={"x": 20, "y": 14})
    page.wait_for_selector("#arithmetic")
    shot(page, name("cell"))
    tab(page, "where", device)
    page.wait_for_selector("canvas.heat", timeout=30_000)
    shot(page, name("where"))
    touch(page, '.toggle button[data-method="grad-cam"]', device)
    page.wait_for_selector('canvas.heat[data-method="grad-cam"]', timeout=30_000)
    shot(page, name("gradcam"))
    for view in ("kernels", "explorer"):
        tab(page, view, device)
        if view == "explorer":
            page.fill("#ex-stride", "2")
            page.fill("#ex-padding", "1")
        shot(page, name(view))
    tab(page, "training", device)
    page.wait_for_selector(".confusion", timeout=60_000)
    page.wait_for_selector('.learn:not([data-snapshots="0"])')
    shot(page, name("training"))
    counts = page.locator('[data-run="0"] button.count').evaluate_all("bs => bs.map(b => +b.dataset.count)")
    cells = page.locator('[data-run="0"] button.count').evaluate_all(
        "bs => bs.map(b => b.dataset.true !== b.dataset.predicted)"
    )
    worst = max((i for i, off in enumerate(cells) if off), key=lambda i: counts[i])
    touch(page, f'[data-run="0"] button.count >> nth={worst}', device)
    page.wait_for_selector('[data-run="0"] .cell-item')
    shot(page, name("mistakes"))
    touch(page, '[data-run="0"] .cell-item', device)
    page.wait_for_selector("#arithmetic", timeout=30_000)
    shot(page, name("mistake-opened"))


def upload_views(browser, url: str, out: Path, image: str) -> None:
    """The upload box of an image run with `image` classified, beside its curves and confusion matrix."""
    for device, viewport in VIEWPORTS.items():
        page = browser.new_page(viewport=viewport, device_scale_factor=1)
        page.goto(url)
        page.wait_for_function("() => window.lab.runs.length > 0")
        page.set_input_files("#file", image)
        page.wait_for_function("() => window.lab.results.length === window.lab.runs.length && !window.lab.busy")
        page.wait_for_selector(".confusion", timeout=30_000)
        page.wait_for_timeout(700)
        shot(page, out / f"{device}-upload.png", None)
        page.close()


def number_views(browser, url: str, out: Path) -> None:
    """A number: "42" written on the wide pad (the mouse on a laptop, a finger on a phone), then its 2 opened:
    {laptop,phone}-number.png and -number-digit.png."""
    from test_lab_numbers import FORTY_TWO, with_a_finger, with_mouse

    for device, viewport in VIEWPORTS.items():
        context = browser.new_context(viewport=viewport, device_scale_factor=1, has_touch=device == "phone")
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => window.lab.runs.length > 0")
        touch(page, '#mode button[data-mode="number"]', device)
        (with_a_finger if device == "phone" else with_mouse)(page, FORTY_TWO)
        shown = "() => window.lab.results.length === window.lab.runs.length && !window.lab.busy"
        page.wait_for_function(shown, timeout=60_000)
        shot(page, out / f"{device}-number.png")
        touch(page, "#number-card .digit >> nth=1", device)
        page.wait_for_selector("#arithmetic", timeout=60_000)
        shot(page, out / f"{device}-number-digit.png")
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", default="docs/lab")
    parser.add_argument("--upload", metavar="IMAGE", help="the image to upload, for runs that take uploads")
    parser.add_argument("--number", action="store_true", help='only the number views: "42" on the wide pad')
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with serving_in_thread(args.runs) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        if args.upload:
            upload_views(browser, url, out, args.upload)
        elif args.number:
            number_views(browser, url, out)
        else:
            digit_views(browser, url, out)
        browser.close()
    print(f"wrote {len(list(out.glob('*.png')))} screenshots to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
