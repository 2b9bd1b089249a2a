"""What keeps other web pages out of the lab: a content-security policy on every answer, the Host names it
answers to (DNS rebinding), and no POST a cross-site form could send.

- Content-Security-Policy: scripts and styles only from the lab's own files (no inline script, no style attribute
  written through HTML: the page sets styles through the CSSOM), no plugins, no framing. Strings from data or
  runs (class names, run names) are shown as text by the page; the policy is the second wall.
- Host: a page on another site can point its own name at 127.0.0.1 and then read the lab as its own origin;
  Starlette's TrustedHostMiddleware answers 400 to any Host but this machine's loopback names and --host.
- A cross-site page can POST a form (multipart, urlencoded, text/plain) without the browser asking first; it
  cannot set a custom header or send application/json without a CORS preflight, which the lab never grants.
  So a POST must be JSON or carry X-Requested-With (the page's own uploads send it), else 403.
"""

import socket

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
EVERY_INTERFACE = ("0.0.0.0", "::", "")
CUSTOM_HEADER = "X-Requested-With"


class SecurityHeaders:
    """ASGI middleware adding the content-security policy (and no MIME sniffing) to every answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = POLICY
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        await self.app(scope, receive, send_with_policy)


class NoCrossSitePosts:
    """ASGI middleware refusing, with 403, a POST that is neither JSON nor carries X-Requested-With."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = Headers(scope=scope)
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json" and not headers.get(CUSTOM_HEADER):
                detail = (
                    f"send the header {CUSTOM_HEADER}: cnnlab with a POST that is not application/json (the lab's "
                    "page does; a form on another site cannot)"
                )
                return await JSONResponse({"detail": detail}, 403)(scope, receive, send)
        await self.app(scope, receive, send)


def allowed_hosts(host: str) -> list[str]:
    """The Host names the lab answers to: the loopback names and `host`; served on every interface (0.0.0.0,
    ::), also this machine's own name and addresses, so that another device on the network can reach it."""
    names = {*LOOPBACK, f"[{host}]" if ":" in host else host}
    if host in EVERY_INTERFACE:
        names |= {socket.gethostname(), socket.getfqdn(), *_own_addresses()}
    return sorted(name.lower() for name in names if name)


def _own_addresses() -> set[str]:
    """This machine's addresses, as far as the resolver and the routing table tell (no packet is sent)."""
    addresses: set[str] = set()
    try:
        for *_, address in socket.getaddrinfo(socket.gethostname(), None):
            addresses.add(f"[{address[0]}]" if ":" in str(address[0]) else str(address[0]))
    except OSError:  # the machine's name does not resolve
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # a documentation address: connecting a UDP socket only picks a route
            addresses.add(probe.getsockname()[0])
    except OSError:  # no route off this machine
        pass
    return addresses
