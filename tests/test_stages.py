"""A model's stages (torch.fx, else recorded as it runs) for every registered model and for networks as learners
write them, and one convolution output explained."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.explain.stages import MAX_MAP_STAGES, explain_cell, trace
from cnnlab.models import create_model, list_models
from learners import LECTURE_STAGES, LectureNet


@pytest.fixture(scope="module")
def digit():
    return torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))


# Every family at every layout; the deeper plain/resnet variants repeat resnet-20's blocks (resnet-110 is below).
SAMPLED = [n for n in list_models() if n.split("-")[0] not in ("plain", "resnet") or n.endswith(("-8", "-20"))]


@pytest.mark.parametrize("name", SAMPLED)
def test_every_model_has_stages_ending_in_its_own_prediction(name, digit):
    model = create_model(name).eval()
    traced = trace(model, digit)
    with torch.no_grad():
        expected = model(digit)[0].float().softmax(0)
    assert traced.stages[-1].name == "softmax"
    assert torch.allclose(traced.stages[-1].values, expected, atol=1e-6)
    assert traced.stages[-2].values.shape == (10,)  # the classifier's logits
    maps = [s for s in traced.stages if s.values.dim() == 3]
    assert len(maps) <= MAX_MAP_STAGES
    assert traced.shown.startswith("all") or "of" in traced.shown
    for stage in traced.stages:
        assert torch.isfinite(stage.values).all(), stage.name
        if stage.conv:
            assert isinstance(model.get_submodule(stage.module), nn.Conv2d)
            assert torch.equal(traced.convs[stage.module].output, stage.values) or "ReLU" in stage.name


def test_the_lecture_cnns_stages_are_its_own_values(digit):
    model = create_model("cnn").eval()
    traced = trace(model, digit)
    assert [(s.name, tuple(s.values.shape)) for s in traced.stages] == LECTURE_STAGES
    with torch.no_grad():
        conv1 = model.conv1(digit)
        pooled = torch.relu(model.mp(conv1))
    assert torch.equal(traced.stages[0].values, conv1[0]) and torch.equal(traced.stages[1].values, pooled[0])
    fields = [s.receptive_field for s in traced.stages[:4]]
    assert [(f.size, f.stride) for f in fields] == [
        ((5, 5), (1, 1)),
        ((6, 6), (2, 2)),
        ((14, 14), (2, 2)),
        ((16, 16), (4, 4)),
    ]


def test_inception_blocks_show_their_four_branches(digit):
    traced = trace(create_model("inception").eval(), digit)
    blocks = [s for s in traced.stages if s.branches]
    assert [s.name for s in blocks] == ["incept1", "incept2"]
    for block in blocks:
        assert [(b.name, b.channels) for b in block.branches] == [
            ("branch1x1", (0, 16)),
            ("branch5x5", (16, 40)),
            ("branch3x3dbl", (40, 64)),
            ("branch_pool", (64, 88)),
        ]
        assert block.receptive_field is None  # several paths: not one chain of windows


def test_deep_nets_say_which_stages_they_show(digit):
    traced = trace(create_model("resnet-110").eval(), digit)
    assert traced.shown.startswith("4 of 56 feature-map stages")
    assert [s.name for s in traced.stages] == [
        "conv1",
        "layer1.17: BasicBlock",
        "layer2.17: BasicBlock",
        "layer3.17: BasicBlock",
        "global average pool",
        "fc",
        "softmax",
    ]


@pytest.mark.parametrize(
    "model_name, module", [("cnn", "conv2"), ("inception", "incept1.branch5x5_2"), ("resnet-8", "conv1")]
)  # 10 channels; padding 2, an Inception branch; padding 1
def test_a_convolution_output_is_its_multiply_add(digit, model_name, module):
    model = create_model(model_name).eval()
    out = {}
    handle = model.get_submodule(module).register_forward_hook(lambda m, i, o: out.update(value=o))
    with torch.no_grad():
        model(digit)
    handle.remove()
    conv = trace(model, digit).convs[module]
    for channel, row, col in ((0, 0, 0), (3, 1, 2), (5, out["value"].shape[2] - 1, out["value"].shape[3] - 1)):
        explained = explain_cell(conv, channel, row, col)
        assert explained["sum"] == pytest.approx(out["value"][0, channel, row, col].item(), abs=1e-4)
        assert explained["sum"] == pytest.approx(explained["activation"], abs=1e-4)


def test_explain_refuses_a_cell_outside_the_output(digit):
    traced = trace(create_model("cnn").eval(), digit)
    assert "mp" not in traced.convs  # pooling is no multiply-add
    with pytest.raises(ValueError):
        explain_cell(traced.convs["conv1"], 0, 24, 0)


class TutorialNet(nn.Module):
    """The 60-minute blitz's Net: functional pooling, and a Python loop over x.size() that torch.fx cannot trace."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, self.num_flat_features(x))
        return self.fc2(F.relu(self.fc1(x)))

    def num_flat_features(self, x):
        features = 1
        for s in x.size()[1:]:
            features *= s
        return features


