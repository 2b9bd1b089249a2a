"""`cnnlab serve RUN [RUN...]`: the lab page and a JSON API over trained runs (FastAPI + uvicorn).

GET  /                  the lab (static/: plain JS modules, no CDN: it works offline)
POST /predict           top-k classes: an image upload (multipart, field "file") or JSON {"pixels": 28x28 ints}
POST /activations       every stage of the model for the same input, quantised (explain/stages.py)
POST /explain           one convolution output as the multiply-add that makes it
A digit run (MNIST-style, 1x28x28) takes all three, and the page offers a canvas. Any other run (CIFAR, your own
images) takes uploads to /predict only, fitted as its training images were, and the page offers an upload box;
the rest answer 422. Digit runs and image runs are not served together: the page has one input for all runs.
GET  /runs, /runs/{i}/metrics, /runs/{i}/confusion   the runs, their curves (polled) and confusion matrix
GET  /shape             `cnnlab shape` for the stride/padding explorer
GET  /health, /model;  /docs: Swagger UI, served from the swagger-ui-bundle package

Limits (a server must not be driven out of memory or held open by a client):
- a body over MAX_BODY bytes is refused with 413, by Content-Length or as it streams in, and a body not
  complete within BODY_SECONDS gets 408 (a client that sends less than its Content-Length is not waited for);
- request headers must be complete within HEADER_SECONDS of connecting or of the previous response
  (uvicorn's keep-alive timeout covers only idle connections);
- images are refused past SERVED_PIXELS decoded pixels; JPEGs are decoded at a reduced scale;
- at most WORKERS decodes and forward passes run at once, QUEUE more wait, the rest get 503 + Retry-After;
- uvicorn answers 503 itself past CONNECTIONS open connections.
"""

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import anyio
import numpy as np
import torch
import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from swagger_ui_bundle import swagger_ui_path
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.engine.checkpoint import CONFIG, METRICS
from cnnlab.explain.arithmetic import shape
from cnnlab.explain.stages import Stage, explain_cell, trace
from cnnlab.files import read_bounded
from cnnlab.inference.decode import ImageError, NotAnImageError, load_image
from cnnlab.inference.predict import Predictor, is_unsure
from cnnlab.models import count_parameters

STATIC = Path(__file__).parent / "static"
MAX_BODY = 2 * 1024 * 1024
BODY_SECONDS = 10.0
HEADER_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5
SERVED_PIXELS = 6_000_000  # issue 13 asked for 4-8 MP (the CLI allows 40): one such decode is ~100 MB at most
DECODE_SIDE = 1024  # decode no finer than this: the digit ends up 20 pixels tall
WORKERS = 2
QUEUE = 8
CONNECTIONS = 64
MAX_METRICS_BYTES = 16 * 1024 * 1024
TOP_K = 3

Pixel = Annotated[int, Field(strict=True, ge=0, le=255)]  # strict: "255" and true are not pixels
Row = Annotated[list[Pixel], Field(min_length=28, max_length=28)]


class Pixels(BaseModel):
    """A 28x28 digit, white ink on black, as MNIST stores it."""

    model_config = ConfigDict(extra="forbid")
    pixels: Annotated[list[Row], Field(min_length=28, max_length=28, description="28 rows of 28 ints 0-255")]


class Cell(Pixels):
    """One output value of a convolution, for the multiply-add shown when a map cell is clicked."""

    module: str = Field(
        max_length=200, description='a convolution call of the stages, e.g. "conv1" ("conv1 (call 2)": its second call)'
    )
    channel: int = Field(strict=True, ge=0)
    row: int = Field(strict=True, ge=0)
    col: int = Field(strict=True, ge=0)


RunIndex = Annotated[int, Query(ge=0, le=100, description="which run, in the order given to `cnnlab serve`")]


class BodyGuard:
    """ASGI middleware bounding a request body in size (413) and in time (408).

    Content-Length over the limit is refused before anything is read; a body is also counted as it
    streams in. The deadline runs from the first read: a client that stops sending, or sends less than
    its Content-Length, gets 408 and the connection is closed."""

    def __init__(self, app, limit: int = MAX_BODY, seconds: float = BODY_SECONDS):
        self.app, self.limit, self.seconds = app, limit, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = Headers(scope=scope).get("content-length")
        if length is not None and not length.isdigit():
            return await JSONResponse({"detail": f"Content-Length {length[:20]!r} is not a number"}, 422)(
                scope, receive, send
            )
        if length is not None and int(length) > self.limit:
            return await JSONResponse({"detail": f"request body over {self.limit:,} bytes"}, 413)(scope, receive, send)
        received, complete, deadline = 0, False, None

        async def guarded_receive():
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

        await self.app(scope, guarded_receive, send)


