"""The lecture's arithmetic, checked against values computed by hand."""

import pytest
import torch

from cnnlab import CnnlabError
from cnnlab.cli import main
from cnnlab.explain.arithmetic import params, shape, summary_rows
from cnnlab.models import count_parameters, create_model
from cnnlab.models.local import LocallyConnected2d


def test_summary_shows_the_lecture_shapes():
    rows = summary_rows(create_model("cnn"), (1, 28, 28))
    chain = [(r[0], r[2], r[3]) for r in rows]
    assert chain == [
        ("conv1", "1x28x28", "10x24x24"),
        ("mp", "10x24x24", "10x12x12"),
        ("conv2", "10x12x12", "20x8x8"),
        ("mp", "20x8x8", "20x4x4"),
        ("fc", "320", "10"),
    ]
    assert [r[4] for r in rows] == [10 * 25 + 10, 0, 20 * 250 + 20, 0, 320 * 10 + 10]
    assert [r[5] for r in rows] == [2 * 5760 * 25, 0, 2 * 1280 * 250, 0, 2 * 3200]


class Recurrent(torch.nn.Module):
    """A learner's sequence models: an LSTM over the rows, then attention over its outputs (both return tuples;
    nn.MultiheadAttention computes with its own weights, never calling its out_proj child)."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(28, 32, batch_first=True)
        self.attn = torch.nn.MultiheadAttention(32, 4, batch_first=True)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        out, _ = self.lstm(x.reshape(-1, 28, 28))
        out = self.attn(out, out, out, need_weights=False)[0]
        return self.fc(out[:, -1])


def test_summary_has_a_row_for_modules_that_return_tuples_or_use_their_own_weights():
    model = Recurrent()
    rows = summary_rows(model, (1, 28, 28))
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("lstm", "LSTM", "28x28", "28x32", 4 * (28 * 32 + 32 * 32 + 2 * 32)),
        ("attn", "MultiheadAttention", "28x32", "28x32", 3 * 32 * 32 + 3 * 32 + 32 * 32 + 32),
        ("fc", "Linear", "32", "10", 330),
    ]
    assert sum(r[4] for r in rows) == count_parameters(model)


def test_summary_cli_totals_match_models(capsys):
    assert main(["summary", "inception"]) == 0
    total = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| total")][0]
    assert "97,298" in total and "12,038,400" in total


@pytest.mark.parametrize(
    "args, expected",
    [
        ((28, 5), "= 24"),
        ((28, 5, 2, 2), "floor(27 / 2) + 1 = 14"),  # (28 + 4 - 4 - 1) / 2
        ((28, 3, 1, 1), "= 28"),  # "same" padding
        ((28, 3, 1, 0, 2), "= 24"),  # dilation 2 reaches 5 pixels
    ],
)
def test_shape_formula(args, expected):
    assert expected in str(shape(*args))


def test_shape_with_pooling():
    assert "floor((24 - 2) / 2) + 1 = 12" in str(shape(28, 5, pool=2))


def test_shape_errors_when_the_output_would_be_empty():
    with pytest.raises(CnnlabError, match="output would be empty"):
        shape(4, 5)


def test_params_for_the_lectures_conv1():
    text = params((1, 28, 28), 10, 5)
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")
        )
    }
    assert rows["fully connected"] == ["784 x 5,760 + 5,760", "4,521,600", "9,031,680"]
    assert rows["locally connected"] == ["5,760 x 25 + 5,760", "149,760", "288,000"]
    assert rows["convolution"] == ["10 x 25 + 10", "260", "288,000"]


def test_locally_connected_matches_a_reference_loop():
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, (6, 5), kernel_size=3, stride=2, padding=1)
    x = torch.randn(2, 2, 6, 5)
    out = layer(x)
    oh, ow = layer.output_size
    assert (oh, ow) == (3, 3)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    expected = torch.zeros(2, 3, oh, ow)
    for i in range(oh):
        for j in range(ow):
            patch = padded[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].reshape(2, -1)  # (N, C*k*k)
            expected[:, :, i, j] = patch @ layer.weight[i * ow + j].T + layer.bias[:, i, j]
    assert torch.allclose(out, expected, atol=1e-5)


def test_locally_connected_with_shared_weights_is_a_convolution():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, stride=1, padding=1)
    layer = LocallyConnected2d(3, 4, (7, 7), 3, padding=1)
    with torch.no_grad():
        layer.weight.copy_(conv.weight.reshape(4, -1).expand_as(layer.weight))
        layer.bias.copy_(conv.bias.view(4, 1, 1).expand_as(layer.bias))
    x = torch.randn(2, 3, 7, 7)
    assert torch.allclose(layer(x), conv(x), atol=1e-5)


def test_baseline_parameter_counts():
    # lcn: conv1 5,760 positions x 25 + 5,760; conv2 1,280 x 250 + 1,280; fc 3,210
    assert count_parameters(create_model("lcn")) == 5760 * 25 + 5760 + 1280 * 250 + 1280 + 3210
    # mlp: 784-520-320-240-120-10
    assert count_parameters(create_model("mlp")) == (
        784 * 520 + 520 + 520 * 320 + 320 + 320 * 240 + 240 + 240 * 120 + 120 + 120 * 10 + 10
    )