class SharedConv(nn.Module):
    """One convolution called twice (shared weights), then a functional F.conv2d with a computed weight."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding="same")
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.weight = nn.Parameter(torch.randn(4, 4, 3, 3, generator=torch.Generator().manual_seed(1)))
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.conv(F.relu(self.stem(x)))
        x = torch.sigmoid(self.conv(x))
        x = F.conv2d(x, self.weight * 0.5, stride=2, padding=1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_a_learners_functional_forward_gives_the_lectures_stages(digit):
    model = LectureNet().eval()
    traced = trace(model, digit)
    assert [(s.name, tuple(s.values.shape)) for s in traced.stages] == LECTURE_STAGES
    assert traced.notes == []
    with torch.no_grad():
        second_pool = F.relu(model.mp(model.conv2(F.relu(model.mp(model.conv1(digit))))))
    assert torch.equal(traced.stages[3].values, second_pool[0])  # the second call of the same MaxPool2d
    assert traced.stages[3].receptive_field.size == (16, 16)


def test_where_fx_cannot_trace_the_steps_are_recorded_as_the_model_runs(digit):
    model = TutorialNet().eval()
    traced = trace(model, digit)
    assert [(s.name, tuple(s.values.shape), s.conv) for s in traced.stages] == [
        ("conv1 + ReLU", (6, 24, 24), True),
        ("max_pool2d", (6, 12, 12), False),
        ("conv2 + ReLU", (16, 8, 8), True),
        ("max_pool2d", (16, 4, 4), False),
        ("flatten", (256,), False),
        ("fc1 + ReLU", (120,), False),
        ("fc2", (10,), False),
        ("softmax", (10,), False),
    ]
    assert [(s.receptive_field.size, s.receptive_field.stride) for s in traced.stages[:4]] == [
        ((5, 5), (1, 1)),
        ((6, 6), (2, 2)),
        ((14, 14), (2, 2)),
        ((16, 16), (4, 4)),
    ]
    assert len(traced.notes) == 1 and "torch.fx could not trace TutorialNet.forward" in traced.notes[0]
    assert "iterated" in traced.notes[0]  # fx's own reason: the loop over x.size()
    explained = explain_cell(traced.convs["conv1"], 2, 5, 7)  # the multiply-add, then the ReLU the stage shows
    assert explained["sum"] == pytest.approx(explained["activation"], abs=1e-5)
    assert explained["after"] == {"name": "ReLU", "value": pytest.approx(max(0.0, explained["activation"]), abs=1e-6)}
    assert explained["after"]["value"] == pytest.approx(traced.stages[0].values[2, 5, 7].item())


def test_a_convolution_called_twice_is_explained_for_each_call(digit):
    model = SharedConv().eval()
    traced = trace(model, digit)
    assert [s.name for s in traced.stages] == [
        "stem + ReLU",
        "conv",
        "conv (call 2) + Sigmoid",
        "conv2d",
        "global average pool",
        "flatten",
        "fc",
        "softmax",
    ]
    assert [s.module for s in traced.stages if s.conv] == ["stem", "conv", "conv (call 2)", "conv2d"]
    with torch.no_grad():
        first = model.conv(F.relu(model.stem(digit)))
        second = model.conv(first)
        functional = F.conv2d(torch.sigmoid(second), model.weight * 0.5, stride=2, padding=1)
    for key, output in (("conv", first), ("conv (call 2)", second), ("conv2d", functional)):
        last = output.shape[2] - 1
        for cell in ((0, 0, 0), (3, last, last), (1, 5, 2)):
            explained = explain_cell(traced.convs[key], *cell)
            assert explained["sum"] == pytest.approx(output[0][cell].item(), abs=1e-5), (key, cell)
    # "same" padding and a stride of 2 after it: the fields still follow the one chain of windows
    assert traced.stages[0].receptive_field.offset == (-1, -1)
    assert traced.stages[3].receptive_field.size == (9, 9) and traced.stages[3].receptive_field.stride == (2, 2)


def test_a_sequential_built_at_module_level_has_named_stages(digit):
    block = nn.Sequential(nn.Conv2d(8, 8, 3), nn.ReLU())  # a Sequential in the Sequential: its modules in its place
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        block,
        nn.Flatten(),
        nn.Linear(8 * 11 * 11, 10),
    ).eval()
    traced = trace(model, digit)
    assert [(s.name, s.conv) for s in traced.stages] == [
        ("0: Conv2d + ReLU", True),
        ("2: MaxPool2d", False),
        ("4.0: Conv2d + ReLU", True),
        ("5: Flatten", False),
        ("6: Linear", False),
        ("softmax", False),
    ]
    assert list(traced.convs) == ["0", "4.0"]


@pytest.mark.parametrize("name", ["cnn", "inception", "resnet-8", "densenet-bc-10-8", "mlp", "cnn-bn-8-24"])
def test_recorded_as_it_runs_the_stages_are_those_of_the_fx_trace(digit, name):
    """The fallback sees what the trace sees: the same stages, values, fields, branches and convolutions."""
    reference = create_model(name).eval()
    model = copy.deepcopy(reference)
    original = type(model)

    def untraceable(self, x):
        assert x.dim() == 4  # a check on a tensor's size: torch.fx cannot trace past it
        return original.forward(self, x)

    model.__class__ = type("Untraceable", (original,), {"forward": untraceable})
    expected, recorded = trace(reference, digit), trace(model, digit)
    assert expected.notes == [] and len(recorded.notes) == 1
    for a, b in zip(expected.stages, recorded.stages, strict=True):
        assert (a.name, a.module, a.conv, a.receptive_field, a.branches) == (
            b.name,
            b.module,
            b.conv,
            b.receptive_field,
            b.branches,
        )
        assert torch.equal(a.values, b.values), a.name
    assert expected.convs.keys() == recorded.convs.keys()


class RowAttention(nn.Module):
    """The digit's rows attending to each other: nn.MultiheadAttention returns (output, weights)."""

    def __init__(self, untraceable=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(28, 4, batch_first=True)
        self.fc = nn.Linear(28 * 28, 10)
        self.untraceable = untraceable

    def forward(self, x):
        if self.untraceable:
            assert x.dim() == 4  # a check on a tensor's size: torch.fx cannot trace past it
        rows = x.view(-1, 28, 28)
        out, _ = self.attn(rows, rows, rows)
        return self.fc(out.flatten(1))


@pytest.mark.parametrize("untraceable", [False, True])
def test_a_module_that_returns_a_tuple_is_drawn_from_its_first_tensor(digit, untraceable):
    """Before, the module gave no stage and nothing after it was drawn either (fc, the scores)."""
    model = RowAttention(untraceable).eval()
    traced = trace(model, digit)
    assert [s.name for s in traced.stages] == ["view", "attn", "flatten", "fc", "softmax"]
    assert traced.notes[-1] == "attn gives a tuple: its first tensor is drawn"
    assert len(traced.notes) == 1 + untraceable
    with torch.no_grad():
        rows = digit.view(-1, 28, 28)
        attended = model.attn(rows, rows, rows)[0]
        assert torch.allclose(traced.stages[1].values, attended.flatten(), atol=1e-6)
        assert torch.allclose(traced.stages[3].values, model(digit)[0], atol=1e-6)


class EncoderBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):
        h = self.norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(x)