class Admission:
    """At most `workers` jobs run at once in threads, `queue` more wait, the rest are turned away with 503."""

    def __init__(self, workers: int = WORKERS, queue: int = QUEUE):
        self.limiter, self.queue = anyio.CapacityLimiter(workers), queue

    async def run(self, job, *args):
        stats = self.limiter.statistics()
        if stats.tasks_waiting >= self.queue and stats.borrowed_tokens >= self.limiter.total_tokens:
            raise HTTPException(503, "the server is busy: try again in a second", headers={"Retry-After": "1"})
        return await anyio.to_thread.run_sync(job, *args, limiter=self.limiter)


class LabRun:
    """One served run: its model (one forward pass at a time: stage hooks are per model), description,
    curves and confusion matrix."""

    def __init__(self, run_dir):
        self.dir = Path(run_dir)
        self.predictor = Predictor(run_dir, digits_only=False)
        self.run = self.predictor.run
        self.digits = self.predictor.digits
        self.lock = threading.Lock()
        self.confusion_matrix: dict | None = None
        metrics = self.run.metrics or [{}]
        first_conv = next((m for m in self.run.model.modules() if isinstance(m, torch.nn.Conv2d)), None)
        self.about = {
            "name": self.run.model_name,
            "run": self.dir.name,
            "parameters": count_parameters(self.run.model),
            "dataset": self.run.info.name,
            "classes": list(self.run.info.classes),
            "test_accuracy": metrics[-1].get("test_accuracy"),
            "epochs": self.run.epoch,
            "mean": self.run.info.mean,
            "std": self.run.info.std,
            "kernels": first_conv.weight.detach()[:, 0].tolist() if first_conv is not None else None,
            "input": "draw" if self.digits else "upload",  # what the page offers: the canvas or an upload box
            "channels": self.run.info.in_channels,
            "input_size": list(self.run.info.input_size),
        }

    def prepare(self, data: bytes, name: str) -> np.ndarray:
        """An uploaded image, decoded within the server's pixel limit -> this run's input: the 28x28 digit of a
        digit run, else (C, H, W) fitted as the training images were."""
        prepared = self.predictor.prepare(load_image(data, name, max_pixels=SERVED_PIXELS, max_side=DECODE_SIDE), name)
        return prepared[0] if self.digits else prepared

    def require_digits(self, what: str) -> None:
        """A 422 for what only a digit run takes (28x28 pixels, the stages and multiply-add views)."""
        if not self.digits:
            info = self.run.info
            raise HTTPException(
                422,
                f"run {self.dir.name} takes {info.in_channels}x{info.input_size[0]}x{info.input_size[1]} images of "
                f'{info.name}, not {what}: POST /predict an image file (multipart/form-data, field "file")',
            )

    def normalised(self, digit: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(digit))[None, None]
        return normalise(x, self.run.info.mean, self.run.info.std)

    def predict(self, prepared: np.ndarray) -> dict:
        """The top classes; with the digit as 28x28 ints, or an image run's input as the PNG the model sees."""
        with self.lock:
            top = self.predictor.top_k(prepared, TOP_K)
        seen = {"input": prepared.tolist()} if self.digits else {"seen": png_data_url(prepared)}
        return {"predictions": top, "unsure": is_unsure(top), **seen}

    def activations(self, digit: np.ndarray) -> dict:
        with self.lock:
            traced = trace(self.run.model, self.normalised(digit))
            top = self.predictor.top_k(digit, TOP_K)
        return {
            "predictions": top,
            "unsure": is_unsure(top),
            "input": digit.tolist(),
            "shown": traced.shown,
            "notes": traced.notes,
            "stages": [stage_json(s) for s in traced.stages],
        }

    def explain(self, cell: Cell) -> dict:
        digit = np.array(cell.pixels, dtype=np.uint8)
        with self.lock:
            conv = trace(self.run.model, self.normalised(digit)).convs.get(cell.module)
        if conv is None:
            raise HTTPException(422, f"{cell.module!r} is not a convolution call shown by the stages")
        try:
            return explain_cell(conv, cell.channel, cell.row, cell.col)
        except ValueError as e:  # outside the convolution's output
            raise HTTPException(422, str(e)) from None

    def metrics(self) -> dict:
        """metrics.jsonl as the engine writes it (whole, atomically, each epoch), and the planned epochs."""
        rows = [row for row in map(_json_or_none, _read_text(self.dir / METRICS).splitlines()) if isinstance(row, dict)]
        config = _json_or_none(_read_text(self.dir / CONFIG))
        planned = config.get("epochs") if isinstance(config, dict) else None
        training = isinstance(planned, int) and len(rows) < planned
        return {"rows": rows, "epochs": planned if isinstance(planned, int) else None, "training": training}

    def confusion(self) -> dict:
        if self.confusion_matrix is None:
            dataset = self.run.load_dataset(allow_download=False)
            images = dataset.test_images.numpy()
            with self.lock:
                predicted = torch.cat(
                    [self.predictor.probabilities(images[i : i + 1000]).argmax(1) for i in range(0, len(images), 1000)]
                )
            matrix = torch.zeros(len(self.run.info.classes), len(self.run.info.classes), dtype=torch.int64)
            matrix.index_put_((dataset.test_labels, predicted), torch.ones_like(predicted), accumulate=True)
            self.confusion_matrix = {
                "classes": list(self.run.info.classes),
                "matrix": matrix.tolist(),
                "accuracy": 100.0 * matrix.trace().item() / max(1, matrix.sum().item()),
            }
        return self.confusion_matrix


