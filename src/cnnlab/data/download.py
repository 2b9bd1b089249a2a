"""Fetch a file from a list of mirrors, verify its checksum, and only then move it into place.

A file is written to a temp file in the destination folder and renamed after its md5 matches, so
the cache never holds a partial or corrupt file, whatever fails and whenever. A response is read up to
a size limit only: a mirror that sends more is refused, never held in memory whole.
"""

import gzip
import hashlib
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

from cnnlab.data.idx import DataError
from cnnlab.files import write_bytes

TIMEOUT_S = 30
MAX_DOWNLOAD_BYTES = 256 << 20  # the largest file cnnlab fetches, CIFAR-10's archive, is 170 MB
# The most a downloaded gzip file may unpack to while its content's md5 is checked: the largest IDX file, MNIST's
# training images, is 47 MB. A 194 kB file that unpacked to 381 MiB in memory was a gzip bomb.
MAX_UNPACKED_BYTES = 64 << 20


def cache_dir(name: str) -> Path:
    """Where dataset `name` is kept: $XDG_CACHE_HOME/cnnlab/<name>, by default ~/.cache/cnnlab/<name>."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cnnlab" / name


def _md5_matches(data: bytes, md5s: tuple[str, ...]) -> bool:
    """True if the file or, for a gzip file, its content has one of the published md5s.

    Mirrors serve the original .gz files, but a re-compressed copy with the same content is as good:
    MNIST's published checksums are of the uncompressed files."""
    if hashlib.md5(data).hexdigest() in md5s:
        return True
    return data[:2] == b"\x1f\x8b" and unpacked_md5(data) in md5s


def unpacked_md5(data: bytes, limit: int = MAX_UNPACKED_BYTES) -> str | None:
    """The md5 of gzip `data`'s content, unpacked a megabyte at a time; None when it is not gzip or unpacks to
    more than `limit` bytes (nothing larger than a megabyte is ever held)."""
    digest, total = hashlib.md5(), 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    return None
                digest.update(chunk)
    except (OSError, EOFError, ValueError):
        return None
    return digest.hexdigest()


def download(
    filename: str, mirrors: list[str], md5s: tuple[str, ...], dest_dir: Path, max_bytes: int = MAX_DOWNLOAD_BYTES
) -> Path:
    """Download `filename` from the first mirror that serves a verified copy of at most `max_bytes` into `dest_dir`."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                data = response.read(max_bytes + 1)
        except urllib.error.HTTPError as e:
            failures.append(f"{url}: HTTP {e.code} {e.reason}")
            continue
        except (urllib.error.URLError, OSError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        if len(data) > max_bytes:
            failures.append(f"{url}: more than the {max_bytes:,} bytes expected")
            continue
        if not _md5_matches(data, md5s):
            failures.append(f"{url}: checksum mismatch")
            continue
        return write_bytes(dest_dir / filename, data)
    raise DataError(f"could not download {filename}: " + "; ".join(failures))
