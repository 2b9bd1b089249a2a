"""Half-open connections against the lab (a benchmark, not a test): one client holds N connections open
without finishing a request, then M requests to /health are sent one after another on new connections.

Side by side in one run: uvicorn's own server with the lab's settings (connection cap 64: what `cnnlab serve`
did before it evicted idle connections), and the lab's server (LabServer: the oldest idle connection is closed
to make room for a new one).

    python benchmarks/half_open.py RUN_DIR [--held 120] [--requests 100]
"""

import argparse
import logging
import socket
import sys
import threading
import time
from collections import Counter

import uvicorn

from cnnlab.inference.serve import LabServer, create_app, server_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(server_of, app, *, held: int, requests: int) -> Counter:
    """The statuses of `requests` /health requests while `held` connections are half-open."""
    port = free_port()
    server = server_of(server_config(app, host="127.0.0.1", port=port))
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)  # else a warning line for each 503
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    hold = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(held)]
    for s in hold:
        s.sendall(b"GET /health HTTP/1.1\r\n")  # and never the rest of the headers
    statuses: Counter = Counter()
    for _ in range(requests):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                statuses[s.recv(1024).split(b" ", 2)[1].decode()] += 1
        except (OSError, IndexError):
            statuses["no answer"] += 1
    for s in hold:
        s.close()
    server.should_exit = True
    thread.join(10)
    return statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--held", type=int, default=120)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    app = create_app([args.run])
    for name, server_of in (("uvicorn.Server, the lab's settings", uvicorn.Server), ("LabServer", LabServer)):
        statuses = probe(server_of, app, held=args.held, requests=args.requests)
        refused = args.requests - statuses["200"]
        print(
            f"{name}: {args.held} half-open connections held, {args.requests} /health requests: "
            f"{dict(statuses)}, {100 * refused / args.requests:.0f}% not answered 200"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