def _read_text(path: Path) -> str:
    """A run's own small text file, or "" before it exists (or when it is not one cnnlab could have written)."""
    try:
        return read_bounded(path, MAX_METRICS_BYTES).decode() if path.exists() else ""
    except (CnnlabError, UnicodeDecodeError):
        return ""


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:  # a line cut short or edited by hand: skipped, the curves show the rest
        return None


def stage_json(stage: Stage) -> dict:
    """A stage quantised to one byte a value over its own range: a shared colour scale for its maps, and a
    response of a few kB (a value is `lo + byte / 255 * (hi - lo)`)."""
    values = stage.values.float()
    lo, hi = values.min().item(), values.max().item()
    scale = (values - lo) / (hi - lo) * 255 if hi > lo else torch.zeros_like(values)
    field = stage.receptive_field
    return {
        "name": stage.name,
        "module": stage.module,
        "shape": list(values.shape),
        "conv": stage.conv,
        "lo": lo,
        "hi": hi,
        "data": base64.b64encode(scale.round().to(torch.uint8).numpy().tobytes()).decode(),
        "values": values.tolist() if values.numel() <= 16 else None,  # logits and probabilities, exactly
        "field": field and {"size": field.size, "stride": field.stride, "offset": field.offset},
        "branches": [{"name": b.name, "module": b.module, "channels": b.channels} for b in stage.branches],
    }


def png_data_url(prepared: np.ndarray) -> str:
    """A (C, H, W) uint8 input as a data: URL the page can show as it is."""
    picture = Image.fromarray(prepared[0] if prepared.shape[0] == 1 else prepared.transpose(1, 2, 0))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class MediaTypeRoute(APIRoute):
    """A path operation chosen by Content-Type as well as path and method, so that one path takes an
    upload or JSON, each through its own typed handler (FastAPI gives a path one body type)."""

    media_type = ""

    def matches(self, scope):
        match, child_scope = super().matches(scope)
        kind = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
        if match is Match.FULL and kind != self.media_type:
            return Match.NONE, {}
        return match, child_scope


class UploadRoute(MediaTypeRoute):
    media_type = "multipart/form-data"


class JsonRoute(MediaTypeRoute):
    media_type = "application/json"


