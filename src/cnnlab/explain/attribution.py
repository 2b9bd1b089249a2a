"""Where a network looks, for one input and one class: occlusion sensitivity and Grad-CAM (Captum).

- Occlusion (Zeiler & Fergus, 2014): a patch slides over the input, painted with the background; at each
  place the class's softmax probability is measured again. A pixel's value is the mean fall of that
  probability over the patches that covered it: positive where covering it lowers the class, negative where
  covering it raises the class.
- Grad-CAM (Selvaraju et al., 2017) at one convolution: the gradient of the class score (its logit, before
  softmax) with respect to that layer's output maps, averaged over each map, weighs the maps; their weighted
  sum, through a ReLU, is a map at the layer's resolution (8x8 at the lecture cnn's conv2), upsampled
  bilinearly to the input.

Captum computes both (`Occlusion`, `LayerGradCam`); tests/test_attribution.py checks them against a model whose
answer is known by hand and against Grad-CAM written out directly.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from captum.attr import LayerAttribution, LayerGradCam, Occlusion

from cnnlab import CnnlabError
from cnnlab.data.batches import normalise, normalised_black
from cnnlab.engine.run import OpenOptions, SavedRun, open_run
from cnnlab.plotting import pyplot, save_figure

OCCLUSION, GRAD_CAM = "occlusion", "grad-cam"
METHODS = (OCCLUSION, GRAD_CAM)
MAX_PATCHES_PER_PASS = 256  # occluded copies forwarded in one batch
MAX_PICTURED = 10  # test images in `attribution_picture`, one a class


@dataclass
class Attribution:
    method: str  # OCCLUSION or GRAD_CAM
    target: int  # the class it explains
    heat: torch.Tensor  # (H, W) on the input's pixels
    coarse: torch.Tensor  # as computed: Grad-CAM at the layer's resolution, occlusion the same as `heat`
    probability: float  # the target's softmax probability for the unoccluded input
    layer: str | None = None  # Grad-CAM's convolution
    patch: int | None = None  # occlusion's square patch, and the pixels it moves each time
    stride: int | None = None


@contextmanager
def watching(modules: Iterable[nn.Module], hook: Callable[[nn.Module, object], object]) -> Iterator[None]:
    """Inside the block, `hook(module, output)` runs after each of `modules`; its return value is dropped (a forward
    hook that returned one would replace the module's output)."""

    def after(module: nn.Module, inputs: object, output: object) -> None:
        hook(module, output)

    handles = [module.register_forward_hook(after) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def logits_of(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`model` as a function returning class scores before softmax: the output of its last leaf module of the
    output's shape (the lecture nets end in `F.log_softmax` after `fc`: Grad-CAM takes the logit, as its paper
    does), or the output itself when no module gives one."""

    leaves = [m for m in model.modules() if not any(m.children()) and not isinstance(m, (nn.Softmax, nn.LogSoftmax))]

    def forward(x: torch.Tensor) -> torch.Tensor:
        seen: list[object] = []
        with watching(leaves, lambda m, o: seen.append(o)):
            output = model(x)
        return next((o for o in reversed(seen) if isinstance(o, torch.Tensor) and o.shape == output.shape), output)

    return forward


def convolutions(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The model's convolutions (nn.Conv2d) by qualified name, in the order its forward pass calls them."""
    names: dict[nn.Module, str] = {m: name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    called: list[str] = []
    with watching(names, lambda m, o: called.append(names[m])), torch.no_grad():
        model(x)
    return list(dict.fromkeys(called))


def default_layer(model: nn.Module, x: torch.Tensor) -> str:
    """Grad-CAM's usual layer, the last convolution, leaving out the branches of a block that concatenates
    them (an Inception branch sees only its own channels): `conv2` for the lecture's cnn and inception."""
    outputs: dict[str, int | None] = {}  # channels of each module's output (its first call)
    name_of = {module: name for name, module in model.named_modules() if name}
    with watching(name_of, lambda m, o: outputs.setdefault(name_of[m], _channels(o))), torch.no_grad():
        model(x)
    convs = convolutions(model, x)
    if not convs:
        raise CnnlabError(f"model {type(model).__name__} has no convolution: Grad-CAM needs one")
    parent = lambda name: name.rpartition(".")[0]
    whole = [c for c in convs if not parent(c) or outputs.get(parent(c)) == outputs[c]]
    return (whole or convs)[-1]


def _channels(output: object) -> int | None:
    return output.shape[1] if isinstance(output, torch.Tensor) and output.dim() == 4 else None


def check_target(target: int | None, num_classes: int, classes: Sequence[str] | None = None) -> None:
    if target is not None and not 0 <= target < num_classes:
        named = f" ({', '.join(map(str, classes))})" if classes is not None and len(classes) <= 12 else ""
        raise CnnlabError(
            f"class {target} is out of range: this model has {num_classes} classes, 0 to {num_classes - 1}{named}"
        )


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    *,
    target: int | None = None,
    patch: int | None = None,
    stride: int | None = None,
    baseline: float | torch.Tensor = 0.0,
) -> Attribution:
    """Occlusion sensitivity of one normalised input (1, C, H, W) for class `target` (default: the predicted
    class). `patch` defaults to a fifth of the input's side (6 of 28), `stride` to a third of the patch;
    `baseline` is what a covered pixel becomes (normalised; a tensor (1, C, 1, 1) gives one per channel)."""
    target, probability = _target(model, x, target)
    side = min(x.shape[2:])
    patch = patch or max(1, round(side / 5))
    stride = stride or max(1, patch // 3)
    if not (1 <= patch <= side and 1 <= stride <= patch):
        raise CnnlabError(f"occlusion patch {patch} and stride {stride} must satisfy 1 <= stride <= patch <= {side}")
    channels = x.shape[1]
    fill = torch.as_tensor(baseline, dtype=x.dtype).reshape(-1, 1, 1).expand(channels, *x.shape[2:])[None]
    windows = ((x.shape[2] - patch) // stride + 1) * ((x.shape[3] - patch) // stride + 1)
    probabilities = lambda inputs: model(inputs).float().softmax(1)
    heat = (
        Occlusion(probabilities)
        .attribute(
            x,
            sliding_window_shapes=(channels, patch, patch),
            strides=(channels, stride, stride),
            baselines=fill.contiguous(),
            target=target,
            perturbations_per_eval=min(windows, MAX_PATCHES_PER_PASS),
        )[0]
        .mean(0)
    )  # every channel of a pixel is covered together: the same value in each
    return Attribution(OCCLUSION, target, heat.detach(), heat.detach(), probability, patch=patch, stride=stride)


def grad_cam(model: nn.Module, x: torch.Tensor, *, layer: str | None = None, target: int | None = None) -> Attribution:
    """Grad-CAM of one normalised input (1, C, H, W) for class `target` (default: the predicted class) at the
    convolution named `layer` (default: `default_layer`), upsampled to the input."""
    target, probability = _target(model, x, target)
    layer = layer or default_layer(model, x)
    module = _convolution(model, x, layer)
    with torch.enable_grad():
        coarse = LayerGradCam(logits_of(model), module).attribute(
            x.detach().requires_grad_(False), target=target, relu_attributions=True
        )
    heat = LayerAttribution.interpolate(coarse, tuple(x.shape[2:]), interpolate_mode="bilinear")
    return Attribution(GRAD_CAM, target, heat[0, 0].detach(), coarse[0, 0].detach(), probability, layer=layer)


def _convolution(model: nn.Module, x: torch.Tensor, layer: str) -> nn.Module:
    convs = convolutions(model, x)
    listed = ", ".join(convs[:8]) + (f" and {len(convs) - 8} more" if len(convs) > 8 else "")
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise CnnlabError(
            f"model {type(model).__name__} has no layer {layer!r}; Grad-CAM takes a convolution: {listed or 'none'}"
        ) from None
    if layer not in convs:
        what = "is not called by the model" if isinstance(module, nn.Conv2d) else f"is a {type(module).__name__}"
        raise CnnlabError(
            f"{layer} {what}, not a convolution; Grad-CAM takes one of: {listed or 'none (no convolution)'}"
        )
    return module


def _target(model: nn.Module, x: torch.Tensor, target: int | None) -> tuple[int, float]:
    """The class to explain (the predicted one when None) and its softmax probability for `x`."""
    if x.dim() != 4 or x.shape[0] != 1 or not x.is_floating_point():
        raise CnnlabError(f"attribution takes one normalised image (1, C, H, W), got {tuple(x.shape)} {x.dtype}")
    with torch.no_grad():
        probabilities = model(x).float().softmax(1)[0]
    check_target(target, len(probabilities))
    target = int(probabilities.argmax()) if target is None else target
    return target, float(probabilities[target])


def explain_input(
    saved: SavedRun, image: torch.Tensor, method: str, *, target: int | None = None, layer: str | None = None
) -> Attribution:
    """`method` on one uint8 image (C, H, W) shaped as the run's inputs, normalised as in training; covered
    pixels become black for a digit run (no ink), the training images' mean colour for any other run."""
    info = saved.info
    expected = (info.in_channels, *info.input_size)
    if tuple(image.shape) != expected:
        shape = lambda dims: "x".join(map(str, dims))
        raise CnnlabError(
            f"{saved.path}: the model takes {shape(expected)} images of {info.name}, not {shape(image.shape)}"
        )
    check_target(target, info.num_classes, info.classes)
    x = normalise(image[None], info.mean, info.std)
    if method == GRAD_CAM:
        return grad_cam(saved.model, x, layer=layer, target=target)
    if method == OCCLUSION:
        baseline = normalised_black(info.mean, info.std) if info.mnist_style else 0.0
        return occlusion(saved.model, x, target=target, baseline=baseline)
    raise CnnlabError(f"unknown attribution {method!r}; choose {' or '.join(METHODS)}")


def attribution_picture(
    run: str | Path,
    out: Path,
    *,
    first: int = 0,
    data_dir: str | Path | None = None,
    dataset_name: str | None = None,
    options: OpenOptions = OpenOptions(),
) -> Path:
    """The first test image of each class (up to MAX_PICTURED, from index `first` on), each with occlusion and
    Grad-CAM (at the default layer) for the class the model predicts (`cnnlab viz RUN --what attribution`)."""
    saved = open_run(run, options)
    dataset = saved.load_dataset(dataset_name, data_dir=data_dir)
    labels = dataset.test_labels.tolist()
    if not 0 <= first < len(labels):
        raise CnnlabError(f"--image must be between 0 and {len(labels) - 1}, got {first}")
    firsts: dict[int, int] = {}
    for index in range(first, len(labels)):
        firsts.setdefault(labels[index], index)
    indices = [firsts[c] for c in sorted(firsts)][:MAX_PICTURED]
    methods = METHODS if any(isinstance(m, nn.Conv2d) for m in saved.model.modules()) else (OCCLUSION,)
    rows, cols = 1 + len(methods), len(indices)
    fig, axes = pyplot().subplots(rows, cols, figsize=(1.7 * cols, 2.0 * rows), squeeze=False)
    layer = None
    for column, index in zip(axes.T, indices):
        image = dataset.test_images[index]
        results = [explain_input(saved, image, method) for method in methods]
        _draw_column(column, image, results, dataset.classes, labels[index], index)
        layer = results[-1].layer
    cam = f"Grad-CAM at {layer}: bright where the class's evidence is" if layer else "no convolution, no Grad-CAM"
    fig.suptitle(
        "Where the model looks, for the class it predicts. Occlusion: red where covering a patch lowers that "
        f"class's probability, blue where it raises it; {cam}",
        fontsize=9,
    )
    return save_figure(fig, out)


def _draw_column(
    axes: np.ndarray, image: torch.Tensor, results: list[Attribution], classes: Sequence[str], label: int, index: int
) -> None:
    picture = image.permute(1, 2, 0).numpy()
    picture = picture[..., 0] if picture.shape[2] == 1 else picture
    for ax in axes:
        ax.axis("off")
        ax.imshow(picture, cmap="gray")
    axes[0].set_title(
        f"#{index} true {classes[label]}\npredicted {classes[results[0].target]} ({results[0].probability:.1%})",
        fontsize=8,
    )
    for ax, result in zip(axes[1:], results):
        heat = result.heat.numpy()
        if result.method == OCCLUSION:
            limit = max(float(abs(heat).max()), 1e-6)
            ax.imshow(heat, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.7)
            ax.set_title(f"occlusion {result.patch}x{result.patch}\nlargest fall {heat.max():.2f}", fontsize=8)
        else:
            ax.imshow(heat, cmap="inferno", alpha=0.6)
            h, w = result.coarse.shape
            ax.set_title(f"Grad-CAM {result.layer}\n{h}x{w}, upsampled", fontsize=8)
