"""A folder of your own images, in torchvision's ImageFolder convention, decoded once into uint8 tensors.

    DIR/train/<class>/*  and  DIR/test/<class>/*     the test images are given
    DIR/<class>/*                                    the test images are held out here (datasets.py)

Class names are the folder names, sorted; files may sit in sub-folders of a class folder; names starting
with a dot are ignored. Every file is read bounded, decoded in parallel threads (PIL releases the GIL while
it decodes and resizes) and fitted to H x W by `fit_image`: scaled, aspect ratio kept, until it covers
H x W, then centre-cropped. Cropping rather than padding: a padded border would tell the net each
image's aspect ratio, a shortcut it learns whenever one class is shot more often upright (so the test
accuracy flatters it), and no pixel of the model's input would be wasted on padding; it is also what
torchvision's standard evaluation transform does (Resize, then CenterCrop). The price: the edges of a very
long or very tall image are cut off, so crop such images yourself.

Files that cannot be read or decoded (empty, truncated, not an image, too large) are skipped and
reported. A class folder that is a symbolic link is not followed (it could lead anywhere: `ln -s /usr DIR/z`
would decode /usr) and is reported too. The decoded images are kept in RGB in one cache file per size in the
cnnlab cache (`cache_dir("folder")/<hash of the folder's resolved path>/HxW.pt`, never in the user's folder),
keyed by every file's name, size and modification time, so a second run reads one file instead of decoding
them all again.
"""

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from cnnlab import CnnlabError, memory
from cnnlab.data.decode import read_image, upright
from cnnlab.data.download import cache_dir
from cnnlab.data.idx import DataError
from cnnlab.files import atomic_write

DEFAULT_IMAGE_SIZE = (32, 32)  # CIFAR-10's: small enough to train on a CPU
MAX_IMAGE_SIDE = 4096
CACHE_FORMAT = "cnnlab-folder-cache/1"
DECODER = 2  # in the cache key: raise it when decoding changes what a file becomes (2: 16-bit grey, broken EXIF)
REPORTED_FILES = 10  # bad files named in the report (a few bad files: all of them); the rest are counted


class FolderError(DataError):
    """A data folder that does not follow the ImageFolder layout, or would not fit in memory."""


def parse_image_size(text: str) -> tuple[int, int]:
    """ "HxW" (or one number for a square) -> (H, W)."""
    try:
        size = tuple(int(n) for n in str(text).lower().split("x"))
    except ValueError:
        size = ()
    size = size * 2 if len(size) == 1 else size
    if len(size) != 2 or not all(1 <= n <= MAX_IMAGE_SIDE for n in size):
        raise CnnlabError(f"--image-size must be HxW with sides from 1 to {MAX_IMAGE_SIDE} such as 32x32, got {text!r}")
    return size


@dataclass(frozen=True)
class ImageFile:
    path: Path
    name: str  # relative to the data folder, with forward slashes
    label: int
    is_test: bool
    size: int  # bytes
    mtime_ns: int


@dataclass
class Folder:
    """A decoded image folder: every readable file, in RGB, in the order of `files`."""

    classes: tuple[str, ...]
    images: torch.Tensor  # (N, 3, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    is_test: torch.Tensor | None  # (N,) bool with DIR/train and DIR/test; None for DIR/<class>/
    grey: torch.Tensor  # (N,) bool: red, green and blue equal everywhere
    skipped: list[tuple[str, str]]  # (name, why) of the files that could not be read
    cache: Path | None  # where the cache file is (None: it could not be written)
    cache_hit: bool
    unfollowed: tuple[str, ...] = ()  # class folders that are symbolic links, not read

    def check(self, root: Path, files: int) -> None:
        """Refuse a folder in which no file, or no training file of some class, is a readable image."""
        if len(self.labels) == 0:
            raise FolderError(f"{root}: none of its {files:,} files is a readable image ({self.report(root)})")
        training = self.labels if self.is_test is None else self.labels[~self.is_test]
        empty = [name for c, name in enumerate(self.classes) if not (training == c).any()]
        if empty:
            raise FolderError(
                f"{root}: class folders without a readable training image: {', '.join(empty[:5])} "
                "(add images, or remove the folder)"
            )

    def report(self, root: Path) -> str:
        """One line: what was read, from where, and what was skipped."""
        how = (
            f"read from the cache {self.cache}"
            if self.cache_hit
            else f"decoded and cached in {self.cache}"
            if self.cache
            else "decoded, not cached"
        )
        line = (
            f"folder {root}: {len(self.labels):,} images of {len(self.classes)} classes "
            f"({', '.join(self.classes[:10])}{', ...' if len(self.classes) > 10 else ''}), {how}"
        )
        if self.skipped:
            named = "; ".join(f"{name} ({why})" for name, why in self.skipped[:REPORTED_FILES])
            more = f" and {len(self.skipped) - REPORTED_FILES:,} more" if len(self.skipped) > REPORTED_FILES else ""
            files = (
                "1 file that is not a readable image"
                if len(self.skipped) == 1
                else f"{len(self.skipped):,} files that are not readable images"
            )
            line += f"; skipped {files}: {named}{more}"
        if self.unfollowed:
            line += f"; skipped class folders that are symbolic links (not followed): {', '.join(self.unfollowed)}"
        return line


