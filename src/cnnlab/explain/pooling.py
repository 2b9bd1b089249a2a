"""`cnnlab pool`: max and average pooling side by side (lecture 10), on the slide's 4x4 example and on the
feature maps of a trained run.

Max pooling keeps each window's largest value: where a feature fired, not how much of the window it
covered. Average pooling keeps each window's mean, so a strong, thin stroke is diluted by its neighbours.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise
from cnnlab.engine.run import OpenOptions, default_output, open_run
from cnnlab.files import check_output
from cnnlab.models.shapes import conv_output_size
from cnnlab.plotting import pyplot, save_figure

# The lecture 10 slide (after CS231n): a 4x4 input, 2x2 windows, stride 2.
LECTURE_EXAMPLE = ((1, 1, 2, 4), (5, 6, 7, 8), (3, 2, 1, 0), (1, 2, 3, 4))
MAX_GRID = 32  # sides of a --grid typed on the command line
SHOWN_WINDOWS = 16  # windows worked out one by one


def parse_grid(text: str) -> tuple[tuple[float, ...], ...]:
    """Rows separated by ';', numbers by spaces or commas: '1 1 2 4; 5 6 7 8; 3 2 1 0; 1 2 3 4'."""
    try:
        rows = tuple(tuple(float(v) for v in row.replace(",", " ").split()) for row in text.split(";"))
    except ValueError:
        rows = ()
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise CnnlabError(
            f"--grid needs rows of equal length separated by ';', such as '1 1 2 4; 5 6 7 8'; got {text!r}"
        )
    if len(rows) > MAX_GRID or len(rows[0]) > MAX_GRID:
        raise CnnlabError(f"--grid is {len(rows)}x{len(rows[0])}; at most {MAX_GRID}x{MAX_GRID} is printed")
    return rows


def pool(values: torch.Tensor, how: str, window: int, stride: int) -> torch.Tensor:
    """Max or average pooling of (C, H, W) maps, no padding."""
    pooling = F.max_pool2d if how == "max" else F.avg_pool2d
    return pooling(values, window, stride)


def _check_window(height: int, width: int, window: int, stride: int) -> None:
    if window < 1 or stride < 1:
        raise CnnlabError(f"--window and --stride must be at least 1, got {window} and {stride}")
    if window > min(height, width):
        raise CnnlabError(f"a {window}x{window} window does not fit the {height}x{width} input")


def _number(value: float) -> str:
    return f"{value:.4g}"


def _grid_lines(grid: torch.Tensor) -> list[str]:
    cells = [[_number(v) for v in row] for row in grid.tolist()]
    width = max(len(c) for row in cells for c in row)
    return ["  ".join(c.rjust(width) for c in row) for row in cells]


def pool_example(grid: Sequence[Sequence[float]] = LECTURE_EXAMPLE, window: int = 2, stride: int = 2) -> str:
    """The input, its max-pooled and its average-pooled grid side by side, then each window worked out."""
    values = torch.tensor(grid, dtype=torch.float64)
    height, width = values.shape
    _check_window(height, width, window, stride)
    out_h, out_w = conv_output_size(height, window, stride), conv_output_size(width, window, stride)
    pooled = {how: pool(values.unsqueeze(0), how, window, stride)[0] for how in ("max", "average")}
    columns = [(f"input {height}x{width}", _grid_lines(values))]
    columns += [(f"{how} pool -> {out_h}x{out_w}", _grid_lines(result)) for how, result in pooled.items()]
    gap = 6
    widths = [max(len(title), *(len(line) for line in lines)) for title, lines in columns]
    lines = [
        f"{window}x{window} windows, stride {stride}: output floor(({height} - {window}) / {stride}) + 1 = "
        f"{out_h} by floor(({width} - {window}) / {stride}) + 1 = {out_w}",
        "",
    ]
    lines.append((" " * gap).join(title.ljust(w) for (title, _), w in zip(columns, widths)).rstrip())
    for i in range(height):
        lines.append(
            (" " * gap)
            .join((rows[i] if i < len(rows) else "").ljust(w) for (_, rows), w in zip(columns, widths))
            .rstrip()
        )
    lines.append("")
    for k in range(min(out_h * out_w, SHOWN_WINDOWS)):
        r, c = k // out_w * stride, k % out_w * stride
        cells = values[r : r + window, c : c + window].flatten().tolist()
        lines.append(
            f"rows {r + 1}-{r + window}, columns {c + 1}-{c + window}: {', '.join(map(_number, cells))}"
            f" -> max {_number(max(cells))}, average {_number(sum(cells))} / {len(cells)} = "
            f"{_number(sum(cells) / len(cells))}"
        )
    if out_h * out_w > SHOWN_WINDOWS:
        lines.append(f"... and {out_h * out_w - SHOWN_WINDOWS} more windows")
    return "\n".join(lines)


def _first_conv_name(model: torch.nn.Module) -> str:
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            return name
    raise CnnlabError(f"model {type(model).__name__} has no convolution layer to pool the output of")


def feature_maps(
    run: str | Path,
    image_index: int = 0,
    layer: str | None = None,
    data_dir: str | Path | None = None,
    *,
    options: OpenOptions = OpenOptions(),
) -> tuple[str, torch.Tensor, torch.Tensor]:
    """The output of `layer` (default: the first convolution) for one test image: (name, image, maps)."""
    saved = open_run(run, options)
    model, info = saved.model, saved.info
    convs = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    name = layer or _first_conv_name(model)
    if name not in convs:
        raise CnnlabError(
            f"--layer {name!r} is not a convolution of {saved.model_name}; choose from {', '.join(convs)}"
        )
    dataset = saved.load_dataset(data_dir=data_dir)
    if not 0 <= image_index < len(dataset.test_labels):
        raise CnnlabError(f"--image must be between 0 and {len(dataset.test_labels) - 1}, got {image_index}")
    captured = []
    hook = convs[name].register_forward_hook(lambda module, inputs, output: captured.append(output[0]))
    try:
        with torch.inference_mode():
            model(normalise(dataset.test_images[image_index : image_index + 1], info.mean, info.std))
    finally:
        hook.remove()
    return name, dataset.test_images[image_index, 0], captured[0]


def pool_picture(
    run: str | Path,
    out: str | Path,
    image_index: int = 0,
    window: int = 2,
    stride: int = 2,
    layer: str | None = None,
    channels: int = 4,
    data_dir: str | Path | None = None,
    *,
    options: OpenOptions = OpenOptions(),
) -> Path:
    """A picture: the test image, then for the `channels` most active channels of `layer`'s output the map,
    its max pooling and its average pooling, each row on one colour scale."""
    name, image, maps = feature_maps(run, image_index, layer, data_dir, options=options)
    height, width = maps.shape[1:]
    _check_window(height, width, window, stride)
    if channels < 1:
        raise CnnlabError(f"--channels must be at least 1, got {channels}")
    strongest = maps.amax((1, 2)).argsort(descending=True)[:channels].tolist()
    pooled = {how: pool(maps, how, window, stride) for how in ("max", "average")}
    fig, axes = pyplot().subplots(len(strongest), 4, figsize=(9, 2.3 * len(strongest)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(image.numpy(), cmap="gray")
    axes[0, 0].set_title(f"test image #{image_index}", fontsize=9)
    for row, c in enumerate(strongest):
        low, high = maps[c].min().item(), maps[c].max().item()
        panels = [(f"{name} channel {c}", maps[c])] + [(f"{how} pool", pooled[how][c]) for how in pooled]
        for ax, (title, values) in zip(axes[row, 1:], panels):
            ax.imshow(values.numpy(), cmap="viridis", vmin=low, vmax=high)
            ax.set_title(f"{title}\n{'x'.join(map(str, values.shape))}, peak {values.max().item():.2f}", fontsize=8)
    fig.suptitle(
        f"{window}x{window} pooling, stride {stride}, of {name}'s output: max keeps each window's peak, "
        f"average dilutes it",
        fontsize=10,
    )
    return save_figure(fig, out)


def pool_command(
    grid: str | None = None,
    window: int = 2,
    stride: int = 2,
    run: str | Path | None = None,
    out: str | Path | None = None,
    image_index: int = 0,
    layer: str | None = None,
    channels: int = 4,
    data_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    options: OpenOptions = OpenOptions(),
) -> str:
    """`cnnlab pool`: the worked example (the lecture's grid, or `grid`), or with `run` a picture of its
    feature maps pooled (default RUN_DIR/pool-<image>.png, replaced if there); returns what to print. `out`
    replaces an existing file only with `overwrite`."""
    if run is None:
        return pool_example(parse_grid(grid) if grid is not None else LECTURE_EXAMPLE, window, stride)
    if grid is not None:
        raise CnnlabError("--grid and --run do not go together: the grid is printed, a run's maps are drawn")
    default, replaces = default_output(run, f"pool-{image_index}.png")
    check_output(out or default, overwrite=overwrite or (out is None and replaces and Path(run).is_dir()))
    picture = pool_picture(run, out or default, image_index, window, stride, layer, channels, data_dir, options=options)
    return f"wrote {picture}"