class TinyViT(nn.Module):
    """A learner's vision transformer: 7x7 patches, a class token, a Sequential of encoder blocks."""

    def __init__(self, dim=16):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 7, stride=7)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(EncoderBlock(dim), EncoderBlock(dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.head(self.blocks(x)[:, 0])


def test_a_vision_transformer_s_blocks_are_stages_and_its_patches_a_convolution(digit):
    model = TinyViT().eval()
    traced = trace(model, digit)
    assert [(s.name, tuple(s.values.shape)) for s in traced.stages] == [
        ("patch", (16, 4, 4)),
        ("flatten", (256,)),
        ("transpose", (256,)),
        ("concat", (272,)),
        ("blocks.0: EncoderBlock", (272,)),
        ("blocks.1: EncoderBlock", (272,)),
        ("[:, 0]", (16,)),
        ("head", (10,)),
        ("softmax", (10,)),
    ]
    assert traced.notes == [] and list(traced.convs) == ["patch"]
    explained = explain_cell(traced.convs["patch"], 3, 1, 2)
    assert explained["sum"] == pytest.approx(traced.stages[0].values[3, 1, 2].item(), abs=1e-5)


class HalfAndHalf(nn.Module):
    """Channels split in two with torch.chunk, each half convolved, then concatenated (a grouped block)."""

    def __init__(self, untraceable=False):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3)
        self.left, self.right = nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(8 * 24 * 24, 10)
        self.untraceable = untraceable

    def forward(self, x):
        if self.untraceable:
            assert x.dim() == 4  # a check on a tensor's size: torch.fx cannot trace past it
        a, b = torch.chunk(F.relu(self.stem(x)), 2, dim=1)
        x = torch.cat([self.left(a), self.right(b)], dim=1)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("untraceable", [False, True])
def test_the_halves_of_a_chunk_are_read_on(digit, untraceable):
    """Before, torch.chunk's tuple was no step, and nothing after it was drawn (the convolutions, fc)."""
    model = HalfAndHalf(untraceable).eval()
    traced = trace(model, digit)
    assert [s.name for s in traced.stages] == ["stem + ReLU", "left", "right", "concat", "flatten", "fc", "softmax"]
    assert list(traced.convs) == ["stem", "left", "right"]
    with torch.no_grad():
        half = F.relu(model.stem(digit))[:, 4:]
        assert torch.allclose(traced.stages[2].values, model.right(half)[0], atol=1e-6)
        explained = explain_cell(traced.convs["right"], 1, 5, 6)
        assert explained["sum"] == pytest.approx(model.right(half)[0, 1, 5, 6].item(), abs=1e-5)
    assert traced.stages[1].receptive_field.size == (5, 5)  # through the stem's 3x3, then its own