def create_app(run_dirs, *, workers: int = WORKERS, queue: int = QUEUE, body_seconds: float = BODY_SECONDS) -> FastAPI:
    """The lab over one or more trained runs (paths), each loaded once."""
    runs = [LabRun(run_dir) for run_dir in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    if len({run.digits for run in runs}) > 1:
        listed = lambda digits: ", ".join(str(run.dir) for run in runs if run.digits == digits)
        raise CnnlabError(
            f"digit runs ({listed(True)}) and image runs ({listed(False)}) are not served together: the page has one "
            "input for all its runs, a canvas or an upload box; serve them separately (another `cnnlab serve --port`)"
        )
    admission = Admission(workers, queue)
    app = FastAPI(
        title="cnnlab",
        docs_url=None,
        redoc_url=None,
        description="The lab: " + ", ".join(f"{r.about['name']} ({r.about['run']})" for r in runs),
        form_limits={"max_files": 1, "max_fields": 0},
    )  # one part, "file": a second one is an error
    app.add_middleware(BodyGuard, seconds=body_seconds)

    def run_at(index: int) -> LabRun:
        if not 0 <= index < len(runs):  # a path's {index} may be negative: not the last run counted from the end
            raise HTTPException(404, f"no run {index}: this server has runs 0 to {len(runs) - 1}")
        return runs[index]

    async def input_of(file: UploadFile, lab: LabRun) -> np.ndarray:
        return await admission.run(lab.prepare, await file.read(), file.filename or "upload")

    def digit_run(index: int, what: str) -> LabRun:
        lab = run_at(index)
        lab.require_digits(what)
        return lab

    uploads, pixels = APIRouter(route_class=UploadRoute), APIRouter(route_class=JsonRoute)

    @uploads.post("/predict")
    async def predict_upload(file: UploadFile, run: RunIndex = 0):
        """Top-3 classes for an uploaded image: a digit (any size, dark ink on light paper or the reverse) for a
        digit run, any picture for an image run (scaled and centre-cropped as its training images were)."""
        lab = run_at(run)
        return await admission.run(lab.predict, await input_of(file, lab))

    @pixels.post("/predict")
    async def predict_pixels(body: Pixels, run: RunIndex = 0):
        """Top-3 classes for a 28x28 digit; the answer also holds the input and whether the model is unsure."""
        return await admission.run(digit_run(run, "28x28 pixels").predict, np.array(body.pixels, dtype=np.uint8))

    @uploads.post("/activations")
    async def activations_upload(file: UploadFile, run: RunIndex = 0):
        """Every stage of the model for an uploaded image, quantised to a byte a value (digit runs)."""
        lab = digit_run(run, "the stages of a digit")
        return await admission.run(lab.activations, await input_of(file, lab))

    @pixels.post("/activations")
    async def activations_pixels(body: Pixels, run: RunIndex = 0):
        """Every stage of the model for a 28x28 digit, quantised to a byte a value."""
        lab = digit_run(run, "28x28 pixels")
        return await admission.run(lab.activations, np.array(body.pixels, dtype=np.uint8))

    @pixels.post("/explain")
    async def explain(body: Cell, run: RunIndex = 0):
        """One convolution output as weights x input patch + bias, next to the value the model computed."""
        return await admission.run(digit_run(run, "28x28 pixels").explain, body)

    app.include_router(uploads)
    app.include_router(pixels)

    @app.post("/predict", include_in_schema=False)
    @app.post("/activations", include_in_schema=False)
    def unsupported_media_type():
        raise HTTPException(415, "send multipart/form-data with a file, or application/json with pixels")

    @app.post("/explain", include_in_schema=False)
    def explain_takes_json():
        raise HTTPException(415, "send application/json with pixels, module, channel, row and col")

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/model")
    def model_info():
        """The first run: name, parameters, dataset, test accuracy, and its input ("draw" a digit or "upload")."""
        keys = (
            "name",
            "parameters",
            "dataset",
            "classes",
            "test_accuracy",
            "epochs",
            "input",
            "channels",
            "input_size",
        )
        return {k: runs[0].about[k] for k in keys}

    @app.get("/runs")
    def list_runs():
        """Every served run, with its first convolution's kernels."""
        return [run.about for run in runs]

    @app.get("/runs/{index}/metrics")
    def metrics(index: int, request: Request):
        """The run's metrics.jsonl rows; poll it while `training` is true (ETag: unchanged is 304)."""
        lab = run_at(index)
        stat = (lab.dir / METRICS).stat() if (lab.dir / METRICS).exists() else None
        tag = f'"{stat.st_mtime_ns}-{stat.st_size}"' if stat else '"none"'
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"ETag": tag})
        return JSONResponse(lab.metrics(), headers={"ETag": tag, "Cache-Control": "no-cache"})

    @app.get("/runs/{index}/confusion")
    async def confusion(index: int):
        """The confusion matrix on the run's test set (computed once; 404 when the data is not here)."""
        lab = run_at(index)
        try:
            return await admission.run(lab.confusion)
        except CnnlabError as e:
            raise HTTPException(404, f"no test data for the confusion matrix: {e}") from None

    @app.get("/shape")
    def conv_shape(
        size: Annotated[int, Query(ge=1, le=10_000)],
        kernel: Annotated[int, Query(ge=1, le=1000)],
        stride: Annotated[int, Query(ge=1, le=1000)] = 1,
        padding: Annotated[int, Query(ge=0, le=1000)] = 0,
        dilation: Annotated[int, Query(ge=1, le=1000)] = 1,
        pool: Annotated[int | None, Query(ge=1, le=1000)] = None,
    ):
        """`cnnlab shape`: a convolution's (then pooling's) output size, formula and numbers written out."""
        try:
            text = shape(size, kernel, stride, padding, dilation, pool)
        except CnnlabError as e:
            raise HTTPException(422, str(e)) from None
        return {"text": text, "output": int(text.rsplit("output: ", 1)[1].split("x")[0])}

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=Path(str(swagger_ui_path))), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="cnnlab API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    def openapi() -> dict:
        """FastAPI documents one operation per path and method: give each the upload and the JSON body."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            upload_only = get_openapi(title=app.title, version=app.version, routes=uploads.routes)
            for path, operations in upload_only["paths"].items():
                body = schema["paths"][path]["post"].setdefault("requestBody", {"content": {}, "required": True})
                body["content"].update(operations["post"]["requestBody"]["content"])
            schema["components"]["schemas"].update(upload_only["components"]["schemas"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema

    @app.exception_handler(StarletteHTTPException)
    async def unparsable_body(request: Request, error: StarletteHTTPException):
        # Starlette and FastAPI answer 400 to a body they cannot parse (junk multipart, JSON nested too
        # deep for the parser, a second "file"); the API promises 422 for any body it cannot use.
        if error.status_code == 400:
            error = StarletteHTTPException(422, error.detail)
        return await http_exception_handler(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        # FastAPI's own handler echoes each bad input, which fails to encode when it is JSON's Infinity or NaN
        # (Python's parser accepts them): where and what, without the input.
        return JSONResponse({"detail": [{k: e[k] for k in ("loc", "msg", "type")} for e in error.errors()]}, 422)

    for error_type, status in ((ImageError, 422), (NotAnImageError, 415)):
        app.add_exception_handler(error_type, lambda request, e, code=status: JSONResponse({"detail": str(e)}, code))
    return app


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for request headers.

    uvicorn times out a connection only while it is idle between requests, and a byte of data stops that
    clock: a client trickling header bytes would hold its connection for ever. Here a connection must
    deliver complete headers within `header_seconds` of opening, or of its previous response."""

    header_seconds = HEADER_SECONDS

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self):
        super().on_response_complete()
        self._arm_header_deadline()

    def _arm_header_deadline(self):
        self.loop.call_later(self.header_seconds, self._close_if_no_new_request, self.cycle)

    def _close_if_no_new_request(self, cycle_then):
        idle = self.cycle is cycle_then and (cycle_then is None or cycle_then.response_complete)
        if idle and not self.transport.is_closing():
            self.transport.close()


