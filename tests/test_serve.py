"""The lab's JSON API through FastAPI's test client: predictions, stages, the multiply-add, curves, shapes."""

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.data.datasets import load_dataset
from cnnlab.engine.evaluate import evaluate
from cnnlab.engine.run import open_run
from cnnlab.explain.arithmetic import shape
from cnnlab.inference.predict import UNSURE_BELOW
from cnnlab.inference.serve import create_app
from conftest import ROOT, draw_digit

STATIC = ROOT / "src" / "cnnlab" / "inference" / "static"


def lab_client(app) -> TestClient:
    """A client as the lab's page is: on 127.0.0.1, sending X-Requested-With (its uploads need it)."""
    return TestClient(app, base_url="http://127.0.0.1:8000", headers={"X-Requested-With": "cnnlab"})


@pytest.fixture(scope="module")
def client(trained_run):
    return lab_client(create_app([trained_run]))


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def upload(image, name="digit.png"):
    return {"files": {"file": (name, png(image), "image/png")}}


def test_health_model_and_offline_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    about = client.get("/model").json()
    assert about["name"] == "cnn" and about["parameters"] == 8490 and about["dataset"] == "mnist-sample"
    assert about["test_accuracy"] > 90
    docs = client.get("/docs").text
    assert "cdn" not in docs and not re.search(r"(src|href)=\"https?:", docs)  # works without the internet
    for asset in re.findall(r"(?:src|href)=\"(/docs-assets/[^\"]+)\"", docs):
        assert client.get(asset).status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}  # both request bodies documented


def test_page_and_its_modules_load_nothing_from_elsewhere(client):
    page = client.get("/").text
    assert "<canvas" in page and "Clear" in page and "/static/lab.js" in page
    for path in STATIC.iterdir():
        text = re.sub(r"<a\s[^>]*>", "", path.read_text())  # a link to the lecture is followed, not loaded
        assert not re.search(r"(src|href|import[^;]*from|fetch\()\s*=?\s*[\"']https?:", text), path.name
        assert client.get(f"/static/{path.name}").status_code == 200


def test_predict_upload_says_when_unsure(client):
    body = client.post("/predict", **upload(draw_digit("7"))).json()
    assert body["predictions"][0]["class"] == "7" and len(body["predictions"]) == 3
    assert body["unsure"] is False
    assert np.array(body["input"]).shape == (28, 28)
    flat = client.post("/predict", json={"pixels": [[40] * 28] * 28}).json()  # a grey square is no digit
    assert flat["unsure"] is (flat["predictions"][0]["probability"] < UNSURE_BELOW)


def test_predict_pixels(client):
    data = load_dataset("mnist-sample")
    pixels, labels = data.test_images[:20, 0].tolist(), data.test_labels[:20].tolist()
    hits = sum(
        client.post("/predict", json={"pixels": p}).json()["predictions"][0]["index"] == y
        for p, y in zip(pixels, labels)
    )
    assert hits >= 17


def dequantised(stage) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(stage["data"]), dtype=np.uint8).astype(np.float64)
    return (stage["lo"] + data / 255 * (stage["hi"] - stage["lo"])).reshape(stage["shape"])


