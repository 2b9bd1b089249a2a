"""The lab's teaching endpoints through FastAPI's test client, against the library and the model itself: a
confusion cell's images, test images, attribution, training snapshots, exact stage values, branch fields."""

import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from cnnlab.data.batches import normalise, normalised_black
from cnnlab.engine.run import open_run
from cnnlab.engine.snapshots import read_snapshots
from cnnlab.explain.attribution import grad_cam, occlusion
from cnnlab.explain.mistakes import confusion_cell, probabilities_of_test_set
from cnnlab.inference.serve import create_app, serving_in_thread
from conftest import assert_one_line_error, run_cli
from test_serve import lab_client


@pytest.fixture(scope="module")
def client(trained_run):
    return lab_client(create_app([trained_run]))


@pytest.fixture(scope="module")
def saved(trained_run):
    run = open_run(trained_run)
    return run, run.load_dataset()


def test_a_confusion_cell_is_the_librarys_most_confident_first(client, saved):
    run, data = saved
    probabilities = probabilities_of_test_set(run.model, data, run.info)
    matrix = client.get("/runs/0/confusion").json()["matrix"]
    t, p = max(((t, p) for t in range(10) for p in range(10) if t != p), key=lambda cell: matrix[cell[0]][cell[1]])
    body = client.get(f"/runs/0/confusion/{t}/{p}").json()
    expected = confusion_cell(probabilities, data.test_labels, true=t, predicted=p, classes=data.classes)
    assert body["count"] == matrix[t][p] == len(expected.examples) > 0
    assert [image["index"] for image in body["images"]] == [e.index for e in expected.examples][:24]
    first = body["images"][0]
    assert first["label"] == t and first["top"][0]["index"] == p and len(first["top"]) == 3
    assert first["pixels"] == data.test_images[first["index"], 0].tolist()  # the digit itself, to open in the lab
    assert len(client.get(f"/runs/0/confusion/{t}/{t}?limit=5").json()["images"]) == 5
    empty = next((t, p) for t in range(10) for p in range(10) if matrix[t][p] == 0)
    assert client.get("/runs/0/confusion/{}/{}".format(*empty)).json() == {
        "true": empty[0],
        "predicted": empty[1],
        "count": 0,
        "images": [],
    }


@pytest.mark.parametrize(
    "path, status, detail",
    [
        ("/runs/0/confusion/10/1", 422, "true class 10 is out of range: the classes are 0 to 9"),
        ("/runs/0/confusion/1/-1", 422, "predicted class -1 is out of range"),
        ("/runs/0/confusion/1/2?limit=0", 422, None),
        ("/runs/0/confusion/a/2", 422, None),
        ("/runs/3/confusion/1/2", 404, "no run 3"),
        ("/runs/0/test?image=1000", 422, "test image 1000 is out of range: the test set has images 0 to 999"),
        ("/runs/0/test?image=-1", 422, "out of range"),
        ("/runs/0/test?image=x", 422, None),
    ],
)
def test_bad_cells_and_images_get_a_clear_4xx(client, path, status, detail):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert detail is None or detail in response.json()["detail"]


def test_a_test_image_and_a_random_one(client, saved):
    _, data = saved
    body = client.get("/runs/0/test?image=7").json()
    assert (body["index"], body["count"], body["label"]) == (7, 1000, int(data.test_labels[7]))
    assert body["pixels"] == data.test_images[7, 0].tolist() and body["class"] == data.classes[body["label"]]
    indices = {client.get("/runs/0/test").json()["index"] for _ in range(8)}
    assert len(indices) > 1 and all(0 <= i < 1000 for i in indices)


