"""A model spec, resolved in one place: a registered name (`cnn`), a learner's script (`net.py`, `net.py:Net`,
`net.py:make_model`, `net.py:model`) or an ONNX file (`model.onnx`), built behind the registry's interface.

`build_model_from_spec(spec, in_channels=..., num_classes=..., input_size=...)` passes a registered name to
`cnnlab.models.create_model` unchanged. A script's model is built with the arguments the script itself
builds it with (script.py: `arguments`), then the dataset's shape where its signature names it
(`in_channels`, `num_classes`; `input_size` when its default is a tuple), then `--model-args` (JSON); then
one forward pass on a batch of the dataset's shape checks that it runs and gives one score per class, and
says in one line what it expects when it does not.
"""

import inspect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn as nn

from cnnlab import CnnlabError
from cnnlab.external.script import ScriptModel, describe_failure, load_script
from cnnlab.models import create_model

REGISTRY, SCRIPT, ONNX = "registry", "script", "onnx"
# The dataset's shape goes to the constructor under these names (timm's in_chans, U-Net's n_channels, ...).
DATASET_NAMES = {
    "in_channels": ("in_channels", "in_chans", "input_channels", "n_channels"),
    "num_classes": ("num_classes", "n_classes"),
}
PROBED_SIZES = (28, 32, 64, 224)  # input sizes tried to tell what a model that fails on the dataset's expects
MAX_MODEL_ARGS = 10_000  # characters of --model-args


@dataclass(frozen=True)
class ModelSpec:
    text: str  # as given: "cnn", "nets/lenet.py:LeNet", "model.onnx"
    kind: str  # REGISTRY, SCRIPT or ONNX
    path: Path | None = None
    member: str | None = None  # the class, function or variable named after the colon

    @property
    def label(self) -> str:
        """How messages name it: "cnn", "lenet.py:LeNet"."""
        return self.text if self.path is None else f"{self.path.name}{f':{self.member}' if self.member else ''}"

    @property
    def slug(self) -> str:
        """How a folder is named after it: "cnn", "net-Net" (no path, no colon)."""
        if self.path is None:
            return self.text
        return re.sub(r"[^\w.-]", "_", self.path.stem + (f"-{self.member}" if self.member else ""))


def parse_spec(text: str) -> ModelSpec:
    """What `--model` names: a script `path.py[:Name]`, an `.onnx` file, else a registered name."""
    script = re.fullmatch(r"(?P<path>.+\.py)(?::(?P<member>.*))?", text)
    if script:
        member = script["member"]
        if member is not None and not member.isidentifier():
            raise CnnlabError(f"{text}: after the colon comes a class, function or variable name, got {member!r}")
        return ModelSpec(text, SCRIPT, Path(script["path"]), member)
    if text.lower().endswith(".onnx"):
        return ModelSpec(text, ONNX, Path(text))
    return ModelSpec(text, REGISTRY)


def parse_model_args(text: str | None) -> dict:
    """`--model-args '{"width": 32}'`: a JSON object of constructor arguments."""
    if not text:
        return {}
    if len(text) > MAX_MODEL_ARGS:
        raise CnnlabError(f"{len(text):,} characters of model arguments; at most {MAX_MODEL_ARGS:,}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CnnlabError(f"not JSON ({str(e)[:80]}): write it as '{{\"width\": 32}}'") from None
    if not isinstance(value, dict):
        raise CnnlabError(f"expected a JSON object such as '{{\"width\": 32}}', got {text[:60]}")
    return value


def describe_model(spec: "str | ModelSpec", model: nn.Module) -> str | None:
    """What the model `spec` built comes from, when it is from outside the package, in one line."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == SCRIPT and spec.path is not None:
        return load_script(spec.path, spec.member).describe()
    if spec.kind == ONNX:
        parity = cast(float | None, model.parity)
        rebuilt = "rebuilt as PyTorch layers" + (f", {parity:.1e} from onnxruntime's scores" if parity else "")
        return f"{spec.path}: ONNX opset {model.opset}, {cast(str, model.note) or rebuilt}"
    return None


def build_model_from_spec(
    spec: "str | ModelSpec",
    *,
    in_channels: int | None,
    num_classes: int | None,
    input_size: Sequence[int] | None,
    width: int | None = None,
    model_args: dict | None = None,
    source: bytes | None = None,
) -> nn.Module:
    """The model `spec` names, shaped for the data; `source`: a script's bytes to build from (a run's copy).
    `num_classes` None: the model's own count (a summary needs no dataset); `in_channels` and `input_size`
    None: an ONNX graph's own input (its other specs need them)."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == ONNX and spec.path is not None:
        return _onnx_model(spec.path, in_channels=in_channels, num_classes=num_classes, input_size=input_size)
    if in_channels is None or input_size is None:
        raise CnnlabError(f"{spec.text}: the input's shape is needed to build it")
    size = tuple(input_size)
    if spec.kind == REGISTRY:
        options = dict(in_channels=in_channels, num_classes=num_classes, input_size=size, width=width)
        return create_model(spec.text, **options, **(model_args or {}))
    assert spec.path is not None
    script = load_script(spec.path, spec.member, source=source)
    arguments = script_arguments(
        script, in_channels=in_channels, num_classes=num_classes, input_size=size, width=width, model_args=model_args
    )
    model = build_script_model(script, arguments)
    check_model(
        model, label=script.label, path=script.path, in_channels=in_channels, input_size=size, num_classes=num_classes
    )
    return model


