"""Load check for `cnnlab serve` (a benchmark, not a test).

Starts `cnnlab serve` on 127.0.0.1, then N concurrent clients POST a fixed number of requests
(28x28 JSON pixels of real test digits, or PNG uploads); prints requests/s, p50/p99 latency, errors.

    python benchmarks/load.py RUN_DIR [--clients 8] [--requests 800] [--upload]
"""

import argparse
import io
import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from served import SAME_SITE, multipart, served

from cnnlab.data.datasets import load_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--upload", action="store_true", help="PNG uploads instead of JSON pixels")
    args = parser.parse_args()
    digits = load_dataset("mnist-sample").test_images[:100, 0]
    if args.upload:
        bodies = []
        for d in digits:
            buffer = io.BytesIO()
            Image.fromarray(d.numpy()).resize((280, 280)).save(buffer, "PNG")
            bodies.append(multipart(buffer.getvalue()))
    else:
        bodies = [(json.dumps({"pixels": d.tolist()}).encode(), "application/json") for d in digits]
    with served([args.run]) as (url, _):

        def one(i):
            body, kind = bodies[i % len(bodies)]
            start = time.perf_counter()
            try:
                headers = {"Content-Type": kind, **SAME_SITE}
                request = urllib.request.Request(url + "/predict", data=body, headers=headers)
                ok = urllib.request.urlopen(request, timeout=30).status == 200
            except OSError:
                ok = False
            return time.perf_counter() - start, ok

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - start
    latencies = sorted(r[0] * 1000 for r in results)
    errors = sum(not r[1] for r in results)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"{args.requests} requests ({'PNG upload' if args.upload else 'JSON pixels'}), {args.clients} clients: "
        f"{args.requests / elapsed:,.0f} requests/s, p50 {statistics.median(latencies):.1f} ms, "
        f"p99 {p99:.1f} ms, {errors} errors"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
