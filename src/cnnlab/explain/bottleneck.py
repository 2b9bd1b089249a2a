"""`cnnlab bottleneck`: what the 1x1 convolution in front of an Inception branch saves, or costs (lecture 11).

A branch first reduces the block's input to fewer channels with a 1x1 convolution, then applies its 5x5 or
3x3 kernels to those. Without the reduction the first larger kernel reads the block's input directly and
produces the same channels. A convolution has out x in x k x k + out parameters and, at each of the H x W
positions ('same' padding keeps them), out x in x k x k multiply-adds: 2 FLOPs each, as
torch.utils.flop_counter counts (the bias adds parameters but no FLOPs there).

The reduction pays when the block's input has many more channels than the 1x1 produces (GoogLeNet: 192 to
16); in the lecture's toy net the inputs have 10 and 20 channels and the 1x1 produces 16.
"""

from dataclasses import dataclass, replace

import torch.nn as nn

from cnnlab import CnnlabError
from cnnlab.models import count_flops, count_parameters
from cnnlab.models.lecture import InceptionA
from cnnlab.models.shapes import conv_output_size
from cnnlab.models.variants import NaiveInceptionA
from cnnlab.tables import format_table

FORMULAS = (
    "A KxK convolution from C_in to C_out channels, stride 1, 'same' padding, on H x W:\n"
    "  parameters = C_out x C_in x KxK + C_out (weights + biases)\n"
    "  FLOPs      = 2 x HxW x C_out x C_in x KxK (a multiply-add counts 2; biases add none)"
)


@dataclass(frozen=True)
class Conv:
    """One convolution of a branch, stride 1 and 'same' padding."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int

    @classmethod
    def of(cls, name: str, module: nn.Conv2d) -> "Conv":
        return cls(name, module.in_channels, module.out_channels, module.kernel_size[0])

    def __str__(self) -> str:
        return f"{self.name}: {self.kernel}x{self.kernel}, {self.in_channels} -> {self.out_channels}"

    @property
    def parameters(self) -> int:
        return self.out_channels * self.in_channels * self.kernel**2 + self.out_channels

    def parameters_formula(self) -> str:
        return f"{self.out_channels} x {self.in_channels} x {self.kernel}x{self.kernel} + {self.out_channels}"

    def flops(self, height: int, width: int) -> int:
        return 2 * height * width * self.out_channels * self.in_channels * self.kernel**2

    def flops_formula(self, height: int, width: int) -> str:
        return f"2 x {height}x{width} x {self.out_channels} x {self.in_channels} x {self.kernel}x{self.kernel}"

    def module(self) -> nn.Conv2d:
        return nn.Conv2d(self.in_channels, self.out_channels, self.kernel, padding=self.kernel // 2)


@dataclass(frozen=True)
class Case:
    title: str
    input_shape: tuple[int, int, int]  # the block's input, C x H x W
    branches: dict[str, list[Conv]]  # branch name -> its convolutions, the 1x1 reduction first
    block_in_channels: int | None = None  # also count the whole lecture block, InceptionA and NaiveInceptionA


def without_reduction(branch: list[Conv], in_channels: int) -> list[Conv]:
    """The branch without its leading 1x1 convolution: the next one reads the block's input."""
    following = branch[1]
    return [replace(following, in_channels=in_channels, name=f"{following.name} without 1x1")] + branch[2:]


def _lecture_branches(in_channels: int) -> dict[str, list[Conv]]:
    """The 5x5 and double-3x3 branches of the lecture's own InceptionA module, read off its layers."""
    block = InceptionA(in_channels)
    layers = {
        "5x5": ("branch5x5_1", "branch5x5_2"),
        "3x3 double": ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    }
    return {branch: [Conv.of(name, getattr(block, name)) for name in names] for branch, names in layers.items()}


def known_cases() -> dict[str, Case]:
    """The blocks `cnnlab bottleneck --block` knows: the lecture's incept1 and incept2, and GoogLeNet's (3a)."""
    first = conv_output_size(28, 5) // 2  # conv1 (5x5) and a 2x2 max pool: 12
    second = conv_output_size(first, 5) // 2  # conv2 (5x5) and a 2x2 max pool: 4
    return {
        "incept1": Case(
            f"incept1: the lecture's InceptionA(in_channels=10) on its 10x{first}x{first} input",
            (10, first, first),
            _lecture_branches(10),
            block_in_channels=10,
        ),
        "incept2": Case(
            f"incept2: the lecture's InceptionA(in_channels=20) on its 20x{second}x{second} input",
            (20, second, second),
            _lecture_branches(20),
            block_in_channels=20,
        ),
        # Szegedy et al. 2014, Table 1, inception (3a): 192 channels of 28x28, "#5x5 reduce" 16, "#5x5" 32
        "googlenet": Case(
            "GoogLeNet's inception (3a), 5x5 branch: 192x28x28 input (Szegedy et al. 2014, Table 1)",
            (192, 28, 28),
            {"5x5": [Conv("5x5_reduce", 192, 16, 1), Conv("5x5", 16, 32, 5)]},
        ),
    }


