"""POST /attribution: where a digit run looks for one class of a 28x28 digit (occlusion, or Grad-CAM at one of
its convolutions); an image run, a class out of range or a layer that is no convolution get a 422."""

from typing import NoReturn

from fastapi import APIRouter, HTTPException

from cnnlab.inference.serve.bodies import Attribution
from cnnlab.inference.serve.dependencies import PixelsRun, TheLab
from cnnlab.inference.serve.routers.media import JsonRoute

pixels = APIRouter(route_class=JsonRoute)


@pixels.post("/attribution", response_model=None)
async def attribution(body: Attribution, lab: TheLab, served: PixelsRun) -> dict:
    """A map over the digit, exact values: how far covering each place lowers the class's probability
    (occlusion), or Grad-CAM's evidence for the class at a convolution, upsampled to 28x28."""
    return await lab.admission.run(served.attribution, body)


router = APIRouter()
router.include_router(pixels)


@router.post("/attribution", include_in_schema=False, response_model=None)
def attribution_takes_json() -> NoReturn:
    raise HTTPException(415, "send application/json with pixels, method, and optionally layer and target")
