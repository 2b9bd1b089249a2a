"""Models by family (one file each) and the registry that names them."""

from cnnlab.models import batchnorm, densenet, lecture, local, resnet, variants  # noqa: F401  (registering the models)
from cnnlab.models.registry import create_model, list_models, register_model
from cnnlab.models.stats import count_flops, count_parameters

create = create_model

__all__ = ["create", "create_model", "list_models", "register_model", "count_parameters", "count_flops"]
