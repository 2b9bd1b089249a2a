"""`cnnlab serve` in a subprocess on a free local port, for the server benchmarks (load, memory, lab latency)."""

import contextlib
import socket
import subprocess
import sys

SAME_SITE = {"X-Requested-With": "cnnlab"}  # the lab refuses a POST that is not JSON without it (as a form's is)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(data: bytes, name: str = "upload.png") -> tuple[bytes, str]:
    """A multipart/form-data body holding `data` as the field "file", and its Content-Type."""
    boundary = "cnnlab-benchmark-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@contextlib.contextmanager
def served(runs):
    """Yield (base URL, server process) once `cnnlab serve` says it is serving: model loaded, port bound."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", *map(str, runs), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        if "serving" not in line:
            raise SystemExit(f"cnnlab serve did not start: {line!r}")
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        server.wait()