def _visible(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("."))


def _class_files(folder: Path, label: int, is_test: bool, root: Path) -> list[ImageFile]:
    files = []
    for parent, dirs, names in os.walk(folder):  # symlinked folders are not followed: no cycles
        dirs[:] = _visible(dirs)
        for name in _visible(names):
            path = Path(parent) / name
            try:
                info = path.stat()
            except OSError:
                continue  # a dangling link
            if path.is_file():
                files.append(
                    ImageFile(path, path.relative_to(root).as_posix(), label, is_test, info.st_size, info.st_mtime_ns)
                )
    return files


@dataclass(frozen=True)
class Layout:
    """What `scan` finds: the classes, their files, whether train/ and test/ are given, and the class folders
    that are symbolic links (not followed, but named in the report)."""

    classes: tuple[str, ...]
    files: list[ImageFile]
    split_given: bool
    unfollowed: tuple[str, ...]


def _class_folders(parent: Path, within: Path) -> tuple[list[str], list[str]]:
    """The class folders of `parent`, and those that are symbolic links (named relative to `within`)."""
    folders = [d for d in _visible(os.listdir(parent)) if (parent / d).is_dir()]
    links = [d for d in folders if (parent / d).is_symlink()]
    return [d for d in folders if d not in links], [(parent / d).relative_to(within).as_posix() for d in links]


def scan(root: Path) -> Layout:
    """The layout of `root`, read from names and sizes only."""
    if not root.is_dir():
        raise FolderError(f"data folder {root} does not exist (or is not a folder)")
    split_given = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split_given else root
    names, unfollowed = _class_folders(train_root, root)
    classes = tuple(names)
    if len(classes) < 2:
        raise FolderError(
            f"{train_root}: a classifier needs at least 2 class folders, found {len(classes)}"
            + (f" (and {len(unfollowed)} symbolic links, not followed)" if unfollowed else "")
            + ": lay out your images as DIR/<class>/<image files>, or DIR/train/<class>/ and DIR/test/<class>/"
        )
    files = [f for label, name in enumerate(classes) for f in _class_files(train_root / name, label, False, root)]
    if split_given:
        test_classes, test_links = _class_folders(root / "test", root)
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise FolderError(f"{root / 'test'} has class folders that {train_root} lacks: {', '.join(unknown[:5])}")
        for name in test_classes:
            files += _class_files(root / "test" / name, classes.index(name), True, root)
        unfollowed += test_links
    return Layout(classes, files, split_given, tuple(unfollowed))


def check_memory(root: Path, count: int, size: tuple[int, int]) -> None:
    """Refuse, before decoding anything, a folder whose images would not fit in memory (in RGB, and twice
    over while the training and test sets are cut out of them)."""
    needed = 2 * count * 3 * size[0] * size[1]
    free = memory.available_memory()
    if needed > free:
        raise FolderError(
            f"{root}: {count:,} images at 3x{size[0]}x{size[1]} need {needed / 2**30:,.1f} GiB of "
            f"memory, more than the {free / 2**30:,.1f} GiB available; pass a smaller --image-size "
            "or use fewer images"
        )


