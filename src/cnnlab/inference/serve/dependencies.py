"""The lookups routes share, as FastAPI dependencies: the lab, the run at a path's index, the run a request's
`?run=` names, and a digit run (a 422 for an image run)."""

from typing import Annotated

from fastapi import Depends, Request

from cnnlab.inference.serve.bodies import RunIndex
from cnnlab.inference.serve.lab import Lab, LabRun


def the_lab(request: Request) -> Lab:
    lab: Lab = request.app.state.lab
    return lab


TheLab = Annotated[Lab, Depends(the_lab)]


def run_at(index: int, lab: TheLab) -> LabRun:
    """The run of a path's `{index}`: 404 past the last one."""
    return lab.run_at(index)


def chosen_run(lab: TheLab, run: RunIndex = 0) -> LabRun:
    """The run a request's `?run=` names: the first by default."""
    return lab.run_at(run)


class DigitRun:
    """The run `?run=` names, which must be a digit run to take `what` (else 422)."""

    def __init__(self, what: str):
        self.what = what

    def __call__(self, run: Annotated[LabRun, Depends(chosen_run)]) -> LabRun:
        run.require_digits(self.what)
        return run


RunAt = Annotated[LabRun, Depends(run_at)]
ChosenRun = Annotated[LabRun, Depends(chosen_run)]
PixelsRun = Annotated[LabRun, Depends(DigitRun("28x28 pixels"))]
StagesRun = Annotated[LabRun, Depends(DigitRun("the stages of a digit"))]
