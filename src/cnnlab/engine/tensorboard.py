"""TensorBoard's event files, written without TensorBoard (`--tensorboard`, the PyTorch tutorials' habit).

`tensorboard` and its dependencies (grpcio, protobuf, werkzeug, ...) are not needed to write the format, only
to view it: an event file is a sequence of records, each a protobuf `Event` framed as TFRecord (its length,
a masked CRC-32C of the length, the bytes, a masked CRC-32C of the bytes). The few messages used here are
encoded by hand from their field numbers in TensorBoard's event.proto and summary.proto:

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; Image image = 4; }
    Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }

Each epoch adds the scalars (losses, accuracies, learning rate) and a picture of the first layer's kernels,
and the file is written again whole through `cnnlab.files` (atomic: never half a file). A resumed run starts
a file of its own beside the first; TensorBoard reads every event file of a folder as one run.
"""

import io
import re
import socket
import struct
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.files import write_bytes

FILE_VERSION = "brain.Event:2"
GREY, RGB = 1, 3  # Image.colorspace
KERNEL_ZOOM = 8  # screen pixels per kernel pixel: a 5x5 kernel shows 40 px wide
# metrics.jsonl's keys -> TensorBoard's tags (grouped by the part before the slash)
SCALARS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_accuracy": "accuracy/train",
    "test_accuracy": "accuracy/test",
    "val_accuracy": "accuracy/validation",
}


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli's polynomial, reflected
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def record(data: bytes) -> bytes:
    """One TFRecord: the length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _message(number: int, data: bytes) -> bytes:  # also strings and bytes: length-delimited
    return _key(number, 2) + _varint(len(data)) + data


def _integer(number: int, n: int) -> bytes:
    return _key(number, 0) + _varint(n)


def _event(step: int, summary: bytes = b"", file_version: str = "") -> bytes:
    fields = _key(1, 1) + struct.pack("<d", time.time()) + _integer(2, step)
    if file_version:
        fields += _message(3, file_version.encode())
    return fields + (_message(5, summary) if summary else b"")


def kernel_grid(weight: torch.Tensor) -> np.ndarray:
    """The kernels of a convolution's weight (out, in, h, w) side by side in a near-square grid, each scaled
    to 0-255 on its own and enlarged `KERNEL_ZOOM` times, a dark line between them: (H, W) grey or (H, W, 3)
    colour when the layer reads 3 channels."""
    kernels = weight.detach().float().cpu()[:, :3] if weight.shape[1] == 3 else weight.detach().float().cpu()[:, :1]
    low = kernels.amin(dim=(1, 2, 3), keepdim=True)
    high = kernels.amax(dim=(1, 2, 3), keepdim=True)
    kernels = ((kernels - low) / (high - low).clamp(min=1e-12) * 255).round().to(torch.uint8)
    kernels = kernels.repeat_interleave(KERNEL_ZOOM, 2).repeat_interleave(KERNEL_ZOOM, 3)
    count, channels, height, width = kernels.shape
    columns = int(np.ceil(np.sqrt(count)))
    rows = -(-count // columns)
    grid = np.zeros((channels, rows * (height + 1) + 1, columns * (width + 1) + 1), dtype=np.uint8)
    for i, kernel in enumerate(kernels.numpy()):
        top, left = 1 + (i // columns) * (height + 1), 1 + (i % columns) * (width + 1)
        grid[:, top : top + height, left : left + width] = kernel
    return grid[0] if channels == 1 else grid.transpose(1, 2, 0)


def first_conv_weight(model: torch.nn.Module) -> torch.Tensor | None:
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return conv.weight if conv is not None else None


class EventFile:
    """One event file in `folder`, named as TensorBoard's own writer names them."""

    def __init__(self, folder: Path):
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64]
        self.path = Path(folder) / f"events.out.tfevents.{int(time.time())}.{host}.cnnlab"
        self.records = [record(_event(0, file_version=FILE_VERSION))]

    def scalar(self, tag: str, value: float, step: int) -> None:
        value_message = _message(1, tag.encode()) + _key(2, 5) + struct.pack("<f", value)
        self.records.append(record(_event(step, _message(1, value_message))))

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        """`pixels`: (H, W) grey or (H, W, 3) colour uint8, stored as PNG."""
        png = io.BytesIO()
        Image.fromarray(pixels).save(png, format="PNG")
        height, width = pixels.shape[:2]
        colorspace = GREY if pixels.ndim == 2 else RGB
        image = _integer(1, height) + _integer(2, width) + _integer(3, colorspace) + _message(4, png.getvalue())
        self.records.append(record(_event(step, _message(1, _message(1, tag.encode()) + _message(4, image)))))

    def write(self) -> Path:
        return write_bytes(self.path, b"".join(self.records))


def log_epoch(events: EventFile, row: dict, *, learning_rate: float, model: torch.nn.Module) -> None:
    """An epoch's row of metrics.jsonl as scalars, the learning rate the epoch ended at, and the first layer's
    kernels as a picture, at step = the epoch; then the file written."""
    step = row["epoch"]
    for key, tag in SCALARS.items():
        if row.get(key) is not None:
            events.scalar(tag, float(row[key]), step)
    events.scalar("learning_rate", learning_rate, step)
    weight = first_conv_weight(model)
    if weight is not None:
        events.image("kernels/first_layer", kernel_grid(weight), step)
    events.write()
