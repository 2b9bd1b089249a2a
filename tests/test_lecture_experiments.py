"""The lecture's experiments: 1x1 reductions, max vs average pooling, the pooling variants, checked by hand."""

import json

import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.explain.bottleneck import branch_costs, known_cases, without_reduction
from cnnlab.explain.pooling import LECTURE_EXAMPLE, pool
from cnnlab.models import count_flops, count_parameters, create_model

# (block, branch): parameters with the 1x1 reduction, without it; FLOPs with, without. By hand, per conv
# out x in x k x k + out parameters and 2 x H x W x out x in x k x k FLOPs:
#   incept1 (10 x 12x12) 5x5: 1x1 16x10 + 16 = 176, 5x5 24x16x25 + 24 = 9,624; without: 24x10x25 + 24 = 6,024
#   double 3x3: 176 + (24x16x9 + 24 = 3,480) + (24x24x9 + 24 = 5,208); without: (24x10x9 + 24 = 2,184) + 5,208
#   incept2 (20 x 4x4): 1x1 16x20 + 16 = 336; 5x5 without: 24x20x25 + 24 = 12,024; 3x3 without: 24x20x9 + 24 = 4,344
#   GoogLeNet 3a (192 x 28x28): 16x192 + 16 = 3,088 + 32x16x25 + 32 = 12,832; without: 32x192x25 + 32 = 153,632
BRANCHES = [
    ("incept1", "5x5", 9800, 6024, 2 * 144 * (16 * 10 + 24 * 16 * 25), 2 * 144 * 24 * 10 * 25),
    (
        "incept1",
        "3x3 double",
        8864,
        7392,
        2 * 144 * (16 * 10 + 24 * 16 * 9 + 24 * 24 * 9),
        2 * 144 * (24 * 10 * 9 + 24 * 24 * 9),
    ),
    ("incept2", "5x5", 9960, 12024, 2 * 16 * (16 * 20 + 24 * 16 * 25), 2 * 16 * 24 * 20 * 25),
    (
        "incept2",
        "3x3 double",
        9024,
        9552,
        2 * 16 * (16 * 20 + 24 * 16 * 9 + 24 * 24 * 9),
        2 * 16 * (24 * 20 * 9 + 24 * 24 * 9),
    ),
    ("googlenet", "5x5", 15920, 153632, 2 * 784 * (16 * 192 + 32 * 16 * 25), 2 * 784 * 32 * 192 * 25),
]


@pytest.mark.parametrize("block, branch, params, params_without, flops, flops_without", BRANCHES)
def test_branch_costs_with_and_without_the_1x1_reduction(block, branch, params, params_without, flops, flops_without):
    case = known_cases()[block]
    channels, height, width = case.input_shape
    convs = case.branches[branch]
    naive = without_reduction(convs, channels)
    assert branch_costs(convs, height, width) == (params, flops)
    assert branch_costs(naive, height, width) == (params_without, flops_without)
    for layers, expected_params, expected_flops in ((convs, params, flops), (naive, params_without, flops_without)):
        torch_branch = torch.nn.Sequential(*(c.module() for c in layers))  # the same layers, counted by torch
        assert count_parameters(torch_branch) == expected_params
        assert count_flops(torch_branch, case.input_shape) == expected_flops


def test_bottleneck_says_when_the_reduction_does_not_reduce(capsys):
    assert main(["bottleneck"]) == 0
    out = capsys.readouterr().out
    row = "| 5x5, with 1x1        |                branch5x5_1: 1x1, 10 -> 16 |   16 x 10 x 1x1 + 16 |        176 |"
    assert row in out
    assert "5x5 branch: the 1x1 'reduction' expands 10 channels to 16; with it the branch costs 1.63x" in out
    assert "5x5 branch: it saves little: 17% of the parameters and 17% of the FLOPs" in out
    assert "3x3 double branch: it saves little: 6% of the parameters" in out
    assert "5x5 branch: without it the branch would need 9.7x the parameters and 9.7x the FLOPs" in out
    # whole blocks, counted by torch: 176 + 9,800 + 8,864 + 264 and 176 + 6,024 + 7,392 + 264
    assert "InceptionA(10) (models/lecture.py): 19,104 parameters" in out
    assert "(inception-naive's block, models/variants.py): 13,856 parameters" in out


def test_bottleneck_of_a_branch_given_on_the_command_line(capsys):
    assert main(["bottleneck", "--input", "64x14x14", "--reduce", "32", "--out-channels", "64", "--kernel", "3"]) == 0
    out = capsys.readouterr().out
    assert "64 x 32 x 3x3 + 64" in out and "64 x 64 x 3x3 + 64" in out  # with, and without the 1x1
    assert f"{64 * 32 + 32 + 64 * 32 * 9 + 64:,}" in out and f"{64 * 64 * 9 + 64:,}" in out


