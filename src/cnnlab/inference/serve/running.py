"""Running the lab: uvicorn's documented settings, its `Server.serve()` on a WatchedLoop (connections.py), the
listening socket, and `cnnlab serve` itself."""

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from cnnlab import CnnlabError
from cnnlab.engine.checkpoint import CHECKPOINT
from cnnlab.engine.run import OpenOptions, is_model_file
from cnnlab.inference.serve.app import create_app
from cnnlab.inference.serve.connections import HEADER_SECONDS, WatchedLoop

KEEP_ALIVE_SECONDS = 5
CONNECTIONS = 64
MAX_HEADER_BYTES = 16 * 1024  # h11's own default, stated: a request line and headers past it get 400


def server_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """uvicorn settings for the lab: HTTP/1.1 only, keep-alive, a connection cap, a header size cap, a bounded
    shutdown; no proxy headers (nothing stands in front of the lab, and the header deadline finds a
    connection by its client's address)."""
    return uvicorn.Config(
        app,
        http="h11",
        ws="none",
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=3,
        log_level="warning",
        **options,
    )


class LabServer(uvicorn.Server):
    """uvicorn's server on a WatchedLoop, which puts a deadline on request headers and makes room for a new
    connection; with a banner, it says where it serves once it accepts connections (model loaded, port bound)."""

    def __init__(self, config: uvicorn.Config, *, banner: str | None = None, header_seconds: float = HEADER_SECONDS):
        super().__init__(config)
        self.banner, self.header_seconds = banner, header_seconds

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        loop = partial(
            WatchedLoop, header_seconds=self.header_seconds, connections=self.config.limit_concurrency or CONNECTIONS
        )
        with asyncio.Runner(loop_factory=loop) as runner:
            runner.run(self.serve(sockets=sockets))

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.banner:
            print(self.banner, flush=True)


def serve(
    run_dirs: Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    options: OpenOptions = OpenOptions(),
) -> None:
    """Serve the lab until Ctrl-C; every run is loaded and the port bound before "serving on" is printed."""
    if not 1 <= port <= 65535:
        raise CnnlabError(f"--port must be between 1 and 65535, got {port}")
    for run_dir in run_dirs:
        if not Path(run_dir).is_dir() and not (is_model_file(run_dir) and Path(run_dir).is_file()):
            raise CnnlabError(f"{run_dir} is not a run directory (a folder `cnnlab train --out` wrote), nor a .onnx")
    listener = bind(host, port)  # a wrong --host or a taken port is said before the runs are loaded
    try:
        app = create_app(run_dirs, host=host, options=options)
    except BaseException:
        listener.close()
        raise
    names = ", ".join(str(r) for r in run_dirs)
    # A model file's line first (how its inputs are scaled, its classes' names), as evaluate and predict say it.
    origins = [lab_run.run.origin for lab_run in app.state.lab.runs if lab_run.run.origin]
    banner = "\n".join([*origins, f"cnnlab: serving {names} on http://{host}:{port}/ (API docs at /docs)"])
    LabServer(server_config(app), banner=banner).run(sockets=[listener])


class AlongsideLab:
    """The lab over the run this process trains (`cnnlab train --lab`): `cnnlab serve` in a process of its own,
    started once the run's first checkpoint is written (the model views need weights); its curves and snapshots
    then follow the training. A process, not a thread: torch.fx traces by patching nn.Module.__call__ for the
    whole process, which would catch the training's own forward passes. The port is checked before training
    starts, so that a taken port is said at once."""

    def __init__(
        self, run_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, log: Callable[[str], object] = print
    ):
        self.run_dir, self.host, self.port, self.log = Path(run_dir), host, port, log
        bind(host, port).close()  # one clear line now, rather than after the first epoch
        self.url = f"http://{host}:{port}/"
        self.server: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.waiter = threading.Thread(target=self._start_when_ready, daemon=True)
        self.waiter.start()
        log(f"the lab will serve {self.run_dir} on {self.url} once its first checkpoint is written")

    def _start_when_ready(self) -> None:
        while not (self.run_dir / CHECKPOINT).is_file():
            if self.stopping.wait(0.5):
                return
        command = [
            sys.executable,
            "-m",
            "cnnlab",
            "serve",
            str(self.run_dir),
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        self.server = subprocess.Popen(command, start_new_session=True)  # Ctrl-C reaches training; stop() ends it

    def keep_open(self) -> None:
        """After training: serve until Ctrl-C."""
        self.waiter.join()
        if self.server is None or self.server.poll() is not None:
            return
        self.log(f"training finished; the lab stays open on {self.url} (Ctrl-C stops it)")
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` ends the lab as Ctrl-C does
        try:
            self.server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self.waiter.join(5)
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()


@contextmanager
def serving_in_thread(run_dirs: Sequence[str | Path], options: OpenOptions = OpenOptions()) -> Iterator[str]:
    """The lab over these runs on a free local port, in a background thread (tests, screenshots): yields its URL."""
    listener = bind("127.0.0.1", 0)
    server = LabServer(server_config(create_app(run_dirs, options=options)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear line saying why there is none (port taken, unknown host)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as e:
        raise CnnlabError(
            f"cannot listen on {host}:{port} ({e.strerror or e}): choose another --port or --host"
        ) from None
    except (UnicodeError, ValueError) as e:  # the idna codec's "label empty or too long", an embedded NUL
        raise CnnlabError(f"--host {host[:80]!r} is not a host name or address ({e}): try 127.0.0.1") from None
    return listener
