"""Predict on real image files, and export to ONNX / TorchScript."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.folder import decode_file, fit_image
from cnnlab.inference.decode import ImageError, load_image
from cnnlab.inference.predict import Predictor
from cnnlab.inference.preprocess import preprocess
from conftest import draw_digit


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(width=50_000, height=50_000) -> bytes:
    """A valid PNG header claiming width x height pixels (the data would be 2.5 GB)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def test_preprocess_makes_an_mnist_style_digit():
    digit = preprocess(draw_digit("7", size=400, box=(10, 200, 150)))  # small and off-centre, dark on light
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # background is black
    rows, cols = np.nonzero(digit > 30)
    assert 18 <= max(np.ptp(rows), np.ptp(cols)) + 1 <= 21  # longer side scaled to 20 px
    ys, xs = np.indices(digit.shape)
    centre = ((ys * digit).sum() / digit.sum(), (xs * digit).sum() / digit.sum())
    assert abs(centre[0] - 13.5) <= 1 and abs(centre[1] - 13.5) <= 1  # centred by centre of mass


def test_polarity_position_and_size_do_not_matter():
    reference = preprocess(draw_digit("4")).astype(int)
    for variant in (
        draw_digit("4", ink=255, paper=0),  # light on dark
        draw_digit("4", size=600, box=(380, 20, 180)),  # off-centre and small
        draw_digit("4", size=1200, box=(100, 100, 1000)),  # large
        draw_digit("4", mode="RGB"),
    ):  # colour file
        assert np.abs(preprocess(variant).astype(int) - reference).mean() < 12


def test_blank_page_is_an_error():
    with pytest.raises(ImageError, match="no ink"):
        preprocess(Image.new("L", (300, 300), 255))


def test_sixteen_bit_grey_reads_as_its_eight_bit_self(tmp_path):
    """PIL clips 16-bit grey at 255 when it converts: a 16-bit scan of a digit came out white, "no ink"."""
    drawn = draw_digit("2", ink=40, paper=230)
    deep = Image.fromarray(np.asarray(drawn).astype(np.uint16) * 257)  # the same picture, full 16-bit range
    assert deep.mode == "I;16"
    eight, sixteen = load_image(png_bytes(drawn)), load_image(png_bytes(deep))
    assert sixteen.mode == "L" and np.array_equal(np.asarray(sixteen), np.asarray(eight))
    assert np.array_equal(preprocess(sixteen), preprocess(drawn))
    (tmp_path / "deep.png").write_bytes(png_bytes(deep))
    (tmp_path / "flat.png").write_bytes(png_bytes(drawn))
    assert np.array_equal(decode_file(tmp_path / "deep.png", (28, 28)), decode_file(tmp_path / "flat.png", (28, 28)))


def test_corrupt_exif_does_not_stop_an_image_being_read():
    """The orientation is read from EXIF; broken EXIF bytes leave the image as it is, as for any 8-bit PNG."""
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    drawn = draw_digit("3")
    for image in (drawn, Image.fromarray(np.asarray(drawn).astype(np.uint16) * 257)):
        png = png_bytes(image)
        broken = load_image(png[:33] + chunk(b"eXIf", b"\0" * 5) + png[33:])  # after IHDR, before the pixels
        assert np.array_equal(np.asarray(broken), np.asarray(drawn))
        assert fit_image(broken, (28, 28)).shape == (3, 28, 28)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty file"),
        (b"hello, not an image", "not an image"),
        (png_bytes(draw_digit("3"))[:200], "truncated or corrupt"),
        (bomb_png(), "decompression bomb"),
    ],
)
def test_bad_files(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data, "f")


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda n, b: png_bytes(draw_digit("5", size=40))[:n] + b, st.integers(0, 400), st.binary(max_size=20)
        ),
    )
)
def test_random_bytes_only_raise_image_errors(data):
    try:
        preprocess(load_image(data))
    except ImageError:
        pass


CONDITIONS = {
    "dark on light": {},
    "light on dark": dict(ink=255, paper=0),
    "off-centre": dict(size=500, box=(300, 40, 160)),
    "large": dict(size=1000, box=(50, 50, 900)),
    "small": dict(size=300, box=(120, 120, 60)),
    "noisy background": dict(ink=40, paper=200, noise=25.0),
}


def test_cleanly_drawn_digits_are_recognised(trained_run):
    predictor = Predictor(trained_run)
    correct = {}
    for name, options in CONDITIONS.items():
        hits = [predictor.top_k(preprocess(draw_digit(d, **options)), 1)[0]["class"] == d for d in "0123456789"]
        correct[name] = sum(hits)
    total = sum(correct.values())
    print(f"drawn digits recognised: {total}/60 {correct}")
    assert total >= 48, correct  # measured 59 of 60 with the mnist-sample model
    assert min(correct.values()) >= 7, correct


