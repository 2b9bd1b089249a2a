"""Latency of the lab: from a drawing sent to every stage back (POST /activations), per model (a benchmark).

    python benchmarks/lab_latency.py RUN_DIR [RUN_DIR...] [--requests 200]

For each run: `cnnlab serve` in a subprocess, then sequential requests from one client on the same
machine, as the page makes them: the drawing pad's 280x280 PNG for the first run (decode, preprocess,
forward with hooks, quantise), and the 28x28 JSON pixels for the others. Prints the median and 90th
percentile in ms, and the response size.
"""

import argparse
import io
import json
import statistics
import sys
import time
import urllib.request

from PIL import Image
from served import SAME_SITE, multipart, served

from cnnlab.data.datasets import load_dataset


def timed(url: str, body: bytes, kind: str) -> tuple[float, int]:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": kind, **SAME_SITE})
    with urllib.request.urlopen(request, timeout=30) as response:
        size = len(response.read())
    return (time.perf_counter() - start) * 1000, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    digits = load_dataset("mnist-sample").test_images[:50, 0].numpy()
    pads = []
    for d in digits:  # dark ink on white paper at the pad's size, as the page sends it
        buffer = io.BytesIO()
        Image.fromarray(255 - d).resize((280, 280), Image.BILINEAR).save(buffer, "PNG")
        pads.append(multipart(buffer.getvalue(), "drawing.png"))
    pixels = [(json.dumps({"pixels": d.tolist()}).encode(), "application/json") for d in digits]
    print("| model | request | median ms | p90 ms | response kB |")
    print("|:--|:--|--:|--:|--:|")
    for run in args.runs:
        with served([run]) as (url, _):
            model = json.load(urllib.request.urlopen(url + "/model"))["name"]
            for label, bodies in (("280x280 PNG upload", pads), ("28x28 JSON pixels", pixels)):
                for body, kind in bodies[:10]:  # warm-up
                    timed(url + "/activations", body, kind)
                results = [timed(url + "/activations", *bodies[i % len(bodies)]) for i in range(args.requests)]
                ms = sorted(r[0] for r in results)
                print(
                    f"| {model} | {label} | {statistics.median(ms):.1f} | {ms[int(0.9 * len(ms))]:.1f} | "
                    f"{statistics.mean(r[1] for r in results) / 1000:.1f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
