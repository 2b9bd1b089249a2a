"""The web demo: the API through FastAPI's test client, and the page in a real headless Chromium."""
import io
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.inference.serve import create_app
from conftest import ROOT, draw_digit

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def client(trained_run):
    return TestClient(create_app(trained_run))


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_health_model_and_docs(client):
    assert client.get("/health").json() == {"status": "ok"}
    about = client.get("/model").json()
    assert about["name"] == "cnn" and about["parameters"] == 8490 and about["dataset"] == "mnist-sample"
    assert about["test_accuracy"] > 90
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_page_is_self_contained(client):
    page = client.get("/").text
    assert "<canvas" in page and "Clear" in page and "/predict" in page
    assert "http://" not in page and "https://" not in page  # no CDN: works offline


def test_predict_upload(client):
    response = client.post("/predict", files={"file": ("seven.png", png(draw_digit("7")), "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"][0]["class"] == "7" and len(body["predictions"]) == 3
    assert np.array(body["input"]).shape == (28, 28)


def test_predict_pixels(client):
    from cnnlab.data.datasets import load_dataset
    data = load_dataset("mnist-sample")
    pixels = data.test_images[:20, 0].tolist()
    labels = data.test_labels[:20].tolist()
    hits = sum(client.post("/predict", json={"pixels": p}).json()["predictions"][0]["index"] == y
               for p, y in zip(pixels, labels))
    assert hits >= 17


@pytest.mark.parametrize("kwargs, status", [
    (dict(json={"pixels": [[0] * 28] * 27}), 422),
    (dict(json={"pixels": [[300] * 28] * 28}), 422),
    (dict(json={"pixels": "zeros"}), 422),
    (dict(json={"image": []}), 422),
    (dict(content=b"{not json", headers={"content-type": "application/json"}), 422),
    (dict(files={"file": ("a.png", b"not an image", "image/png")}), 415),
    (dict(files={"file": ("a.png", b"", "image/png")}), 422),
    (dict(files={"file": ("blank.png", png(draw_digit("1", ink=255)), "image/png")}), 422),
    (dict(files={"other": ("a.png", b"x", "image/png")}), 422),
    (dict(content=b"x", headers={"content-type": "text/plain"}), 415),
    (dict(files={"file": ("big.png", b"\0" * (2 * 1024 * 1024 + 1), "image/png")}), 413),
])
def test_bad_requests_get_clear_4xx(client, kwargs, status):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    assert client.get("/health").status_code == 200  # and the server carries on


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_random_uploads_never_crash_the_server(client, data):
    response = client.post("/predict", files={"file": ("f", data, "application/octet-stream")})
    assert response.status_code in (200, 415, 422)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_run):
    import uvicorn
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(trained_run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_drawing_a_one_in_a_real_browser(server):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 900, "height": 640})
        page.goto(server)
        page.wait_for_selector("text=trained on mnist-sample")
        box = page.locator("#pad").bounding_box()
        x = box["x"] + box["width"] / 2
        page.mouse.move(x, box["y"] + 40)
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(x + step * 0.6, box["y"] + 40 + step * 10)
        page.mouse.up()
        page.wait_for_function("document.getElementById('answer').dataset.top !== ''", timeout=10_000)
        assert page.locator("#prediction").inner_text() == "1"
        assert page.locator(".row").count() == 3
        page.screenshot(path=str(ARTIFACTS / "web-demo.png"))
        page.click("#clear")
        assert page.locator(".row").count() == 0
        browser.close()
    assert (ARTIFACTS / "web-demo.png").stat().st_size > 10_000
