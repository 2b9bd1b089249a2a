"""What one request may cost the server: its body's size and time (BodyGuard, an ASGI middleware) and its CPU
work (Admission: a few jobs at once, a short queue, then 503)."""

from collections.abc import Callable
from typing import Any

import anyio
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 2 * 1024 * 1024
BODY_SECONDS = 10.0
WORKERS = 2
QUEUE = 8


class BodyGuard:
    """ASGI middleware bounding a request body in size (413) and in time (408).

    Content-Length over the limit is refused before anything is read; a body is also counted as it
    streams in. The deadline runs from the first read: a client that stops sending, or sends less than
    its Content-Length, gets 408 and the connection is closed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, seconds: float = BODY_SECONDS):
        self.app, self.limit, self.seconds = app, limit, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length")
        if length is not None and not length.isdigit():
            detail = f"Content-Length {length[:20]!r} is not a number"
            return await JSONResponse({"detail": detail}, 422)(scope, receive, send)
        if length is not None and int(length) > self.limit:
            detail = f"request body over {self.limit:,} bytes"
            return await JSONResponse({"detail": detail}, 413)(scope, receive, send)
        await self.app(scope, self.guarded(receive), send)

    def guarded(self, receive: Receive) -> Receive:
        """`receive`, counting the body's bytes and timing it from the first read."""
        received, complete, deadline = 0, False, None

        async def guarded_receive() -> Message:
            nonlocal received, complete, deadline
            if complete:  # the body is in: later reads only wait for a disconnect
                return await receive()
            deadline = deadline or anyio.current_time() + self.seconds
            with anyio.move_on_after(deadline - anyio.current_time()) as timer:
                message = await receive()
            if timer.cancelled_caught:
                raise HTTPException(
                    408, f"request body not complete within {self.seconds:g} s", headers={"Connection": "close"}
                )
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"request body over {self.limit:,} bytes", headers={"Connection": "close"})
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return guarded_receive


class Admission:
    """At most `workers` jobs run at once in threads, `queue` more wait, the rest are turned away with 503."""

    def __init__(self, *, workers: int = WORKERS, queue: int = QUEUE):
        self.limiter, self.queue = anyio.CapacityLimiter(workers), queue

    async def run(self, job: Callable[..., Any], *args: Any) -> Any:
        stats = self.limiter.statistics()
        if stats.tasks_waiting >= self.queue and stats.borrowed_tokens >= self.limiter.total_tokens:
            raise HTTPException(503, "the server is busy: try again in a second", headers={"Retry-After": "1"})
        return await anyio.to_thread.run_sync(job, *args, limiter=self.limiter)
