"""`cnnlab serve`: a draw-a-digit page and a JSON API over a trained run (FastAPI + uvicorn).

GET /           the page (all assets served here: it works offline)
POST /predict   an image upload (multipart, field "file") or JSON {"pixels": 28x28 numbers 0-255}
GET /health     liveness;  GET /model: name, parameters, dataset, test accuracy;  /docs: OpenAPI
Requests over 2 MB are refused with 413 before they are read in full; bad images are 415 or 422.
"""
from importlib.resources import files
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from cnnlab import CnnlabError
from cnnlab.inference.decode import ImageError, NotAnImageError, load_image
from cnnlab.inference.predict import Predictor
from cnnlab.inference.preprocess import preprocess
from cnnlab.models import count_parameters

MAX_BODY = 2 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 for a body over `limit` bytes, by Content-Length or as it streams in."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await JSONResponse({"detail": f"request body over {self.limit:,} bytes"}, 413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"request body over {self.limit:,} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _pixels(payload) -> np.ndarray:
    pixels = payload.get("pixels") if isinstance(payload, dict) else None
    try:
        array = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError):
        raise HTTPException(422, '"pixels" must be 28 rows of 28 numbers from 0 to 255') from None
    if array.shape != (28, 28) or not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise HTTPException(422, f'"pixels" must be 28 rows of 28 numbers from 0 to 255, got shape {array.shape}')
    return array.astype(np.uint8)


def create_app(run_dir, top_k: int = 3) -> FastAPI:
    predictor = Predictor(run_dir)
    run = predictor.run
    metrics = run.metrics or [{}]
    about = {"name": run.model_name, "parameters": count_parameters(run.model), "dataset": run.info.name,
             "classes": list(run.info.classes), "test_accuracy": metrics[-1].get("test_accuracy"), "epochs": run.epoch}
    page = files("cnnlab").joinpath("static/index.html").read_text()
    app = FastAPI(title="cnnlab", description=f"Digit classifier: {about['name']} trained on {about['dataset']}")
    app.add_middleware(BodyLimit)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return page

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/model")
    def model_info():
        return about

    @app.post("/predict", openapi_extra={"requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": {"type": "object", "properties": {"pixels": {"type": "array"}}}}}}})
    async def predict(request: Request):
        """Top-k classes for an uploaded image (field "file") or {"pixels": 28x28}; returns the 28x28 input too."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(422, 'multipart upload needs a file in the field "file"')
            data = await upload.read()
            try:
                digit = await run_in_threadpool(lambda: preprocess(load_image(data, upload.filename or "upload")))
            except ImageError as e:
                raise HTTPException(415 if isinstance(e, NotAnImageError) else 422, str(e)) from None
        elif kind.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                raise HTTPException(422, "body is not valid JSON") from None
            digit = _pixels(body)
        else:
            raise HTTPException(415, "send multipart/form-data with a file, or application/json with pixels")
        top = await run_in_threadpool(predictor.top_k, digit, top_k)
        return {"predictions": top, "input": digit.tolist()}

    return app


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000) -> None:
    if not Path(run_dir).is_dir():
        raise CnnlabError(f"run directory {run_dir} does not exist")
    print(f"cnnlab: serving {run_dir} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(create_app(run_dir), host=host, port=port, log_level="warning")