def test_activations_are_the_lectures_stages_small_and_faithful(client, trained_run):
    response = client.post("/activations", **upload(draw_digit("3")))
    assert response.status_code == 200 and len(response.content) < 200_000
    body = response.json()
    stages = [(s["name"], s["shape"]) for s in body["stages"]]
    assert stages == [
        ("conv1", [10, 24, 24]),
        ("mp + ReLU", [10, 12, 12]),
        ("conv2", [20, 8, 8]),
        ("mp + ReLU", [20, 4, 4]),
        ("flatten", [320]),
        ("fc", [10]),
        ("softmax", [10]),
    ]
    model = open_run(trained_run).model
    x = (torch.tensor(body["input"], dtype=torch.float32)[None, None] / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        conv1 = model.conv1(x)[0].numpy()
        pooled = torch.relu(model.mp(model.conv1(x)))[0].numpy()
    conv1_stage, pooled_stage = body["stages"][0], body["stages"][1]
    step = lambda s: (s["hi"] - s["lo"]) / 255
    assert np.abs(dequantised(conv1_stage) - conv1).max() <= step(conv1_stage) / 2 + 1e-4
    assert np.abs(dequantised(pooled_stage) - pooled).max() <= step(pooled_stage) / 2 + 1e-4
    assert conv1_stage["field"] == {"size": [5, 5], "stride": [1, 1], "offset": [0, 0]}
    assert body["stages"][3]["field"] == {"size": [16, 16], "stride": [4, 4], "offset": [0, 0]}
    assert sum(body["stages"][-1]["values"]) == pytest.approx(1, abs=1e-5)


def test_explain_is_the_models_own_activation(client, trained_run):
    pixels = load_dataset("mnist-sample").test_images[0, 0].tolist()
    body = client.post("/explain", json={"pixels": pixels, "module": "conv2", "channel": 7, "row": 3, "col": 5}).json()
    assert np.array(body["weights"]).shape == (10, 5, 5) and np.array(body["patch"]).shape == (10, 5, 5)
    assert body["sum"] == pytest.approx(np.sum(body["products"]) + body["bias"], abs=1e-9)
    assert body["sum"] == pytest.approx(body["activation"], abs=1e-4)


@pytest.mark.parametrize(
    "cell, status",
    [
        ({"module": "mp", "channel": 0, "row": 0, "col": 0}, 422),  # not a convolution
        ({"module": "zzz", "channel": 0, "row": 0, "col": 0}, 422),  # no such module
        ({"module": "conv1", "channel": 10, "row": 0, "col": 0}, 422),  # outside the output
        ({"module": "conv1", "channel": -1, "row": 0, "col": 0}, 422),
    ],
)
def test_explain_refuses_what_it_cannot_explain(client, cell, status):
    assert client.post("/explain", json={"pixels": [[0] * 28] * 28, **cell}).status_code == status


def test_shape_is_cnnlab_shape(client):
    body = client.get("/shape", params={"size": 28, "kernel": 5, "stride": 2, "padding": 1, "pool": 2}).json()
    assert body["text"] == str(shape(28, 5, 2, 1, 1, 2)) and body["output"] == 6
    assert (body["conv"], body["pooled"]) == (13, 6)  # fields of shape()'s result, not parsed from its text
    assert client.get("/shape", params={"size": 3, "kernel": 5}).status_code == 422
    assert client.get("/shape", params={"size": 28, "kernel": 0}).status_code == 422


def test_metrics_polling_answers_304_while_unchanged(client):
    first = client.get("/runs/0/metrics")
    assert [r["epoch"] for r in first.json()["rows"]] == [1, 2, 3] and first.json()["training"] is False
    again = client.get("/runs/0/metrics", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/runs/1/metrics").status_code == 404


def test_confusion_matrix_counts_every_test_image(client, trained_run):
    body = client.get("/runs/0/confusion").json()
    matrix = np.array(body["matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 1000
    assert body["accuracy"] == pytest.approx(100 * np.trace(matrix) / 1000)
    run = open_run(trained_run)  # the engine's own count, as `cnnlab evaluate` makes it
    data = run.load_dataset()
    expected = evaluate(
        run.model, data.test_images, data.test_labels, mean=run.info.mean, std=run.info.std, num_classes=10
    )
    assert body["matrix"] == expected.confusion.tolist()


@pytest.mark.parametrize("path", ["/predict", "/activations"])
@pytest.mark.parametrize(
    "kwargs, status",
    [
        (dict(json={"pixels": [[0] * 28] * 27}), 422),
        (dict(json={"pixels": [[300] * 28] * 28}), 422),
        (dict(json={"pixels": [[12.5] * 28] * 28}), 422),
        (dict(json={"pixels": "zeros"}), 422),
        (dict(json={"image": []}), 422),
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 422),
        (dict(files={"file": ("a.png", b"not an image", "image/png")}), 415),
        (dict(files={"file": ("a.png", b"", "image/png")}), 422),
        (dict(files={"file": ("blank.png", png(draw_digit("1", ink=255)), "image/png")}), 422),
        (dict(files={"other": ("a.png", b"x", "image/png")}), 422),
        (dict(content=b"x", headers={"content-type": "text/plain"}), 415),
        (dict(files={"file": ("big.png", b"\0" * (2 * 1024 * 1024 + 1), "image/png")}), 413),
    ],
)
def test_bad_requests_get_clear_4xx(client, path, kwargs, status):
    response = client.post(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert client.get("/health").status_code == 200  # and the server carries on


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_random_uploads_never_crash_the_server(client, data):
    response = client.post("/activations", files={"file": ("f", data, "application/octet-stream")})
    assert response.status_code in (200, 415, 422)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=60,
    )
)
def test_random_json_never_crashes_the_server(client, value):
    for body in (value, {"pixels": value}):
        response = client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"})
        assert response.status_code in (200, 422)
