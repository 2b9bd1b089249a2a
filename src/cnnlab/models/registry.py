"""Model registry in the manner of timm: `create_model("cnn", in_channels=1, ...)`, `list_models()`."""

import difflib
import fnmatch
import re
from collections.abc import Callable
from typing import Any, TypeVar

import torch.nn as nn

from cnnlab import CnnlabError

_entrypoints: dict[str, Callable[..., nn.Module]] = {}  # registered name -> factory

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Register a factory under `name` (explicit, so names can carry hyphens: `resnet-20`)."""

    def decorate(factory: Factory) -> Factory:
        if name in _entrypoints:
            raise ValueError(f"model {name!r} is registered twice")
        _entrypoints[name] = factory
        return factory

    return decorate


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    return sorted((n for n in _entrypoints if fnmatch.fnmatch(n, pattern)), key=_natural_key)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; keyword arguments that are None mean "the model's default"."""
    if name not in _entrypoints:
        close = difflib.get_close_matches(name, _entrypoints, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f"; choose from {', '.join(list_models())}"
        raise CnnlabError(f"unknown model {name!r}{hint}")
    given = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return _entrypoints[name](**given)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise CnnlabError(f"model {name!r} does not take {str(e).split('argument')[-1].strip()}") from None
    except (ValueError, RuntimeError) as e:  # a shape or size the architecture cannot take
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        shape = (
            f" for input {given['in_channels']}x{'x'.join(map(str, given['input_size']))}"
            if "input_size" in given and "in_channels" in given
            else ""
        )
        raise CnnlabError(f"model {name!r} cannot be built{shape}: {detail}") from None
