"""The lab's page (GET /, its modules under /static) and the API's docs (GET /docs, Swagger UI served from the
swagger-ui-bundle package, and /openapi.json with both request bodies of each path)."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

STATIC = Path(__file__).parents[2] / "static"  # src/cnnlab/inference/static: plain JS modules, no build step

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The page names its icon; this answers browsers and tools that ask for the old default path anyway."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


@router.get("/docs")
def docs() -> FileResponse:
    return FileResponse(STATIC / "docs.html")  # Swagger UI, started by docs.js: no inline script


def mount_files(app: FastAPI) -> None:
    """The page's modules and Swagger UI's assets, from this package and swagger-ui-bundle: nothing from a CDN."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=Path(str(swagger_ui_path))), name="docs-assets")


def openapi(app: FastAPI, *, uploads: list[APIRouter]) -> dict:
    """FastAPI documents one operation per path and method (the JSON one, included after the upload): give each
    path of the `uploads` routers the upload's body too."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        upload_routes = [route for router in uploads for route in router.routes]
        upload_only = get_openapi(title=app.title, version=app.version, routes=upload_routes)
        for path, operations in upload_only["paths"].items():
            body = schema["paths"][path]["post"].setdefault("requestBody", {"content": {}, "required": True})
            body["content"].update(operations["post"]["requestBody"]["content"])
        schema["components"]["schemas"].update(upload_only["components"]["schemas"])
        app.openapi_schema = schema
    return app.openapi_schema
