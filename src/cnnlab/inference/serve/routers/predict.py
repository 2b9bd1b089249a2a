"""POST /predict: the top classes for an upload (any run) or 28x28 JSON pixels (a digit run)."""

from typing import NoReturn

import numpy as np
from fastapi import APIRouter, HTTPException, UploadFile

from cnnlab.inference.serve.bodies import Pixels
from cnnlab.inference.serve.dependencies import ChosenRun, PixelsRun, TheLab
from cnnlab.inference.serve.routers.media import JsonRoute, UploadRoute

uploads, pixels = APIRouter(route_class=UploadRoute), APIRouter(route_class=JsonRoute)


@uploads.post("/predict", response_model=None)
async def predict_upload(file: UploadFile, lab: TheLab, served: ChosenRun) -> dict:
    """Top-3 classes for an uploaded image: for a digit run a digit, or a line of digits read as a number (any
    size, dark ink on light paper or the reverse; "number", and each digit's box, top-3 and input); for an image
    run any picture (scaled and centre-cropped as its training images were)."""
    if served.digits:
        return await lab.admission.run(served.read, await file.read(), file.filename or "upload")
    return await lab.admission.run(served.predict, await lab.input_of(file, served))


@pixels.post("/predict", response_model=None)
async def predict_pixels(body: Pixels, lab: TheLab, served: PixelsRun) -> dict:
    """Top-3 classes for a 28x28 digit; the answer also holds the input, whether the model is unsure, and the
    fields of a number of one digit ("number", "digits")."""
    return await lab.admission.run(served.predict, np.array(body.pixels, dtype=np.uint8))


router = APIRouter()
router.include_router(uploads)
router.include_router(pixels)


@router.post("/predict", include_in_schema=False, response_model=None)
def unsupported_media_type() -> NoReturn:
    raise HTTPException(415, "send multipart/form-data with a file, or application/json with pixels")
