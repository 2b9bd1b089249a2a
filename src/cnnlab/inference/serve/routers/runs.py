"""The served runs: liveness, what each run is, its curves and training snapshots (polled while it trains), its
confusion matrix, the test images of each cell, and any test image."""

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from cnnlab import CnnlabError
from cnnlab.engine.checkpoint import METRICS
from cnnlab.engine.snapshots import PATTERN
from cnnlab.inference.serve.dependencies import RunAt, TheLab
from cnnlab.inference.serve.encoding import FiniteJSONResponse
from cnnlab.inference.serve.lab import Lab

MODEL_KEYS = ("name", "parameters", "dataset", "classes", "test_accuracy", "epochs", "input", "channels", "input_size")

router = APIRouter()


@router.get("/health", response_model=None)
def health() -> dict:
    return {"status": "ok"}


@router.get("/model", response_model=None)
def model_info(lab: TheLab) -> dict:
    """The first run: name, parameters, dataset, test accuracy, and its input ("draw" a digit or "upload")."""
    return {k: lab.runs[0].about[k] for k in MODEL_KEYS}


@router.get("/runs", response_model=None)
def list_runs(lab: TheLab) -> list[dict]:
    """Every served run, with its first convolution's kernels."""
    return [run.about for run in lab.runs]


@router.get("/runs/{index}/metrics")
def metrics(served: RunAt, request: Request) -> Response:
    """The run's metrics.jsonl rows; poll it while `training` is true (ETag: unchanged is 304)."""
    path = served.dir / METRICS
    stat = path.stat() if path.exists() else None
    tag = f'"{stat.st_mtime_ns}-{stat.st_size}"' if stat else '"none"'
    return _unless_unchanged(request, tag) or FiniteJSONResponse(
        served.metrics(), headers={"ETag": tag, "Cache-Control": "no-cache"}
    )


@router.get("/runs/{index}/snapshots")
async def snapshots(served: RunAt, lab: TheLab, request: Request) -> Response:
    """The first convolution's kernels and a test image's feature maps as training went on (engine/snapshots.py);
    poll it while the run trains (ETag: unchanged is 304)."""
    names = sorted(path.name for path in Path(served.dir).glob(PATTERN))
    tag = f'"{len(names)}-{names[-1] if names else "none"}"'
    return _unless_unchanged(request, tag) or FiniteJSONResponse(
        await lab.admission.run(served.snapshots), headers={"ETag": tag, "Cache-Control": "no-cache"}
    )


async def _on_test_data(lab: Lab, work: Callable[..., Any], *args: object) -> Any:
    """`work(*args)`, which reads the run's test set, in the lab's admission queue: 404 when the data is not here."""
    try:
        return await lab.admission.run(work, *args)
    except CnnlabError as e:
        raise HTTPException(404, f"no test data: {e}") from None


def _unless_unchanged(request: Request, tag: str) -> Response | None:
    """304 when the client already holds what `tag` names."""
    return Response(status_code=304, headers={"ETag": tag}) if request.headers.get("if-none-match") == tag else None


@router.get("/runs/{index}/confusion", response_model=None)
async def confusion(served: RunAt, lab: TheLab) -> dict:
    """The confusion matrix on the run's test set (computed once; 404 when the data is not here)."""
    return await _on_test_data(lab, served.confusion)


@router.get("/runs/{index}/confusion/{true}/{predicted}", response_model=None)
async def confusion_cell(
    served: RunAt,
    lab: TheLab,
    true: int,
    predicted: int,
    limit: Annotated[int, Query(ge=1, le=100, description="images at most, the most confident")] = 24,
) -> dict:
    """The test images of class `true` predicted as `predicted`, most confident first, each with its top 3; 422 for a
    class out of range, 404 when the test data is not here."""
    return await _on_test_data(lab, served.confusion_cell, true, predicted, limit)


@router.get("/runs/{index}/test", response_model=None)
async def test_image(
    served: RunAt,
    lab: TheLab,
    image: Annotated[int | None, Query(description="its index in the test set (default: a random one)")] = None,
) -> dict:
    """One test image, with its label: 28x28 pixels for a digit run, else a PNG data URL."""
    return await _on_test_data(lab, served.test_image, image)
