"""The served runs: liveness, what each run is, its curves (polled while it trains) and confusion matrix."""

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from cnnlab import CnnlabError
from cnnlab.engine.checkpoint import METRICS
from cnnlab.inference.serve.dependencies import RunAt, TheLab
from cnnlab.inference.serve.encoding import FiniteJSONResponse

MODEL_KEYS = ("name", "parameters", "dataset", "classes", "test_accuracy", "epochs", "input", "channels", "input_size")

router = APIRouter()


@router.get("/health")
def health():
    return {"status": "ok"}


@router.get("/model")
def model_info(lab: TheLab):
    """The first run: name, parameters, dataset, test accuracy, and its input ("draw" a digit or "upload")."""
    return {k: lab.runs[0].about[k] for k in MODEL_KEYS}


@router.get("/runs")
def list_runs(lab: TheLab):
    """Every served run, with its first convolution's kernels."""
    return [run.about for run in lab.runs]


@router.get("/runs/{index}/metrics")
def metrics(served: RunAt, request: Request):
    """The run's metrics.jsonl rows; poll it while `training` is true (ETag: unchanged is 304)."""
    path = served.dir / METRICS
    stat = path.stat() if path.exists() else None
    tag = f'"{stat.st_mtime_ns}-{stat.st_size}"' if stat else '"none"'
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"ETag": tag})
    return FiniteJSONResponse(served.metrics(), headers={"ETag": tag, "Cache-Control": "no-cache"})


@router.get("/runs/{index}/confusion")
async def confusion(served: RunAt, lab: TheLab):
    """The confusion matrix on the run's test set (computed once; 404 when the data is not here)."""
    try:
        return await lab.admission.run(served.confusion)
    except CnnlabError as e:
        raise HTTPException(404, f"no test data for the confusion matrix: {e}") from None
