"""A model's stages through forward hooks, for every registered model, and one convolution output explained."""

import pytest
import torch
import torch.nn as nn

from cnnlab.explain.stages import MAX_MAP_STAGES, explain_cell, trace
from cnnlab.models import create_model, list_models


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


def test_the_lecture_cnns_stages_are_its_own_values(digit):
    model = create_model("cnn").eval()
    traced = trace(model, digit)
    assert [(s.name, tuple(s.values.shape)) for s in traced.stages] == [
        ("conv1", (10, 24, 24)),
        ("mp + ReLU", (10, 12, 12)),
        ("conv2", (20, 8, 8)),
        ("mp + ReLU", (20, 4, 4)),
        ("flatten", (320,)),
        ("fc", (10,)),
        ("softmax", (10,)),
    ]
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
        "layer1.17",
        "layer2.17",
        "layer3.17",
        "global average pool",
        "fc",
        "softmax",
    ]


@pytest.mark.parametrize(
    "model_name, module", [("cnn", "conv2"), ("inception", "incept1.branch5x5_2"), ("resnet-8", "layer2.0.conv1")]
)  # 10 channels; padding 2; stride 2
def test_a_convolution_output_is_its_multiply_add(digit, model_name, module):
    model = create_model(model_name).eval()
    out = {}
    handle = model.get_submodule(module).register_forward_hook(lambda m, i, o: out.update(value=o))
    with torch.no_grad():
        model(digit)
    handle.remove()
    for channel, row, col in ((0, 0, 0), (3, 1, 2), (5, out["value"].shape[2] - 1, out["value"].shape[3] - 1)):
        explained = explain_cell(model, digit, module, channel, row, col)
        assert explained["sum"] == pytest.approx(out["value"][0, channel, row, col].item(), abs=1e-4)
        assert explained["sum"] == pytest.approx(explained["activation"], abs=1e-4)


def test_explain_refuses_what_is_not_a_convolution(digit):
    model = create_model("cnn").eval()
    with pytest.raises(ValueError):
        explain_cell(model, digit, "mp", 0, 0, 0)
    with pytest.raises(ValueError):
        explain_cell(model, digit, "conv1", 0, 24, 0)
