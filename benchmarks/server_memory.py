"""Peak memory of `cnnlab serve` under concurrent maximum-size uploads (issue 13: target under 1 GB).

    python benchmarks/server_memory.py RUN_DIR [--clients 8] [--rounds 5]

The uploads are the costliest the server accepts: an RGB PNG of just under the decoded-pixel cap
(serve.SERVED_PIXELS), and a progressive JPEG of 40 megapixels (the declared-size cap), which libjpeg
decodes at a reduced scale but whose coefficients it still buffers whole. Each round sends `--clients`
uploads of each kind at once. Reports the server's resident memory after start and its peak (VmHWM from
/proc, Linux), and the answers' status codes (503 = the admission queue was full, by design).
"""

import argparse
import collections
import io
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw
from served import SAME_SITE, multipart, served

from cnnlab.inference.decode import MAX_PIXELS
from cnnlab.inference.serve import MAX_BODY, SERVED_PIXELS


def largest_uploads() -> dict[str, bytes]:
    uploads = {}
    for kind, pixels, mode, fmt, options in (
        ("png", SERVED_PIXELS - 10_000, "RGB", "PNG", {}),
        ("jpeg", MAX_PIXELS - 10_000, "RGB", "JPEG", {"progressive": True}),
    ):
        side = int(pixels**0.5)
        image = Image.new(mode, (side, side), "white")
        ImageDraw.Draw(image).line(
            [(side // 4, side // 5), (3 * side // 4, side // 5), (side // 2, 4 * side // 5)],
            fill="black",
            width=side // 15,
        )
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        assert buffer.tell() < MAX_BODY, f"{kind} upload of {buffer.tell():,} bytes is over the body limit"
        uploads[f"{kind} {side}x{side} ({buffer.tell() / 1e3:,.0f} kB)"] = buffer.getvalue()
    return uploads


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status (Linux only)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    uploads = largest_uploads()
    statuses = collections.Counter()
    with served([args.run]) as (url, server):

        def post(data: bytes) -> int:
            body, kind = multipart(data)
            request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": kind, **SAME_SITE})
            try:
                return urllib.request.urlopen(request, timeout=120).status
            except urllib.error.HTTPError as e:
                return e.code

        start_mb = memory_kb(server.pid, "VmRSS") / 1024
        with ThreadPoolExecutor(args.clients) as pool:
            for _ in range(args.rounds):
                for data in uploads.values():
                    statuses.update(pool.map(post, [data] * args.clients))
        peak_mb = memory_kb(server.pid, "VmHWM") / 1024
    print(f"uploads: {', '.join(uploads)}; {args.rounds} rounds of {args.clients} concurrent uploads of each")
    print(
        f"server resident memory: {start_mb:,.0f} MB after start, peak {peak_mb:,.0f} MB; "
        f"answers: {dict(sorted(statuses.items()))}"
    )
    return 0 if peak_mb < 1024 and set(statuses) <= {200, 503} else 1


if __name__ == "__main__":
    sys.exit(main())