def test_predict_cli_classifies_the_good_files_and_reports_the_bad(trained_run, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    draw_digit("1").save(folder / "one.png")
    draw_digit("0", ink=255, paper=0).save(folder / "zero.jpg", quality=95)
    draw_digit("7", mode="RGB").save(folder / "seven.bmp")
    draw_digit("8").save(folder / "eight.gif")
    (folder / "empty.png").write_bytes(b"")
    (folder / "bomb.png").write_bytes(bomb_png())
    (folder / "notes.png").write_text("not an image")
    Image.new("L", (200, 200), 255).save(folder / "blank.png")
    show = tmp_path / "seen.png"
    code = main(["predict", str(trained_run), str(folder), "--json", "--top-k", "2", "--show-input", str(show)])
    assert code == 1  # some files failed
    results = {
        json.loads(line)["file"].split("/")[-1]: json.loads(line) for line in capsys.readouterr().out.splitlines()
    }
    assert len(results) == 8
    for name, label in (("one.png", "1"), ("zero.jpg", "0"), ("seven.bmp", "7"), ("eight.gif", "8")):
        assert results[name]["top"][0]["class"] == label and len(results[name]["top"]) == 2
    for name in ("empty.png", "bomb.png", "notes.png", "blank.png"):
        assert "error" in results[name]
    assert Image.open(show).size == (28 * 8 * 4, 28 * 8)
    assert main(["predict", str(trained_run), str(folder / "one.png")]) == 0
    assert capsys.readouterr().out.startswith(f"{folder / 'one.png'}: 1 (")


def test_show_input_tiles_the_inputs_in_rows_and_draws_at_most_256(trained_run, tmp_path, capsys):
    """300 inputs side by side made a picture 67,200 pixels wide (2,000 made 448,000); they are tiled 16 a row,
    the first 256 drawn, and the count said on stderr (stdout holds the results)."""
    digit = tmp_path / "digits"
    digit.mkdir()
    draw_digit("4", size=40).save(digit / "000.png")
    for i in range(1, 300):
        (digit / f"{i:03}.png").write_bytes((digit / "000.png").read_bytes())
    show = tmp_path / "sheet.png"
    assert main(["predict", str(trained_run), str(digit), "--json", "--show-input", str(show)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 300
    assert captured.err == f"wrote {show}: the model's inputs for 256 images, the first 256 of the 300 classified\n"
    assert Image.open(show).size == (16 * 28 * 8, 16 * 28 * 8)
    twenty = [str(p) for p in sorted(digit.iterdir())[:20]]
    assert main(["predict", str(trained_run), *twenty, "--show-input", str(tmp_path / "20.png")]) == 0
    assert Image.open(tmp_path / "20.png").size == (16 * 28 * 8, 2 * 28 * 8)  # two rows, the second part-filled


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch(trained_run, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    assert main(["export", str(trained_run), "--format", fmt, "--out", str(out)]) == 0
    from cnnlab.data.batches import normalise
    from cnnlab.data.datasets import load_dataset
    from cnnlab.engine.run import open_run

    run = open_run(trained_run)
    x = normalise(load_dataset("mnist-sample").test_images[:256], run.info.mean, run.info.std)
    expected = run.model(x).detach()
    if fmt == "onnx":
        import onnx
        import onnxruntime

        onnx.checker.check_model(onnx.load(str(out)))
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        for batch in (x, x[:1], x[:37]):  # dynamic batch dimension
            actual = torch.from_numpy(session.run(None, {"input": batch.numpy()})[0])
            assert (actual - expected[: len(batch)]).abs().max() < 1e-4
    else:
        assert (torch.jit.load(str(out))(x) - expected).abs().max() < 1e-4


def test_predict_with_onnxruntime(trained_run, tmp_path, capsys):
    draw_digit("7").save(tmp_path / "seven.png")
    assert (
        main(["predict", str(trained_run), str(tmp_path / "seven.png"), "--backend", "onnxruntime"]) == 1
    )  # not exported yet
    assert "cnnlab export" in capsys.readouterr().err
    assert main(["export", str(trained_run)]) == 0
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(tmp_path / "seven.png"), "--backend", "onnxruntime", "--json"]) == 0
    onnx_top = json.loads(capsys.readouterr().out)["top"]
    assert main(["predict", str(trained_run), str(tmp_path / "seven.png"), "--json"]) == 0
    torch_top = json.loads(capsys.readouterr().out)["top"]
    assert [t["class"] for t in onnx_top] == [t["class"] for t in torch_top]
    assert abs(onnx_top[0]["probability"] - torch_top[0]["probability"]) < 1e-4