def fit_image(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Any PIL image -> (3, H, W) uint8 RGB: turned upright by its EXIF orientation, transparency made white,
    scaled with its aspect ratio kept until it covers H x W, then centre-cropped to H x W."""
    image = upright(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA"))
    fitted = ImageOps.fit(image.convert("RGB"), (size[1], size[0]), method=Image.Resampling.BICUBIC)
    return np.array(fitted).transpose(2, 0, 1)  # a writable copy: it goes into a tensor


def luma(rgb: np.ndarray) -> np.ndarray:
    """(..., 3, H, W) uint8 RGB -> (..., 1, H, W) grey, with PIL's integer ITU-R 601 weights (grey stays itself)."""
    r, g, b = (rgb[..., c : c + 1, :, :].astype(np.uint32) for c in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def decode_file(path: Path, size: tuple[int, int]) -> np.ndarray:
    """One image file -> (3, H, W) uint8, or an ImageError saying why it cannot be."""
    return fit_image(read_image(path, cover=size), size)


def _decode_or_reason(item: tuple[ImageFile, tuple[int, int]]) -> np.ndarray | str:
    file, size = item
    try:
        return decode_file(file.path, size)
    except CnnlabError as e:  # read_bounded's errors name the path; the report names the file itself
        return str(e).removeprefix(f"{file.path}: ")


def _key(files: list[ImageFile], size: tuple[int, int]) -> str:
    """What the decoded tensors are a pure function of: every file's name, size and time, the size, the decoder."""
    described = [
        CACHE_FORMAT,
        DECODER,
        PIL.__version__,
        list(size),
        [[f.name, f.label, f.is_test, f.size, f.mtime_ns] for f in files],
    ]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def cache_path(root: Path, size: tuple[int, int]) -> Path:
    """Where the cache of `root` at `size` is: in the cnnlab cache, under a hash of the folder's resolved path
    (the same folder by any name shares it), never in the user's folder."""
    folder = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return cache_dir("folder") / folder / f"{size[0]}x{size[1]}.pt"


def _read_cache(path: Path, key: str, count: int, size: tuple[int, int]) -> dict | None:
    """The cache's contents when `path` holds a cnnlab cache of exactly these files, else None. The file is
    mapped, not read: its pages come in as the tensors are used."""
    limit = count * (3 * size[0] * size[1] + 1024) + (16 << 20)
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        cached = torch.load(path, weights_only=True, mmap=True)
    except Exception:  # an unreadable or damaged file of any kind: decode again
        return None
    if not isinstance(cached, dict) or cached.get("format") != CACHE_FORMAT or cached.get("key") != key:
        return None
    images = cached.get("images")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.shape[1:] != (3, *size):
        return None
    return cached


def _write_cache(path: Path, contents: dict) -> Path | None:
    """The cache written (replacing the folder's cache of other contents at this size), or None when the cache
    cannot be written: training goes on, decoding again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, lambda f: torch.save(contents, f))
    except (CnnlabError, OSError):
        return None


def _decode_all(files: list[ImageFile], size: tuple[int, int], root: Path) -> tuple[torch.Tensor, list]:
    """Decode every file in parallel into one preallocated tensor; returns it and, in order, why each file
    could not be decoded (None for those that were)."""
    images = torch.empty((len(files), 3, *size), dtype=torch.uint8)
    reasons = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = pool.map(_decode_or_reason, [(f, size) for f in files])
        for i, result in enumerate(
            tqdm(decoded, total=len(files), desc=f"decoding {root.name}", unit="image", leave=False, disable=None)
        ):
            if not isinstance(result, str):
                images[i] = torch.from_numpy(result)
            reasons.append(result if isinstance(result, str) else None)
    return images, reasons


def load_folder(root: str | Path, size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> Folder:
    """Every readable image of `root` at `size`, from the cache when the files have not changed."""
    root = Path(root)
    layout = scan(root)
    files = layout.files
    if not files:
        raise FolderError(f"{root}: the class folders hold no files")
    key, path = _key(files, size), cache_path(root, size)
    cached = _read_cache(path, key, len(files), size)
    if cached is not None:
        folder = _folder(layout, cached, path, cache_hit=True)
        folder.check(root, len(files))
        return folder
    check_memory(root, len(files), size)
    images, reasons = _decode_all(files, size, root)
    good = torch.tensor([r is None for r in reasons], dtype=torch.bool)
    if not good.all():
        images = images[good]
    contents = {
        "format": CACHE_FORMAT,
        "key": key,
        "classes": list(layout.classes),
        "images": images,
        "labels": torch.tensor([f.label for f in files], dtype=torch.int64)[good],
        "is_test": torch.tensor([f.is_test for f in files], dtype=torch.bool)[good],
        "grey": ((images[:, 0] == images[:, 1]) & (images[:, 1] == images[:, 2])).flatten(1).all(1),
        "skipped": [[f.name, r] for f, r in zip(files, reasons) if r is not None],
    }
    folder = _folder(layout, contents, None, cache_hit=False)
    folder.check(root, len(files))  # before caching: a folder that cannot train leaves nothing behind
    folder.cache = _write_cache(path, contents)
    return folder


def _folder(layout: Layout, contents: dict, cache: Path | None, cache_hit: bool) -> Folder:
    return Folder(
        layout.classes,
        contents["images"],
        contents["labels"],
        contents["is_test"] if layout.split_given else None,
        contents["grey"],
        [tuple(s) for s in contents["skipped"]],
        cache,
        cache_hit,
        layout.unfollowed,
    )
