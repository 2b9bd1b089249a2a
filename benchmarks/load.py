"""Load check for `cnnlab serve` (a benchmark, not a test).

Starts `cnnlab serve` on 127.0.0.1, then N concurrent clients POST a fixed number of requests
(28x28 JSON pixels of real test digits, or PNG uploads); prints requests/s, p50/p99 latency, errors.

    python benchmarks/load.py RUN_DIR [--clients 8] [--requests 800] [--upload]
"""
import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from cnnlab.data.datasets import load_dataset


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "cnnlab-load-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--upload", action="store_true", help="PNG uploads instead of JSON pixels")
    args = parser.parse_args()
    digits = load_dataset("mnist-sample").test_images[:100, 0]
    if args.upload:
        from PIL import Image
        bodies = []
        for d in digits:
            buffer = io.BytesIO()
            Image.fromarray(d.numpy()).resize((280, 280)).save(buffer, "PNG")
            bodies.append(multipart(buffer.getvalue()))
    else:
        bodies = [(json.dumps({"pixels": d.tolist()}).encode(), "application/json") for d in digits]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", args.run, "--port", str(port)],
                              stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)

        def one(i):
            body, kind = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": kind})
                ok = urllib.request.urlopen(request, timeout=30).status == 200
            except OSError:
                ok = False
            return time.perf_counter() - start, ok

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()
    latencies = sorted(r[0] * 1000 for r in results)
    errors = sum(not r[1] for r in results)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"{args.requests} requests ({'PNG upload' if args.upload else 'JSON pixels'}), {args.clients} clients: "
          f"{args.requests / elapsed:,.0f} requests/s, p50 {statistics.median(latencies):.1f} ms, "
          f"p99 {p99:.1f} ms, {errors} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
