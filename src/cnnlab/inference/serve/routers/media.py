"""Routes chosen by Content-Type as well as path and method, so that one path takes an upload or JSON, each
through its own typed handler (FastAPI gives a path one body type)."""

from collections.abc import MutableMapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import Scope


class MediaTypeRoute(APIRoute):
    media_type = ""

    def matches(self, scope: Scope) -> tuple[Match, MutableMapping[str, Any]]:
        match, child_scope = super().matches(scope)
        kind = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
        if match is Match.FULL and kind != self.media_type:
            return Match.NONE, {}
        return match, child_scope


class UploadRoute(MediaTypeRoute):
    media_type = "multipart/form-data"


class JsonRoute(MediaTypeRoute):
    media_type = "application/json"
