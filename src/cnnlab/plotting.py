"""Figures as PNG files: matplotlib on its file-only backend, saved atomically."""

import io

from cnnlab.files import write_bytes


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display), chosen when a figure is first made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return write_bytes(path, buffer.getvalue())