def test_pooling_the_lectures_example():
    grid = torch.tensor(LECTURE_EXAMPLE, dtype=torch.float32).unsqueeze(0)
    assert pool(grid, "max", 2, 2)[0].tolist() == [[6, 8], [3, 4]]
    assert pool(grid, "average", 2, 2)[0].tolist() == [[3.25, 5.25], [2, 2]]  # 13/4, 21/4, 8/4, 8/4


def test_pool_prints_the_grids_side_by_side(capsys):
    assert main(["pool"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2x2 windows, stride 2: output floor((4 - 2) / 2) + 1 = 2 by floor((4 - 2) / 2) + 1 = 2"
    assert lines[2:7] == [
        "input 4x4       max pool -> 2x2      average pool -> 2x2",
        "1  1  2  4      6  8                 3.25  5.25",
        "5  6  7  8      3  4                    2     2",
        "3  2  1  0",
        "1  2  3  4",
    ]
    assert "rows 1-2, columns 3-4: 2, 4, 7, 8 -> max 8, average 21 / 4 = 5.25" in lines


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pool", "--grid", "1 2; 3"], "--grid needs rows of equal length"),
        (["pool", "--window", "5"], "a 5x5 window does not fit the 4x4 input"),
        (["pool", "--stride", "0"], "--window and --stride must be at least 1"),
        (["pool", "--run", "no-such-run"], "no-such-run"),
        (
            ["bottleneck", "--block", "inception3"],
            "unknown block 'inception3'; choose from incept1, incept2, googlenet",
        ),
        (["bottleneck", "--reduce", "16"], "describe a branch with all of --input, --reduce"),
        (
            ["bottleneck", "--input", "8x7x7", "--reduce", "4", "--out-channels", "8", "--kernel", "4"],
            "--kernel must be odd",
        ),
        (["depth", "--families", "plain,densnet"], "unknown family 'densnet'; choose from plain, resnet, densenet"),
        (["depth", "--families", "densenet", "--depths", "32"], "no densenet net for depth 32"),
        (["depth", "--depths", "8,x"], "expected whole numbers separated by commas, got '8,x'"),
    ],
)
def test_bad_values_get_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that nothing could be written into the checkout
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors: one line too, exit status 2
        code = e.code
    assert code != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_pooled_feature_maps_picture(trained_run, tmp_path, capsys):
    out = tmp_path / "pool.png"
    assert main(["pool", "--run", str(trained_run), "--out", str(out), "--image", "3", "--channels", "2"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    with Image.open(out) as picture:
        picture.verify()
    with Image.open(out) as picture:
        gray = picture.convert("L")
        assert picture.width > 300 and picture.height > 200
        low, high = gray.getextrema()
        assert high - low > 100 and sum(1 for n in gray.histogram() if n) > 50  # drawn maps, not a blank page


def test_variants_parameter_counts_and_layers():
    # the lecture's 97,298 without the four 1x1 reductions' effect: incept1 saves 3,776 + 1,472, incept2 costs
    # 2,064 + 528 more
    naive = create_model("inception-naive")
    assert count_parameters(naive) == 97298 - (9800 - 6024) - (8864 - 7392) + (12024 - 9960) + (9552 - 9024) == 94642
    assert naive.fc.in_features == 1408
    assert [name for name, _ in naive.incept1.named_children()] == [
        "branch1x1",
        "branch5x5_2",
        "branch3x3dbl_2",
        "branch3x3dbl_3",
        "branch_pool",
    ]
    assert naive.incept1(torch.zeros(2, 10, 12, 12)).shape == (2, 88, 12, 12)

    avg = create_model("cnn-avgpool")
    assert count_parameters(avg) == 8490
    assert [(name, type(m).__name__) for name, m in avg.named_children()] == [
        ("conv1", "Conv2d"),
        ("conv2", "Conv2d"),
        ("mp", "AvgPool2d"),
        ("fc", "Linear"),
    ]

    strided = create_model("cnn-strided")
    # the lecture's 8,490 plus two learned 2x2 stride-2 convolutions: 10x10x4 + 10 and 20x20x4 + 20
    assert count_parameters(strided) == 8490 + 410 + 1620 == 10520
    assert strided.forward_features(torch.zeros(1, 1, 28, 28)).shape == (1, 20, 4, 4)  # as the pooled lecture CNN


def test_overfit_works_offline_on_the_sample_and_says_how_it_scaled(tmp_path, capsys):
    """`make run` falls back to mnist-sample offline; `cnnlab overfit` must too: its 5,000 validation images do
    not fit in the sample's 4,000, so it holds out a quarter, says so, and records what it used."""
    assert main(["overfit", "--epochs", "1", "--cures", "baseline", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "training on mnist-sample" in out
    assert "mnist-sample has 4,000 training images, too few for the defaults: --val-split 1,000 (default 5,000)" in out
    saved = json.loads((tmp_path / "baseline" / "config.json").read_text())
    assert (saved["dataset"], saved["val_split"], saved["train_subset"]) == ("mnist-sample", 1000, 1000)
