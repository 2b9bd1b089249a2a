"""Whether code that came with a run folder may run, as Hugging Face's `trust_remote_code` decides it.

A run trained from a learner's script keeps a copy of the script and its SHA-256 in the run folder, and
reopens from that copy; opening it runs the copy's code. Code the user trained with on this machine is
trusted: its hash is recorded (`remember`) under $XDG_CONFIG_HOME/cnnlab/trusted-code (by default
~/.config/cnnlab/trusted-code), one small file named by each hash, when `cnnlab train` builds a model from a
script the user named. Anything else (a run folder someone sent, a copy edited since) needs the user's
consent, `--trust-code`; without it `trusted_source` refuses in one line that says what would run and how
to allow it. The hash checked is always that of the bytes about to run, never only the one recorded.
"""

import hashlib
import os
import re
from pathlib import Path

from cnnlab import CnnlabError
from cnnlab.external.script import MAX_SCRIPT_BYTES
from cnnlab.files import read_bounded, write_text


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trust_dir() -> Path:
    root = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(root) / "cnnlab" / "trusted-code"


def remember(data: bytes, *, origin: str) -> str:
    """Record that the user runs this code on this machine (it trained a model); returns its hash."""
    digest = sha256(data)
    folder = trust_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CnnlabError(f"cannot record trusted code in {folder}: {e.strerror or e}") from None
    write_text(folder / digest, origin + "\n")  # what it was, for a person reading the folder
    return digest


def is_trusted(digest: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{64}", digest) is not None and (trust_dir() / digest).is_file()


def trusted_source(path: Path, *, recorded: str, what: str, trust_code: bool) -> bytes:
    """The bytes of a run's code copy at `path`, once they may run: their hash is trusted here, or the user
    said --trust-code. `recorded`: the hash the run recorded; `what`: what would run ("class Net")."""
    data = read_bounded(path, MAX_SCRIPT_BYTES)
    digest = sha256(data)
    if trust_code or (digest == recorded and is_trusted(digest)):
        return data
    if digest != recorded:
        raise CnnlabError(
            f"{path} was changed after training (SHA-256 {digest[:16]}..., recorded {str(recorded)[:16]}...); "
            f"opening the run would run its {what}: read it, then add --trust-code to run it anyway"
        )
    raise CnnlabError(
        f"opening this run runs the Python code of {path} ({what}, SHA-256 {digest[:16]}...), which was not "
        "trained on this machine: read it, then add --trust-code to allow it"
    )
