"""Plain and residual CIFAR-layout nets, DenseNet-BC, and the depth experiment end to end."""

import json

import pytest
import torch

from cnnlab.cli import main
from cnnlab.engine.run import open_run
from cnnlab.explain.depth import resolve_settings, reuse, smooth
from cnnlab.models import count_parameters, create_model


def test_resnet_20_parameters_match_the_paper():
    # He et al. 2015, Table 6: 0.27M for ResNet-20 on CIFAR-10 (3 channels)
    assert count_parameters(create_model("resnet-20", in_channels=3, input_size=(32, 32))) == 269_722
    assert count_parameters(create_model("resnet-20")) == 269_434  # 1 channel: 16 x 9 fewer stem weights


@pytest.mark.parametrize("depth", [8, 20, 56])
def test_plain_and_resnet_share_their_conv_layers(depth):
    plain, res = create_model(f"plain-{depth}"), create_model(f"resnet-{depth}")
    shapes = lambda m: [(n, tuple(p.shape)) for n, p in m.named_parameters()]
    assert shapes(plain) == shapes(res)
    convs = [m for m in res.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == depth  # 6n + 1 convolutions and the final linear layer


def test_shortcut_is_the_only_difference():
    torch.manual_seed(0)
    plain = create_model("plain-8").eval()
    res = create_model("resnet-8").eval()
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(plain(x), res(x))
    for block in res.modules():
        if hasattr(block, "shortcut"):
            block.shortcut = False
    assert torch.allclose(plain(x), res(x))


@pytest.mark.parametrize("name", ["plain-56", "resnet-56", "densenet-bc-40-12"])
def test_gradient_reaches_the_first_layer(name):
    torch.manual_seed(0)
    model = create_model(name)
    torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.arange(8)).backward()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.weight.grad.norm() > 0


def test_width_and_bad_depths():
    assert create_model("resnet-20", width=8).fc.in_features == 32
    with pytest.raises(ValueError, match="6n \\+ 2"):
        from cnnlab.models.resnet import CifarResNet

        CifarResNet(depth=21)
    assert main(["train", "--model", "cnn", "--width", "8", "--dataset", "mnist-sample", "--epochs", "1"]) == 1


def test_densenet_bc_layout():
    model = create_model("densenet-bc-40-12")
    # 2k = 24 stem channels, 6 layers per block of growth 12, compression 0.5 at two transitions
    assert model.fc.in_features == ((24 + 72) // 2 + 72) // 2 + 72
    assert model(torch.zeros(2, 3, 32, 32)[:, :1]).shape == (2, 10)


def test_depth_sweep_writes_tables_and_figures_and_resumes(tmp_path, capsys):
    argv = [
        "depth",
        "--depths",
        "8,14",
        "--epochs",
        "2",
        "--train-subset",
        "600",
        "--width",
        "4",
        "--dataset",
        "mnist-sample",
        "--seeds",
        "0,1",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    lines = (tmp_path / "depth_table.csv").read_text().splitlines()
    assert (
        lines[0]
        == ("family,depth,model,parameters,final_train_loss,train_error,test_error,grad_norm_last_epoch,seconds")
        and len(lines) == 5
    )
    for picture in ("depth_curves.png", "depth_loss.png", "depth_gradients.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("finished earlier, kept") == 8


def test_densenet_in_the_depth_sweep(tmp_path, capsys):
    # densenet-bc-16-8 beside plain-14: 2 layers of two convolutions per block, plus 2 transitions
    assert (
        main(
            [
                "depth",
                "--families",
                "densenet",
                "--depths",
                "14",
                "--epochs",
                "1",
                "--train-subset",
                "256",
                "--dataset",
                "mnist-sample",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "| densenet-bc-16-8 | concat [x, F(x)] |     19,978 |" in capsys.readouterr().out
    row = (tmp_path / "depth_table.csv").read_text().splitlines()[1].split(",")
    assert row[:4] == ["densenet", "14", "densenet-bc-16-8", "19978"]
    for picture in ("depth_curves.png", "depth_loss.png", "depth_gradients.png", "depth_reuse.png"):
        assert (tmp_path / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    blocks = reuse(open_run(tmp_path / "densenet-bc-16-8-s0").model)
    assert len(blocks) == 3
    for matrix in blocks:  # layer 1 reads the block input; layer 2 the input and layer 1's output
        assert matrix.shape == (2, 2) and torch.isnan(matrix[0, 1]) and not torch.isnan(matrix[1]).any()
        assert matrix[0, 0] == 1 and matrix[1].max() == 1


def test_depth_settings_and_smoothing():
    assert resolve_settings("quick", families=("densenet",), width=None) == {
        "families": ("densenet",),
        "depths": (8, 20, 56),
        "epochs": 3,
        "train_subset": 12000,
        "width": 8,
    }
    assert resolve_settings(None)["families"] == ("plain", "resnet")
    assert smooth([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]


def test_the_quick_preset_offline_says_it_trains_on_the_sample_and_records_it(tmp_path, capsys):
    """Offline, `depth --preset quick` trains on mnist-sample: it says so, cuts the preset's 12,000 images to the
    sample's 4,000 in one line, and each run's config.json records the 4,000 it trained on."""
    argv = ["depth", "--preset", "quick", "--epochs", "1", "--families", "plain", "--depths", "8"]
    assert main([*argv, "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "training on mnist-sample" in out
    assert "mnist-sample has 4,000 training images, fewer than the quick preset's 12,000: all are used" in out
    saved = json.loads((tmp_path / "plain-8-s0" / "config.json").read_text())
    assert (saved["dataset"], saved["train_subset"]) == ("mnist-sample", 4000)