def _verdict(branch: str, first: Conv, params: int, flops: int, params_without: int, flops_without: int) -> str:
    params_ratio, flops_ratio = params_without / params, flops_without / flops
    head = f"{branch} branch: "
    if first.out_channels > first.in_channels:
        head += f"the 1x1 'reduction' expands {first.in_channels} channels to {first.out_channels}; "
    if params_ratio < 1 or flops_ratio < 1:
        return head + (
            f"with it the branch costs {1 / params_ratio:.2f}x the parameters and {1 / flops_ratio:.2f}x "
            f"the FLOPs of the branch without it: it saves nothing here"
        )
    if params_ratio < 1.5:
        return head + (
            f"it saves little: {100 * (1 - 1 / params_ratio):.0f}% of the parameters and "
            f"{100 * (1 - 1 / flops_ratio):.0f}% of the FLOPs"
        )
    return head + (
        f"without it the branch would need {params_ratio:.1f}x the parameters and {flops_ratio:.1f}x the FLOPs"
    )


def branch_costs(branch: list[Conv], height: int, width: int) -> tuple[int, int]:
    """(parameters, FLOPs) of a branch's convolutions on a height x width input."""
    return sum(c.parameters for c in branch), sum(c.flops(height, width) for c in branch)


def explain_case(case: Case) -> str:
    channels, height, width = case.input_shape
    rows, verdicts = [], []
    for name, branch in case.branches.items():
        naive = without_reduction(branch, channels)
        for label, convs in ((f"{name}, with 1x1", branch), (f"{name}, without", naive)):
            for i, conv in enumerate(convs):
                rows.append(
                    [
                        label if i == 0 else "",
                        str(conv),
                        conv.parameters_formula(),
                        f"{conv.parameters:,}",
                        conv.flops_formula(height, width),
                        f"{conv.flops(height, width):,}",
                    ]
                )
            params, flops = branch_costs(convs, height, width)
            rows.append(["", "branch total", "", f"{params:,}", "", f"{flops:,}"])
        verdicts.append(
            _verdict(name, branch[0], *branch_costs(branch, height, width), *branch_costs(naive, height, width))
        )
    lines = [
        case.title,
        "",
        format_table(["branch", "layer", "parameters (formula)", "parameters", "FLOPs (formula)", "FLOPs"], rows),
        "",
    ] + verdicts
    if case.block_in_channels is not None:
        lecture, naive_block = InceptionA(case.block_in_channels), NaiveInceptionA(case.block_in_channels)
        lines += [
            "whole block, all four branches, counted by torch on the modules themselves:",
            f"  InceptionA({case.block_in_channels}) (models/lecture.py): {count_parameters(lecture):,} "
            f"parameters, {count_flops(lecture, case.input_shape):,} FLOPs",
            f"  without the 1x1 reductions (inception-naive's block, models/variants.py): "
            f"{count_parameters(naive_block):,} parameters, {count_flops(naive_block, case.input_shape):,} FLOPs",
        ]
    return "\n".join(lines)


def custom_case(input_shape: tuple[int, int, int], reduce: int, out_channels: int, kernel: int) -> Case:
    channels, height, width = input_shape
    for flag, value in (("--reduce", reduce), ("--out-channels", out_channels), ("--kernel", kernel)):
        if value < 1:
            raise CnnlabError(f"{flag} must be at least 1, got {value}")
    if kernel % 2 == 0:
        raise CnnlabError(f"--kernel must be odd, so that 'same' padding keeps {height}x{width}; got {kernel}")
    branch = [Conv("reduce", channels, reduce, 1), Conv(f"{kernel}x{kernel}", reduce, out_channels, kernel)]
    return Case(
        f"a {kernel}x{kernel} branch on {channels}x{height}x{width}, 1x1 reduction to {reduce} channels",
        input_shape,
        {f"{kernel}x{kernel}": branch},
    )


def bottleneck(
    block: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    reduce: int | None = None,
    out_channels: int | None = None,
    kernel: int | None = None,
) -> str:
    """The lecture's blocks and GoogLeNet's (all three, or `block`), or a branch described by the other four."""
    return "\n\n".join(
        [FORMULAS] + [explain_case(case) for case in _cases(block, input_shape, reduce, out_channels, kernel)]
    )


def _cases(
    block: str | None,
    input_shape: tuple[int, int, int] | None,
    reduce: int | None,
    out_channels: int | None,
    kernel: int | None,
) -> list[Case]:
    custom = (input_shape, reduce, out_channels, kernel)
    if any(v is not None for v in custom):
        if block is not None or input_shape is None or reduce is None or out_channels is None or kernel is None:
            raise CnnlabError(
                "describe a branch with all of --input, --reduce, --out-channels and --kernel (and no --block)"
            )
        return [custom_case(input_shape, reduce, out_channels, kernel)]
    cases = known_cases()
    if block is not None and block not in cases:
        raise CnnlabError(f"unknown block {block!r}; choose from {', '.join(cases)}")
    return [case for name, case in cases.items() if block in (None, name)]
