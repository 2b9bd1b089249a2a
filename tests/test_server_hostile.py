"""The server against careless and hostile clients (issues 13 and 29): each probe gets a clear 4xx, a 503 under
deliberate overload, or a closed connection, never a 5xx, a traceback, unbounded memory or a hang; and other
web pages can neither read the lab (Host check) nor post to it (403), nor run script in it (CSP, test_lab.py)."""

import io
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.inference.decode import load_image
from cnnlab.inference.serve import MAX_BODY, SERVED_PIXELS, LabServer, create_app, server_config
from cnnlab.inference.serve.security import allowed_hosts
from conftest import ROOT, draw_digit
from test_serve import lab_client


@pytest.fixture(scope="module")
def client(trained_run):
    return lab_client(create_app([trained_run]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app under uvicorn with the lab's settings and event loop, on a free port, in a thread."""

    def __init__(self, app, **options):
        self.port = free_port()
        self.server = LabServer(server_config(app, host="127.0.0.1", port=self.port), **options)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def multipart(parts) -> tuple[bytes, str]:
    boundary = "hostile-boundary"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in parts
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


SEVEN = png(draw_digit("7"))
JSON = {"content-type": "application/json"}
TWO_FILES = multipart([("file", SEVEN), ("file", SEVEN)])


def head(method: str, kind: str, length: int, close: bool = False) -> bytes:
    """The start of a raw HTTP/1.1 request to /predict."""
    return (
        f"{method} /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Requested-With: cnnlab\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {length}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    ).encode()


@pytest.mark.parametrize(
    "name, kwargs, status",
    [
        ("pixels as strings", dict(json={"pixels": [["255"] * 28] * 28}), 422),
        ("pixels as booleans", dict(json={"pixels": [[True] * 28] * 28}), 422),
        ("a 400-digit pixel", dict(json={"pixels": [[10**400] * 28] * 28}), 422),
        ("JSON nested 1,000 deep", dict(content=b"[" * 1000 + b"]" * 1000, headers=JSON), 422),
        ("JSON nested 100,000 deep", dict(content=b"[" * 100_000, headers=JSON), 422),
        ("Infinity as the body", dict(content=b"Infinity", headers=JSON), 422),
        ("NaN pixels", dict(content=json.dumps({"pixels": [[float("nan")] * 28] * 28}).encode(), headers=JSON), 422),
        ("application/jsonp is not JSON", dict(content=b"{}", headers={"content-type": "application/jsonp"}), 415),
        ("two file parts", dict(content=TWO_FILES[0], headers={"content-type": TWO_FILES[1]}), 422),
        (
            "junk multipart",
            dict(content=b"--x\r\njunk", headers={"content-type": "multipart/form-data; boundary=x"}),
            422,
        ),
        ("multipart without a boundary", dict(content=b"junk", headers={"content-type": "multipart/form-data"}), 422),
        (
            "a Content-Length that is not a number",
            dict(content=b"{}", headers={"content-type": "application/json", "content-length": "lots"}),
            422,
        ),
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/activations"])
def test_hostile_bodies_get_a_clear_4xx(client, path, name, kwargs, status):
    response = client.post(path, **kwargs)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:200]}"
    assert response.json()["detail"]


@pytest.mark.parametrize("path", ["/runs/-1/metrics", "/runs/-1/confusion", "/runs/1/metrics"])
def test_a_run_index_out_of_range_is_404(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "no run" in response.json()["detail"], response.text[:200]


def test_a_bomb_within_the_body_limit_is_refused_by_the_server_but_not_by_the_cli(client):
    """A 3000x3000 PNG is 30 kB: under the 2 MB body cap, over the server's pixel cap (the CLI's is higher)."""
    side = int(SERVED_PIXELS**0.5) + 100
    data = png(Image.new("L", (side, side), 255))
    assert len(data) < MAX_BODY
    response = client.post("/predict", files={"file": ("bomb.png", data, "image/png")})
    assert response.status_code == 422 and "pixels" in response.json()["detail"]
    assert load_image(data, "bomb.png").size == (side, side)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale():
    image = Image.new("RGB", (4000, 3000), "white")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    decoded = load_image(buffer.getvalue(), "photo.jpg", max_pixels=SERVED_PIXELS, max_side=1024)
    assert 1024 <= max(decoded.size) <= 2000  # libjpeg's 1/2 or 1/4 scale: 12 MP never held in memory


def test_overload_gets_503_with_retry_after_and_nothing_else_fails(trained_run):
    side = int(SERVED_PIXELS**0.5) - 10  # the largest upload the server decodes
    big = Image.new("L", (side, side), 255)
    big.paste(draw_digit("7", size=side // 2), (side // 4, side // 4))
    body, kind = multipart([("file", png(big))])
    with LiveServer(create_app([trained_run], workers=1, queue=1)) as live:
        start = threading.Barrier(8)

        def post(_):
            start.wait()
            with live.connect() as s:
                s.sendall(head("POST", kind, len(body), close=True) + body)
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
            return reply

        replies = list(ThreadPoolExecutor(8).map(post, range(8)))
    statuses = [int(r.split(b" ", 2)[1]) for r in replies]
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
    assert all(b"retry-after: 1" in r.lower() for r in replies if b" 503 " in r[:20])


def test_slow_headers_are_cut_off(trained_run):
    with LiveServer(create_app([trained_run]), header_seconds=0.5) as live, live.connect() as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line that ends the headers
        started = time.monotonic()
        assert s.recv(1024) == b""  # closed by the server (a socket timeout here would mean held open)
        assert time.monotonic() - started < 4


def test_headers_growing_past_16_kib_get_400_and_a_closed_connection(trained_run):
    with LiveServer(create_app([trained_run])) as live, live.connect() as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 20_000)  # and more to come
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_a_body_shorter_than_its_content_length_gets_408(trained_run):
    with LiveServer(create_app([trained_run], body_seconds=0.5)) as live, live.connect() as s:
        s.sendall(head("POST", "application/json", 5000) + b'{"pix')
        reply = b""
        while chunk := s.recv(4096):  # to the end: the server closes the connection (a timeout would raise)
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and b"not complete within 0.5 s" in reply, reply[:200]


def test_a_client_that_disconnects_mid_body_leaves_no_traceback(trained_run, caplog):
    body, kind = multipart([("file", SEVEN)])
    with caplog.at_level(logging.WARNING), LiveServer(create_app([trained_run])) as live:
        with live.connect() as s:
            s.sendall(head("POST", kind, len(body)) + body[: len(body) // 2])
            time.sleep(0.2)
        time.sleep(0.5)
        with live.connect() as s:  # and the server still answers
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
    assert not [r for r in caplog.records if r.exc_info or "Exception" in r.getMessage()]


@pytest.mark.parametrize("port", ["-1", "0", "70000"])
def test_serve_port_out_of_range_is_one_line(trained_run, capsys, port):
    with pytest.raises(SystemExit) as exited:  # argparse refuses it, with the parser's one line
        main(["serve", str(trained_run), "--port", port])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "between 1 and 65,535" in err and "Traceback" not in err


def test_serve_on_a_taken_port_is_one_line(trained_run, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", str(trained_run), "--port", str(taken.getsockname()[1])]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "cannot listen" in captured.err and "serving" not in captured.out


def test_serve_says_serving_only_once_it_answers(trained_run):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", str(trained_run), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = server.stdout.readline()
        assert f"serving {trained_run} on http://127.0.0.1:{port}/" in line
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:  # no waiting, no retry
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
    finally:
        server.terminate()
        assert server.wait(10) is not None
    assert "Traceback" not in server.stderr.read()


def test_a_hand_edited_run_folder_still_gives_curves(trained_run, tmp_path):
    run = tmp_path / "cnn"
    shutil.copytree(trained_run, run)
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + '{"epoch": 4, "train_lo\n\xff\n')
    (run / "config.json").write_text("not json")
    response = lab_client(create_app([run])).get("/runs/0/metrics")
    assert response.status_code == 200
    assert [r["epoch"] for r in response.json()["rows"]] == [1, 2, 3] and response.json()["training"] is False


# ---- issue 29: another site's pages, hostile host names, half-open connections, non-finite numbers ----

PIXELS = {"pixels": [[0] * 28] * 12 + [[0] * 12 + [255] * 4 + [0] * 12] * 8 + [[0] * 28] * 8}  # a short bar: a "1"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil"])
@pytest.mark.parametrize("method, path", [("GET", "/runs"), ("POST", "/predict"), ("POST", "/activations")])
def test_dns_rebinding_another_host_name_gets_400(client, host, method, path):
    """A page on evil.example that points its name at 127.0.0.1 reads nothing: its requests carry its Host."""
    response = client.request(method, path, json=PIXELS, headers={"Host": host})
    assert response.status_code == 400 and "cnnlab" not in response.text, response.text[:200]


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000"])
def test_this_machines_own_names_are_answered(client, host):
    assert client.get("/runs", headers={"Host": host}).status_code == 200


def test_the_host_given_to_serve_is_answered_and_every_interface_adds_this_machines_name(trained_run):
    client = lab_client(create_app([trained_run], host="lab.example"))
    assert client.get("/health", headers={"Host": "lab.example:8000"}).status_code == 200
    assert client.get("/health", headers={"Host": "evil.example"}).status_code == 400
    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0") and "[::1]" in allowed_hosts("::")
    assert "[fe80::1]" in allowed_hosts("fe80::1")


@pytest.mark.parametrize(
    "kind, body",
    [
        ("multipart/form-data", None),  # an upload, as a form on another site sends it
        ("application/x-www-form-urlencoded", b"pixels=1"),
        ("text/plain", json.dumps(PIXELS).encode()),  # JSON text with a form's content type
        (None, json.dumps(PIXELS).encode()),
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/activations", "/explain"])
def test_a_post_another_site_could_send_gets_403(client, path, kind, body):
    bare = TestClient(client.app, base_url="http://127.0.0.1:8000")  # no X-Requested-With
    if kind == "multipart/form-data":
        response = bare.post(path, files={"file": ("seven.png", SEVEN, "image/png")})
    else:
        response = bare.post(path, content=body, headers={"content-type": kind} if kind else {})
    assert response.status_code == 403 and "X-Requested-With" in response.json()["detail"], response.text[:200]


def test_the_pages_own_posts_pass(client):
    bare = TestClient(client.app, base_url="http://127.0.0.1:8000")
    assert bare.post("/predict", json=PIXELS).status_code == 200  # JSON: a cross-site page cannot send it unasked
    assert client.post("/predict", files={"file": ("seven.png", SEVEN, "image/png")}).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/", "/docs", "/runs", "/static/lab.js", "/openapi.json", "/nowhere", "/runs/7/metrics"],
)
def test_every_answer_carries_the_content_security_policy(client, path):
    response = client.get(path)
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy and "unsafe" not in policy
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/runs", headers={"Host": "evil.example"}).headers["content-security-policy"] == policy


@pytest.mark.parametrize("host", ["evil..example", "x" * 300])
def test_serve_on_a_host_that_is_no_name_is_one_line(trained_run, capsys, host):
    assert main(["serve", str(trained_run), "--host", host]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a host name" in err and "Traceback" not in err


def closed_by_server(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:  # still open: nothing to read
        return False
    except ConnectionResetError:
        return True


def test_half_open_connections_do_not_lock_the_lab_out(trained_run):
    """One client holding 120 connections without a request (issue 29: 80% of /health answers were 503)."""
    with LiveServer(create_app([trained_run])) as live:
        held = [live.connect() for _ in range(120)]
        for s in held[::2]:
            s.sendall(b"GET /health HTTP/1.1\r\n")  # half the headers, and never the rest
        statuses = []
        for _ in range(30):
            with live.connect() as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                statuses.append(int(s.recv(1024).split(b" ", 2)[1]))
        closed = sum(map(closed_by_server, held))  # the oldest idle ones, to make room
        for s in held:
            s.close()
    assert statuses == [200] * 30 and closed >= 120 - 64, (statuses, closed)


def tampered(trained_run, folder, change):
    """A copy of the trained run with its checkpoint changed by `change(payload)`."""
    run = shutil.copytree(trained_run, folder / "run")
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    change(payload)
    torch.save(payload, run / "checkpoint.pt")
    return run


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p["dataset"].update(mean=NAN),
        lambda p: p["dataset"].update(std=INF),
        lambda p: p["state_dict"]["conv1.weight"].fill_(NAN),
        lambda p: p["metrics"][-1].update(test_accuracy=INF),
    ],
    ids=["NaN mean", "infinite std", "NaN weights", "infinite test accuracy"],
)
def test_a_runs_non_finite_numbers_never_make_a_5xx(trained_run, tmp_path, capsys, change):
    run = tampered(trained_run, tmp_path, change)
    try:
        app = create_app([run])
    except CnnlabError as e:  # refused when the run is opened: as good, said in one line
        assert "\n" not in str(e)
        return
    client = lab_client(app)
    for path in ("/runs", "/model", "/runs/0/metrics", "/runs/0/confusion"):
        response = client.get(path)
        assert response.status_code < 500 and "NaN" not in response.text and "Infinity" not in response.text, path
    for path in ("/predict", "/activations"):
        assert client.post(path, json=PIXELS).status_code < 500, path
    cell = {**PIXELS, "module": "conv1", "channel": 0, "row": 0, "col": 0}
    assert client.post("/explain", json=cell).status_code < 500


def test_a_diverged_runs_curves_answer_with_null(trained_run, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    row = {"epoch": 4, "train_loss": NAN, "test_loss": INF, "test_accuracy": 9.8}
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + json.dumps(row) + "\n")
    response = lab_client(create_app([run])).get("/runs/0/metrics")
    assert response.status_code == 200
    assert response.json()["rows"][-1] == {"epoch": 4, "train_loss": None, "test_loss": None, "test_accuracy": 9.8}