def server_config(app: FastAPI, *, header_seconds: float = HEADER_SECONDS, **options) -> uvicorn.Config:
    """uvicorn settings for the lab: the header deadline, keep-alive, a connection cap, a bounded shutdown."""
    protocol = type("Protocol", (HeaderDeadlineProtocol,), {"header_seconds": header_seconds})
    return uvicorn.Config(
        app,
        http=protocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=CONNECTIONS,
        timeout_graceful_shutdown=3,
        log_level="warning",
        **options,
    )


class LabServer(uvicorn.Server):
    """A uvicorn server that says where it serves once it accepts connections (model loaded, port bound)."""

    def __init__(self, config: uvicorn.Config, banner: str):
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            print(self.banner, flush=True)


def serve(run_dirs, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the lab until Ctrl-C; every run is loaded and the port bound before "serving on" is printed."""
    if not 1 <= port <= 65535:
        raise CnnlabError(f"--port must be between 1 and 65535, got {port}")
    for run_dir in run_dirs:
        if not Path(run_dir).is_dir():
            raise CnnlabError(f"{run_dir} is not a run directory (a folder `cnnlab train --out` wrote)")
    app = create_app(run_dirs)
    listener = bind(host, port)
    names = ", ".join(str(r) for r in run_dirs)
    LabServer(server_config(app), f"cnnlab: serving {names} on http://{host}:{port}/ (API docs at /docs)").run(
        sockets=[listener]
    )


@contextmanager
def serving_in_thread(run_dirs) -> Iterator[str]:
    """The lab over these runs on a free local port, in a background thread (tests, screenshots): yields its URL."""
    listener = bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(create_app(run_dirs)))
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
    return listener
