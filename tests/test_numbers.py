"""Reading whole numbers (issue 25): numbers composed of the 20 real digits, broken and touching digits, one
digit read as today, bad inputs answered in one line, and the development benchmark end to end."""

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnlab.data.decode import ImageError, load_image
from cnnlab.inference.numbers import NotANumberError, read_number
from cnnlab.inference.predict import UNSURE_BELOW, Predictor
from cnnlab.inference.preprocess import preprocess
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from number_reading import Writer, bitmap_glyph, compose, paint, real_drawings  # noqa: E402

REAL_DIGITS = ROOT.parent / "shared" / "data" / "real-digits"
COLOURS = {"7eraflops": ((255, 255, 255), (0, 0, 0)), "insooeric": ((0, 0, 0), (255, 255, 255))}  # ink, paper


@pytest.fixture(scope="module")
def drawings():
    if not REAL_DIGITS.is_dir():
        pytest.skip(f"the real-digits set is not at {REAL_DIGITS}")
    return real_drawings(REAL_DIGITS)


@pytest.fixture(scope="module")
def predictor(robust_run):
    return Predictor(robust_run)


def composed(drawings, source: str, digits: str, gap: float = 0.3, height: int = 120, slant: float = 0.0):
    """The real drawings of `source` side by side as one image (a PNG decoded back), and each digit's box."""
    writer = Writer(height=height, slant=slant, gap=gap, touch=0.0, sizes=0.0, wander=0.0, climb=0.0)
    glyphs = [bitmap_glyph(drawings[source][d], height, slant) for d in digits]
    coverage, boxes = compose(glyphs, np.random.default_rng(0), writer, margin=30)
    buffer = io.BytesIO()
    Image.fromarray(np.round(paint(coverage, *COLOURS[source])).astype(np.uint8)).save(buffer, "PNG")
    return load_image(buffer.getvalue()), boxes


def read(image, predictor, name="image"):
    return read_number(image, classifier=predictor, unsure_below=UNSURE_BELOW, name=name)


def overlap(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])
    return width * height / (area(a) + area(b) - width * height)


@pytest.mark.parametrize("source", ["7eraflops", "insooeric"])
def test_numbers_of_real_digits_are_read_with_their_boxes(drawings, predictor, source):
    for digits in ("2026", "0234567890", "3045", "987", "42", "31415" if source == "insooeric" else "3045"):
        image, boxes = composed(drawings, source, digits)
        reading = read(image, predictor)
        assert reading.number == digits, (source, digits, reading.number)
        assert [overlap(d.box, box) > 0.8 for d, box in zip(reading.digits, boxes)] == [True] * len(digits)
        for digit in reading.digits:  # flagged exactly when the top class is under the threshold
            assert digit.unsure == (digit.top[0]["probability"] < UNSURE_BELOW)
            assert not digit.split_unsure  # digits apart leave no doubt about the split
            assert digit.input.shape == (28, 28) and len(digit.top) == 3


def test_a_doubtful_digit_is_flagged_where_it_is(drawings, predictor):
    """7eraflops' 1 has a long flag: single-digit models read it as a 7 at under 50% (docs/real-digits.md)."""
    image, _ = composed(drawings, "7eraflops", "2160")
    reading = read(image, predictor)
    assert len(reading.digits) == 4
    assert [d.unsure for d in reading.digits] == [d.top[0]["probability"] < UNSURE_BELOW for d in reading.digits]
    one = reading.digits[1]
    assert one.top[0]["class"] == "1" or one.unsure, one.top
    assert reading.number[::2] + reading.number[3] == "260"


def test_slanted_numbers_with_leading_zeros_keep_them(drawings, predictor):
    image, _ = composed(drawings, "insooeric", "0072", gap=0.15, slant=0.25)
    assert read(image, predictor).number == "0072"