def test_attribution_is_the_librarys_for_the_model(client, saved):
    run, data = saved
    pixels = data.test_images[3, 0].tolist()
    x = normalise(data.test_images[3:4], run.info.mean, run.info.std)
    body = client.post("/attribution", json={"pixels": pixels, "method": "grad-cam", "target": 3}).json()
    expected = grad_cam(run.model, x, layer="conv2", target=3)
    assert (body["layer"], body["target"], body["class"], body["channels"]) == ("conv2", 3, "3", 20)
    np.testing.assert_allclose(body["coarse"], expected.coarse.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(body["heat"], expected.heat.numpy(), rtol=1e-5, atol=1e-7)
    body = client.post("/attribution", json={"pixels": pixels, "method": "occlusion"}).json()
    expected = occlusion(run.model, x, baseline=normalised_black(run.info.mean, run.info.std))
    assert body["target"] == expected.target and (body["patch"], body["stride"]) == (6, 2)
    np.testing.assert_allclose(body["heat"], expected.heat.numpy(), rtol=1e-5, atol=1e-7)
    assert body["probability"] == pytest.approx(expected.probability)


@pytest.mark.parametrize(
    "change, detail",
    [
        ({"target": 10}, "class 10 is out of range: this model has 10 classes, 0 to 9"),
        ({"layer": "fc"}, "fc is a Linear, not a convolution; Grad-CAM takes one of: conv1, conv2"),
        ({"layer": "nothing"}, "has no layer 'nothing'"),
        ({"target": -1}, "greater than or equal to 0"),
        ({"method": "saliency"}, "'occlusion' or 'grad-cam'"),
        ({"target": "3"}, "valid integer"),
    ],
)
def test_attribution_refuses_in_one_line(client, change, detail):
    response = client.post("/attribution", json={"pixels": [[0] * 28] * 28, "method": "grad-cam", **change})
    assert response.status_code == 422 and detail in str(response.json()["detail"]), response.text


def test_attribution_takes_json_only(client):
    response = client.post("/attribution", files={"file": ("a.png", b"x", "image/png")})
    assert response.status_code == 415


def test_snapshots_are_the_run_folders_and_poll_with_etag(client, trained_run):
    response = client.get("/runs/0/snapshots")
    body, files = response.json(), read_snapshots(trained_run)
    assert [s["step"] for s in body["snapshots"]] == [s.step for s in files] and len(files) > 3
    assert body["layer"] == "conv1" and np.array(body["probe"]).shape == (28, 28)
    last = body["snapshots"][-1]
    np.testing.assert_array_equal(last["kernels"], files[-1].kernels[:, 0])
    assert last["maps"]["shape"] == [10, 24, 24]
    assert client.get("/runs/0/snapshots", headers={"If-None-Match": response.headers["etag"]}).status_code == 304


def test_every_stage_carries_its_exact_values(client, trained_run):
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:22, 12:16] = 255
    body = client.post("/activations", json={"pixels": pixels.tolist()}).json()
    model = open_run(trained_run).model
    x = (torch.tensor(pixels, dtype=torch.float32)[None, None] / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        conv1 = model.conv1(x)[0].numpy()
    exact = np.frombuffer(base64.b64decode(body["stages"][0]["exact"]), dtype="<f4").reshape(10, 24, 24)
    np.testing.assert_allclose(exact, conv1, rtol=1e-6, atol=1e-6)  # not the 8-bit picture's values
    assert body["map_stages"] == [4, 4]


def test_an_inception_branch_knows_its_receptive_field():
    from cnnlab.explain.stages import trace
    from cnnlab.models import create_model

    torch.manual_seed(0)
    stages = trace(create_model("inception").eval(), torch.randn(1, 1, 28, 28)).stages
    incept1 = next(s for s in stages if s.name == "incept1")
    fields = {b.name: (b.receptive_field.size, b.receptive_field.offset) for b in incept1.branches}
    # conv1 (5x5) and the 2x2 pool: a 6x6 window, 2 apart; then each branch's own convolutions
    assert fields == {
        "branch1x1": ((6, 6), (0, 0)),
        "branch5x5": ((14, 14), (-4, -4)),  # 1x1, then 5x5 padded by 2
        "branch3x3dbl": ((14, 14), (-4, -4)),  # 1x1, then two 3x3 padded by 1
        "branch_pool": ((10, 10), (-2, -2)),  # a 3x3 average pool padded by 1, then 1x1
    }
    incept2 = next(s for s in stages if s.name == "incept2")
    assert all(b.receptive_field is None for b in incept2.branches)  # after incept1, conv2: several paths before


def test_favicon_is_answered(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_train_with_lab_serves_the_run_as_it_trains_and_until_ctrl_c(tmp_path):
    port, out = free_port(), tmp_path / "run"
    train = ["train", "--dataset", "mnist-sample", "--epochs", "2", "--train-subset", "512", "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *train, "--out", str(out), "--lab", "--lab-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C as from a terminal: a test run started in the background (`make test &`) ignores SIGINT, and a
        # child inherits that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "the lab stays open" in line:
                break
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # the lab answers once its process has loaded the run
            try:
                snapshots = json.load(urllib.request.urlopen(f"{url}/runs/0/snapshots", timeout=5))
                break
            except OSError:
                assert time.monotonic() < deadline, "".join(lines)
                time.sleep(0.5)
        assert [s["step"] for s in snapshots["snapshots"]] == [s.step for s in read_snapshots(out)]
        assert json.load(urllib.request.urlopen(f"{url}/runs/0/metrics", timeout=5))["training"] is False
        process.send_signal(signal.SIGINT)  # Ctrl-C: the lab closes, the command ends cleanly
        assert process.wait(timeout=60) == 0, "".join(lines)
    finally:
        process.kill()
    text = "".join(lines)
    assert f"the lab will serve {out} on http://127.0.0.1:{port}/ once its first checkpoint is written" in text
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)  # nothing left serving


def test_train_with_lab_refuses_in_one_line(tmp_path, capsys):
    assert_one_line_error(*run_cli(["train", "--lab"], capsys), "--lab serves the run folder as it trains: give it")
    assert_one_line_error(*run_cli(["train", "--lab", "--nproc", "2"], capsys), "--lab serves one process's run")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["train", "--lab", "--lab-port", port, "--out", tmp_path / "run"]
        assert_one_line_error(*run_cli(argv, capsys), f"cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "run").exists()  # refused before any training


def test_a_first_drawing_beside_an_evaluation_never_fails(trained_run):
    """torch.fx patches nn.Module.__call__ for the whole process while it traces: the lab traces every model
    when it loads it, so that a drawing's first trace never catches another thread's forward pass. (A race:
    without the early trace this failed in one run of three, with a 500 "not installed as a submodule".)"""
    with serving_in_thread([trained_run, trained_run]) as url:
        pixels = json.dumps({"pixels": [[0] * 28] * 28}).encode()

        def draw(run: int) -> int:
            request = urllib.request.Request(
                f"{url}activations?run={run}", data=pixels, headers={"Content-Type": "application/json"}
            )
            return urllib.request.urlopen(request, timeout=60).status

        def confusion(run: int) -> int:
            return urllib.request.urlopen(f"{url}runs/{run}/confusion", timeout=60).status

        def predict(run: int) -> int:
            request = urllib.request.Request(
                f"{url}predict?run={run}", data=pixels, headers={"Content-Type": "application/json"}
            )
            return urllib.request.urlopen(request, timeout=60).status

        jobs = [(draw, 1), (confusion, 0), (predict, 0), (draw, 0), (confusion, 1), (predict, 1), (predict, 0)]
        with ThreadPoolExecutor(len(jobs)) as pool:
            statuses = list(pool.map(lambda job: job[0](job[1]), jobs))
    assert statuses == [200] * len(jobs)
