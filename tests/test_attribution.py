"""Occlusion and Grad-CAM (explain/attribution.py): against a model whose answer is known by hand, against
Grad-CAM written out directly on the lecture CNN, and the refusals a learner can run into."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab import CnnlabError
from cnnlab.explain.attribution import convolutions, default_layer, grad_cam, occlusion
from cnnlab.models import create_model

LIFT = 2.0  # the hand-built model's logit for class 0 per unit of pixel (2, 2)


def one_pixel_model() -> nn.Module:
    """Logits [2 * x[2, 2], 0] for an 8x8 input: only pixel (2, 2) matters, and only for class 0."""
    linear = nn.Linear(64, 2)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
        linear.weight[0, 2 * 8 + 2] = LIFT
    return nn.Sequential(nn.Flatten(), linear).eval()


def dot() -> torch.Tensor:
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 2] = 1.0
    return x


def test_occlusion_by_hand_with_tiles():
    """2x2 tiles, 2 apart: only the tile over (2, 2) moves p(0), from sigmoid(2) to 1/2."""
    drop = 1 / (1 + math.exp(-LIFT)) - 0.5  # 0.3808
    result = occlusion(one_pixel_model(), dot(), target=0, patch=2, stride=2)
    expected = torch.zeros(8, 8)
    expected[2:4, 2:4] = drop
    assert result.target == 0 and result.patch == 2 and result.stride == 2
    assert result.probability == pytest.approx(drop + 0.5)
    torch.testing.assert_close(result.heat, expected)
    # Class 1 gains what class 0 loses: covering the dot raises it, a negative value.
    torch.testing.assert_close(occlusion(one_pixel_model(), dot(), target=1, patch=2, stride=2).heat, -expected)


def test_occlusion_by_hand_with_overlapping_patches():
    """2x2 patches 1 apart: a pixel gets the mean drop of the patches covering it, and only the patches that
    also cover (2, 2) drop anything: (2, 2) all 4 of its patches, (2, 3) 2 of 4, (1, 1) and (3, 3) 1 of 4."""
    drop = 1 / (1 + math.exp(-LIFT)) - 0.5
    heat = occlusion(one_pixel_model(), dot(), target=0, patch=2, stride=1).heat
    for (row, col), share in {(2, 2): 1, (2, 3): 1 / 2, (3, 2): 1 / 2, (1, 1): 1 / 4, (3, 3): 1 / 4, (0, 0): 0}.items():
        assert heat[row, col].item() == pytest.approx(share * drop, abs=1e-6), (row, col)
    assert heat[4:, :].abs().max() == 0 and heat[:, 4:].abs().max() == 0


def test_occlusion_paints_the_baseline_not_zero():
    """A baseline of 1 at the dot leaves the image unchanged there: no drop anywhere."""
    heat = occlusion(one_pixel_model(), torch.ones(1, 1, 8, 8), target=0, patch=2, stride=2, baseline=1.0).heat
    assert heat.abs().max() == 0


def lecture_cnn() -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn").eval()


def direct_grad_cam(model, x, target):
    """Grad-CAM written out on the lecture CNN: the gradient of fc's logit w.r.t. conv2's output maps, averaged
    over each map, weighs the maps; ReLU of their weighted sum."""
    maps = model.conv2(F.relu(model.mp(model.conv1(x))))  # (1, 20, 8, 8)
    maps.retain_grad()
    logits = model.fc(F.relu(model.mp(maps)).flatten(1))
    logits[0, target].backward()
    weights = maps.grad.mean((2, 3), keepdim=True)  # (1, 20, 1, 1)
    return F.relu((weights * maps).sum(1))[0].detach()  # (8, 8)


@pytest.mark.parametrize("target", [None, 3])
def test_grad_cam_on_conv2_is_the_direct_computation(target):
    model, x = lecture_cnn(), torch.randn(1, 1, 28, 28)
    result = grad_cam(model, x, layer="conv2", target=target)
    explained = int(model(x).argmax()) if target is None else target
    assert result.target == explained and result.layer == "conv2"
    cam = direct_grad_cam(model, x, explained)
    assert result.coarse.shape == (8, 8) and cam.abs().max() > 0
    torch.testing.assert_close(result.coarse, cam)
    upsampled = F.interpolate(cam[None, None], size=(28, 28), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(result.heat, upsampled)
    assert result.probability == pytest.approx(model(x).exp()[0, explained].item(), rel=1e-5)


def test_grad_cam_layers_of_the_lecture_nets():
    x = torch.randn(1, 1, 28, 28)
    assert default_layer(lecture_cnn(), x) == "conv2"
    inception = create_model("inception").eval()
    assert default_layer(inception, x) == "conv2"  # not an Inception branch, which sees only its own channels
    assert convolutions(inception, x)[:3] == ["conv1", "incept1.branch1x1", "incept1.branch5x5_1"]
    assert grad_cam(inception, x, layer="incept1.branch5x5_2").coarse.shape == (12, 12)
    assert grad_cam(inception, x).heat.shape == (28, 28)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: grad_cam(m, x, target=10), "class 10 is out of range: this model has 10 classes, 0 to 9"),
        (lambda m, x: occlusion(m, x, target=-1), "class -1 is out of range"),
        (lambda m, x: grad_cam(m, x, layer="fc"), "fc is a Linear, not a convolution; Grad-CAM takes one of: conv1"),
        (lambda m, x: grad_cam(m, x, layer="mp"), "mp is a MaxPool2d, not a convolution"),
        (lambda m, x: grad_cam(m, x, layer="conv9"), "has no layer 'conv9'; Grad-CAM takes a convolution: conv1"),
        (lambda m, x: grad_cam(m, x[0]), "attribution takes one normalised image (1, C, H, W), got (1, 28, 28)"),
        (lambda m, x: occlusion(m, x, patch=40), "occlusion patch 40 and stride 13 must satisfy"),
    ],
)
def test_bad_requests_are_one_line(call, message):
    with pytest.raises(CnnlabError) as error:
        call(lecture_cnn(), torch.randn(1, 1, 28, 28))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_grad_cam_needs_a_convolution():
    with pytest.raises(CnnlabError, match="has no convolution: Grad-CAM needs one"):
        grad_cam(create_model("mlp").eval(), torch.randn(1, 1, 28, 28))
    assert occlusion(create_model("mlp").eval(), torch.randn(1, 1, 28, 28)).heat.shape == (28, 28)
