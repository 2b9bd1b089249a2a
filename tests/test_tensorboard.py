"""--tensorboard: the event files a run writes are read back with Google's own protobuf library (from message
types declared here with TensorBoard's field numbers), their TFRecord framing and CRCs checked independently."""

import io
import json
import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image

from cnnlab.cli import main
from cnnlab.engine.tensorboard import crc32c

F = descriptor_pb2.FieldDescriptorProto


def _event_class():
    """TensorBoard's Event, Summary, Value and Image messages (event.proto, summary.proto), the fields read here."""
    proto = descriptor_pb2.FileDescriptorProto(name="tensorboard_test.proto", package="tb", syntax="proto3")
    messages = {
        "Image": [("height", 1, F.TYPE_INT32), ("width", 2, F.TYPE_INT32), ("colorspace", 3, F.TYPE_INT32),
                  ("encoded_image_string", 4, F.TYPE_BYTES)],
        "Value": [("tag", 1, F.TYPE_STRING), ("simple_value", 2, F.TYPE_FLOAT), ("image", 4, ".tb.Image")],
        "Summary": [("value", 1, ".tb.Value")],
        "Event": [("wall_time", 1, F.TYPE_DOUBLE), ("step", 2, F.TYPE_INT64), ("file_version", 3, F.TYPE_STRING),
                  ("summary", 5, ".tb.Summary")],
    }  # fmt: skip
    for name, fields in messages.items():
        message = proto.message_type.add(name=name)
        for field, number, kind in fields:
            repeated = name == "Summary"
            message.field.add(
                name=field,
                number=number,
                label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
                **({"type": F.TYPE_MESSAGE, "type_name": kind} if isinstance(kind, str) else {"type": kind}),
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tb.Event"))


def _bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    crc = _bitwise_crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _records(blob: bytes):
    """TFRecord framing: u64 length, masked CRC-32C of it, data, masked CRC-32C of the data."""
    at = 0
    while at < len(blob):
        (length,) = struct.unpack_from("<Q", blob, at)
        assert struct.unpack_from("<I", blob, at + 8)[0] == _masked(blob[at : at + 8])
        data = blob[at + 12 : at + 12 + length]
        assert struct.unpack_from("<I", blob, at + 12 + length)[0] == _masked(data)
        yield data
        at += 12 + length + 4


def test_crc32c_matches_the_standard_check_value():
    assert crc32c(b"123456789") == _bitwise_crc32c(b"123456789") == 0xE3069283  # RFC 3720's CRC-32C check value


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    flags = "--dataset mnist-sample --model cnn --epochs 2 --train-subset 512 --val-split 200 --no-progress"
    assert main(["train", *flags.split(), "--tensorboard", "--out", str(out)]) == 0
    return out


def test_tensorboard_events_read_back(tensorboard_run):
    (events_file,) = tensorboard_run.glob("events.out.tfevents.*")
    Event = _event_class()
    events = [Event.FromString(data) for data in _records(events_file.read_bytes())]
    assert events[0].file_version == "brain.Event:2"
    scalars: dict[str, dict[int, float]] = {}
    images = {}
    for event in events[1:]:
        for value in event.summary.value:
            if value.HasField("image"):
                images[(value.tag, event.step)] = value.image
            else:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    metrics = [json.loads(line) for line in (tensorboard_run / "metrics.jsonl").read_text().splitlines()]
    for tag, key in [
        ("loss/train", "train_loss"),
        ("accuracy/test", "test_accuracy"),
        ("accuracy/validation", "val_accuracy"),
    ]:
        assert scalars[tag] == pytest.approx({row["epoch"]: row[key] for row in metrics}, rel=1e-6)
    assert scalars["learning_rate"][2] < scalars["learning_rate"][1]  # one-cycle anneals to the end
    image = images[("kernels/first_layer", 2)]
    picture = Image.open(io.BytesIO(image.encoded_image_string))
    assert picture.size == (image.width, image.height) and picture.mode == "L" and image.colorspace == 1
    # the lecture cnn's 10 kernels of 5x5, 8x enlarged, in a 4x3 grid with 1-pixel lines between them
    assert (image.width, image.height) == (4 * 41 + 1, 3 * 41 + 1)
    assert images[("kernels/first_layer", 1)].encoded_image_string != image.encoded_image_string  # they learn
