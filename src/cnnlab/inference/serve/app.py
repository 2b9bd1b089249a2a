"""The app factory: the runs, the limits, the routers. It reads as the lab's table of contents."""

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from cnnlab.inference.serve.connections import RequestClock
from cnnlab.inference.serve.errors import ERROR_HANDLERS
from cnnlab.inference.serve.lab import Lab
from cnnlab.inference.serve.limits import BODY_SECONDS, QUEUE, WORKERS, Admission, BodyGuard
from cnnlab.inference.serve.routers import explorer, pages, predict, runs, stages


def create_app(
    run_dirs: str | Path | Sequence[str | Path],
    *,
    workers: int = WORKERS,
    queue: int = QUEUE,
    body_seconds: float = BODY_SECONDS,
) -> FastAPI:
    """The lab over one or more trained runs (paths), each loaded once."""
    paths = [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs
    lab = Lab(paths, admission=Admission(workers=workers, queue=queue))
    app = FastAPI(
        title="cnnlab",
        description=lab.description,
        docs_url=None,  # pages.py serves Swagger UI from the swagger-ui-bundle package
        redoc_url=None,
        form_limits={"max_files": 1, "max_fields": 0},  # one part, "file": a second one is an error
        exception_handlers=ERROR_HANDLERS,
    )
    app.state.lab = lab
    app.add_middleware(BodyGuard, seconds=body_seconds)
    app.add_middleware(RequestClock)  # outermost: the header deadline stops while the app answers
    for area in (predict, stages, runs, explorer, pages):
        app.include_router(area.router)
    pages.mount_files(app)
    app.openapi = partial(pages.openapi, app, uploads=[predict.uploads, stages.uploads])  # type: ignore[method-assign]
    return app
