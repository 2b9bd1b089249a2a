import pytest
import torch

from cnnlab import CnnlabError
from cnnlab.data.datasets import ImageDataset, pixel_stats
from cnnlab.engine.config import build_config
from cnnlab.engine.fit import fit
from cnnlab.engine.run import open_run
from cnnlab.models import count_flops, count_parameters, create_model, list_models


def test_lecture_cnn_is_verbatim():
    model = create_model("cnn")
    assert count_parameters(model) == 8490
    # conv1 10x24x24x25 MACs + conv2 20x8x8x250 + fc 320x10, a multiply-add counted as 2
    assert count_flops(model, (1, 28, 28)) == 2 * (10 * 24 * 24 * 25 + 20 * 8 * 8 * 250 + 320 * 10) == 934_400
    assert model.fc.in_features == 320
    assert [name for name, _ in model.named_children()] == ["conv1", "conv2", "mp", "fc"]


def test_lecture_inception_is_verbatim():
    model = create_model("inception")
    assert count_parameters(model) == 97298
    assert model.fc.in_features == 1408  # 88 channels x 4 x 4
    assert {
        "branch1x1",
        "branch5x5_1",
        "branch5x5_2",
        "branch3x3dbl_1",
        "branch3x3dbl_2",
        "branch3x3dbl_3",
        "branch_pool",
    } == {name for name, _ in model.incept1.named_children()}
    assert model.incept1(torch.zeros(2, 10, 12, 12)).shape == (2, 88, 12, 12)


@pytest.mark.parametrize("name, flat", [("cnn", 20 * 5 * 5), ("inception", 88 * 5 * 5)])
def test_flatten_size_follows_the_input(name, flat):
    model = create_model(name, in_channels=3, input_size=(32, 32))
    assert model.fc.in_features == flat
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_every_model_forwards_and_every_parameter_learns(name, channels, size):
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels, num_classes=7, input_size=(size, size))
    output = model(torch.randn(4, channels, size, size))
    assert output.shape == (4, 7) and torch.isfinite(output).all()
    torch.nn.functional.cross_entropy(output, torch.arange(4)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_state_dict_round_trip(name):
    a, b = create_model(name), create_model(name)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_unknown_model_suggests_close_names():
    with pytest.raises(CnnlabError, match="did you mean cnn"):
        create_model("cnnn")


@pytest.fixture(scope="module")
def colour_images():
    """CIFAR-shaped data: 3x32x32, 10 classes, each class a colour plus noise."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 10
    colours = torch.rand(10, 3, 1, 1, generator=generator) * 200
    images = (colours[labels] + torch.rand(48, 3, 32, 32, generator=generator) * 55).to(torch.uint8)
    return ImageDataset(
        "colours",
        tuple("abcdefghij"),
        *pixel_stats(images[:32]),
        images[:32],
        labels[:32],
        images[32:],
        labels[32:],
        mnist_style=False,
    )


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_on_cifar_shaped_data(name, colour_images, tmp_path):
    """Through the engine as `cnnlab train` runs it: per-channel normalisation, crops and flips, a checkpoint."""
    config = build_config(
        {
            "model": name,
            "epochs": 1,
            "batch_size": 16,
            "augment": "crop-flip",
            "threads": 1,
            "progress": False,
            "out": str(tmp_path / "run"),
        }
    )
    result = fit(config, log=lambda line: None, dataset=colour_images)
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    run = open_run(result.run_dir)
    assert (run.info.in_channels, run.info.input_size, run.info.num_classes) == (3, (32, 32), 10)
    assert run.model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
