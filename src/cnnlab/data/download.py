"""Fetch a file from a list of mirrors, verify its checksum, and only then move it into place.

A file is written to a temp file in the destination folder and renamed after its md5 matches, so
the cache never holds a partial or corrupt file, whatever fails and whenever.
"""
import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from cnnlab.data.idx import DataError

TIMEOUT_S = 30


def _md5_matches(data: bytes, md5s: tuple[str, ...]) -> bool:
    """True if the file or, for a gzip file, its content has one of the published md5s.

    Mirrors serve the original .gz files, but a re-compressed copy with the same content is as good:
    MNIST's published checksums are of the uncompressed files."""
    if hashlib.md5(data).hexdigest() in md5s:
        return True
    if data[:2] == b"\x1f\x8b":
        try:
            return hashlib.md5(gzip.decompress(data)).hexdigest() in md5s
        except (OSError, EOFError, ValueError):
            return False
    return False


def download(filename: str, mirrors: list[str], md5s: tuple[str, ...], dest_dir: Path) -> Path:
    """Download `filename` from the first mirror that serves a verified copy into `dest_dir`."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                data = response.read()
        except urllib.error.HTTPError as e:
            failures.append(f"{url}: HTTP {e.code} {e.reason}")
            continue
        except (urllib.error.URLError, OSError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        if not _md5_matches(data, md5s):
            failures.append(f"{url}: checksum mismatch")
            continue
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{filename}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest_dir / filename)
        except BaseException:
            os.unlink(tmp)
            raise
        return dest_dir / filename
    raise DataError(f"could not download {filename}: " + "; ".join(failures))
