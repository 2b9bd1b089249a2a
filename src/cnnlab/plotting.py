"""Figures as PNG files: matplotlib on its file-only backend, saved atomically."""

import io
import types
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.files import write_output

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def pyplot() -> types.ModuleType:
    """matplotlib.pyplot on the Agg backend (files only, no display), chosen when a figure is first made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: "Figure", path: str | Path, *, overwrite: bool = True) -> Path:
    """The figure as a PNG at `path`; a file there is replaced (by default: a picture cnnlab names in its own
    folders; pass `overwrite` for one the user named), a run's own files never (files.write_output)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return write_output(path, buffer.getvalue(), overwrite=overwrite)
