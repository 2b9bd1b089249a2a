"""The app factory: the runs, the limits, the routers. It reads as the lab's table of contents."""

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cnnlab.engine.run import OpenOptions
from cnnlab.inference.serve.connections import RequestClock
from cnnlab.inference.serve.encoding import FiniteJSONResponse
from cnnlab.inference.serve.errors import ERROR_HANDLERS
from cnnlab.inference.serve.lab import Lab
from cnnlab.inference.serve.limits import BODY_SECONDS, QUEUE, WORKERS, Admission, BodyGuard
from cnnlab.inference.serve.routers import attribution, explorer, pages, predict, runs, stages
from cnnlab.inference.serve.security import NoCrossSitePosts, SecurityHeaders, allowed_hosts


def create_app(
    run_dirs: str | Path | Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    workers: int = WORKERS,
    queue: int = QUEUE,
    body_seconds: float = BODY_SECONDS,
    options: OpenOptions = OpenOptions(),
) -> FastAPI:
    """The lab over one or more trained runs (paths: run folders or model files, opened with `options`), each
    loaded once, answering to `host` and loopback names."""
    paths = [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs
    lab = Lab(paths, admission=Admission(workers=workers, queue=queue), options=options)
    app = FastAPI(
        title="cnnlab",
        description=lab.description,
        docs_url=None,  # pages.py serves Swagger UI from the swagger-ui-bundle package
        redoc_url=None,
        form_limits={"max_files": 1, "max_fields": 0},  # one part, "file": a second one is an error
        exception_handlers=ERROR_HANDLERS,
        default_response_class=FiniteJSONResponse,
    )
    app.state.lab = lab
    # Middleware added last runs first: the clock, the policy on every answer, the Host check, then the rest.
    app.add_middleware(BodyGuard, seconds=body_seconds)
    app.add_middleware(NoCrossSitePosts)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host), www_redirect=False)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestClock)  # the header deadline stops while the app answers
    for area in (predict, stages, attribution, runs, explorer, pages):
        app.include_router(area.router)
    pages.mount_files(app)
    app.openapi = partial(pages.openapi, app, uploads=[predict.uploads, stages.uploads])  # type: ignore[method-assign]
    return app