def test_a_fine_pen_1_close_to_its_neighbours_is_a_digit_of_its_own(drawings, predictor):
    """insooeric's 1 is one stroke a twelfth as wide as tall, narrower than any MNIST 1 until its stroke is
    brought to MNIST's width: it was joined to the digit beside it ("10430" read as "0430")."""
    for digits in ("10430", "81633", "1218"):
        image, boxes = composed(drawings, "insooeric", digits, gap=0.1)
        reading = read(image, predictor)
        assert reading.number == digits
        assert all(overlap(d.box, box) > 0.8 for d, box in zip(reading.digits, boxes))


def test_touching_digits_are_never_one_confident_digit(drawings, predictor):
    """Two real digits pressed together (their ink boxes overlap by a tenth of their height)."""
    for pair in ("20", "46", "83", "57", "90"):
        image, _ = composed(drawings, "insooeric", pair, gap=-0.1)
        reading = read(image, predictor)
        assert len(reading.digits) == 2 or reading.unsure, (pair, reading.number)
    image, _ = composed(drawings, "insooeric", "2046", gap=-0.05)
    assert read(image, predictor).number == "2046"


def pen(draw: ImageDraw.ImageDraw, points, width=9):
    draw.line(points, fill=0, width=width, joint="curve")


def test_broken_strokes_are_merged_back(predictor):
    """A 5 whose top bar was lifted off the page, and a 4 drawn in two strokes, between two 1s."""
    image = Image.new("L", (520, 220), 255)
    draw = ImageDraw.Draw(image)
    pen(draw, [(40, 40), (40, 180)])
    pen(draw, [(130, 40), (205, 40)])  # the 5's bar, apart from its body
    pen(draw, [(120, 58), (115, 100), (160, 95), (190, 125), (180, 165), (145, 180), (115, 168)])
    pen(draw, [(290, 40), (255, 125), (335, 125)])  # the 4's first stroke ...
    pen(draw, [(318, 60), (318, 180)])  # ... and its second, apart
    pen(draw, [(440, 40), (440, 180)])
    reading = read(image, predictor)
    assert reading.number == "1541", reading.number
    assert reading.digits[1].box[1] <= 40 - 4  # the 5's box holds its bar


def test_one_digit_is_read_exactly_as_a_single_digit(drawings, predictor):
    for path in sorted(REAL_DIGITS.glob("*/[0-9].png"))[::3]:
        image = load_image(path.read_bytes())
        (digit,) = read(image, predictor).digits
        expected = preprocess(image)
        assert np.array_equal(digit.input, expected)
        assert digit.top == predictor.top_k(expected, 3)


def text_image(lines: list[str]) -> Image.Image:
    image = Image.new("L", (900, 60 + 90 * len(lines)), 255)
    ImageDraw.Draw(image).multiline_text((20, 20), "\n".join(lines), fill=0, font_size=48, spacing=40)
    return image


def specks(count: int) -> Image.Image:
    rng = np.random.default_rng(0)
    page = np.full((600, 800), 240, dtype=np.uint8)
    for y, x in zip(rng.integers(0, 597, count), rng.integers(0, 797, count)):
        page[y : y + 2, x : x + 2] = 40
    return Image.fromarray(page)


def face() -> Image.Image:
    """A smiling face drawn with a pen: its mouth and eyes inside the loop of its head."""
    image = Image.new("L", (300, 300), 255)
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 40, 260, 260), outline=0, width=8)
    draw.ellipse((100, 100, 130, 130), fill=0)
    draw.ellipse((170, 100, 200, 130), fill=0)
    draw.arc((90, 120, 210, 220), 20, 160, fill=0, width=8)
    return image


def house() -> Image.Image:
    """A house beside a tree, as a child draws them: a window in the wall."""
    image = Image.new("RGB", (500, 320), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 140, 260, 290), outline=(30, 30, 90), width=7)
    draw.line([(50, 145), (160, 50), (270, 145)], fill=(30, 30, 90), width=7)
    draw.rectangle((100, 180, 150, 230), outline=(30, 30, 90), width=5)
    draw.line([(380, 290), (380, 170)], fill=(30, 30, 90), width=9)
    draw.ellipse((320, 60, 440, 180), outline=(30, 30, 90), width=7)
    return image


