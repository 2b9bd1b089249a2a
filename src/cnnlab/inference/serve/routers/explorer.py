"""GET /shape: `cnnlab shape` for the stride and padding explorer."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from cnnlab import CnnlabError
from cnnlab.explain.arithmetic import shape

router = APIRouter()


@router.get("/shape", response_model=None)
def conv_shape(
    size: Annotated[int, Query(ge=1, le=10_000)],
    kernel: Annotated[int, Query(ge=1, le=1000)],
    stride: Annotated[int, Query(ge=1, le=1000)] = 1,
    padding: Annotated[int, Query(ge=0, le=1000)] = 0,
    dilation: Annotated[int, Query(ge=1, le=1000)] = 1,
    pool: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> dict:
    """`cnnlab shape`: a convolution's (then pooling's) output size, formula and numbers written out."""
    try:
        result = shape(size, kernel, stride, padding, dilation, pool)
    except CnnlabError as e:
        raise HTTPException(422, str(e)) from None
    return {"text": str(result), "output": result.final, "conv": result.output, "pooled": result.pooled}
