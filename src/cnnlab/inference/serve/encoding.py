"""JSON answers with no NaN or infinity in them: JSON has no such numbers, Starlette refuses to write them (a
500), and a run can hold them: a diverged run's losses in metrics.jsonl, a tampered run's mean or weights."""

import math
from typing import Any

from fastapi.responses import JSONResponse


class FiniteJSONResponse(JSONResponse):
    """A JSON answer whose non-finite floats are written as null."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # "Out of range float values are not JSON compliant": rarely, so walked only then
            return super().render(finite(content))


def finite(value: Any) -> Any:
    """`value` with every NaN and infinity inside it replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value
