"""The JSON a client sends: a 28x28 digit, a convolution cell, an attribution, and which run it is for."""

from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

Pixel = Annotated[int, Field(strict=True, ge=0, le=255)]  # strict: "255" and true are not pixels
Row = Annotated[list[Pixel], Field(min_length=28, max_length=28)]
RunIndex = Annotated[int, Query(ge=0, le=100, description="which run, in the order given to `cnnlab serve`")]


class Pixels(BaseModel):
    """A 28x28 digit, white ink on black, as MNIST stores it."""

    model_config = ConfigDict(extra="forbid")
    pixels: Annotated[list[Row], Field(min_length=28, max_length=28, description="28 rows of 28 ints 0-255")]


class Cell(Pixels):
    """One output value of a convolution, for the multiply-add shown when a map cell is clicked."""

    module: str = Field(
        max_length=200, description='a convolution call of the stages, e.g. "conv1" ("conv1 (call 2)": its second call)'
    )
    channel: int = Field(strict=True, ge=0)
    row: int = Field(strict=True, ge=0)
    col: int = Field(strict=True, ge=0)


class Attribution(Pixels):
    """Where the model looks for one class of a digit: occlusion, or Grad-CAM at one of its convolutions."""

    method: Literal["occlusion", "grad-cam"]
    layer: str | None = Field(None, max_length=200, description="Grad-CAM's convolution (default: the last one)")
    target: int | None = Field(None, strict=True, ge=0, description="the class to explain (default: the predicted one)")
