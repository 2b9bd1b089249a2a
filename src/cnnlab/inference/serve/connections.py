"""A deadline for request headers and room for new connections, which ASGI cannot see: a request reaches the app
only once its headers are in.

uvicorn times out a connection only while it is idle between requests, and any byte stops that clock: a client
trickling header bytes would hold its connection for ever. So the server runs on a `WatchedLoop`, asyncio's
selector event loop whose `create_server` hands each new connection's protocol (uvicorn's, whatever it is) to a
`Watch`: a plain `asyncio.Protocol` that passes every event on and closes the connection when no request has
started within `header_seconds` of connecting or of the previous answer. And uvicorn answers 503 to everyone
once `limit_concurrency` connections are open, so a new connection that reaches the limit closes the oldest one
with no request in progress (a client's 120 half-open connections no longer lock the lab).

`RequestClock`, an ASGI middleware, tells the connection's Watch when a request starts and when its answer is
done, by the client's address and port (`scope["client"]`, which is the peer of the connection's socket while
uvicorn trusts no proxy headers).

Only public interfaces are used: asyncio's Protocol and event loop, ASGI's scope, and uvicorn's documented
`Server.serve()` run on that loop (running.py). Under another event loop (FastAPI's TestClient) the middleware
finds no Watch and does nothing.
"""

import asyncio
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

HEADER_SECONDS = 10.0

Peer = tuple[str, int]


class Watch(asyncio.Protocol):
    """One connection: its protocol, passed every event, and the deadline for its next request's headers."""

    def __init__(self, protocol: asyncio.Protocol, *, watcher: "Watcher"):
        self.protocol, self.watcher = protocol, watcher
        self.transport: asyncio.BaseTransport | None = None
        self.peer: Peer | None = None
        self.requests = 0  # requests of this connection that the app is answering
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.watcher.opened(self)
        self.arm()
        self.protocol.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return self.protocol.eof_received()

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.watcher.closed(self)
        self.protocol.connection_lost(exc)

    def request_started(self) -> None:
        self.requests += 1
        self.disarm()

    def request_done(self) -> None:
        self.requests -= 1
        if self.requests == 0:
            self.arm()

    @property
    def idle(self) -> bool:
        """No request in progress and not already closing: waiting for headers, or kept alive."""
        return self.requests == 0 and self.transport is not None and not self.transport.is_closing()

    def arm(self) -> None:
        self.disarm()
        self.deadline = asyncio.get_running_loop().call_later(self.watcher.header_seconds, self.close)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Watcher:
    """The open connections of a server, by peer: the deadline each gets, and room for a new one.

    uvicorn answers 503 to every request once `connections` are open, so a client holding connections open
    without a request (half-open) would lock everyone out until their deadlines: a new connection that
    reaches the limit closes the oldest connection with no request in progress instead."""

    def __init__(self, *, header_seconds: float, connections: int):
        self.header_seconds, self.connections = header_seconds, connections
        self.open: dict[Peer, Watch] = {}  # in the order they opened

    def opened(self, watch: Watch) -> None:
        if watch.peer is not None:
            self.open[watch.peer] = watch
        if len(self.open) >= self.connections:  # uvicorn counts this one too: keep one under its limit
            idle = next((w for w in self.open.values() if w is not watch and w.idle), None)
            if idle is not None:
                idle.close()

    def closed(self, watch: Watch) -> None:
        if watch.peer is not None and self.open.get(watch.peer) is watch:
            del self.open[watch.peer]


class WatchedLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop, with every connection a server accepts watched (`Watch`)."""

    def __init__(self, *, header_seconds: float = HEADER_SECONDS, connections: int):
        super().__init__()
        self.watcher = Watcher(header_seconds=header_seconds, connections=connections)

    async def create_server(self, protocol_factory: Any, *args: Any, **kwargs: Any) -> asyncio.Server:
        watched = lambda: Watch(protocol_factory(), watcher=self.watcher)
        return await super().create_server(watched, *args, **kwargs)


def watch_of(scope: Scope) -> Watch | None:
    """The Watch of the connection a request came in on, when the server runs on a WatchedLoop."""
    loop, client = asyncio.get_running_loop(), scope.get("client")
    if not isinstance(loop, WatchedLoop) or not client:
        return None
    return loop.watcher.open.get((str(client[0]), int(client[1])))


class RequestClock:
    """ASGI middleware telling a connection's Watch when a request starts (its headers are in) and ends."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = watch_of(scope) if scope["type"] == "http" else None
        if watch is None:
            return await self.app(scope, receive, send)
        watch.request_started()
        try:
            await self.app(scope, receive, send)
        finally:
            watch.request_done()
