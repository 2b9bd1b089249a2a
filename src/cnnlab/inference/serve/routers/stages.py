"""A digit run's stages (POST /activations) and one convolution output as its multiply-add (POST /explain)."""

from typing import NoReturn

import numpy as np
from fastapi import APIRouter, HTTPException, UploadFile

from cnnlab.inference.serve.bodies import Cell, Pixels
from cnnlab.inference.serve.dependencies import PixelsRun, StagesRun, TheLab
from cnnlab.inference.serve.routers.media import JsonRoute, UploadRoute

uploads, pixels = APIRouter(route_class=UploadRoute), APIRouter(route_class=JsonRoute)


@uploads.post("/activations", response_model=None)
async def activations_upload(file: UploadFile, lab: TheLab, served: StagesRun) -> dict:
    """Every stage of the model for an uploaded image, quantised to a byte a value (digit runs)."""
    return await lab.admission.run(served.activations, await lab.input_of(file, served))


@pixels.post("/activations", response_model=None)
async def activations_pixels(body: Pixels, lab: TheLab, served: PixelsRun) -> dict:
    """Every stage of the model for a 28x28 digit, quantised to a byte a value."""
    return await lab.admission.run(served.activations, np.array(body.pixels, dtype=np.uint8))


@pixels.post("/explain", response_model=None)
async def explain(body: Cell, lab: TheLab, served: PixelsRun) -> dict:
    """One convolution output as weights x input patch + bias, next to the value the model computed."""
    return await lab.admission.run(served.explain, body)


router = APIRouter()
router.include_router(uploads)
router.include_router(pixels)


@router.post("/activations", include_in_schema=False, response_model=None)
def unsupported_media_type() -> NoReturn:
    raise HTTPException(415, "send multipart/form-data with a file, or application/json with pixels")


@router.post("/explain", include_in_schema=False, response_model=None)
def explain_takes_json() -> NoReturn:
    raise HTTPException(415, "send application/json with pixels, module, channel, row and col")
