"""Screenshots of the lab for docs/lab.md: every view on a laptop (1366x768) and a phone (390x844) viewport.

    python docs/lab_screenshots.py RUN_DIR [RUN_DIR...] [--out docs/lab]
    python docs/lab_screenshots.py IMAGE_RUN_DIR --upload IMAGE [--out docs/lab]

Serves the runs on a free local port, draws a 7 with the mouse in headless Chromium (Debian's
/usr/bin/chromium), clicks a conv1 cell, and saves one PNG a view and viewport. For a run on colour or own
images (an upload box, no canvas), uploads IMAGE instead and saves {laptop,phone}-upload.png.
"""

import argparse
import sys
from pathlib import Path

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


def shot(page, path: Path, scroll_to: str | None) -> None:
    """A screenshot of the viewport, scrolled to show `scroll_to` at the top (a phone shows one thing at a time)."""
    if scroll_to:
        page.locator(scroll_to).first.evaluate("e => window.scrollTo(0, e.getBoundingClientRect().top + scrollY - 8)")
    else:
        page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(150)
    page.screenshot(path=str(path))


def digit_views(browser, url: str, out: Path) -> None:
    for device, viewport in VIEWPORTS.items():
        page = browser.new_page(viewport=viewport, device_scale_factor=1)
        page.goto(url)
        page.wait_for_function("() => window.lab.runs.length > 0")
        draw(page)
        shot(page, out / f"{device}-draw.png", "#pad") if device == "phone" else None
        shot(page, out / f"{device}-layers.png", "#columns .run" if device == "phone" else None)
        page.locator('section.stage[data-stage="conv1"] canvas.map').nth(3).click(position={"x": 30, "y": 20})
        page.wait_for_selector("#arithmetic")
        shot(page, out / f"{device}-cell.png", "#inspector" if device == "phone" else None)
        for view in ("kernels", "explorer", "training"):
            page.click(f'.tabs button[data-view="{view}"]')
            if view == "explorer":
                page.fill("#ex-stride", "2")
                page.fill("#ex-padding", "1")
            if view == "training":
                page.wait_for_selector(".confusion", timeout=30_000)
            page.wait_for_timeout(700)
            shot(page, out / f"{device}-{view}.png", f"#view-{view}" if device == "phone" else None)
        page.close()


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", default="docs/lab")
    parser.add_argument("--upload", metavar="IMAGE", help="the image to upload, for runs that take uploads")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with serving_in_thread(args.runs) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        if args.upload:
            upload_views(browser, url, out, args.upload)
        else:
            digit_views(browser, url, out)
        browser.close()
    print(f"wrote {len(list(out.glob('*.png')))} screenshots to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