BAD = {
    "an empty image": (lambda: Image.new("L", (0, 0)), ImageError, "empty image"),
    "a page with no ink": (lambda: Image.new("RGB", (1200, 900), (240, 235, 225)), ImageError, "no ink"),
    "500 specks of dust": (lambda: specks(500), NotANumberError, "not one line of digits"),
    "a 30,000 pixel strip": (lambda: Image.new("L", (30_000, 60), 255), NotANumberError, "too long and thin"),
    "lines of text": (lambda: text_image(["The quick brown fox", "jumps over 1234"]), NotANumberError, "lines"),
    "a line of text": (lambda: text_image(["Hello there, world"]), NotANumberError, "text"),
    "a face": (face, NotANumberError, "a drawing"),
    "a house and a tree": (house, NotANumberError, "a drawing"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gets_one_clear_line(predictor, case):
    make, error, message = BAD[case]
    with pytest.raises(error, match=message) as caught:
        read(make(), predictor, name="in.png")
    assert str(caught.value).startswith("in.png: ") and "\n" not in str(caught.value)


def two_lines(drawings) -> Image.Image:
    top, _ = composed(drawings, "insooeric", "123")
    bottom, _ = composed(drawings, "insooeric", "456")
    page = Image.new("RGB", (top.width, top.height + bottom.height), "white")
    page.paste(top, (0, 0))
    page.paste(bottom, (0, top.height))
    return page


def test_two_lines_of_digits_are_not_one_number(drawings, predictor):
    with pytest.raises(NotANumberError, match="2 lines"):
        read(two_lines(drawings), predictor)


def test_thirteen_digits_are_more_than_a_number_and_twelve_are_read(drawings, predictor):
    with pytest.raises(NotANumberError, match="13 marks in a row: more than 12 digits"):
        read(composed(drawings, "7eraflops", "1234567890123")[0], predictor)
    twelve = read(composed(drawings, "7eraflops", "123456789012")[0], predictor)
    assert len(twelve.digits) == 12 and twelve.number[:9] == "123456789", twelve.number


def test_the_number_benchmark_reads_every_kind(robust_run, mnist_dir, tmp_path):
    """benchmarks/number_reading.py end to end on a small draw of a few kinds."""
    out = tmp_path / "result.json"
    kinds = "lab pad, 560x280;MNIST pixels;two lines"
    command = [sys.executable, str(ROOT / "benchmarks" / "number_reading.py"), str(robust_run), "--data-dir"]
    command += [str(mnist_dir), "--per-kind", "3", "--kinds", kinds, "--json", str(out)]
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    (scores,) = json.loads(out.read_text())["results"].values()
    assert scores["lab pad, 560x280"]["images"] == 3 and scores["two lines"]["images"] == 3
    assert scores["all numbers"]["images"] == 6
    assert scores["all numbers"]["digits_right"] <= scores["all numbers"]["digits_read"]
    assert scores["two lines"]["refused"] == 3


# ---- cnnlab predict: the number, each digit's confidence, the boxes and inputs ----------------------------


def test_predict_prints_the_number_and_each_digits_confidence(drawings, robust_run, tmp_path, capsys):
    from cnnlab.cli import main

    number, boxes = composed(drawings, "insooeric", "2026")
    number.save(tmp_path / "2026.png")
    single = REAL_DIGITS / "insooeric" / "3.png"
    two_lines = Image.new("RGB", (number.width, 2 * number.height), "white")
    two_lines.paste(number, (0, 0))
    two_lines.paste(number, (0, number.height))
    two_lines.save(tmp_path / "lines.png")
    files = [str(tmp_path / "2026.png"), str(single), str(tmp_path / "lines.png")]

    assert main(["predict", str(robust_run), *files]) == 1  # the two lines are not read: a failure
    lines = capsys.readouterr().out.splitlines()
    digits = r"(\d \d+\.\d%\??)"
    assert re.fullmatch(rf"{tmp_path}/2026.png: (unsure: )?2026 \({digits}(, {digits}){{3}}\)", lines[0]), lines[0]
    top = Predictor(robust_run).top_k(preprocess(load_image(single.read_bytes())), 3)
    today = ", ".join(f"{t['class']} ({t['probability']:.1%})" for t in top)  # what predict printed before numbers
    assert lines[1] == f"{single}: {today}"
    assert lines[2] == f"{tmp_path}/lines.png: not a number: ink on 2 lines, not one line of digits"

    assert main(["predict", str(robust_run), *files, "--json"]) == 1
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert answers[0]["number"] == "2026" and "top" not in answers[0]
    for digit, box in zip(answers[0]["digits"], boxes):
        assert overlap(digit["box"], box) > 0.8 and len(digit["top"]) == 3
        assert digit["unsure"] == (digit["top"][0]["probability"] < UNSURE_BELOW or digit["split_unsure"])
    assert answers[0]["unsure"] == any(d["unsure"] for d in answers[0]["digits"])
    assert answers[1]["number"] == top[0]["class"] and answers[1]["top"] == top  # one digit: today's fields kept
    assert answers[1]["unsure"] == (top[0]["probability"] < UNSURE_BELOW) and len(answers[1]["digits"]) == 1
    assert answers[2]["not_a_number"] and "2 lines" in answers[2]["error"]


def test_show_input_draws_the_boxes_and_each_digits_input(drawings, robust_run, tmp_path, capsys):
    from cnnlab.cli import main

    number, _ = composed(drawings, "7eraflops", "305")
    number.save(tmp_path / "305.png")
    single = REAL_DIGITS / "insooeric" / "8.png"
    show = tmp_path / "seen.png"
    assert main(["predict", str(robust_run), str(tmp_path / "305.png"), str(single), "--show-input", str(show)]) == 0
    assert capsys.readouterr().err == f"wrote {show}: the digits found and the model's inputs for 2 images\n"
    sheet = np.asarray(Image.open(show).convert("RGB")).astype(int)
    assert sheet.shape[0] == 2 * 112 + 8  # a row per file, 112 px high
    green = (np.abs(sheet - [22, 163, 74]).sum(axis=2) < 30) | (np.abs(sheet - [234, 88, 12]).sum(axis=2) < 30)
    framed = green[:112].any(axis=0)  # box and frame colours along the first row
    runs = np.flatnonzero(np.diff(framed.astype(int)) == 1)
    assert len(runs) >= 2 * 3  # each of the 3 digits: its box on the image, its input's frame
    assert main(["predict", str(robust_run), str(single), "--show-input", str(show)]) == 1  # never over a file
    assert "already exists" in capsys.readouterr().err


# ---- POST /predict: the same fields for an upload of a number ----------------------------------------------


@pytest.fixture(scope="module")
def client(robust_run):
    from cnnlab.inference.serve import create_app
    from test_serve import lab_client

    return lab_client(create_app([robust_run]))


def encoded(image: Image.Image, fmt="PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_the_server_reads_an_uploaded_number(drawings, client):
    image, boxes = composed(drawings, "insooeric", "2026")
    body = client.post("/predict", files={"file": ("2026.png", encoded(image), "image/png")}).json()
    assert body["number"] == "2026" and "predictions" not in body  # never one digit's answer for a number
    assert body["unsure"] == any(d["unsure"] for d in body["digits"])
    for digit, box in zip(body["digits"], boxes):
        assert overlap(digit["box"], box) > 0.8 and len(digit["top"]) == 3
        assert np.array(digit["input"]).shape == (28, 28)
    # a photo the server decodes reduced: boxes still in the upload's pixels
    large = image.convert("RGB").resize((image.width * 5, image.height * 5), Image.Resampling.BICUBIC)
    body = client.post("/predict", files={"file": ("big.jpg", encoded(large, "JPEG", quality=92), "image/jpeg")}).json()
    assert body["number"] == "2026"
    assert [overlap(d["box"], [5 * v for v in box]) > 0.8 for d, box in zip(body["digits"], boxes)] == [True] * 4


def test_the_server_answers_one_digit_as_before_with_a_numbers_fields(client, robust_run):
    path = REAL_DIGITS / "insooeric" / "4.png"
    if not path.is_file():
        pytest.skip(f"the real-digits set is not at {REAL_DIGITS}")
    body = client.post("/predict", files={"file": ("4.png", path.read_bytes(), "image/png")}).json()
    seen = preprocess(load_image(path.read_bytes()))
    assert body["input"] == seen.tolist() and body["predictions"] == Predictor(robust_run).top_k(seen, 3)
    assert body["number"] == body["predictions"][0]["class"] and len(body["digits"]) == 1
    assert body["digits"][0]["input"] == body["input"] and body["digits"][0]["top"] == body["predictions"]
    pixels = client.post("/predict", json={"pixels": seen.tolist()}).json()
    assert pixels["number"] == pixels["predictions"][0]["class"] == body["number"]
    assert pixels["digits"] == [
        {"box": [0, 0, 28, 28], "top": pixels["predictions"], "unsure": pixels["unsure"], "split_unsure": False}
        | {"input": seen.tolist()}
    ]


# ---- bad input: one clear line from the CLI, a 422 from the server, never a traceback or a 5xx -------------

BAD_FILES = {
    "an empty file": (lambda: b"", "empty file"),
    "an image of one pixel": (lambda: encoded(Image.new("L", (1, 1), 255)), "no ink"),
    "a page with no ink": (lambda: encoded(Image.new("RGB", (1200, 900), (240, 235, 225)), "JPEG"), "no ink"),
    "500 specks of dust": (lambda: encoded(specks(500)), "not one line of digits"),
    "a 30,000 pixel strip": (lambda: encoded(Image.new("L", (30_000, 60), 255)), "too long and thin"),
    "lines of text": (lambda: encoded(text_image(["The quick brown fox", "jumps over 1234"])), "2 lines"),
    "a line of text": (lambda: encoded(text_image(["Hello there, world"])), "text"),
    "a face": (lambda: encoded(face()), "a drawing"),
    "a house and a tree": (lambda: encoded(house(), "JPEG", quality=90), "a drawing"),
}
# ... and of real digits: two lines of them, a row of 13
BAD_NUMBERS = {
    "two lines of digits": (lambda drawings: encoded(two_lines(drawings)), "ink on 2 lines, not one line of digits"),
    "13 digits": (
        lambda drawings: encoded(composed(drawings, "insooeric", "2026202620262")[0]),
        "13 marks in a row: more than 12 digits",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_get_one_line_from_predict_and_a_422_from_the_server(client, robust_run, tmp_path, capsys, case):
    make, message = BAD_FILES[case]
    refused_everywhere(make(), message, client=client, run=robust_run, tmp_path=tmp_path, capsys=capsys)


@pytest.mark.parametrize("case", BAD_NUMBERS)
def test_lines_of_real_digits_that_are_no_number_are_refused(drawings, client, robust_run, tmp_path, capsys, case):
    make, message = BAD_NUMBERS[case]
    refused_everywhere(make(drawings), message, client=client, run=robust_run, tmp_path=tmp_path, capsys=capsys)


def refused_everywhere(data: bytes, message: str, *, client, run, tmp_path, capsys) -> None:
    """`cnnlab predict` prints one line holding `message` and exits 1; POST /predict answers 422 with it."""
    from cnnlab.cli import main

    (tmp_path / "bad.png").write_bytes(data)
    assert main(["predict", str(run), str(tmp_path / "bad.png")]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and message in out and "Traceback" not in out + err, out + err
    response = client.post("/predict", files={"file": ("bad.png", data, "image/png")})
    assert response.status_code == 422 and message in response.json()["detail"], response.text
    assert "\n" not in response.json()["detail"]