def _onnx_model(path: Path, *, in_channels: int | None, num_classes: int | None, input_size) -> nn.Module:
    """The ONNX graph at `path` as a module (external/onnx_graph.py), checked against the data's shape."""
    from cnnlab.external.onnx_graph import load_onnx  # onnxruntime: imported only when a file asks for it

    model = load_onnx(path, input_size=None if input_size is None else tuple(input_size))
    takes, classes = cast(tuple, model.input_shape), cast(int, model.num_classes)  # set by load_onnx on both kinds
    if in_channels is not None and takes[0] != in_channels:
        given = "x".join(map(str, (in_channels, *input_size)))
        raise CnnlabError(f"{path} takes {'x'.join(map(str, takes))} images, not {given}")
    if num_classes is not None and classes != num_classes:
        raise CnnlabError(f"{path} gives {classes} scores an image; the data has {num_classes} classes")
    return model


def build_script_model(script: ScriptModel, arguments: dict) -> nn.Module:
    """Call the script's class or function (`arguments`: from `script_arguments`)."""
    try:
        model = script.build(**arguments)
    except CnnlabError:
        raise
    except Exception as e:  # whatever the learner's constructor raises: its line and message
        raise CnnlabError(f"{script.label} cannot be built: {describe_failure(e, script.path)}") from None
    if not isinstance(model, nn.Module):
        raise CnnlabError(f"{script.label} gives a {type(model).__name__}, not an nn.Module")
    return model


def script_arguments(
    script: ScriptModel,
    *,
    in_channels: int,
    num_classes: int | None,
    input_size: Sequence[int],
    width: int | None = None,
    model_args: dict | None = None,
) -> dict:
    """The script's own arguments, then the dataset's shape where the signature names it, then `model_args`."""
    parameters, label = script.parameters, script.label
    if script.kind == "variable":
        if model_args or width is not None:
            raise CnnlabError(f"{label} is a model the script builds itself: it takes no --model-args or --width")
        return {}
    arguments = dict(script.arguments)
    given = {"in_channels": in_channels, "num_classes": num_classes}
    for meaning, names in DATASET_NAMES.items():
        arguments |= {name: given[meaning] for name in names if name in parameters and given[meaning] is not None}
    if "input_size" in parameters and isinstance(parameters["input_size"].default, (tuple, list)):
        arguments["input_size"] = tuple(input_size)  # (H, W); an int input_size is an MLP's feature count
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    named = [n for n, p in parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    extra = dict(model_args or {}) | ({"width": width} if width is not None else {})
    for key in extra:
        if key not in parameters and not takes_any:
            raise CnnlabError(f"{label} does not take {key!r} (it takes: {', '.join(named) or 'no arguments'})")
    arguments |= extra
    missing = [
        n
        for n, p in parameters.items()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in arguments
    ]
    if missing:
        raise CnnlabError(
            f"{label} needs {', '.join(missing)}, which the script does not pass where cnnlab can read it: "
            f"give {'them' if len(missing) > 1 else 'it'} with --model-args '{{\"{missing[0]}\": ...}}'"
        )
    return arguments


def check_model(
    model: nn.Module,
    *,
    label: str,
    path: str | Path,
    in_channels: int,
    input_size: Sequence[int],
    num_classes: int | None,
) -> None:
    """One forward pass (eval mode, a batch of 2 zeros) on the dataset's shape: it runs, and gives 2 x classes
    (2 x any number when `num_classes` is None)."""
    given = "x".join(map(str, (in_channels, *input_size)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(2, in_channels, *input_size))
    except Exception as e:
        expects = _runs_on(model, in_channels, tuple(input_size))
        raise CnnlabError(
            f"{label} fails on {given} images, at {describe_failure(e, path)}"
            f"{f'; it runs on {expects}' if expects else ''}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise CnnlabError(f"{label} returns a {type(output).__name__}, not one tensor of class scores")
    if output.dim() != 2 or output.shape[0] != 2 or num_classes not in (None, output.shape[1]):
        classes = num_classes or "classes"
        raise CnnlabError(
            f"{label} gives {'x'.join(map(str, output.shape))} for a batch of 2 {given} images; cnnlab needs "
            f"2x{classes}: one score per class, e.g. from a last nn.Linear(..., {classes})"
        )


def _runs_on(model: nn.Module, in_channels: int, input_size: tuple) -> str | None:
    """The input, among common ones, the model does run on ("3x32x32 images"; "784 values an image ..."), if any."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    channels = first.in_channels if isinstance(first, nn.Conv2d) else in_channels
    flat = in_channels * input_size[0] * input_size[1]
    shapes = [(flat,)] + [(c, s, s) for c in dict.fromkeys((channels, 1, 3)) for s in PROBED_SIZES]
    for shape in shapes:
        try:
            with torch.no_grad():
                output = model(torch.zeros(2, *shape))
        except Exception:  # not this one either
            continue
        if isinstance(output, torch.Tensor) and output.shape[:1] == (2,):
            if len(shape) == 1:
                return f"{flat} values an image (the images flattened): flatten x at the start of forward"
            return f"{'x'.join(map(str, shape))} images"
    return None
