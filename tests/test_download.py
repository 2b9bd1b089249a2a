"""The downloader against a real HTTP server on 127.0.0.1 serving good, corrupt and missing files."""

import functools
import gzip
import hashlib
import http.server
import threading

import pytest

from cnnlab.data import datasets
from cnnlab.data.download import download
from cnnlab.data.idx import DataError
from conftest import write_idx_dataset


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/good (valid files), tmp_path/bad (same names, corrupt) and nothing else."""
    root = tmp_path / "www"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_good_file_is_verified_and_moved_into_place(server, tmp_path):
    root, url = server
    (root / "good").mkdir(parents=True)
    data = gzip.compress(b"hello")
    (root / "good" / "f.gz").write_bytes(data)
    dest = tmp_path / "cache"
    path = download("f.gz", [f"{url}/missing/", f"{url}/good/"], (hashlib.md5(data).hexdigest(),), dest)
    assert path.read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["f.gz"]  # no temp file left


def test_checksum_of_the_uncompressed_content_is_accepted(server, tmp_path):
    root, url = server
    (root / "good").mkdir(parents=True)
    (root / "good" / "f.gz").write_bytes(gzip.compress(b"hello", mtime=123))
    path = download("f.gz", [f"{url}/good/"], (hashlib.md5(b"hello").hexdigest(),), tmp_path / "cache")
    assert gzip.decompress(path.read_bytes()) == b"hello"


def test_corrupt_and_missing_files_leave_nothing_in_the_cache(server, tmp_path):
    root, url = server
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "f.gz").write_bytes(b"corrupt")
    dest = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download("f.gz", [f"{url}/missing/", f"{url}/bad/"], (hashlib.md5(b"good").hexdigest(),), dest)
    assert "404" in str(info.value)
    assert list(dest.iterdir()) == []


def test_dataset_downloads_into_the_cache_then_reads_from_it(server, tmp_path, monkeypatch):
    root, url = server
    monkeypatch.delenv("CNNLAB_OFFLINE")  # the mirrors are this test's own server
    write_idx_dataset(root / "good", n_train=30, n_test=10)
    md5s = {
        stem: (hashlib.md5(gzip.decompress((root / "good" / f"{stem}.gz").read_bytes())).hexdigest(),)
        for stem in datasets.IDX_FILES
    }
    spec = datasets.SPECS["mnist"]
    monkeypatch.setitem(
        datasets.SPECS,
        "mnist",
        spec.__class__(**{**spec.__dict__, "mirrors": (f"{url}/bad/", f"{url}/good/"), "md5s": md5s}),
    )
    ds = datasets.load_dataset("mnist")
    assert len(ds.train_labels) == 30 and len(ds.test_labels) == 10
    cache = datasets.cache_dir("mnist")
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s}.gz" for s in datasets.IDX_FILES)
    # a second load needs no server
    monkeypatch.setitem(
        datasets.SPECS, "mnist", spec.__class__(**{**spec.__dict__, "mirrors": ("http://127.0.0.1:9/",), "md5s": md5s})
    )
    assert len(datasets.load_dataset("mnist").train_labels) == 30


def test_public_md5_of_real_mnist_content(mnist_dir):
    """The checksums we ship match the real files' content (the shared copies are re-compressed)."""
    for stem in datasets.IDX_FILES:
        content = gzip.decompress((mnist_dir / f"{stem}.gz").read_bytes())
        assert hashlib.md5(content).hexdigest() in datasets.SPECS["mnist"].md5s[stem]


def test_a_gzip_bomb_from_a_mirror_is_never_unpacked_whole(server, tmp_path):
    """A mirror's file whose md5 differs is unpacked to check its content's md5: a megabyte at a time, and no
    further than the largest real content, so 200 MiB of zeros in a 200 kB gzip never sits in memory."""
    import io
    import tracemalloc

    root, url = server
    (root / "bomb").mkdir(parents=True)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as packed:
        for _ in range(200):
            packed.write(bytes(1 << 20))
    (root / "bomb" / "f.gz").write_bytes(buffer.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="checksum mismatch"):
            download("f.gz", [f"{url}/bomb/"], (hashlib.md5(b"good").hexdigest(),), tmp_path / "cache")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(buffer.getvalue()) < 1 << 20 and peak < 16 << 20, peak
