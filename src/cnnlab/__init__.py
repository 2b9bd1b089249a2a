"""cnnlab: the CNN lecture (PyTorch Zero To All, lectures 10-11) as a fast, tested lab."""

__version__ = "0.1.0"


class CnnlabError(Exception):
    """A user mistake or bad input: the CLI prints it as one line and exits non-zero."""
